"""Beyond one machine: a real scheduler and two worker processes build and serve.

A `dask scheduler` and two `dask worker` processes started on loopback run
``gridscope build --scheduler ADDRESS``; the stores they write are byte-identical to
a local build's (units on threads of this process) and to one in this thread
(``scheduler="synchronous"``), and the planner's answers from them equal brute force
on the raw data.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from app.builds import BuildJobs
from app.cli import main
from data_catalog import open_dataset
from pipelines import Query, compute_map, compute_series
from pipelines.build import BuildConfig, build_derived
from pipelines.cluster import ClusterSpec, connect, disconnect
from pipelines.derived import derived_dir_for, register_derived
from pipelines.planner import plan_map, plan_series
from pipelines.synthetic import SyntheticSpec, write_demo_store
from tests.pipelines_data import store_checksums

pytestmark = pytest.mark.cluster

CONFIG = BuildConfig(max_level=1, ts_max_level=2, base_block=4, unit_steps=16, variables=("sst",))
#: CONFIG as ``gridscope build`` flags
CONFIG_FLAGS = ["--levels", "1", "--ts-levels", "2", "--base-block", "4", "--unit-steps", "16",
                "--vars", "sst"]  # fmt: skip


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cluster-build") / "src.zarr"
    write_demo_store(SyntheticSpec(nsteps=48, resolution=4.0, seed=5), path, progress=False)
    return path


@pytest.fixture(scope="module")
def in_process_sums(source, tmp_path_factory) -> dict[str, str]:
    """Checksums of the stores an in-process build of ``source`` writes."""
    folder = build_derived(
        str(source), tmp_path_factory.mktemp("in-process"), scheduler="synchronous",
        config=CONFIG, progress=False,
    )  # fmt: skip
    return store_checksums(folder)


def test_external_cluster_build_equals_local_and_serves_exact_answers(
    source,
    tmp_path,
    dask_processes,
    in_process_sums,
):
    command = ["build", str(source), "--out", str(tmp_path / "remote"), *CONFIG_FLAGS]
    assert main([*command, "--scheduler", dask_processes]) == 0
    remote = derived_dir_for(str(source), tmp_path / "remote")
    local = build_derived(
        str(source), tmp_path / "local", scheduler=None, config=CONFIG, progress=False
    )
    remote_sums = store_checksums(remote)
    assert remote_sums and remote_sums == store_checksums(local) == in_process_sums

    ds = open_dataset(str(source))
    register_derived(str(source), remote)
    query = Query(
        "x", "sst", start="1980-01-09", end="1980-02-10", agg="max", bbox=(150, -40, -150, 40)
    )
    plan = plan_map(ds, query)
    assert "brute force" not in plan.description
    np.testing.assert_array_equal(plan.compute().values, compute_map(ds, query).values)
    series_query = Query("x", "sst", bbox=(-60, -20, 60, 40))
    series = plan_series(ds, series_query)
    assert series.description.startswith("time-series copy")
    np.testing.assert_allclose(
        series.compute().values, compute_series(ds, series_query).values, rtol=1e-5
    )


def test_dashboard_build_runs_on_the_apps_own_client(source, tmp_path, dask_processes,
                                                     in_process_sums):  # fmt: skip
    """The dashboard hands its build its own client, not the scheduler's address (a
    Gateway cluster's address alone cannot be connected to), and keeps it open."""
    client = connect(ClusterSpec(scheduler=dask_processes))
    try:
        progress = BuildJobs().start(str(source), client, out=tmp_path, config=CONFIG)
        deadline = time.monotonic() + 120
        while progress.state == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert progress.state == "done", progress.message
        assert client.status == "running"
    finally:
        disconnect(client)
    assert store_checksums(derived_dir_for(str(source), tmp_path)) == in_process_sums
