"""The app on a real `dask scheduler` + `dask worker` started on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import free_port, start_server, stop_server

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask")
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=(logs / "s.log").open("w"), stderr=subprocess.STDOUT)]  # fmt: skip
    for i in range(2):
        procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                                       "--host", "127.0.0.1"], stdout=(logs / f"w{i}.log").open("w"),
                                      stderr=subprocess.STDOUT))  # fmt: skip
    from distributed import Client

    client = Client(address, timeout="30s")
    client.wait_for_workers(2, timeout=60)
    yield address, client
    client.close()
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_maps_and_series_computed_on_the_cluster_match(scheduler, monkeypatch) -> None:
    from app import compute
    from app.sources import DatasetSources
    from app.state import ExplorerState
    from app.views.results import ViewResults
    from data_catalog import open_dataset
    from pipelines import compute_map, compute_series

    address, client = scheduler
    monkeypatch.setenv("GRIDSCOPE_INPROCESS_BYTES", "0")  # everything goes to the cluster
    compute.use_client(client)
    try:
        state = ExplorerState(DatasetSources.from_catalog())
        state.param.update(
            time_mode="range", start="Mar", end="Sep", agg="std", region="North Pacific"
        )
        results = ViewResults(state)
        results.refresh()
        assert results.map_where == "cluster", results.error
        ds = open_dataset("coads")
        np.testing.assert_allclose(results.field.values, compute_map(ds, state.map_query).compute(scheduler="sync").values,
                                   rtol=1e-12, equal_nan=True)  # fmt: skip
        np.testing.assert_allclose(results.series.values, compute_series(ds, state.series_query).compute(scheduler="sync").values,
                                   rtol=1e-12)  # fmt: skip
        from app.views.cluster_view import describe_cluster

        assert "2 workers" in describe_cluster(client)
    finally:
        compute.use_client(None)


def test_serve_connects_to_the_scheduler(scheduler, tmp_path) -> None:
    address, client = scheduler
    before = set(client.scheduler_info()["workers"])
    proc, url = start_server(["--scheduler", address], tmp_path / "serve.log")
    try:
        with urllib.request.urlopen(url + "/", timeout=60) as response:
            assert response.status == 200
        deadline = time.monotonic() + 20
        while (
            "Dask: " + address not in (tmp_path / "serve.log").read_text()
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert f"Dask: {address}" in (tmp_path / "serve.log").read_text()
        assert (
            set(client.scheduler_info()["workers"]) == before
        )  # no LocalCluster workers were added
    finally:
        stop_server(proc)
    assert proc.returncode is not None
    assert os.path.exists(tmp_path / "serve.log")
