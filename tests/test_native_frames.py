"""Zoomed-in map frames on non-regular grids: the fast paths against brute force.

A view's native cell layout is kept for the next steps of the same view
(`pipelines.cell_stores._native_view`), its rows and columns found by numba kernels, and
`app.rasterize` draws a planner's window of a larger grid without copying its polygons,
skipping polygons that hold no pixel centre, and sorts a grid's cells into bins only
for frames that show a small part of it. Every answer here is compared with an
independent computation: the brute-force map (`pipelines.evaluate.compute_map` cropped
box after box), `np.divmod`, or the point-in-polygon / centre-mean brute force of
`tests/test_rasterize.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from app.rasterize import rasterize_to_screen
from data_catalog import open_dataset
from pipelines import Query
from pipelines.build import BuildConfig, build_derived
from pipelines.evaluate import compute_map
from pipelines.planner import plan_map
from pipelines.selection import native_bbox_indexer, select_bbox
from pipelines.synthetic_grids import write_grid_store
from tests.test_rasterize import _brute_centres, _brute_polygons, _curvilinear_with_bounds


@pytest.fixture(scope="module")
def curvilinear(tmp_path_factory):
    root = tmp_path_factory.mktemp("native-frames")
    path = write_grid_store("curvilinear", root / "c.zarr", 12, shape=(40, 80), progress=False)
    build_derived(str(path), out=root / "derived", scheduler="synchronous",
                  config=BuildConfig(unit_steps=4, base_block=2, ts_max_level=3),
                  progress=False)  # fmt: skip
    return open_dataset(str(path))


def _brute(ds, step: int, viewport):
    """The brute-force step map cropped to the viewport's box, and its cells' polygons."""
    x0, x1, y0, y1 = viewport
    box = (((x0 + 180) % 360) - 180, y0, ((x1 + 180) % 360) - 180, y1)
    label = str(ds["time"].values[step])[:10]
    ref = select_bbox(compute_map(ds, Query(dataset="g", var="tos", time=label)), box).compute()
    bounds = ds[["lon_bounds", "lat_bounds"]].isel(native_bbox_indexer(ds, box)[0])
    return label, ref, bounds


def test_steps_of_one_view_and_then_other_views_equal_brute_force(curvilinear) -> None:
    """The layout kept for a view serves its other steps, and never another view."""
    ds = curvilinear
    views = [(10.3, 70.7, -30.2, 25.1), (10.3, 70.7, -30.2, 25.1), (-170.4, 150.2, 5.3, 60.6),
             (160.2, 230.6, -50.1, 10.4), (10.3, 70.7, -30.2, 25.1)]  # fmt: skip
    templates = []
    for k, viewport in enumerate(views):
        for step in (k, k + 5):
            label, ref, bounds = _brute(ds, step, viewport)
            query = Query(dataset="g", var="tos", time=label)
            plan = plan_map(ds, query, viewport=viewport, screen=(4000, 2000))
            assert plan.description.startswith("time-series copy of the native cells")
            got = plan.compute()
            assert got.dims == ref.dims and got.shape == ref.shape, (viewport, step)
            assert np.array_equal(got.values, ref.values, equal_nan=True), (viewport, step)
            for name in ("lon", "lat", "cell_area"):
                assert np.array_equal(got[name].values, ref[name].values)
            for name in ("lon_bounds", "lat_bounds"):
                assert np.array_equal(got.attrs[f"gridscope_{name}"], bounds[name].values)
            templates.append(got["lon"].values)
            # drawn as the dashboard draws it: every pixel as the brute force's polygons
            if step == k:
                out = rasterize_to_screen(got, viewport, (160, 120),
                                          lon_bounds=got.attrs["gridscope_lon_bounds"],
                                          lat_bounds=got.attrs["gridscope_lat_bounds"])  # fmt: skip
                lonb = bounds["lon_bounds"].values.reshape(-1, 4)
                latb = bounds["lat_bounds"].values.reshape(-1, 4)
                want, near_edge = _brute_polygons(ref.values.ravel().astype("float64"),
                                                  ref["lon"].values.ravel(),
                                                  ref["lat"].values.ravel(), lonb, latb, out)  # fmt: skip
                same = np.isclose(out.values, want, rtol=0, atol=1e-6) | (
                    np.isnan(out.values) & np.isnan(want)
                )
                assert same[~near_edge].all(), (viewport, (~same & ~near_edge).sum())
    # the steps of one view share its coordinate arrays (what the drawing caches by)
    assert templates[1] is templates[0] and templates[3] is templates[0]
    assert templates[4] is not templates[0]


def test_rect_place_and_rank_kernels_equal_numpy() -> None:
    from pipelines.cell_stores import _place_kernel, _rank_kernel, _rect_kernel

    rng = np.random.default_rng(5)
    for ncols, n in ((1, 5000), (7, 50_000), (3600, 400_000), (99_991, 2_000_000)):
        order = rng.permutation(n).astype("int64")
        cand = np.sort(rng.choice(n, n // 3, replace=False))
        rows, cols = np.divmod(order[cand], ncols)
        rect = (int(rows.min()) + 1, int(rows.max()), 0, max(ncols - 1, 1))
        keep = (rows >= rect[0]) & (rows < rect[1]) & (cols >= rect[2]) & (cols < rect[3])
        want = (rows[keep].min(), rows[keep].max() + 1, cols[keep].min(), cols[keep].max() + 1)
        assert _rect_kernel(order, cand, ncols, *rect) == (*want, int(keep.sum()))
        place = _place_kernel(order, cand, ncols, 2, 1, ncols + 3)
        assert np.array_equal(place, (rows - 2) * (ncols + 3) + (cols - 1))
        # an unstructured view: each cell's place among the chosen ones in native order
        chosen = np.zeros(n, bool)
        chosen[order[cand]] = True
        rank = _rank_kernel(chosen, order[cand])
        assert np.array_equal(rank, np.searchsorted(np.flatnonzero(chosen), order[cand]))
    # every row's first and last cell (a product with 1/49 rounds below 1 for most
    # rows), and flat indices far beyond any real grid: the float reciprocal stays exact
    for ncols in (3, 49, 3600, 99_991):
        starts = np.arange(0, 400_000, dtype="int64") * ncols
        flat = np.concatenate([starts, starts + ncols - 1, [2**50 - 1, 2**46 + 12345]])
        place = _place_kernel(flat, np.arange(flat.size), ncols, 0, 0, ncols)
        assert np.array_equal(place, flat)
        rows = _rect_kernel(flat, np.arange(flat.size - 2), ncols, 0, 2**40, 0, ncols)
        assert rows == (0, 400_000, 0, ncols, flat.size - 2)


def _window(field: xr.DataArray, blon, blat, rows: slice, cols: slice):
    """A planner-like window of a grid: views (not copies) of its arrays."""
    sub = field.isel(y=rows, x=cols)
    return sub, blon[rows, cols], blat[rows, cols]


def test_a_window_of_a_grid_is_drawn_as_brute_force_without_copying_its_polygons() -> None:
    field, blon, blat = _curvilinear_with_bounds(720, 330)  # 0.5-degree cells
    sub, wlon, wlat = _window(field, blon, blat, slice(40, 300), slice(100, 650))
    assert not wlon.flags["C_CONTIGUOUS"]
    lon, lat = sub["lon"].values.ravel(), sub["lat"].values.ravel()
    values = sub.values.ravel()
    flat_lon, flat_lat = (
        np.ascontiguousarray(wlon).reshape(-1, 4),
        np.ascontiguousarray(wlat).reshape(-1, 4),
    )
    # thin cells (0.5 degree wide, pixels 1.4 degrees wide and 0.2 tall): polygons, most
    # of them holding no pixel centre column
    for viewport, screen in (((100.0, 250.0, -30.0, 50.0), (110, 400)),
                             ((140.3, 200.9, -10.1, 20.7), (300, 200))):  # fmt: skip
        for _ in range(2):  # a grid's first frame and a later one
            out = rasterize_to_screen(sub, viewport, screen, lon_bounds=wlon, lat_bounds=wlat)
            assert out.attrs["gridscope_rasterized"] == "polygons"
            want, near_edge = _brute_polygons(values, lon, lat, flat_lon, flat_lat, out)
            same = np.isclose(out.values, want, rtol=0, atol=1e-12) | (
                np.isnan(out.values) & np.isnan(want)
            )
            assert same[~near_edge].all(), (viewport, (~same & ~near_edge).sum())
            assert np.isfinite(want).mean() > 0.5
    # cells smaller than pixels: centre means, the polygons only sampled
    out = rasterize_to_screen(sub, (60.0, 300.0, -60.0, 60.0), (100, 50), lon_bounds=wlon,
                              lat_bounds=wlat)  # fmt: skip
    want, counts = _brute_centres(values, lon, lat, out)
    held = counts > 0
    assert held.mean() > 0.5
    np.testing.assert_allclose(out.values[held], want[held], rtol=1e-12)


def test_bins_only_for_frames_that_show_a_small_part_of_the_grid() -> None:
    """A zoomed frame of a large grid uses the bin index from the grid's second frame;
    frames over the whole grid never build it; both equal the brute force."""
    from app import rasterize

    field, blon, blat = _curvilinear_with_bounds(240, 110)  # 26k cells
    lon, lat = field["lon"].values.ravel(), field["lat"].values.ravel()
    whole = (0.07, 360.07, -90.0, 90.0)
    for _ in range(3):
        rasterize_to_screen(field, whole, (400, 250), lon_bounds=blon, lat_bounds=blat)
    index = rasterize._grid_index(field["lon"].values, field["lat"].values, blon, blat,
                                  field.shape)  # fmt: skip
    assert index.order is None  # the whole grid each time: nothing to sort
    zoom = (150.13, 230.37, -40.21, 40.08)
    out = rasterize_to_screen(field, zoom, (200, 150), lon_bounds=blon, lat_bounds=blat)
    assert index.order is not None
    want, near_edge = _brute_polygons(field.values.ravel(), lon, lat, blon.reshape(-1, 4),
                                      blat.reshape(-1, 4), out)  # fmt: skip
    same = np.isclose(out.values, want, rtol=0, atol=1e-12) | (
        np.isnan(out.values) & np.isnan(want)
    )
    assert same[~near_edge].all()


def test_next_steps_of_a_view_replay_its_pixels_exactly() -> None:
    """From a frame's second drawing on, which cell goes to which pixel is recorded and
    replayed with each step's values: every step equal to the brute force, and bit for
    bit to the frame drawn directly (values that turn NaN or back included)."""
    from app import rasterize

    field, blon, blat = _curvilinear_with_bounds(360, 165)
    # polygons 1.5 times their cell: neighbours overlap, many pixels hold several cells
    centre = field["lon"].values[..., None]
    blon = centre + 1.5 * (((blon - centre + 180.0) % 360.0) - 180.0)
    blat = field["lat"].values[..., None] + 1.5 * (blat - field["lat"].values[..., None])
    sub, wlon, wlat = _window(field, blon, blat, slice(20, 150), slice(50, 330))
    lon, lat = sub["lon"].values.ravel(), sub["lat"].values.ravel()
    flat_lon = np.ascontiguousarray(wlon).reshape(-1, 4)
    flat_lat = np.ascontiguousarray(wlat).reshape(-1, 4)
    viewport, screen = (140.3, 230.9, -30.1, 40.7), (240, 180)
    rng = np.random.default_rng(8)
    for step in range(4):
        values = rng.normal(size=sub.shape)
        values[rng.random(sub.shape) < 0.2] = np.nan  # another land mask each step
        frame = sub.copy(data=values)
        out = rasterize_to_screen(frame, viewport, screen, lon_bounds=wlon, lat_bounds=wlat)
        want, near_edge = _brute_polygons(values.ravel(), lon, lat, flat_lon, flat_lat, out)
        same = np.isclose(out.values, want, rtol=0, atol=1e-12) | (
            np.isnan(out.values) & np.isnan(want)
        )
        assert same[~near_edge].all(), (step, (~same & ~near_edge).sum())
        assert (np.isfinite(want) & ~np.isclose(want, values.ravel()[0])).mean() > 0.3
        # the same grid (and bins) drawn directly, nothing recorded
        index = rasterize._grid_index(sub["lon"].values, sub["lat"].values, wlon, wlat,
                                      sub.shape)  # fmt: skip
        with index._lock:
            pairs, seen = dict(index._pairs), dict(index._seen)
            index._pairs.clear()
            index._seen.clear()
        fresh = rasterize_to_screen(frame, viewport, screen, lon_bounds=wlon, lat_bounds=wlat)
        with index._lock:
            index._pairs.update(pairs)
            index._seen.update(seen)
        if step:  # (the first frame was drawn before the bins: other orders of addition)
            np.testing.assert_array_equal(out.values, fresh.values)
    index = rasterize._grid_index(sub["lon"].values, sub["lat"].values, wlon, wlat, sub.shape)
    assert index._pairs  # the later steps were replayed


def test_a_time_player_on_one_view_equals_brute_force(curvilinear) -> None:
    """Consecutive steps of one view: the chunks decoded for one step are kept, and the
    next steps of their unit read from them (then another view, on the same steps)."""
    from pipelines import cell_stores

    ds, view_a, view_b = curvilinear, (-60.2, 40.9, -50.3, 30.6), (-60.2, 40.9, -30.3, 50.6)
    n = ds.sizes["time"]
    # view A's steps, a few again, then view B on steps whose unit A keeps
    for step, viewport in [*((s, view_a) for s in [*range(n), 2, 1]), (2, view_b),
                           (3, view_b), (n - 2, view_b)]:  # fmt: skip
        label, ref, _ = _brute(ds, step, viewport)
        query = Query(dataset="g", var="tos", time=label)
        got = plan_map(ds, query, viewport=viewport, screen=(4000, 2000)).compute()
        assert np.array_equal(got.values, ref.values, equal_nan=True), step
        assert str(got["time"].values)[:10] == label
    kept = cell_stores._UNIT
    assert kept is not None and not any(b.flags.writeable for b in kept[3].values())


@pytest.mark.parametrize("room", [4, 0])  # 0: no room for pairs, drawn one half after the other
def test_a_large_frame_drawn_on_two_threads_equals_one_thread(monkeypatch, room) -> None:
    """The first half of the cells drawn on a worker, the second half's pairs recorded
    and added after: bit for bit the one-thread drawing, on overlapping polygons (pixels
    adding several cells, so the order of additions shows) and equal to brute force."""
    from app import rasterize

    field, blon, blat = _curvilinear_with_bounds(360, 165)
    centre = field["lon"].values[..., None]
    blon = centre + 1.5 * (((blon - centre + 180.0) % 360.0) - 180.0)
    blat = field["lat"].values[..., None] + 1.5 * (blat - field["lat"].values[..., None])
    monkeypatch.setattr(rasterize, "_ROOM_PER_PIXEL", room)
    monkeypatch.setattr(rasterize, "_core_to_spare", lambda: True)
    for viewport, screen in (((100.3, 250.9, -60.1, 70.7), (300, 260)), (None, (500, 300))):
        outs = []
        for split in (10**12, 1):
            monkeypatch.setattr(rasterize, "_SPLIT_MIN_CELLS", split)
            with rasterize._LOCK:
                rasterize._INDEXES.clear()  # a first frame each time: drawn directly
            outs.append(rasterize_to_screen(field, viewport, screen, lon_bounds=blon,
                                            lat_bounds=blat))  # fmt: skip
        assert outs[1].attrs["gridscope_rasterized"] == "polygons"
        np.testing.assert_array_equal(outs[0].values, outs[1].values)
        if viewport is None:
            continue  # (whole: the brute force's 8 nearest centres miss some of 1.5x cells)
        want, near_edge = _brute_polygons(field.values.ravel(), field["lon"].values.ravel(),
                                          field["lat"].values.ravel(), blon.reshape(-1, 4),
                                          blat.reshape(-1, 4), outs[1])  # fmt: skip
        same = np.isclose(outs[1].values, want, rtol=0, atol=1e-12) | (
            np.isnan(outs[1].values) & np.isnan(want)
        )
        assert same[~near_edge].all(), (viewport, (~same & ~near_edge).sum())
