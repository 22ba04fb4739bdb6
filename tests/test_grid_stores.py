"""Derived stores on non-regular grids: planner answers from them == brute force.

Small synthetic curvilinear (tripolar-like) and unstructured (Fibonacci point cloud)
stores and the real MPI-OM bipolar file are built with `gridscope build`'s code; range
maps (mean/std vs a float64 brute force within 1e-5, min/max exact), point series
(exact) and box series (incl. antimeridian boxes; 1e-5) are compared with
`pipelines.evaluate` on the raw data, for random queries.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from data_catalog import open_dataset
from pipelines import Query
from pipelines.build import BuildConfig, build_derived
from pipelines.cell_stores import FANOUT, block_sums, cell_order
from pipelines.evaluate import compute_map, compute_series
from pipelines.planner import plan_map, plan_series
from pipelines.synthetic_grids import write_grid_store

BIPOLAR = (
    Path(__file__).resolve().parents[1] / "data_catalog/samples/grids/tos_ocean_bipolar_grid.nc"
)


@pytest.fixture(scope="module", params=["curvilinear", "unstructured", "mesh"])
def built(request, tmp_path_factory):
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    shape = {"curvilinear": (24, 48), "unstructured": (3000,), "mesh": (12,)}[kind]
    path = write_grid_store(kind, root / f"{kind}.zarr", 37, shape=shape, progress=False)
    return _build(path, BuildConfig(max_level=3, unit_steps=8, base_block=2, ts_max_level=3))


def _build(path, config: BuildConfig):
    """Build ``path``'s derived stores beside it (synchronously); the opened dataset."""
    build_derived(str(path), out=path.parent / "derived", scheduler="synchronous",
                  config=config, progress=False)  # fmt: skip
    return open_dataset(str(path))


def _labels(ds):
    return [str(t)[:10] for t in ds["time"].values]


def _float64(ds):
    return ds.assign(tos=ds["tos"].astype("float64"))


def _random_box(rng):
    west = float(rng.uniform(-180, 180))
    width = float(rng.uniform(20, 120))
    east = (west + width + 180) % 360 - 180  # often crosses the antimeridian
    south = float(rng.uniform(-80, 40))
    return (west, south, east, south + float(rng.uniform(15, 45)))


def test_range_maps_equal_brute_force(built) -> None:
    ds, labels = built, _labels(built)
    rng = np.random.default_rng(3)
    for _ in range(6):
        a, b = sorted(rng.choice(len(labels), 2, replace=False))
        for agg in ("mean", "std", "min", "max"):
            query = Query(dataset="g", var="tos", start=labels[a], end=labels[b], agg=agg)
            box = _random_box(rng)
            viewport = (box[0], box[2], box[1], box[3])
            plan = plan_map(ds, query, viewport=viewport, screen=(40, 20))
            assert plan.description.startswith("temporal aggregates of the native cells")
            got = plan.compute()
            ref = compute_map(_float64(ds), query.replace(bbox=(box[0], box[1], box[2], box[3])))
            ref = ref.compute().values
            assert got.shape == ref.shape
            assert np.array_equal(np.isnan(got.values), np.isnan(ref))
            if agg in ("min", "max"):
                assert np.array_equal(got.values, ref.astype("float32"), equal_nan=True)
            else:
                np.testing.assert_allclose(got.values, ref, rtol=1e-5, atol=1e-5 * np.nanmax(ref))


def test_point_series_equal_brute_force(built) -> None:
    ds, labels = built, _labels(built)
    rng = np.random.default_rng(4)
    for _ in range(8):
        point = (float(rng.uniform(-180, 180)), float(rng.uniform(-75, 65)))
        query = Query(dataset="g", var="tos", point=point, start=labels[int(rng.integers(0, 10))])
        plan = plan_series(ds, query)
        assert plan.description.startswith("time-series copy of the native cells")
        got = plan.compute().values
        ref = compute_series(ds, query).compute().values
        assert np.array_equal(got, ref, equal_nan=True)


def test_box_series_equal_brute_force(built) -> None:
    ds, labels = built, _labels(built)
    rng = np.random.default_rng(5)
    boxes = [_random_box(rng) for _ in range(8)] + [(170.0, -60.0, -170.0, 60.0)]
    for box in boxes:
        query = Query(dataset="g", var="tos", bbox=box, end=labels[30])
        plan = plan_series(ds, query)
        assert plan.description.startswith("time-series copy of the native cells")
        got = plan.compute().values
        ref = compute_series(_float64(ds), query).compute().values
        assert np.array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_real_bipolar_grid(tmp_path) -> None:
    source = tmp_path / BIPOLAR.name
    shutil.copy(BIPOLAR, source)
    ds = _build(source, BuildConfig(max_level=3, unit_steps=1, base_block=1, ts_max_level=4))
    for box in [(-60.0, 20.0, 0.0, 60.0), (160.0, -50.0, -150.0, 10.0)]:
        query = Query(dataset="g", var="tos", bbox=box)
        plan = plan_series(ds, query)
        assert "time-series copy" in plan.description
        ref = compute_series(_float64(ds), query).compute().values
        np.testing.assert_allclose(plan.compute().values, ref, rtol=1e-5)
        map_plan = plan_map(ds, Query(dataset="g", var="tos", agg="max", bbox=box))
        assert "temporal aggregates" in map_plan.description
        ref_map = compute_map(ds, Query(dataset="g", var="tos", agg="max", bbox=box)).values
        assert np.array_equal(map_plan.compute().values, ref_map, equal_nan=True)
    query = Query(dataset="g", var="tos", point=(-30.0, 40.0))
    assert np.array_equal(
        plan_series(ds, query).compute().values, compute_series(ds, query).compute().values
    )


def test_cover_takes_each_cell_of_the_box_once() -> None:
    """The tile cover of a box (whole tiles as block sums, single cells at its edge)
    holds each cell whose centre is in the box exactly once, and no other."""
    from pipelines.cell_stores import CellGrid
    from pipelines.selection import bbox_cell_mask
    from pipelines.synthetic_grids import fibonacci_cells

    lon, lat, area = fibonacci_cells(20_000)
    order = cell_order(lon, lat)
    grid = CellGrid(order, lon[order], lat[order], area[order])
    rng = np.random.default_rng(6)
    boxes = [_random_box(rng) for _ in range(20)] + [(-180.0, -90.0, 180.0, 90.0)]
    for box in boxes:
        want = bbox_cell_mask(grid.lon, grid.lat, box)
        cover = grid.cover(box)
        assert cover.count == want.sum()
        for levels in ((), (2,), (1, 2, 3, 4), (2, 4), tuple(range(1, 10)), (1, 3, 5)):
            blocks, singles = cover.blocks(levels)
            hits = np.zeros(lon.size, int)
            np.add.at(hits, singles, 1)
            for lev, idx in blocks.items():
                assert lev in levels
                for b in idx:
                    hits[b * FANOUT**lev : (b + 1) * FANOUT**lev] += 1
            assert np.array_equal(hits, want.astype(int))


def test_block_sums_are_area_weighted_sums_of_valid_cells() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(size=(3, 70)).astype("float32")
    values[rng.random(values.shape) < 0.3] = np.nan
    area = rng.uniform(1, 2, 70)
    levels = block_sums(values, area, 3)
    for lev, (wsum, warea) in enumerate(levels, start=1):
        size = FANOUT**lev
        for b in range(wsum.shape[1]):
            cells = slice(b * size, (b + 1) * size)
            x, w = values[:, cells].astype("float64"), area[cells]
            valid = ~np.isnan(x)
            np.testing.assert_allclose(wsum[:, b], np.where(valid, x, 0) @ w)
            np.testing.assert_allclose(warea[:, b], valid @ w)


def test_cell_order_is_a_permutation_keeping_neighbours_close() -> None:
    lon, lat = np.meshgrid(np.arange(-179.5, 180, 1.0), np.arange(-89.5, 90, 1.0))
    order = cell_order(lon, lat)
    assert np.array_equal(np.sort(order), np.arange(lon.size))
    # aligned runs of 4**4 positions span tens of degrees, not a whole row of the grid
    # (row-major order: 256 cells span 359 degrees of longitude)
    span = lon.ravel()[order][: (lon.size // 256) * 256].reshape(-1, 256)
    assert np.median(span.max(1) - span.min(1)) < 60


def _own_level_mean(lon, lat, area, values, nlat):
    """Area-weighted mean of the valid native values whose centre is in each target cell
    of a global nlat x 2 nlat grid (independent of pipelines.cell_stores)."""
    res = 180.0 / nlat
    row = np.minimum(((lat + 90.0) // res).astype(int), nlat - 1)
    col = (((lon + 180.0) % 360.0) // res).astype(int) % (2 * nlat)
    target = row * 2 * nlat + col
    valid = ~np.isnan(values)
    x = np.where(valid, values, 0.0).astype("float64")
    wsum = np.bincount(target, x * area * valid, minlength=2 * nlat * nlat)
    warea = np.bincount(target, area * valid, minlength=2 * nlat * nlat)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (wsum / warea).reshape(nlat, 2 * nlat), np.bincount(
            target, area, minlength=2 * nlat * nlat
        ).reshape(nlat, 2 * nlat)


def test_regrid_matrix_conserves_area_and_global_mean() -> None:
    from pipelines.cell_stores import LevelRegrid, level_fields, regrid_matrix
    from pipelines.synthetic_grids import grid_field, tripolar_like_grid

    lon, lat, _, _, area = tripolar_like_grid(90, 45)
    values = grid_field(lon, lat, 3)
    for nlat in (11, 20):
        matrix = regrid_matrix(lon, lat, area, nlat)
        own_mean, own_area = _own_level_mean(
            lon.ravel(), lat.ravel(), area.ravel(), values.ravel(), nlat
        )
        level = LevelRegrid(nlat, matrix)
        # every row's weights sum to the area its target cell covers
        np.testing.assert_allclose(level.covered_area, own_area, rtol=1e-12)
        assert np.isclose(matrix.sum(), area.sum(), rtol=1e-12)
        fields = level_fields(values.ravel()[None], level)
        np.testing.assert_allclose(fields["mean"][0], own_mean, rtol=1e-6)
        # the area-weighted global mean of the level equals the native one (numpy)
        x = values.ravel().astype("float64")
        valid = ~np.isnan(x)
        native_mean = np.sum(x[valid] * area.ravel()[valid]) / area.ravel()[valid].sum()
        ok = ~np.isnan(own_mean)
        weights = matrix @ valid.astype("float64")
        level_mean = (
            np.sum(fields["mean"][0].ravel()[ok.ravel()] * weights[ok.ravel()])
            / weights[ok.ravel()].sum()
        )
        assert abs(level_mean - native_mean) <= 1e-6 * abs(native_mean)
        # min / max: the extremes of the native cells in each target cell
        res = 180.0 / nlat
        row = np.minimum(((lat.ravel() + 90) // res).astype(int), nlat - 1)
        col = (((lon.ravel() + 180) % 360) // res).astype(int) % (2 * nlat)
        target = row * 2 * nlat + col
        for t in np.unique(target)[:50]:
            cell_values = values.ravel()[target == t]
            if np.all(np.isnan(cell_values)):
                assert np.isnan(fields["max"][0].ravel()[t])
            else:
                assert fields["max"][0].ravel()[t] == np.nanmax(cell_values)
                assert fields["min"][0].ravel()[t] == np.nanmin(cell_values)


def test_zoomed_out_maps_read_pyramid_levels(built) -> None:
    """A map of the whole globe on a small screen comes from a pyramid level: one step
    equals the own regridding of that step; min over a range equals min over the steps
    of the level fields; zoomed in past level 1 the map keeps the native cells."""
    from pipelines.cell_stores import cell_grid

    ds, labels = built, _labels(built)
    query = Query(dataset="g", var="tos", time=labels[7])
    plan = plan_map(ds, query, viewport=(-180, 180, -90, 90), screen=(8, 4))
    got = plan.compute()
    level = got.attrs["gridscope_level"]
    assert level >= 1 and plan.description.startswith(f"pyramid level {level}")
    grid = cell_grid(next(iter(_derived_folders(ds))))
    nlat = grid.level_rows[level - 1]
    assert got.shape == (nlat, 2 * nlat)
    from data_catalog.grid import grid_of

    g = grid_of(ds)
    step = np.asarray(ds["tos"].isel(time=7).values).ravel()
    own, own_area = _own_level_mean(g.lon.ravel(), g.lat.ravel(), g.area.ravel(), step, nlat)
    np.testing.assert_allclose(got.values, own, rtol=1e-6)
    np.testing.assert_allclose(got["cell_area"].values, own_area, rtol=1e-9)
    # a range: the min of the level's min fields over the steps, from its aggregates
    rng_query = Query(dataset="g", var="tos", start=labels[3], end=labels[29], agg="min")
    rng_plan = plan_map(ds, rng_query, viewport=(-180, 180, -90, 90), screen=(8, 4))
    assert rng_plan.description.startswith("temporal aggregates on pyramid level")
    raw = np.asarray(ds["tos"].isel(time=slice(3, 30)).values).reshape(27, -1)
    res = 180.0 / nlat
    row = np.minimum(((g.lat.ravel() + 90) // res).astype(int), nlat - 1)
    col = (((g.lon.ravel() + 180) % 360) // res).astype(int) % (2 * nlat)
    target = row * 2 * nlat + col
    want = np.full(2 * nlat * nlat, np.nan, "float32")
    for t in np.unique(target):
        cells = raw[:, target == t]
        if not np.all(np.isnan(cells)):
            want[t] = np.nanmin(cells)
    assert np.array_equal(rng_plan.compute().values.ravel(), want, equal_nan=True)
    # zoomed in: no level has screen resolution, the native cells are kept
    fine = plan_map(ds, query, viewport=(0, 40, 0, 20), screen=(800, 400))
    assert fine.description.startswith("time-series copy of the native cells")
    assert fine.level == 0 and fine.compute().dims == ds["tos"].isel(time=0).dims


def _brute_view(ds, query, boxes):
    """The brute-force map of ``query`` cropped box after box (as the planner's brute
    force), and the cells' polygons cropped the same way (None without them)."""
    from pipelines.selection import native_bbox_indexer, select_bbox

    ref = compute_map(ds, query.replace(bbox=boxes[0]))
    bounds = ds[["lon_bounds", "lat_bounds"]] if "lon_bounds" in ds.variables else None
    if bounds is not None:
        bounds = bounds.isel(native_bbox_indexer(ds, boxes[0])[0])
    for box in boxes[1:]:
        ref = select_bbox(ref, box)
        if bounds is not None:
            bounds = bounds.isel(native_bbox_indexer(bounds, box)[0])
    return ref.compute(), bounds


def _view_boxes(rng):
    box = _random_box(rng)
    box = (box[0], box[1], box[2], min(box[3], box[1] + 25))
    return box, (box[0], box[2], box[1], box[3])


def test_zoomed_single_step_reads_only_the_view(built) -> None:
    """Zoomed in past level 1 a step comes from the time-series copy of the view's cells
    (not brute force): the brute force's values, layout and coordinates, with the
    cells' polygons for drawing."""
    ds, labels = built, _labels(built)
    rng = np.random.default_rng(11)
    for i in range(6):
        box, viewport = _view_boxes(rng)
        query = Query(dataset="g", var="tos", time=labels[int(rng.integers(0, 37))])
        boxes = [viewport_box(viewport)]
        if i % 2:  # a query box and the viewport: cropped box after box
            query = query.replace(bbox=_random_box(rng))
            boxes = [query.bbox, *boxes]
        try:
            ref, bounds = _brute_view(ds, query.replace(bbox=None), boxes)
        except Exception as err:  # noqa: BLE001 - the planner must say the same
            with pytest.raises(type(err)):
                plan_map(ds, query, viewport=viewport, screen=(4000, 2000)).compute()
            continue
        plan = plan_map(ds, query, viewport=viewport, screen=(4000, 2000))
        assert plan.description.startswith("time-series copy of the native cells"), plan.description
        got = plan.compute()
        assert got.dims == ref.dims and got.shape == ref.shape
        assert np.array_equal(got.values, ref.values, equal_nan=True)
        for name in ("lon", "lat", "cell_area"):
            assert np.array_equal(got[name].values, ref[name].values)
        if bounds is None:
            assert "gridscope_lon_bounds" not in got.attrs
        else:
            for name in ("lon_bounds", "lat_bounds"):
                assert np.array_equal(got.attrs[f"gridscope_{name}"], bounds[name].values)


def viewport_box(viewport):
    x0, x1, y0, y1 = viewport
    return (x0, y0, x1, y1)


def test_anomaly_maps_equal_brute_force(built) -> None:
    """Anomalies against a baseline's monthly climatology, from the aggregates: one step
    and range maps (mean/std/min/max) on the native cells of a view equal the brute
    force on the raw data (the synthetic record spans January and February; a baseline
    without February leaves February's anomalies missing, as in the brute force)."""
    ds, labels = built, _labels(built)
    rng = np.random.default_rng(12)
    baselines = [(labels[2], labels[20]), (labels[5], labels[36])]
    for i in range(6):
        b0, b1 = baselines[i % 2]
        box, viewport = _view_boxes(rng)
        a, b = sorted(rng.choice(37, 2, replace=False))
        agg = ("mean", "std", "min", "max")[i % 4]
        queries = [
            Query(dataset="g", var="tos", time=labels[a], baseline_start=b0, baseline_end=b1),
            Query(
                dataset="g", var="tos", start=labels[a], end=labels[b], agg=agg,
                baseline_start=b0, baseline_end=b1,
            ),
        ]  # fmt: skip
        for query in queries:
            plan = plan_map(ds, query, viewport=viewport, screen=(4000, 2000))
            assert "brute force" not in plan.description, plan.description
            got = plan.compute()
            ref = compute_map(_float64(ds), query.replace(bbox=box)).compute()
            assert got.shape == ref.shape
            assert np.array_equal(np.isnan(got.values), np.isnan(ref.values))
            np.testing.assert_allclose(got.values, ref.values, rtol=0, atol=2e-4)
        # a box series of anomalies from the time-series copy
        query = Query(dataset="g", var="tos", bbox=box, baseline_start=b0, baseline_end=b1)
        plan = plan_series(ds, query)
        assert plan.description.startswith("time-series copy")
        ref = compute_series(_float64(ds), query).compute().values
        np.testing.assert_allclose(plan.compute().values, ref, rtol=0, atol=1e-4)


def test_zoomed_out_anomaly_reads_the_level(built) -> None:
    """A zoomed-out anomaly map is the level's mean field minus the level's monthly
    climatology (the query on the level dataset), from its aggregates."""
    ds, labels = built, _labels(built)
    base = dict(baseline_start=labels[1], baseline_end=labels[33])
    step_query = Query(dataset="g", var="tos", time=labels[30], **base)
    plan = plan_map(ds, step_query, viewport=(-180, 180, -90, 90), screen=(8, 4))
    got = plan.compute()
    level = got.attrs["gridscope_level"]
    assert level >= 1 and "climatology" in plan.description
    from data_catalog.grid import grid_of
    from pipelines.cell_stores import cell_grid

    g = grid_of(ds)
    nlat = cell_grid(next(iter(_derived_folders(ds)))).level_rows[level - 1]
    raw = np.asarray(ds["tos"].values).reshape(37, -1)
    fields = np.stack(
        [
            _own_level_mean(g.lon.ravel(), g.lat.ravel(), g.area.ravel(), raw[t], nlat)[0]
            for t in range(37)
        ]
    )
    months = ds["time"].dt.month.values
    feb = [t for t in range(1, 34) if months[t] == months[30]]
    with np.errstate(invalid="ignore"):
        want = fields[30] - np.nanmean(fields[feb], axis=0)
    assert np.array_equal(np.isnan(got.values), np.isnan(want))
    np.testing.assert_allclose(got.values, want, atol=1e-4)
    range_query = Query(dataset="g", var="tos", start=labels[4], end=labels[35], **base)
    got = plan_map(ds, range_query, viewport=(-180, 180, -90, 90), screen=(8, 4)).compute()
    with np.errstate(invalid="ignore"):
        clim = {
            m: np.nanmean(fields[[t for t in range(1, 34) if months[t] == m]], axis=0)
            for m in set(months)
        }
        want = np.nanmean(np.stack([fields[t] - clim[months[t]] for t in range(4, 36)]), axis=0)
    assert np.array_equal(np.isnan(got.values), np.isnan(want))
    np.testing.assert_allclose(got.values, want, atol=1e-4)


def _derived_folders(ds):
    from pipelines.derived import find_derived

    stores = find_derived(ds)
    assert stores is not None
    yield stores.data_folder  # the published version's arrays and cells/


@pytest.mark.parametrize("source_chunks", ["per step", "whole record"])
def test_level_min_max_range_maps(
    built, source_chunks: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pyramid stores per-step min/max fields from level 2 on (`MINMAX_FROM_LEVEL`),
    the mean field at every level. A min/max range map on level 1 makes its edge steps'
    fields from the native cells under the view (from the source, or from the
    time-series copy when the source's chunks are long in time), on level 2 reads the
    stored field: both the extremes over the range of the native cells whose centres
    lie in each level cell, exactly (an antimeridian view, ranges with and without edge
    steps), and the plan counts the bytes it reads (level 1: the native cells)."""
    import re

    from data_catalog.grid import grid_of
    from pipelines.pyramid import MINMAX_FROM_LEVEL

    ds, labels = built, _labels(built)
    stores = _find(ds)
    nlevels = len(cell_grid_rows(ds))
    assert MINMAX_FROM_LEVEL == 2 and nlevels == stores.max_level
    assert sorted(stores.info["arrays"]["pyramid"]) == sorted(
        f"L{k}/{kind}"
        for k in range(1, nlevels + 1)
        for kind in (("mean", "min", "max") if k >= 2 else ("mean",))
    )
    if source_chunks == "whole record":
        ds = ds.chunk(time=-1)  # a step read from the source decodes them all
    import pipelines.cell_stores as cs

    source_reads = []
    real = cs._source_window

    def counted(*args):
        source_reads.append(args[1].size)
        return real(*args)

    monkeypatch.setattr(cs, "_source_window", counted)
    g = grid_of(ds)
    lon, lat = g.lon.ravel(), g.lat.ravel()
    raw = np.asarray(ds["tos"].values).reshape(ds.sizes["time"], -1)
    viewport = (150.0, 250.0, -50.0, 30.0)
    edges = {1: 0, 2: 0}
    ranges = [(3, 28, "min"), (1, 34, "max"), (2, 33, "max"), (5, 6, "min"), (7, 7, "max")]
    for screen in [(3, 2), (10, 6)]:  # level 2 (level 1 where it is the coarsest), 1
        for a, b, agg in ranges:
            query = Query(dataset="g", var="tos", start=labels[a], end=labels[b], agg=agg)
            plan = plan_map(ds, query, viewport=viewport, screen=screen)
            if plan.level == 0:
                continue
            got = plan.compute()
            level = got.attrs["gridscope_level"]
            assert level >= 1 and plan.description.startswith("temporal aggregates on pyramid")
            nlat = cell_grid_rows(ds)[level - 1]
            res = 180.0 / nlat
            row = np.minimum(((lat + 90) // res).astype(int), nlat - 1)
            col = (((lon + 180) % 360) // res).astype(int) % (2 * nlat)
            with np.errstate(invalid="ignore"):
                extreme = getattr(np, f"nan{agg}")
                per_cell = extreme(raw[a : b + 1], axis=0)  # NaN where never valid
            want = np.full(got.shape, np.nan, "float32")
            rows = np.floor((got["lat"].values + 90) / res).astype(int)
            cols = np.floor(((got["lon"].values + 180) % 360) / res).astype(int)
            for i, r in enumerate(rows):
                for j, c in enumerate(cols):
                    cell = per_cell[(row == r) & (col == c)]
                    if cell.size and not np.all(np.isnan(cell)):
                        want[i, j] = extreme(cell)
            assert np.isfinite(want).sum() > 10
            assert np.array_equal(got.values, want, equal_nan=True)
            # bytes: the blocks' min/max and, per edge step, the stored level field (level
            # 2) or the native cells whose centres lie in the view's level cells (level 1)
            text = plan.description.split("blocks [")[1]
            nblocks = sum(int(n) for n in re.findall(r"(\d+)x\d+", text.split("]")[0]))
            nsteps = int(re.search(r"\+ (\d+) raw steps", text).group(1))
            native = int((np.isin(row, rows) & np.isin(col, cols)).sum())
            per_step = native if level < 2 else got.size
            assert plan.estimated_bytes == 4 * (nblocks * got.size + nsteps * per_step)
            assert ("raw steps (of the native cells" in text) == (nsteps > 0 and level < 2)
            edges[min(level, 2)] += nsteps > 0
    assert edges[1] >= 3  # ranges with edge steps, made from the native cells
    assert edges[2] >= (3 if nlevels >= 2 else 0)  # ... and from the stored fields
    # the edge steps came from the source read a step at a time, or from the copy
    assert bool(source_reads) == (source_chunks == "per step")


def cell_grid_rows(ds) -> list[int]:
    from pipelines.cell_stores import cell_grid

    return cell_grid(next(iter(_derived_folders(ds)))).level_rows


def _find(ds):
    from pipelines.derived import find_derived

    stores = find_derived(ds)
    assert stores is not None
    return stores.variable("tos")


def test_box_mask_equals_bbox_cell_mask() -> None:
    from pipelines.cell_stores import CellGrid
    from pipelines.selection import bbox_cell_mask
    from pipelines.synthetic_grids import fibonacci_cells

    lon, lat, area = fibonacci_cells(50_000)
    order = cell_order(lon, lat)
    grid = CellGrid(order, lon[order], lat[order], area[order])
    rng = np.random.default_rng(8)
    for _ in range(30):
        box = _random_box(rng)
        assert np.array_equal(grid.box_mask(box), bbox_cell_mask(grid.lon, grid.lat, box))
    edge = (float(grid.lon[7]), float(grid.lat[7]), float(grid.lon[7]), float(grid.lat[900]))
    assert np.array_equal(grid.box_mask(edge), bbox_cell_mask(grid.lon, grid.lat, edge))


def test_dashboard_draws_a_zoomed_mesh_view_as_polygons(built) -> None:
    """The dashboard's zoomed-in view of a built mesh is drawn from the stores with the
    view's cell polygons (not as points): the pixels of the brute-force map drawn with
    the same cells' polygons."""
    if "lon_bounds" not in built.variables:
        pytest.skip("a point cloud has no polygons")
    from app.map_views import map_for_view, view_request
    from app.rasterize import rasterize_to_screen

    ds, labels = built, _labels(built)
    query = Query(dataset="g", var="tos", time=labels[5])
    viewport, screen = (-40.0, 40.0, -30.0, 30.0), (3000, 2000)
    got = map_for_view(ds, query, viewport, screen)
    assert got.attrs["gridscope_rasterized"] == "polygons"
    assert "gridscope_lon_bounds" not in got.attrs
    wrapped = view_request(viewport, screen)[0]
    ref, bounds = _brute_view(ds, query, [viewport_box(wrapped)])
    frame = (-44.0, 44.0, -33.0, 33.0)  # the view with the dashboard's 5 % margin
    want = rasterize_to_screen(
        ref,
        frame,
        screen,
        lon_bounds=bounds["lon_bounds"].values,
        lat_bounds=bounds["lat_bounds"].values,
    )
    assert np.array_equal(got.values, want.values, equal_nan=True)
