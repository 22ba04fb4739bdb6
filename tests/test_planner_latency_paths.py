"""The planner's fast read paths answer exactly what brute force does.

Region and point series read the time-series copy one decoded chunk at a time, each
chunk once for every cover piece in it, with chunk shapes taken from the arrays (a build
may choose other tiles); range maps add blocks' moments in one numba pass, decode chunks
through `pipelines.chunk_reader`, and a mean reads an edge's block less the steps
outside the range where that reads less. Checked against float64 numpy on a small store
built with 8x8 tiles (many pieces share chunks), with NaNs that move in time, and
against zarr's own read path (the readers turned off).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import pipelines.build as build_module
from data_catalog import open_dataset
from pipelines import Query
from pipelines.build import BuildConfig, build_derived
from pipelines.derived import VariableStores, find_derived
from pipelines.planner import plan_map, plan_series
from tests.pipelines_data import write_daily_source

NT = 40
CONFIG = BuildConfig(max_level=1, ts_max_level=4, base_block=4, unit_steps=8)
BOXES = [(-179.5, -89.5, 179.5, 89.5), (-61.0, -17.0, 47.0, 55.0), (3.2, 10.1, 9.9, 14.8)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("latency")
    rng = np.random.default_rng(3)
    lat, lon = np.arange(-89.0, 90.0, 2.0), np.arange(-179.0, 180.0, 2.0)
    # ~1000 K, +300 over the record, noise 0.5: the subtracted steps' sums of squares
    # dwarf a range's variance (the hard case for taking steps out)
    t = np.arange(NT)[:, None, None]
    x = 1000.0 + 300.0 * t / NT + 0.5 * rng.standard_normal((NT, lat.size, lon.size))
    x[rng.random(x.shape) < 0.05] = np.nan
    x[:, 10:20, 30:60] = np.nan  # a 'land' block, no valid cell
    path = write_daily_source(root / "src.zarr", {"tas": x.astype("float32")}, lat, lon, "K")
    tile = build_module._TS_TILE
    build_module._TS_TILE = 8  # chunks unlike the default: readers must take them from the arrays
    try:
        build_derived(str(path), out=root, scheduler="synchronous", config=CONFIG, progress=False)
    finally:
        build_module._TS_TILE = tile
    opened = open_dataset(str(path))
    stores = find_derived(opened).variable("tas")
    assert stores.array("timeseries", "values").chunks[1:] == (8, 8)
    return opened


def _brute_box(ds: xr.Dataset, box: tuple[float, float, float, float]) -> np.ndarray:
    west, south, east, north = box
    lat, lon = ds["lat"].values, ds["lon"].values
    rows, cols = (lat >= south) & (lat <= north), (lon >= west) & (lon <= east)
    x = np.asarray(ds["tas"].values, "float64")[:, rows][:, :, cols]
    area = np.asarray(ds["cell_area"].values, "float64")[np.ix_(rows, cols)]
    valid = ~np.isnan(x)
    with np.errstate(invalid="ignore"):
        return (np.where(valid, x, 0.0) * area).sum((1, 2)) / (valid * area).sum((1, 2))


@pytest.mark.parametrize("box", BOXES)
def test_box_series_equal_brute_force(built, box) -> None:
    plan = plan_series(built, Query(dataset="p", var="tas", bbox=box))
    assert plan.description.startswith("time-series copy")
    got = plan.compute().values
    np.testing.assert_allclose(got, _brute_box(built, box), rtol=1e-5, atol=0)


@pytest.mark.parametrize("box", BOXES)
def test_box_series_same_through_zarr(built, box, monkeypatch) -> None:
    fast = plan_series(built, Query(dataset="p", var="tas", bbox=box)).compute().values
    monkeypatch.setattr(VariableStores, "reader", lambda self, store, path: None)
    slow = plan_series(built, Query(dataset="p", var="tas", bbox=box)).compute().values
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("point", [(-179.0, -89.0), (37.3, 12.9), (179.0, 89.0)])
def test_point_series_bit_for_bit(built, point) -> None:
    got = plan_series(built, Query(dataset="p", var="tas", point=point)).compute()
    want = built["tas"].sel(lon=point[0], lat=point[1], method="nearest").values
    np.testing.assert_array_equal(got.values, want)


@pytest.mark.parametrize("agg", ["mean", "std", "min", "max"])
def test_range_maps_equal_brute_force(built, agg) -> None:
    query = Query(dataset="p", var="tas", start="2000-01-02", end="2000-02-06", agg=agg)
    plan = plan_map(built, query)
    assert plan.description.startswith("temporal aggregates level 0")
    # steps 1..36: a mean reads block 0..3 less step 0 (subtracted), std/min/max steps 1..3
    minus = " + 1 raw steps - 1 raw steps " if agg == "mean" else " + 4 raw steps "
    assert minus in plan.description
    got = plan.compute().values
    x = np.asarray(built["tas"].values[1:37], "float64")
    reduce = {"mean": np.nanmean, "std": np.nanstd, "min": np.nanmin, "max": np.nanmax}[agg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells
        want = reduce(x, axis=0)
    if agg in ("min", "max"):
        np.testing.assert_array_equal(got, want.astype("float32"))
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 if agg == "std" else 0)


@pytest.mark.parametrize("agg", ["mean", "std"])
def test_three_blocks_read_as_their_parent_less_one(built, agg) -> None:
    # steps 4..15: three 4-step blocks of the 16-step block 0..15, read for a mean as it
    # less steps 0..3; a std reads the three (its float32 m2 does not subtract exactly)
    query = Query(dataset="p", var="tas", start="2000-01-05", end="2000-01-16", agg=agg)
    plan = plan_map(built, query)
    parts = "[1x16] - blocks [1x4]" if agg == "mean" else "[3x4]"
    assert f"blocks {parts} + 0 raw steps" in plan.description
    x = np.asarray(built["tas"].values[4:16], "float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells
        want = (np.nanmean if agg == "mean" else np.nanstd)(x, axis=0)
    got = plan.compute().values
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 if agg == "std" else 0)
