"""The derived stores' compact encodings stay exact: float64 numpy brute force on
adversarial data (a large offset, a strong trend and a seasonal cycle relative to the
noise, NaNs that move in time).

Time-series levels are float32 block means + valid areas
(`pipelines.timeseries_store.level_means`): box series within 1e-5 relative of the
float64 area-weighted mean. Aggregates keep float32 ``m2`` per block
(`pipelines.aggregates`): range maps' std/mean within 1e-5, min/max exact. The test builds a small regular store with
`pipelines.build.build_derived` and asks the planner, whose plan must read the coarse
levels.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

from data_catalog import open_dataset
from pipelines import Query
from pipelines.aggregates import (
    STATS,
    BlockStats,
    block_stats,
    combine_stats,
    finish,
    stat_of,
    stored,
)
from pipelines.build import BuildConfig, build_derived
from pipelines.planner import plan_map, plan_series
from pipelines.timeseries_store import level_means, level_sums
from tests.pipelines_data import write_daily_source

NT = 48
CONFIG = BuildConfig(max_level=2, ts_max_level=4, base_block=2, unit_steps=8)


def _adversarial(nt: int, ny: int, nx: int, seed: int) -> dict[str, np.ndarray]:
    """``tas``: ~1000 K offset, +300 over the record, a 40 K seasonal cycle, noise 0.5,
    10% of the cells NaN at random per step and a fixed 'land' block; ``anom``: the same
    noise about 0 (values of both signs: the hard case for relative errors)."""
    rng = np.random.default_rng(seed)
    t = np.arange(nt)[:, None, None]
    trend = 1000.0 + 300.0 * t / nt + 40.0 * np.sin(2 * np.pi * t / 12)
    tas = trend + rng.normal(0.0, 0.5, (nt, ny, nx))
    tas[rng.random((nt, ny, nx)) < 0.1] = np.nan
    tas[:, ny // 3 : ny // 2, nx // 4 : nx // 2] = np.nan
    anom = rng.normal(0.0, 1.0, (nt, ny, nx))
    anom[np.isnan(tas)] = np.nan
    return {"tas": tas.astype("float32"), "anom": anom.astype("float32")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    lat = np.arange(-89.0, 90.0, 2.0)
    lon = np.arange(-179.0, 180.0, 2.0)
    fields = _adversarial(NT, lat.size, lon.size, seed=7)
    path = write_daily_source(root / "adversarial.zarr", fields, lat, lon, "K")
    build_derived(str(path), out=root, scheduler="synchronous", config=CONFIG, progress=False)
    return open_dataset(str(path))


def _brute_box_mean(ds: xr.Dataset, var: str, box: tuple[float, float, float, float]):
    """Area-weighted mean of the valid cells with centres in ``box``, float64 numpy."""
    west, south, east, north = box
    lat, lon = ds["lat"].values, ds["lon"].values
    rows = (lat >= south) & (lat <= north)
    cols = (lon >= west) & (lon <= east)
    x = np.asarray(ds[var].values, "float64")[:, rows][:, :, cols]
    area = np.asarray(ds["cell_area"].values, "float64")[np.ix_(rows, cols)]
    valid = ~np.isnan(x)
    return (np.where(valid, x, 0.0) * area).sum(axis=(1, 2)) / (valid * area).sum(axis=(1, 2))


BOXES = [(-179.5, -89.5, 179.5, 89.5), (-120.0, -60.0, 100.0, 70.0), (-31.0, -17.0, 47.0, 55.0)]


@pytest.mark.parametrize("box", BOXES)
def test_box_series_from_float32_levels_within_1e5(built, box) -> None:
    plan = plan_series(built, Query(dataset="p", var="tas", bbox=box))
    # the coarse time-series levels are read (not only the raw values)
    levels = re.search(r"levels \[([0-9, ]+)\]", plan.description)
    assert plan.description.startswith("time-series copy") and levels is not None
    assert max(int(v) for v in levels.group(1).split(",")) >= 1
    got = plan.compute().values
    ref = _brute_box_mean(built, "tas", box)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=0)
    # values of both signs (mean near 0): the error stays within 1e-6 of the field's size
    got = plan_series(built, Query(dataset="p", var="anom", bbox=box)).compute().values
    ref = _brute_box_mean(built, "anom", box)
    assert np.nanmax(np.abs(got - ref)) <= 1e-6 * np.nanmean(np.abs(built["anom"].values))


def test_level_means_bound() -> None:
    """sum(mean * area) / sum(area) over stored blocks vs the float64 sums they encode:
    relative error <= 2**-22 for a field of one sign, for any areas and all-NaN blocks."""
    rng = np.random.default_rng(1)
    wsum_true = rng.uniform(250.0, 320.0, (64, 500)) * (area := rng.uniform(0, 1e12, (64, 500)))
    area[:, ::7] = 0.0  # blocks with no valid cell
    wsum_true[:, ::7] = 0.0
    mean, stored_area = level_means(wsum_true, area)
    assert mean.dtype == np.float32 and stored_area.dtype == np.float32
    assert np.isnan(mean[:, ::7]).all()
    wsum, warea = level_sums(mean, stored_area)
    got = wsum.sum(axis=1) / warea.sum(axis=1)
    ref = wsum_true.sum(axis=1) / area.sum(axis=1)
    assert np.max(np.abs(got / ref - 1)) <= 2.0**-22


def _brute_range(ds: xr.Dataset, var: str, t0: int, t1: int, agg: str) -> np.ndarray:
    x = np.asarray(ds[var].values[t0:t1], "float64")
    with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", RuntimeWarning)
        return {"mean": np.nanmean, "std": np.nanstd, "min": np.nanmin, "max": np.nanmax}[agg](
            x, axis=0
        )


@pytest.mark.parametrize("var", ["tas", "anom"])
def test_range_maps_from_m2_aggregates_within_1e5(built, var) -> None:
    """Aggregates keep float32 ``m2`` (Chan merges): std/mean rel <= 1e-5 and min/max
    exact against float64 numpy, for ranges over blocks far from the shift (trend,
    cycle), with NaNs; the plan must use stored blocks."""
    labels = [str(t)[:10] for t in built["time"].values]
    rng = np.random.default_rng(11)
    spans = [(0, NT), (NT - 20, NT), (5, 37)] + [
        tuple(sorted(rng.choice(NT, 2, replace=False))) for _ in range(3)
    ]
    for a, b in spans:
        for agg in ("mean", "std", "min", "max"):
            query = Query(dataset="p", var=var, start=labels[a], end=labels[b - 1], agg=agg)
            plan = plan_map(built, query)
            assert plan.description.startswith("temporal aggregates level 0")
            assert "blocks [none]" not in plan.description
            got = plan.compute().values
            ref = _brute_range(built, var, a, b, agg)
            assert np.array_equal(np.isnan(got), np.isnan(ref))
            if agg in ("min", "max"):
                assert np.array_equal(got, ref.astype("float32"), equal_nan=True)
            else:
                np.testing.assert_allclose(got, ref, rtol=1e-5, atol=0)


def test_m2_blocks_merge_without_cancellation() -> None:
    """Blocks of a series with a huge offset and a trend 1e4 times its noise: the std
    rebuilt from stored (float32 m2) blocks merged pairwise matches float64 numpy."""
    rng = np.random.default_rng(3)
    t = np.arange(256)[:, None]
    x = (1e4 + 50.0 * t + rng.normal(0, 0.005, (256, 200))).astype("float32")
    x[rng.random(x.shape) < 0.2] = np.nan
    shift = np.nan_to_num(x[0].astype("float64"))
    stats = block_stats(x, shift, 8)
    stats = BlockStats(*(stored(stats, n) for n in STATS))  # as stored
    for _ in range(3):
        stats = combine_stats(stats)
        stats = BlockStats(*(stored(stats, n) for n in STATS))
    # the last 64-step block's std against numpy, and sums of two blocks
    totals = {n: stat_of(stats, n)[-1] for n in ("sum", "sumsq", "count")}
    got = finish("std", totals, shift)
    ref = np.nanstd(x[-64:].astype("float64"), axis=0)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    totals = {n: stat_of(stats, n)[-2:].sum(axis=0) for n in ("sum", "sumsq", "count")}
    np.testing.assert_allclose(
        finish("std", totals, shift), np.nanstd(x[-128:].astype("float64"), axis=0), rtol=1e-5
    )
    # within a block the trend (50 per step) dominates: the noise alone, over one step pair
    pair = block_stats(x[-2:], shift, 2)
    got = finish("std", {n: stat_of(pair, n)[0] for n in ("sum", "sumsq", "count")}, shift)
    np.testing.assert_allclose(got, np.nanstd(x[-2:].astype("float64"), axis=0), rtol=1e-5)


def test_stores_of_another_format_are_not_read(built) -> None:
    """A manifest of another layout (e.g. format 2: float64 sumsq, wsum/warea) is read
    as 'not built': brute force, never the new code misreading old arrays."""
    import json
    import time

    from pipelines.derived import STORE_FORMAT, find_derived

    query = Query(dataset="p", var="tas", bbox=BOXES[1])
    assert plan_series(built, query).description.startswith("time-series copy")
    path = find_derived(built).folder / "manifest.json"
    manifest = json.loads(path.read_text())
    try:
        path.write_text(json.dumps(manifest | {"format": STORE_FORMAT - 1}))
        time.sleep(1.1)  # readers re-read the manifest once a second at most
        plan = plan_series(built, query)
        assert plan.description.startswith("brute force"), plan.description
        np.testing.assert_allclose(
            plan.compute().values, _brute_box_mean(built, "tas", BOXES[1]), rtol=1e-6
        )
    finally:
        path.write_text(json.dumps(manifest))
        time.sleep(1.1)


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    """A 4-degree synthetic store (46 x 90 cells: level-2 blocks are partial on both
    axes; ``sst`` NaN over land) built to level 2 with 4-step blocks."""
    from pipelines.synthetic import SyntheticSpec, write_demo_store

    root = tmp_path_factory.mktemp("uneven")
    path = write_demo_store(
        SyntheticSpec(nsteps=40, resolution=4.0, seed=5), root / "u.zarr", progress=False
    )
    config = BuildConfig(max_level=2, ts_max_level=2, base_block=4, unit_steps=16)
    folder = build_derived(
        str(path), out=root / "d", scheduler="synchronous", config=config, progress=False
    )
    ds = open_dataset(str(path))
    return ds, ds.load(), folder


def _level_reference(memory: xr.Dataset, query: Query, level: int, viewport) -> xr.DataArray:
    """The query on the level-``level`` dataset (`level_dataset`), cropped to the view."""
    from pipelines import compute_map
    from pipelines.pyramid import field_kind, level_dataset
    from pipelines.selection import select_bbox

    kind = field_kind(query.agg, query.time is not None, query.is_anomaly)
    out = compute_map(level_dataset(memory, level, kind), query)
    x0, x1, y0, y1 = viewport
    return select_bbox(out, (x0, y0, x1, y1))


# whole globe, and a view across the antimeridian (two runs of columns, the partial
# last column of a level inside the first); screens giving levels 0, 1 and 2
VIEWS = [((-180.0, 180.0, -90.0, 90.0), (22, 11)), ((100.0, 80.0, -70.0, 85.0), (40, 20))]


def _pyramid_arrays(folder) -> dict[str, list[str]]:
    """The arrays of each level of ``sst``'s pyramid, as stored."""
    import zarr

    from pipelines.derived import DerivedStores

    pyramid = zarr.open_group(DerivedStores(folder).data_folder / "pyramid.zarr", mode="r")
    return {name: sorted(group.array_keys()) for name, group in pyramid["sst"].groups()}


@pytest.mark.parametrize("agg", ["min", "max"])
def test_min_max_range_maps_at_coarse_levels(uneven, agg) -> None:
    """The pyramid stores per-step min/max fields from level 2 on (`MINMAX_FROM_LEVEL`),
    the mean field at every level; a min/max range map takes its edge steps at level 1
    from the raw cells under the view, coarsened, and at level 2 from the stored
    min/max field: both exactly the level-L dataset's answer, and the plan counts the
    bytes it reads (4**1 raw cells per level cell at level 1, one at level 2)."""
    from pipelines.pyramid import MINMAX_FROM_LEVEL

    ds, memory, folder = uneven
    assert MINMAX_FROM_LEVEL == 2
    assert _pyramid_arrays(folder) == {"L1": ["mean"], "L2": ["max", "mean", "min"]}
    labels = [str(t)[:10] for t in ds["time"].values]
    levels = set()
    for viewport, screen in VIEWS:
        for a, b in [(1, 39), (3, 22), (0, 40)]:  # raw steps at both ends, one end, none
            for var in ("sst", "t2m"):
                query = Query(dataset="u", var=var, start=labels[a], end=labels[b - 1], agg=agg)
                plan = plan_map(ds, query, viewport=viewport, screen=screen)
                got = plan.compute()
                level = got.attrs["gridscope_level"]
                levels.add(level)
                assert plan.description.startswith(f"temporal aggregates level {level}")
                ref = _level_reference(memory, query, level, viewport)
                np.testing.assert_array_equal(got["lon"].values, ref["lon"].values)
                np.testing.assert_array_equal(got.values, ref.values)
                # bytes: the stored blocks' min/max, plus for each edge step every raw
                # cell under the view at level 1 (4 per level cell, fewer at the grid's
                # edges), the stored min/max field at level 2
                nblocks = sum(
                    int(n)
                    for n in re.findall(
                        r"(\d+)x\d+", plan.description.split("blocks [")[1].split("]")[0]
                    )
                )
                edges = int(re.search(r"\+ (\d+) raw steps", plan.description).group(1))
                fine = _raw_cells_under(memory, got, level) if level < 2 else got.size
                assert plan.estimated_bytes == 4 * (nblocks * got.size + edges * fine)
                if level == 1 and a:
                    assert edges and fine > 2 * got.size
    assert levels >= {1, 2}


def _raw_cells_under(memory: xr.Dataset, got: xr.DataArray, level: int) -> int:
    """How many level-0 cells the level-``level`` cells of ``got`` cover."""
    from pipelines.pyramid import level_grid

    lat0, lon0 = memory["lat"].values, memory["lon"].values
    grid = level_grid(lat0, lon0, memory["cell_area"].values, level)
    s = 2**level
    rows = np.searchsorted(grid.lat, got["lat"].values)
    lon = (got["lon"].values + 180.0) % 360.0 - 180.0  # a view across the antimeridian
    cols = np.searchsorted(grid.lon, lon)
    assert np.array_equal(grid.lat[rows], got["lat"].values)
    np.testing.assert_allclose(grid.lon[cols], lon, atol=1e-9)
    nrows = sum(min((i + 1) * s, lat0.size) - i * s for i in rows)
    ncols = sum(min((j + 1) * s, lon0.size) - j * s for j in cols)
    return int(nrows * ncols)


def test_min_max_maps_before_the_aggregates_are_complete(uneven, monkeypatch) -> None:
    """Without usable aggregates a min/max range map is at level 1 the raw data's
    min/max, coarsened (no stored min/max field there), its bytes those of the raw cells
    under the view; at level 2 the stored min/max field's min/max, its bytes those of
    that field: both exactly the level-L dataset's answer. A mean reads the mean field."""
    from pipelines.derived import VariableStores

    monkeypatch.setattr(VariableStores, "block_table", lambda self, level: None)
    ds, memory, _ = uneven
    labels = [str(t)[:10] for t in ds["time"].values]
    levels = set()
    for viewport, screen in VIEWS:
        for agg in ("min", "max", "mean"):
            query = Query(dataset="u", var="sst", start=labels[2], end=labels[30], agg=agg)
            plan = plan_map(ds, query, viewport=viewport, screen=screen)
            got = plan.compute()
            level = got.attrs["gridscope_level"]
            assert level >= 1
            levels.add(level)
            ref = _level_reference(memory, query, level, viewport)
            if agg == "mean":
                assert plan.description == f"brute force on pyramid level {level} (mean field)"
                np.testing.assert_allclose(got.values, ref.values, rtol=1e-6)
                continue
            np.testing.assert_array_equal(got["lon"].values, ref["lon"].values)
            np.testing.assert_array_equal(got.values, ref.values)
            if level == 1:
                assert plan.description.startswith("brute force on the raw data, coarsened")
                assert plan.estimated_bytes == 4 * 29 * _raw_cells_under(memory, got, level)
            else:
                assert plan.description == f"brute force on pyramid level {level} ({agg} field)"
                assert plan.estimated_bytes == 4 * 29 * got.size
    assert levels == {1, 2}


def test_block_sums_stay_float64() -> None:
    """The stored block sums keep float64 (`pipelines.aggregates`): a std rebuilt from
    stored blocks stays within 1e-5 of float64 numpy where a float32 ``sum`` loses it,
    and means and min/max stay exact, for every block size (8 .. 512) and for ranges
    of several blocks, on three fields far from their shift relative to their spread.
    (With ``STAT_DTYPES["sum"] = "float32"`` the std is off by 0.4-1.0 on the first
    field, 5e-4 on the second.)"""
    from pipelines.aggregates import STAT_DTYPES

    assert STAT_DTYPES["sum"] == "float64"
    rng = np.random.default_rng(5)
    t = np.arange(1024)[:, None]
    ice = (271.3 + rng.normal(0.0, 0.2, (1024, 200))).astype("float32")
    ice[0] = np.nan  # first step missing: the shift is 0
    fields = {
        "ice": ice,
        "trend": (1e4 + 50.0 * t + rng.normal(0, 0.005, (1024, 200))).astype("float32"),
        "both signs": (30 * np.sin(2 * np.pi * t / 365) + rng.normal(0, 1, (1024, 200))).astype(
            "float32"
        ),
    }
    fields["both signs"][rng.random((1024, 200)) < 0.1] = np.nan
    for x in fields.values():
        shift = np.nan_to_num(x[0].astype("float64"))
        stats = block_stats(x, shift, 8)
        size = 8
        while True:
            stats = BlockStats(*(stored(stats, n) for n in STATS))  # as stored
            nb = stats.sum.shape[0]
            # each block alone, and the last few together (their means differ: a trend)
            for a, b in [(k, k + 1) for k in range(nb)] + [(max(nb - 4, 0), nb)]:
                totals = {n: stat_of(stats, n)[a:b].sum(axis=0) for n in ("sum", "sumsq")}
                totals["count"] = stats.count[a:b].sum(axis=0)
                totals["min"] = np.nanmin(stats.min[a:b], axis=0)
                totals["max"] = np.nanmax(stats.max[a:b], axis=0)
                ref = x[a * size : b * size].astype("float64")
                np.testing.assert_allclose(
                    finish("std", totals, shift), np.nanstd(ref, axis=0), rtol=1e-5
                )
                np.testing.assert_allclose(
                    finish("mean", totals, shift), np.nanmean(ref, axis=0), rtol=1e-5
                )
                for agg, fn in (("min", np.nanmin), ("max", np.nanmax)):
                    assert np.array_equal(finish(agg, totals, shift), fn(ref, axis=0))
            if nb < 2:
                break
            stats = combine_stats(stats)
            size *= 2
