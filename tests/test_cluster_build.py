"""Beyond one machine: a real scheduler and two worker processes build and serve.

A `dask scheduler` and two `dask worker` processes started on loopback run
``gridscope build``; the stores they write are byte-identical to a LocalCluster
build's, and the planner's answers from them equal brute force on the raw data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from data_catalog import open_dataset
from pipelines import Query, compute_map, compute_series
from pipelines.build import BuildConfig, build_derived
from pipelines.derived import register_derived
from pipelines.planner import plan_map, plan_series
from pipelines.synthetic import SyntheticSpec, write_demo_store

pytestmark = pytest.mark.cluster

CONFIG = BuildConfig(max_level=1, ts_max_level=2, base_block=4, unit_steps=16, variables=("sst",))


def _checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for store in ("pyramid.zarr", "aggregates.zarr", "timeseries.zarr")
        for p in sorted((folder / store).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cluster-build") / "src.zarr"
    write_demo_store(SyntheticSpec(nsteps=48, resolution=4.0, seed=5), path, progress=False)
    return path


def test_external_cluster_build_equals_local_and_serves_exact_answers(
    source,
    tmp_path,
    dask_processes,
):
    remote = build_derived(
        str(source), tmp_path / "remote", scheduler=dask_processes, config=CONFIG, progress=False
    )
    local = build_derived(
        str(source), tmp_path / "local", scheduler=None, config=CONFIG, progress=False
    )
    remote_sums, local_sums = _checksums(remote), _checksums(local)
    assert remote_sums and remote_sums == local_sums

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
