"""The app on a real `dask scheduler` + `dask worker` started on loopback."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import start_server, stop_server

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def scheduler(dask_processes):
    """The shared scheduler + 2 worker processes (tests/dask_processes.py) and a client."""
    from distributed import Client

    client = Client(dask_processes, timeout="30s", set_as_default=False)
    yield dask_processes, client
    client.close()


def test_maps_and_series_computed_on_the_cluster_match(scheduler, monkeypatch) -> None:
    from app import cluster_health, runtime
    from app.sources import DatasetSources
    from app.state import ExplorerState
    from app.views.results import ViewResults
    from data_catalog import open_dataset
    from pipelines import compute_map, compute_series

    address, client = scheduler
    runtime.current().update_settings(inprocess_bytes=0)  # everything goes to the cluster
    cluster_health.use_client(client)
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
        cluster_health.use_client(None)


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
