"""The numba kernels of a level-1 min/max range map's edge steps (`pipelines.cell_stores`)
against independent numpy: the members of each level cell (a stable argsort by level
cell), and the NaN-ignoring extreme of each level cell's members."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines import cell_stores as cs


def _lonlat(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lon = rng.uniform(-180, 180, n)
    lat = rng.uniform(-90, 90, n)
    # centres on level-cell edges, the antimeridian and the poles
    lon[:40] = np.repeat([-180.0, 180.0, 0.0, 22.5], 10)
    lat[:40] = np.tile([-90.0, 90.0, 0.0, 45.0, -22.5], 8)
    return lon, lat


def test_level_members_are_a_stable_sort_by_level_cell() -> None:
    rng = np.random.default_rng(0)
    lon, lat = _lonlat(5000, rng)
    grid = cs.CellGrid(np.arange(lon.size), lon, lat, np.ones(lon.size))
    grid.__dict__["level_rows"] = [8, 4]
    for k, nlat in ((1, 8), (2, 4)):
        members = grid.level_members(k)
        target = cs.target_index(lon, lat, nlat)
        assert np.array_equal(members.perm, np.argsort(target, kind="stable"))
        counts = np.bincount(target, minlength=2 * nlat * nlat)
        assert np.array_equal(members.offsets, np.r_[0, np.cumsum(counts)])
        # a region's members: per level cell (row-major over the given rows x cols),
        # the cells whose centre lies in it, in position order
        rows, cols = np.array([nlat - 1, 0, 2]), np.array([2 * nlat - 1, 0, 3])
        got, starts, present = members.of(rows, cols)
        keys = (rows[:, None] * 2 * nlat + cols[None, :]).ravel()
        want = [np.flatnonzero(target == key) for key in keys]
        assert np.array_equal(present, [i for i, w in enumerate(want) if w.size])
        assert np.array_equal(got, np.concatenate(want))
        sizes = [w.size for w in want if w.size]
        assert np.array_equal(starts, np.cumsum(sizes) - sizes)
    # a level without stored min/max fields (level 1) gets its members with its geometry
    fresh = cs.CellGrid(np.arange(lon.size), lon, lat, np.ones(lon.size))
    fresh.__dict__["level_rows"] = [8, 4]
    fresh.level_geometry(1)
    fresh.level_geometry(2)
    assert sorted(fresh.__dict__["_members"]) == [1]
    built = fresh.__dict__["_members"][1]
    assert fresh.level_members(1) is built
    assert np.array_equal(built.perm, grid.level_members(1).perm)
    assert np.array_equal(built.offsets, grid.level_members(1).offsets)


@pytest.mark.parametrize("kind", ["min", "max"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_group_extreme_equals_nan_extreme_per_group(kind: str, dtype: str) -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=3000).astype(dtype)
    values[rng.random(values.size) < 0.3] = np.nan
    values[:50] = np.nan
    ngroups = 400
    sizes = rng.integers(0, 8, ngroups)
    sizes[:5] = 1  # single members (NaN ones among them)
    local = rng.integers(0, values.size, int(sizes.sum()))
    local[:5] = np.arange(5)  # NaN members: their groups stay NaN
    present = np.flatnonzero(sizes)
    starts = (np.cumsum(sizes) - sizes)[present]
    out = np.full(ngroups + 7, np.nan, "float32")
    cs._group_extreme(values, local, starts, present, out, kind == "min")
    want = np.full(out.size, np.nan, "float32")
    nan_extreme = np.nanmin if kind == "min" else np.nanmax
    offset = 0
    for g, size in enumerate(sizes):
        part = values[local[offset : offset + size]]
        offset += size
        if size and not np.isnan(part).all():
            want[g] = nan_extreme(part)
    assert np.isnan(want[:5]).all() and np.isfinite(want).sum() > ngroups // 2
    assert np.array_equal(out, want, equal_nan=True)


@pytest.mark.parametrize("squares", [False, True])
def test_moments_into_adds_sums_counts_and_squares(squares: bool) -> None:
    """A range map's stored blocks added in place equal `stat_of`'s per-block statistics
    summed over the blocks (float64 sums, int64 counts; no valid value adds nothing)."""
    from pipelines.aggregates import stat_of

    rng = np.random.default_rng(2)
    total: dict[str, np.ndarray] = {}
    want: dict[str, np.ndarray] = {}
    for _ in range(3):  # batches of blocks
        count = rng.integers(0, 4, (4, 5, 6)).astype("int32")
        block = {
            "sum": np.where(count > 0, rng.normal(size=count.shape), 0.0),
            "count": count,
            "m2": np.where(count > 1, rng.uniform(0, 2, count.shape), 0).astype("float32"),
        }
        cs._moments_into(total, block, squares)
        for name in ("sum", "count", "sumsq") if squares else ("sum", "count"):
            part = stat_of(block, name).sum(axis=0, dtype="int64" if name == "count" else None)
            want[name] = part + want.get(name, 0)
    assert sorted(total) == sorted(want)
    for name, value in want.items():
        assert total[name].dtype == value.dtype and total[name].shape == (5, 6)
        np.testing.assert_allclose(total[name], value, rtol=1e-12)


class _Stores:
    """What `_SeriesValues` reads of a variable's stores: the array and the manifest."""

    def __init__(self, arr, info):
        self.arr, self.info = arr, info

    def array(self, store: str, path: str):
        assert (store, path) == ("timeseries", "values")
        return self.arr


def test_series_values_decode_a_packed_copy(tmp_path) -> None:
    """The one reader of the cell stores' time-series copy gives the source's decoded
    values whether the copy holds floats or a packed source's integer codes (read
    through the chunk files, a view's step through the kept unit), and leaves a float
    copy as stored even where the manifest records a packing."""
    import xarray as xr
    import zarr
    from zarr.codecs import BloscCodec

    from pipelines.timeseries_store import pack_values, packing_of

    rng = np.random.default_rng(3)
    nt, n = 10, 50
    raw = rng.integers(-3000, 3000, (nt, n)).astype("int16")
    raw[rng.random(raw.shape) < 0.2] = -32767
    attrs = {"scale_factor": 0.01, "add_offset": 280.0, "_FillValue": np.int16(-32767)}
    var = xr.Variable(("time", "cell"), raw, attrs)
    decoded = xr.conventions.decode_cf_variable("tos", var)
    da = xr.DataArray(decoded.values, dims=("time", "cell"))
    da.encoding = {**attrs, "dtype": np.dtype("int16")}
    packing, why = packing_of(da, da.values[:1])
    assert packing is not None, why
    packing["decoded"] = str(da.dtype)
    codes, bad = pack_values(da.values, packing)
    assert bad == -1
    for name, stored, info in [
        ("packed", codes, {"ts_packing": packing}),
        ("float", da.values.astype("float32"), {"ts_packing": packing}),
        ("float-unmarked", da.values.astype("float32"), {}),
    ]:
        arr = zarr.create_array(
            tmp_path / name, shape=stored.shape, chunks=(4, 16), dtype=stored.dtype,
            compressors=BloscCodec(cname="lz4", clevel=5),
        )  # fmt: skip
        arr[:] = stored
        values = cs._SeriesValues(_Stores(arr, info))
        assert values.unit == 4 and (values.packing is not None) == (name == "packed")
        positions = np.array([0, 3, 17, 18, 40, 49])
        want = da.values[:, positions]
        got = values.read(slice(1, 9), positions)
        np.testing.assert_array_equal(got, want[1:9].astype(got.dtype))
        assert got.dtype == (da.dtype if name == "packed" else np.float32)
        view = cs._NativeView(cs._NativeCells(positions), positions, None, None)
        for step in (5, 6, 2):  # a unit's chunks decoded once, then kept
            got = values.read_view(view, [step])
            np.testing.assert_array_equal(got[0], want[step].astype(got.dtype))
        assert np.array_equal(
            values.read_view(view, [1, 7]), values.read(np.array([1, 7]), positions)
        )
