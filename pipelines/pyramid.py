"""Spatial pyramid: 2x area-weighted coarsening levels of a normalised grid.

Level ``L`` groups the cells of the normalised grid (``lat`` ascending from the south,
``lon`` ascending from -180) into aligned blocks of ``2**L x 2**L`` cells, starting at
index 0; blocks at the northern edge (721 latitudes) hold the cells that exist. Each
level is a dataset in its own right:

- ``mean``: area-weighted mean of the valid (non-NaN) cells, NaN when none is valid;
- ``min`` / ``max``: minimum / maximum of the valid cells;
- ``cell_area``: sum of the fine cell areas; ``lat``/``lon``: mean of the fine centres.

A map at level ``L`` is, by definition, the query evaluated on the level-``L`` dataset
(the ``mean`` field, or the ``min``/``max`` field for a min/max over time), so planner
answers at any zoom level have a brute-force reference (`level_dataset`).

The build stores a level's per-step ``min``/``max`` fields only from level
`MINMAX_FROM_LEVEL` (2) on, the ``mean`` field at every level (`pipelines.build`, for
regular grids and the cell stores of other grids). Only a min/max range map's few edge
steps (outside its stored blocks) and a min/max map before the aggregates are complete
read per-step min/max fields; at level 1 the planner makes them from the native cells
under the view (`coarsen_fields` on aligned blocks gives the same values: the min/max
of a block does not depend on how it is reached), 4 native cells per level cell. The
planner answers at level ``L`` a view with screen-width cells at ``L`` but not at
``L + 1``, so doing the same at level ``L`` would read ``4**L`` native cells per level
cell: 16, 64, ... times a screen, where the stored fields read one. Measured (global
view, min/max ranges with edge steps at both ends, load 4-7 on 2 cores): the 1 GB
bench store's level-2 range maps p95 37-52 ms from the stored fields, 109-216 ms from
the raw cells (3 vs 33 MB read), for +49 MB of fields (695 -> 744 MB derived); a
900x1800 curvilinear grid's 20-28 ms vs 120-155 ms, +33 MB (421 -> 454 MB). Level
1's fields would be three quarters of the min/max fields' bytes (each level has a
quarter of the cells of the one before).

How many levels a build stores by default is `levels_needed`: a level pays for itself
only where the finer level it stands in for would make a frame read more than
`LEVEL_CELLS` cells.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import xarray as xr

__all__ = [
    "LEVEL_CELLS",
    "MINMAX_FROM_LEVEL",
    "LevelGrid",
    "coarsen_fields",
    "coarsen_once",
    "field_kind",
    "level_dataset",
    "level_grid",
    "levels_needed",
    "stores_minmax",
]


#: The first pyramid level whose per-step min/max fields are stored (module docstring):
#: the build writes ``L<l>/{min,max}`` for ``l >= MINMAX_FROM_LEVEL``, and the planner
#: reads them there; below it (level 1) it makes them from the native cells.
MINMAX_FROM_LEVEL = 2

#: The most cells a level may have for the build to stop there (`levels_needed`).
#: The planner answers a view at the coarsest level still at least as fine as the screen
#: (`pipelines.planner`), so a coarser level only ever stands in for a finer one on
#: screens smaller than the finer level's grid, and saves the difference between reading
#: the two. Measured on 2 cores (`make bench`, session 6, 0.25-degree grid of 1,038,240
#: cells answered at level 0): map frame p95 35 ms, range map p95 306 ms, against targets
#: of 100 and 300 ms. A frame over at most ~1 M cells is therefore already as fast as the
#: targets allow, and the levels above it cost 0.42x the variable's bytes on disk (the
#: 10 GB bench store: 2.2 of 7.4 GiB derived) for screens under 720 x 361 pixels.
LEVEL_CELLS = 2**20


def stores_minmax(level: int) -> bool:
    """Whether the derived stores hold pyramid level ``level``'s per-step min/max fields."""
    return level >= MINMAX_FROM_LEVEL


def levels_needed(cells: list[int]) -> int:
    """The coarsest pyramid / aggregate level a build stores by default: the first level
    with at most `LEVEL_CELLS` cells, given the cell counts of levels 0, 1, 2, ... (the
    last one when none is that small). Each finer level then has a coarser one for
    screens smaller than itself, and no level is kept only for screens smaller than a
    grid that is already cheap to read whole."""
    for level, n in enumerate(cells):
        if n <= LEVEL_CELLS:
            return level
    return max(len(cells) - 1, 0)


def field_kind(agg: str, single_step: bool, anomaly: bool) -> str:
    """Which pyramid field a map of this query is computed from: mean, min or max."""
    if single_step or anomaly or agg in ("mean", "std"):
        return "mean"
    return agg


class LevelGrid:
    """Coordinates of one pyramid level (1-D ``lat``, ``lon``; 2-D ``cell_area``)."""

    def __init__(self, level: int, lat: np.ndarray, lon: np.ndarray, cell_area: np.ndarray):
        self.level = level
        self.lat = lat
        self.lon = lon
        self.cell_area = cell_area

    @property
    def factor(self) -> int:
        return 2**self.level

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lat.size, self.lon.size)

    def coords_dataarray(self) -> xr.DataArray:
        """A data-less (lat, lon) array of this grid, for running selections on it."""
        return xr.DataArray(
            np.zeros(self.shape, dtype="int8"),
            dims=("lat", "lon"),
            coords={"lat": self.lat, "lon": self.lon},
        )


@numba.njit(cache=True, nogil=True, inline="always")
def _take(v, w, s, a, lo, hi):  # pragma: no cover - numba
    if v == v:
        s += np.float64(v) * w
        a += w
        if not (lo <= v):
            lo = v
        if not (hi >= v):
            hi = v
    return s, a, lo, hi


@numba.njit(cache=True, nogil=True)
def _coarsen_first(values, area, wsum, warea, vmin, vmax):  # pragma: no cover - numba
    """Level 1 of ``values`` (n, ny, nx): the 2x2 area-weighted sums and min/max.

    Cells of a block are taken in the order (i, j), (i+1, j), (i, j+1), (i+1, j+1), the
    order of the former numpy implementation, so sums are bit-for-bit reproducible.
    Row-wise loops over contiguous rows (no per-cell bounds tests inside a row).
    """
    n, ny, nx = values.shape
    nyl = wsum.shape[1]
    nan = values.dtype.type(np.nan)
    full = nx // 2
    for t in range(n):
        for bi in range(nyl):
            i = 2 * bi
            r0 = values[t, i]
            a0 = area[i]
            row2 = i + 1 < ny
            r1 = values[t, i + 1] if row2 else r0
            a1 = area[i + 1] if row2 else a0
            o_s = wsum[t, bi]
            o_a = warea[t, bi]
            o_lo = vmin[t, bi]
            o_hi = vmax[t, bi]
            if row2:
                for bj in range(full):
                    j = 2 * bj
                    s, a, lo, hi = _take(r0[j], a0[j], 0.0, 0.0, nan, nan)
                    s, a, lo, hi = _take(r1[j], a1[j], s, a, lo, hi)
                    s, a, lo, hi = _take(r0[j + 1], a0[j + 1], s, a, lo, hi)
                    s, a, lo, hi = _take(r1[j + 1], a1[j + 1], s, a, lo, hi)
                    o_s[bj] = s
                    o_a[bj] = a
                    o_lo[bj] = lo
                    o_hi[bj] = hi
            else:
                for bj in range(full):
                    j = 2 * bj
                    s, a, lo, hi = _take(r0[j], a0[j], 0.0, 0.0, nan, nan)
                    s, a, lo, hi = _take(r0[j + 1], a0[j + 1], s, a, lo, hi)
                    o_s[bj] = s
                    o_a[bj] = a
                    o_lo[bj] = lo
                    o_hi[bj] = hi
            if nx % 2:
                j = nx - 1
                s, a, lo, hi = _take(r0[j], a0[j], 0.0, 0.0, nan, nan)
                if row2:
                    s, a, lo, hi = _take(r1[j], a1[j], s, a, lo, hi)
                o_s[full] = s
                o_a[full] = a
                o_lo[full] = lo
                o_hi[full] = hi


@numba.njit(cache=True, nogil=True, inline="always")
def _merge(ws, wa, vlo, vhi, s, a, lo, hi):  # pragma: no cover - numba
    s += ws
    a += wa
    if vlo == vlo and not (lo <= vlo):
        lo = vlo
    if vhi == vhi and not (hi >= vhi):
        hi = vhi
    return s, a, lo, hi


@numba.njit(cache=True, nogil=True)
def _coarsen_next(wsum, warea, vmin, vmax, wsum2, warea2, vmin2, vmax2):  # pragma: no cover - numba
    """One more 2x step: sums add, min/max combine ignoring NaN (same cell order)."""
    n, ny, nx = wsum.shape
    nyl, nxl = wsum2.shape[1], wsum2.shape[2]
    nan = vmin.dtype.type(np.nan)
    for t in range(n):
        for bi in range(nyl):
            i = 2 * bi
            row2 = i + 1 < ny
            for bj in range(nxl):
                j = 2 * bj
                col2 = j + 1 < nx
                s, a, lo, hi = _merge(
                    wsum[t, i, j], warea[t, i, j], vmin[t, i, j], vmax[t, i, j], 0.0, 0.0, nan, nan
                )
                if row2:
                    s, a, lo, hi = _merge(
                        wsum[t, i + 1, j],
                        warea[t, i + 1, j],
                        vmin[t, i + 1, j],
                        vmax[t, i + 1, j],
                        s,
                        a,
                        lo,
                        hi,
                    )
                if col2:
                    s, a, lo, hi = _merge(
                        wsum[t, i, j + 1],
                        warea[t, i, j + 1],
                        vmin[t, i, j + 1],
                        vmax[t, i, j + 1],
                        s,
                        a,
                        lo,
                        hi,
                    )
                    if row2:
                        s, a, lo, hi = _merge(
                            wsum[t, i + 1, j + 1],
                            warea[t, i + 1, j + 1],
                            vmin[t, i + 1, j + 1],
                            vmax[t, i + 1, j + 1],
                            s,
                            a,
                            lo,
                            hi,
                        )
                wsum2[t, bi, bj] = s
                warea2[t, bi, bj] = a
                vmin2[t, bi, bj] = lo
                vmax2[t, bi, bj] = hi


@numba.njit(cache=True, nogil=True)
def _mean_field(flat_s, flat_a, flat_o):  # pragma: no cover - numba
    for k in range(flat_s.size):
        a = flat_a[k]
        flat_o[k] = np.float32(flat_s[k] / a) if a > 0 else np.float32(np.nan)


def coarsen_once(
    wsum: np.ndarray, warea: np.ndarray, vmin: np.ndarray, vmax: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One 2x step: sums add, min/max combine ignoring NaN (fmin/fmax)."""
    lead = wsum.shape[:-2]
    ny, nx = wsum.shape[-2:]
    nyl, nxl = -(-ny // 2), -(-nx // 2)

    def flat(a: np.ndarray, dtype: np.typing.DTypeLike) -> np.ndarray:
        return np.ascontiguousarray(a, dtype).reshape((-1, ny, nx))

    fdt = np.result_type(vmin.dtype, np.float32)
    w, a, lo, hi = flat(wsum, "float64"), flat(warea, "float64"), flat(vmin, fdt), flat(vmax, fdt)
    n = w.shape[0]
    out = (
        np.empty((n, nyl, nxl), "float64"),
        np.empty((n, nyl, nxl), "float64"),
        np.empty((n, nyl, nxl), fdt),
        np.empty((n, nyl, nxl), fdt),
    )
    _coarsen_next(w, a, lo, hi, *out)
    return tuple(o.reshape(lead + (nyl, nxl)) for o in out)  # type: ignore[return-value]


def coarsen_fields(
    values: np.ndarray, cell_area: np.ndarray, max_level: int
) -> list[dict[str, np.ndarray]]:
    """All pyramid levels 1..max_level of ``values`` (..., lat, lon), in memory.

    Returns one dict per level (index 0 is level 1) with ``mean``/``min``/``max``
    (float32) and ``wsum`` (sum of area * value over valid cells) / ``warea`` (sum of
    the valid cells' area), both float64, which the time-series levels store.
    Compiled (numba) single passes: no padding copies and no full-resolution float64
    temporaries; sums accumulate in float64 from the input's own precision.
    """
    values = np.asarray(values)
    if values.dtype.kind != "f":
        values = values.astype("float64")
    lead = values.shape[:-2]
    ny, nx = values.shape[-2:]
    x = np.ascontiguousarray(values).reshape((-1, ny, nx))
    area = np.ascontiguousarray(np.broadcast_to(cell_area, (ny, nx)), "float64")
    out: list[dict[str, np.ndarray]] = []
    if max_level < 1:
        return out
    n = x.shape[0]
    nyl, nxl = -(-ny // 2), -(-nx // 2)
    wsum = np.empty((n, nyl, nxl), "float64")
    warea = np.empty((n, nyl, nxl), "float64")
    vmin = np.empty((n, nyl, nxl), x.dtype)
    vmax = np.empty((n, nyl, nxl), x.dtype)
    _coarsen_first(x, area, wsum, warea, vmin, vmax)
    for lev in range(1, max_level + 1):
        if lev > 1:
            ny, nx = nyl, nxl
            nyl, nxl = -(-ny // 2), -(-nx // 2)
            nxt = (
                np.empty((n, nyl, nxl), "float64"),
                np.empty((n, nyl, nxl), "float64"),
                np.empty((n, nyl, nxl), vmin.dtype),
                np.empty((n, nyl, nxl), vmax.dtype),
            )
            _coarsen_next(wsum, warea, vmin, vmax, *nxt)
            wsum, warea, vmin, vmax = nxt
        mean = np.empty((n, nyl, nxl), "float32")
        _mean_field(wsum.reshape(-1), warea.reshape(-1), mean.reshape(-1))
        shape = lead + (nyl, nxl)
        out.append(
            {
                "mean": mean.reshape(shape),
                "min": vmin.astype("float32", copy=False).reshape(shape),
                "max": vmax.astype("float32", copy=False).reshape(shape),
                "wsum": wsum.reshape(shape),
                "warea": warea.reshape(shape),
            }
        )
    return out


@functools.lru_cache(maxsize=64)
def _level_grid_cached(
    level: int, lat_bytes: bytes, lon_bytes: bytes, area_bytes: bytes, ny: int, nx: int
) -> LevelGrid:
    lat = np.frombuffer(lat_bytes, "float64")
    lon = np.frombuffer(lon_bytes, "float64")
    area = np.frombuffer(area_bytes, "float64").reshape(ny, nx)
    if level == 0:
        return LevelGrid(0, lat.copy(), lon.copy(), area.copy())
    s = 2**level
    nyl, nxl = math.ceil(ny / s), math.ceil(nx / s)
    lat_pad = np.pad(lat, (0, nyl * s - ny), constant_values=np.nan).reshape(nyl, s)
    lon_pad = np.pad(lon, (0, nxl * s - nx), constant_values=np.nan).reshape(nxl, s)
    lat_l = np.nanmean(lat_pad, axis=1)
    lon_l = np.nanmean(lon_pad, axis=1)
    area_l = (
        np.pad(area, ((0, nyl * s - ny), (0, nxl * s - nx)))
        .reshape(nyl, s, nxl, s)
        .sum(axis=(1, 3))
    )
    return LevelGrid(level, lat_l, lon_l, area_l)


def level_grid(lat: np.ndarray, lon: np.ndarray, cell_area: np.ndarray, level: int) -> LevelGrid:
    """Coordinates of pyramid ``level`` for a normalised grid (cached)."""
    lat = np.ascontiguousarray(lat, "float64")
    lon = np.ascontiguousarray(lon, "float64")
    area = np.ascontiguousarray(cell_area, "float64")
    return _level_grid_cached(
        level, lat.tobytes(), lon.tobytes(), area.tobytes(), lat.size, lon.size
    )


def level_dataset(
    ds: xr.Dataset, level: int, kind: str = "mean", variables: list[str] | None = None
) -> xr.Dataset:
    """The level-``level`` dataset of ``ds`` (``kind`` field), computed in memory.

    The brute-force reference for pyramid answers; meant for small data (tests and
    the fallback on small stores). Level 0 returns ``ds`` itself.
    """
    if level == 0:
        return ds
    grid = level_grid(ds["lat"].values, ds["lon"].values, ds["cell_area"].values, level)
    data_vars = {}
    for name in variables or [str(v) for v in ds.data_vars]:
        da = ds[name]
        values = np.asarray(da.transpose(..., "lat", "lon").values)
        field = coarsen_fields(values, ds["cell_area"].values, level)[-1][kind]
        dims = tuple(d for d in da.transpose(..., "lat", "lon").dims)
        data_vars[name] = xr.Variable(dims, field, dict(da.attrs))
    coords: dict[object, object] = {
        name: ds[name]
        for name in ds.coords
        if name not in ("lat", "lon", "cell_area") and set(ds[name].dims) <= {"time", "level"}
    }
    coords.update(
        lat=("lat", grid.lat, dict(ds["lat"].attrs)),
        lon=("lon", grid.lon, dict(ds["lon"].attrs)),
        cell_area=(("lat", "lon"), grid.cell_area, dict(ds["cell_area"].attrs)),
    )
    out = xr.Dataset(data_vars, coords=coords, attrs=dict(ds.attrs))
    return out
