"""A local build: units on threads of the calling process, long blocks combined while
later units run; the same bytes as a build one unit after the other, exact blocks."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import zarr

import pipelines.build as build
from data_catalog import open_dataset
from pipelines.build import BuildConfig, build_derived
from pipelines.derived import DerivedStores
from pipelines.synthetic import SyntheticSpec, write_demo_store
from tests.pipelines_data import store_checksums

# blocks of 2 and 8 steps written by the units (8 steps each), 32 combined from them
CONFIG = BuildConfig(max_level=1, ts_max_level=2, base_block=2, unit_steps=8, variables=("t2m",))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("threads") / "src.zarr"
    write_demo_store(SyntheticSpec(nsteps=100, resolution=6.0, seed=11), path, progress=False)
    return path


def test_local_build_runs_units_on_threads_and_combines_during_them(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nunits = 100 // CONFIG.unit_steps + 1
    threads: set[str] = set()
    combined_early = threading.Event()
    waited: list[bool] = []
    run_unit, run_combine = build._run_unit, build._run_combine

    def unit(source, folder, var, u, cfg, nsteps=None):
        threads.add(threading.current_thread().name)
        if u == nunits - 1:  # the last unit waits (a while at most) for a combined block
            waited.append(combined_early.wait(timeout=20))
        return run_unit(source, folder, var, u, cfg, nsteps)

    def combine_counting(*args, **kwargs):
        n = run_combine(*args, **kwargs)
        if n:
            combined_early.set()
        return n

    monkeypatch.setattr(build, "_run_unit", unit)
    monkeypatch.setattr(build, "_run_combine", combine_counting)
    threaded = build_derived(str(source), tmp_path / "threads", config=CONFIG, progress=False)
    monkeypatch.undo()

    assert threads and all(name.startswith("gridscope-unit") for name in threads)
    # a 32-step block was combined before the last unit started its work
    assert waited == [True]
    sequential = build_derived(
        str(source), tmp_path / "sync", scheduler="synchronous", config=CONFIG, progress=False
    )
    sums = store_checksums(threaded)
    assert sums and sums == store_checksums(sequential)
    assert DerivedStores(threaded).manifest()["variables"]["t2m"]["complete"][
        "aggregate_sizes"
    ] == [2, 8, 32]
    last = DerivedStores(threaded).manifest()["last_build"]
    assert last["blocks_combined"] == 2 * 3 and last["cpu_seconds"] > 0  # 2 levels, 3 blocks

    # the combined blocks are those of the raw steps (numpy, independent of the build)
    values = open_dataset(str(source))["t2m"].transpose("time", "lat", "lon").values
    table = build._table(100, CONFIG)
    agg = zarr.open_group(DerivedStores(threaded).data_folder / "aggregates.zarr", mode="r")
    for k in range(3):
        block = values[32 * k : 32 * (k + 1)]
        row = table.flat_index(32, k)
        np.testing.assert_array_equal(agg["t2m/L0/max"][row], np.nanmax(block, axis=0))
        np.testing.assert_array_equal(agg["t2m/L0/min"][row], np.nanmin(block, axis=0))
        np.testing.assert_array_equal(
            agg["t2m/L0/count"][row], np.isfinite(block).sum(axis=0).astype("int32")
        )
