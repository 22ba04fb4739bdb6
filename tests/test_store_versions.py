"""Derived stores are versioned and switched atomically: a reader during an append
answers from the old version, whole, until the new one is published, then from it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipelines import Query
from pipelines.build import BuildConfig, build_derived
from pipelines.synthetic import SyntheticSpec, write_demo_store

CONFIG = BuildConfig(max_level=1, ts_max_level=2, base_block=4, unit_steps=16, variables=("t2m",))
N = 100
MAX_MAP = Query(dataset="x", var="t2m", agg="max")
POINT = Query(dataset="x", var="t2m", point=(102.0, -30.0))


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("versions") / "full.zarr"
    write_demo_store(SyntheticSpec(nsteps=N + 60, resolution=6.0, seed=7), path, progress=False)
    return path


def _answers(ds: xr.Dataset) -> tuple[str, np.ndarray, str, np.ndarray]:
    from pipelines.planner import plan_map, plan_series

    field, series = plan_map(ds, MAX_MAP), plan_series(ds, POINT)
    return field.description, field.compute().values, series.description, series.compute().values


@pytest.mark.parametrize("new", [20, 60], ids=["same-folder", "new-folder"])
def test_a_reader_during_an_append_sees_the_old_version_whole(
    full: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new: int
) -> None:
    import pipelines.build as build
    from data_catalog import open_dataset
    from pipelines.derived import find_derived

    raw = xr.open_zarr(full)
    grow = tmp_path / "grow.zarr"
    raw.isel(time=slice(0, N)).to_zarr(grow)
    folder = build_derived(str(grow), scheduler="synchronous", config=CONFIG, progress=False)
    old = open_dataset(str(grow))
    memory = old.load()
    expected_map = memory["t2m"].max("time").values
    expected_series = memory["t2m"].sel(lon=102.0, lat=-30.0).values
    version = find_derived(old).version

    raw.isel(time=slice(N, N + new)).to_zarr(grow, append_dim="time")
    run_unit = build._run_unit

    def slow_unit(*args):  # a long append, to read during it
        time.sleep(0.3)
        return run_unit(*args)

    monkeypatch.setattr(build, "_run_unit", slow_unit)
    failed: list[BaseException] = []

    def append() -> None:
        try:
            build_derived(str(grow), scheduler="synchronous", config=CONFIG, progress=False)
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            failed.append(exc)

    appending = threading.Thread(target=append)
    appending.start()
    from_stores = 0
    while appending.is_alive():
        stores = find_derived(old)
        map_how, field, series_how, series = _answers(old)
        # whatever version it reads (or none: brute force on the old record), never a mix
        np.testing.assert_array_equal(field, expected_map)
        np.testing.assert_allclose(series, expected_series, rtol=1e-6)
        if stores is not None and find_derived(old) is stores:
            assert stores.version == version  # the old version, until the new is whole
            from_stores += map_how.startswith("temporal aggregates") and series_how.startswith(
                "time-series copy"
            )
    appending.join()
    assert not failed, failed
    assert from_stores >= 3, "the old version was not read during the append"

    assert find_derived(old) is None  # the published version is the longer record's
    grown = open_dataset(str(grow))
    stores = find_derived(grown)
    assert stores is not None and stores.version != version
    map_how, field, series_how, series = _answers(grown)
    assert map_how.startswith("temporal aggregates") and series_how.startswith("time-series")
    both = grown.load()
    np.testing.assert_array_equal(field, both["t2m"].max("time").values)
    np.testing.assert_allclose(series, both["t2m"].sel(lon=102.0, lat=-30.0).values, rtol=1e-6)
    data_folders = sorted(p.name for p in folder.glob("data-*"))
    assert len(data_folders) == (1 if new == 20 else 2)  # the old one kept for its readers
    assert stores.data_folder.name in data_folders

    # the next build removes versions no manifest names; with nothing new to build, it
    # keeps the version (and the answers cached under it)
    published = stores.version
    build_derived(str(grow), scheduler="synchronous", config=CONFIG, progress=False)
    assert [p.name for p in folder.glob("data-*")] == [stores.data_folder.name]
    assert find_derived(grown).version == published
