"""Derived stores on a non-regular grid's native cells, and the plans that read them.

On rotated, projected, curvilinear and unstructured grids (`data_catalog.grid`) the
derived stores hold the grid's cells flattened to one axis (``(y, x)`` row-major, or
``(cell,)``) and then put in **Morton (Z-curve) order of their geographic centres**
(lon, lat quantised to 16 bits each): cells close on the globe are close along the
axis, so a point, a box or a viewport reads a few chunks. ``cells/order.npy`` maps a
position to the native flat index; ``cells/{lon,lat,area}.npy`` are the centres and
true areas in position order. Per variable (see `pipelines.derived` for the folders):

- ``timeseries.zarr/<var>/values`` (time, position) float32, chunks (unit, 4096): a
  point series reads ``nsteps / unit`` chunks;
- ``timeseries.zarr/<var>/L<l>/{mean,area}`` (time, ceil(n / 4**l)) float32: per
  aligned block of ``4**l`` consecutive positions and step, the area-weighted mean of
  the valid cells and their area (`pipelines.timeseries_store.level_means`: error
  bound there). A box series reads each whole tile of the box's cover
  (`CellGrid.cover`) as one block and only the cells of tiles its edge crosses as
  values, so it reads O(perimeter) values per step, and sums in float64;
- ``aggregates.zarr/<var>/L0/{sum,m2,count,min,max}`` (block, position) and
  ``L0/shift`` (position): the temporal aggregates of `pipelines.aggregates` per cell.

**Z-order tile index.** Aligned runs of ``4**l`` positions (``l >= 3``) are tiles; the
index holds each tile's centre longitude and latitude ranges (computed once from
``cells/``). A box is decided tile by tile from the coarsest level down: tiles wholly
inside are taken whole, tiles wholly outside dropped, and only the finest tiles its
edge crosses test their cells (`bbox_cell_mask`, the same rule as everywhere). A view's
cells are therefore contiguous position ranges plus a thin edge, found in milliseconds
on millions of cells, and read from a few chunks. The chunks of the derived arrays
(local folders this package wrote) are read as files and decoded with numcodecs
(`_Chunks`), skipping zarr's per-call machinery.

Native answers (zoomed in past pyramid level 1): one step reads the view's cells from
the time-series copy; a range reads their aggregates; an anomaly subtracts the
baseline's monthly climatology, itself from the aggregates (per run of one calendar
month, the stored statistics of ``x - shift`` become those of ``x - clim``). They come
back in the brute force's layout (`pipelines.selection.select_bbox`), and for a screen
with the cells' polygons cropped to them (``attrs["gridscope_lon_bounds"]``, ``..lat..``:
a DataArray cannot hold ``(cell, nv)`` coordinates), so the dashboard draws polygons.
The last few views' layouts (`_native_view`) and the chunks decoded for a view's step
(`_SeriesValues.read_view`: a chunk holds a unit of steps) are kept, so the next steps
of a view (a time player) read values only, mostly without decoding.

Map pyramid: levels ``k = 1..max_level`` are regular global lat-lon grids of
``nlat_k x 2 nlat_k`` cells (`pyramid_shapes`: level 1 about twice the native cell
size, each next level about twice as coarse), filled by an area-weighted sparse
regridding matrix per level (`regrid_matrix`, made from ``cells/`` when a level is
first used: as fast as loading a stored one, which would add ~12 bytes per cell and
level): **each native cell's whole area goes to the target cell containing its
centre**. We chose this over exact polygon overlaps because (a) the levels are coarser
than the native grid, where a cell straddling a target edge moves at most half a native
cell, (b) it needs no cell polygons (point clouds have none) and no spherical polygon
clipping, and (c) it conserves exactly: a level's area-weighted mean over the globe or
over whole target cells equals the native one, and each matrix row sums to the area
its target cell covers. A level's ``mean`` is the area-weighted mean of the valid
native cells in each target cell, ``min``/``max`` their extremes (NaN where no valid
centre falls). As for regular grids, a level-``k`` answer is the query evaluated on the
level-``k`` dataset; temporal aggregates are stored per level as on regular grids. The
``mean`` field is stored per step at every level, the ``min``/``max`` fields from level
`pipelines.pyramid.MINMAX_FROM_LEVEL` (2) on: at level 1 a min/max range map's few edge
steps (outside its stored blocks) make the level's min/max field from the native cells
under the view (`LevelMembers`: the cells sorted by level cell, one slice each),
exactly, reading a few native cells per level cell, where at level ``k`` it would be
``~4**k`` (level 1's fields would be three quarters of the min/max fields' bytes).

Appends: the cells' order, centres, areas and regridding matrices depend on the cells
alone, so a source that gained time steps on the same cells grows its stores in place
(`pipelines.build`: checked bit for bit against ``cells/``).
Target cells with no native centre (only at levels finer than the native grid
somewhere, e.g. lat-lon cells near the poles of a uniform mesh) are NaN.

Answers are the brute-force ones (`pipelines.evaluate`) on the native cells: the same
cells (box membership by `pipelines.selection.bbox_cell_mask` on the same centres,
nearest cell on the sphere as `pipelines.selection.nearest_cell_index`), the same
statistics up to float rounding (sums in float64; min/max exact).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numba
import numpy as np
import xarray as xr

from data_catalog.grid import EARTH_RADIUS_M, unit_vectors
from pipelines.aggregates import add_moments, block_stats, decompose_range, finish, stat_of
from pipelines.chunk_reader import reader as chunk_reader
from pipelines.query import Query, QueryError
from pipelines.reductions import spatial_dims
from pipelines.selection import _no_cell_error, bbox_cell_mask, nearest_cell_index
from pipelines.timeseries_store import decode_values, level_sums

__all__ = [
    "FANOUT",
    "BoxCover",
    "CellGrid",
    "LevelMembers",
    "LevelRegrid",
    "block_sums",
    "cell_grid",
    "cell_order",
    "combine_total",
    "gather",
    "level_fields",
    "plan_cell_map",
    "plan_cell_series",
    "pyramid_shapes",
    "regrid_matrix",
    "write_cell_grid",
]

#: Positions per block of the next coarser time-series level.
FANOUT = 4
#: Positions per chunk of the time-series copy and of the aggregates.
TS_CHUNK = 4096
AGG_CHUNK = 65536


def _spread16(v: np.ndarray) -> np.ndarray:
    """Bits of 16-bit integers moved to the even bit positions of 32-bit ones."""
    v = v.astype("uint64") & 0xFFFF
    v = (v | (v << 8)) & 0x00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F
    v = (v | (v << 2)) & 0x33333333
    v = (v | (v << 1)) & 0x55555555
    return v


def cell_order(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Native flat indices of the cells in Morton order of their centres (a permutation).

    Ties (cells in the same 16-bit quantum) keep their native order.
    """
    lon = np.asarray(lon, "float64").ravel()
    lat = np.asarray(lat, "float64").ravel()
    qx = np.clip(((lon + 180.0) % 360.0) / 360.0 * 65536.0, 0, 65535).astype("uint64")
    qy = np.clip((lat + 90.0) / 180.0 * 65536.0, 0, 65535).astype("uint64")
    key = _spread16(qx) | (_spread16(qy) << np.uint64(1))
    return np.argsort(key, kind="stable").astype("int64")


def block_sums(
    values: np.ndarray, area: np.ndarray, levels: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(wsum, warea)`` per level ``1..levels`` of ``values`` (time, position).

    Level ``l`` sums aligned blocks of ``FANOUT**l`` positions (the last block holds the
    positions there are): ``wsum`` = sum of area * value, ``warea`` = sum of area, over
    the valid (non-NaN) cells, float64.
    """
    x = np.asarray(values)
    w = np.asarray(area, "float64")
    n = x.shape[-1]
    sizes = []
    for _ in range(levels):
        n = -(-n // FANOUT)
        sizes.append(n)
    out = [(np.empty((x.shape[0], m)), np.empty((x.shape[0], m))) for m in sizes]
    for t in range(x.shape[0]):  # one step at a time: float64 temporaries of one step
        valid = ~np.isnan(x[t])
        wsum = np.where(valid, x[t], 0).astype("float64") * w
        warea = valid * w
        for lev in range(levels):
            wsum, warea = _group(wsum), _group(warea)
            out[lev][0][t] = wsum
            out[lev][1][t] = warea
    return out


def _group(a: np.ndarray) -> np.ndarray:
    n = a.shape[-1]
    m = -(-n // FANOUT)
    if m * FANOUT != n:
        a = np.concatenate([a, np.zeros(a.shape[:-1] + (m * FANOUT - n,), a.dtype)], axis=-1)
    return a.reshape(a.shape[:-1] + (m, FANOUT)).sum(axis=-1)


# ------------------------------------------------------------------------------ the grid


def pyramid_shapes(area: np.ndarray, max_level: int) -> list[int]:
    """Latitude rows ``nlat_k`` of pyramid levels ``1..max_level`` (``2 nlat_k`` columns).

    Level 1 has cells about twice the median native cell size (so most target cells hold
    several native centres); each next level has half the rows (rounded up), and levels
    stop before fewer than 8 rows.
    """
    spacing = float(np.median(np.sqrt(np.asarray(area, "float64")))) / (
        EARTH_RADIUS_M * np.pi / 180
    )
    nlat = max(int(180.0 / (2.0 * spacing)), 1)
    out = []
    for _ in range(max_level):
        if nlat < 8:
            break
        out.append(nlat)
        nlat = -(-nlat // 2)
    return out


def target_index(lon: np.ndarray, lat: np.ndarray, nlat: int) -> np.ndarray:
    """Flat index (row-major, rows from the south, columns from -180) of the level cell
    of ``nlat`` rows containing each centre (edges: the cell to the north / east)."""
    res = 180.0 / nlat
    i = np.clip(np.floor((np.asarray(lat, "float64") + 90.0) / res), 0, nlat - 1).astype("int64")
    j = np.floor(((np.asarray(lon, "float64") + 180.0) % 360.0) / res).astype("int64") % (2 * nlat)
    return i * (2 * nlat) + j


def regrid_matrix(lon: np.ndarray, lat: np.ndarray, area: np.ndarray, nlat: int) -> Any:
    """The sparse (target cells x native cells) matrix of a level: entry = the native
    cell's area where its centre lies in the target cell (CSR, float64)."""
    from scipy import sparse

    n = np.asarray(area).size
    rows = target_index(np.ravel(lon), np.ravel(lat), nlat)
    return sparse.csr_matrix(
        (np.asarray(area, "float64").ravel(), (rows, np.arange(n))), shape=(2 * nlat * nlat, n)
    )


@dataclasses.dataclass(eq=False)
class LevelRegrid:
    """One pyramid level of a cell grid: its matrix and what min/max grouping needs."""

    nlat: int
    matrix: Any

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nlat, 2 * self.nlat)

    @functools.cached_property
    def _groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        csc = self.matrix.tocsc()
        rows = np.empty(self.matrix.shape[1], "int64")
        rows[np.repeat(np.arange(csc.shape[1]), np.diff(csc.indptr))] = csc.indices
        perm = np.argsort(rows, kind="stable")
        sorted_rows = rows[perm]
        starts = np.flatnonzero(np.r_[True, np.diff(sorted_rows) != 0])
        return perm, starts, sorted_rows[starts]

    @functools.cached_property
    def covered_area(self) -> np.ndarray:
        """Area of the native cells whose centres lie in each target cell (row sums)."""
        return np.asarray(self.matrix.sum(axis=1)).reshape(self.shape)

    @classmethod
    def geometry(cls, nlat: int, covered_area: np.ndarray) -> LevelRegrid:
        """A level's coordinates and covered areas without its matrix (what a plan needs)."""
        out = cls(nlat, None)
        out.__dict__["covered_area"] = covered_area
        return out

    @property
    def cell_area(self) -> np.ndarray:
        """A level cell's area for means over it: the area its native cells cover."""
        return self.covered_area

    @property
    def lat(self) -> np.ndarray:
        res = 180.0 / self.nlat
        return -90.0 + res * (np.arange(self.nlat) + 0.5)

    @property
    def lon(self) -> np.ndarray:
        res = 180.0 / self.nlat
        return -180.0 + res * (np.arange(2 * self.nlat) + 0.5)


@dataclasses.dataclass(eq=False)
class LevelMembers:
    """The native cells of each cell of a pyramid level: positions sorted by the level
    cell their centre lies in (`target_index`, as the regridding matrix), so a level
    cell's members are one slice; what a level's min/max field is made from where the
    stores keep none (a range map's edge steps at level 1: `MINMAX_FROM_LEVEL`)."""

    ncols: int
    perm: np.ndarray  # positions, by level cell (int32)
    offsets: np.ndarray  # level cell i's members: perm[offsets[i]:offsets[i + 1]]

    def of(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The members of the level cells ``rows x cols`` (output row-major, in the
        given orders): their positions, grouped by level cell; each non-empty group's
        start; and the flat output index of those groups."""
        keys = (np.asarray(rows, "int64")[:, None] * self.ncols + np.asarray(cols)[None, :]).ravel()
        return _members_kernel(self.perm, self.offsets, keys)


@numba.njit(cache=True, nogil=True)
def _counting_sort(keys, nkeys):  # pragma: no cover  (numba)
    """The stable argsort (int32) of ``keys`` in ``[0, nkeys)`` and each key's start in it
    (``nkeys + 1`` offsets): one counting pass and one placing pass, O(n) (an argsort of
    2.5 M cells took ~60 ms, this ~10 ms)."""
    offsets = np.zeros(nkeys + 1, np.int64)
    for i in range(keys.shape[0]):
        offsets[keys[i] + 1] += 1
    for k in range(nkeys):
        offsets[k + 1] += offsets[k]
    fill = offsets[:-1].copy()
    perm = np.empty(keys.shape[0], np.int32)
    for i in range(keys.shape[0]):
        k = keys[i]
        perm[fill[k]] = i
        fill[k] += 1
    return perm, offsets


@numba.njit(cache=True, nogil=True)
def _members_kernel(perm, offsets, keys):  # pragma: no cover  (numba)
    """`LevelMembers.of` on flat level-cell ``keys``: members, group starts, present."""
    total = 0
    npresent = 0
    for i in range(keys.shape[0]):
        c = offsets[keys[i] + 1] - offsets[keys[i]]
        total += c
        npresent += c > 0
    out = np.empty(total, perm.dtype)
    starts = np.empty(npresent, np.int64)
    present = np.empty(npresent, np.int64)
    k = 0
    g = 0
    for i in range(keys.shape[0]):
        lo, hi = offsets[keys[i]], offsets[keys[i] + 1]
        if hi > lo:
            starts[g] = k
            present[g] = i
            g += 1
            for m in range(lo, hi):
                out[k] = perm[m]
                k += 1
    return out, starts, present


@numba.njit(cache=True, nogil=True)
def _group_extreme(values, local, starts, present, out, is_min):  # pragma: no cover
    """``out[present[g]]`` = the NaN-ignoring extreme of ``values[local[m]]`` over group
    ``g``'s members ``m`` (``starts[g]`` to the next start), as `level_fields`'s
    ``fmin`` / ``fmax.reduceat``, without gathering the members' values first; NaN where
    none is valid."""
    ngroups = starts.shape[0]
    for g in range(ngroups):
        stop = starts[g + 1] if g + 1 < ngroups else local.shape[0]
        best = np.float32(np.nan)
        for m in range(starts[g], stop):
            v = values[local[m]]
            if v == v and (not (best == best) or (v < best if is_min else v > best)):
                best = v
        out[present[g]] = best


def level_fields(values: np.ndarray, level: LevelRegrid) -> dict[str, np.ndarray]:
    """``mean``, ``min``, ``max`` (time, nlat, nlon) float32 of ``values`` (time, position)
    on a pyramid level: area-weighted mean / extremes of the valid native cells."""
    x = np.asarray(values)
    nt = x.shape[0]
    ntarget = level.matrix.shape[0]
    perm, starts, present = level._groups
    out = {k: np.full((nt, ntarget), np.nan, "float32") for k in ("mean", "min", "max")}
    for t in range(nt):
        row = x[t]
        valid = ~np.isnan(row)
        wsum = level.matrix @ np.where(valid, row, 0).astype("float64")
        warea = level.matrix @ valid.astype("float64")
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mean"][t] = np.where(warea > 0, wsum / np.where(warea > 0, warea, 1), np.nan)
        grouped = row[perm]
        out["min"][t, present] = np.fmin.reduceat(grouped, starts)
        out["max"][t, present] = np.fmax.reduceat(grouped, starts)
    return {k: v.reshape((nt, *level.shape)) for k, v in out.items()}


def write_cell_grid(
    folder: Path, lon: np.ndarray, lat: np.ndarray, area: np.ndarray, max_level: int = 0
) -> None:
    """Write ``cells/{order,lon,lat,area}.npy`` (position order) for a grid's cells, and
    the rows of each pyramid level (``cells/levels.json``; their regridding matrices are
    functions of these, `CellGrid.level`)."""
    import json

    order = cell_order(lon, lat)
    out = Path(folder) / "cells"
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "lon": np.asarray(lon, "float64").ravel()[order],
        "lat": np.asarray(lat, "float64").ravel()[order],
        "area": np.asarray(area, "float64").ravel()[order],
    }
    shapes = pyramid_shapes(arrays["area"], max_level)
    (out / "levels.json").write_text(json.dumps({"nlat": shapes}))
    for name, arr in (("order", order), *arrays.items()):  # order last: it marks completion
        tmp = out / f".{name}.tmp.npy"
        np.save(tmp, arr)
        tmp.replace(out / f"{name}.npy")


#: Finest tile level of the Z-order tile index (tiles of 4**3 = 64 positions).
_TILE_LOW = 3
#: Margin (degrees) by which a tile must clear a box edge to be decided whole.
_MARGIN = 1e-6


def _classify(
    lon_lo: np.ndarray,
    lon_hi: np.ndarray,
    lat_lo: np.ndarray,
    lat_hi: np.ndarray,
    bbox: tuple[float, float, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Which tiles (centre ranges) lie wholly inside / wholly outside ``bbox``.

    Decided with a margin well above `bbox_cell_mask`'s tolerance and rounding, so a
    tile called inside (outside) has every centre inside (outside) as that mask says;
    the others are looked at finer.
    """
    west, south, east, north = bbox
    width = (east - west) % 360.0
    if width == 0 and east != west:
        width = 360.0
    with np.errstate(invalid="ignore"):
        lat_in = (lat_lo >= south) & (lat_hi <= north)
        lat_out = (lat_hi < south - _MARGIN) | (lat_lo > north + _MARGIN)
        if width >= 360.0:
            lon_in = np.ones(lon_lo.shape, bool)
            lon_out = np.zeros(lon_lo.shape, bool)
        else:
            offset = (lon_lo - west) % 360.0
            end = offset + (lon_hi - lon_lo)
            # the tile's centres map to [offset, end] east of W without wrapping
            plain = (offset >= _MARGIN) & (end <= 360.0 - _MARGIN)
            lon_in = plain & (end <= width - _MARGIN)
            lon_out = plain & (offset >= width + _MARGIN)
    empty = ~np.isfinite(lat_lo)
    return lat_in & lon_in & ~empty, lat_out | lon_out | empty


@dataclasses.dataclass
class BoxCover:
    """A box's cells: whole tiles per tile level (``tiles[l]``: indices of aligned runs
    of ``4**l`` positions) and single sorted positions; each cell once."""

    tiles: dict[int, np.ndarray]
    singles: np.ndarray
    n: int

    @property
    def count(self) -> int:
        """Number of cells."""
        total = self.singles.size
        for lev, idx in self.tiles.items():
            size = FANOUT**lev
            total += int(np.sum(np.minimum((idx + 1) * size, self.n) - idx * size))
        return total

    def positions(self) -> np.ndarray:
        """All the cells' positions, sorted (tiles expanded as runs, no sort of cells)."""
        starts = [self.singles]
        lengths = [np.ones(self.singles.size, "int64")]
        for lev, idx in self.tiles.items():
            size = FANOUT**lev
            starts.append(idx * size)
            lengths.append(np.minimum((idx + 1) * size, self.n) - idx * size)
        start = np.concatenate(starts).astype("int64")
        length = np.concatenate(lengths)
        order = np.argsort(start, kind="stable")
        start, length = start[order], length[order]
        ends = np.cumsum(length)
        return np.repeat(start - (ends - length), length) + np.arange(
            int(ends[-1]) if ends.size else 0
        )

    def blocks(self, levels: tuple[int, ...]) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """The cover as blocks of the stored time-series ``levels`` (each tile split into
        blocks of the coarsest stored level not above its own, tiles finer than any
        into positions) and single positions."""
        out: dict[int, list[np.ndarray]] = {}
        singles = [self.singles]
        for lev, idx in self.tiles.items():
            if not idx.size:
                continue
            use = max((v for v in levels if 1 <= v <= lev), default=0)
            if use < 1:
                size = FANOUT**lev
                singles.append((idx[:, None] * size + np.arange(size)).ravel())
                continue
            split = FANOUT ** (lev - use)
            out.setdefault(use, []).append((idx[:, None] * split + np.arange(split)).ravel())
        nblocks = {lev: -(-self.n // FANOUT**lev) for lev in out}
        blocks = {}
        for lev, parts in out.items():
            idx = np.sort(np.concatenate(parts))
            blocks[lev] = idx[idx < nblocks[lev]]
        pos = np.sort(np.concatenate(singles))
        return blocks, pos[pos < self.n]


@dataclasses.dataclass(eq=False)
class CellGrid:
    """A grid's cells in position order (see module docstring), loaded once per folder."""

    order: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    area: np.ndarray
    folder: Path | None = None

    @functools.cached_property
    def level_rows(self) -> list[int]:
        """``nlat`` of each pyramid level (level 1 first)."""
        import json

        if self.folder is None or not (self.folder / "cells" / "levels.json").exists():
            return []
        return list(json.loads((self.folder / "cells" / "levels.json").read_text())["nlat"])

    def level(self, k: int) -> LevelRegrid:
        """Pyramid level ``k`` (>= 1), its regridding matrix made once (`regrid_matrix`)."""
        cache = self.__dict__.setdefault("_levels", {})
        if k not in cache:
            nlat = self.level_rows[k - 1]
            cache[k] = LevelRegrid(nlat, regrid_matrix(self.lon, self.lat, self.area, nlat))
        return cache[k]

    def level_geometry(self, k: int) -> LevelRegrid:
        """Pyramid level ``k``'s coordinates and covered areas (a bincount of the cells'
        areas by target cell: no sparse matrix)."""
        from pipelines.pyramid import stores_minmax

        cache = self.__dict__.setdefault("_geometry", {})
        if k not in cache:
            nlat = self.level_rows[k - 1]
            target = target_index(self.lon, self.lat, nlat)
            area = np.bincount(target, self.area, minlength=2 * nlat * nlat)
            cache[k] = LevelRegrid.geometry(nlat, area.reshape(nlat, 2 * nlat))
            if not stores_minmax(k):
                # a level without stored min/max fields: its members, from the same
                # target cells (+~15 ms here, not ~55 ms on the first min/max range map)
                self._members_of(k, target)
        return cache[k]

    def level_members(self, k: int) -> LevelMembers:
        """Pyramid level ``k``'s native cells per level cell (`LevelMembers`), made once
        (a counting sort of the cells by level cell, `_counting_sort`)."""
        return self._members_of(k, None)

    def _members_of(self, k: int, target: np.ndarray | None) -> LevelMembers:
        cache = self.__dict__.setdefault("_members", {})
        if k not in cache:
            nlat = self.level_rows[k - 1]
            if target is None:
                target = target_index(self.lon, self.lat, nlat)
            perm, offsets = _counting_sort(target, 2 * nlat * nlat)
            cache[k] = LevelMembers(2 * nlat, perm, offsets)
        return cache[k]

    @functools.cached_property
    def position(self) -> np.ndarray:
        """Position of each native flat index (the inverse of ``order``)."""
        pos = np.empty_like(self.order)
        pos[self.order] = np.arange(self.order.size)
        return pos

    @functools.cached_property
    def _tiles(self) -> list[tuple[np.ndarray, ...]]:
        """Per tile level ``l`` (``_TILE_LOW..``, aligned runs of ``4**l`` positions): the
        min / max longitude and latitude of the centres in each tile (the Z-order tile
        index: a box is decided tile by tile, cells only in tiles its edge crosses)."""
        n = self.lat.size
        size = FANOUT**_TILE_LOW
        m = -(-n // size)
        pad = np.full(m * size, np.nan)
        out = []
        for values in (self.lon, self.lat):
            pad[:n] = values
            tiles = pad.reshape(m, size)
            out += [np.nanmin(tiles, axis=1), np.nanmax(tiles, axis=1)]
        levels = [tuple(out)]
        while levels[-1][0].size > 1:
            prev = levels[-1]
            m = -(-prev[0].size // FANOUT)
            grouped = []
            for k, arr in enumerate(prev):
                fill = np.inf if k % 2 == 0 else -np.inf
                padded = np.full(m * FANOUT, fill)
                padded[: arr.size] = arr
                op = np.min if k % 2 == 0 else np.max
                grouped.append(op(padded.reshape(m, FANOUT), axis=1))
            levels.append(tuple(grouped))
        return levels

    def cover(self, bbox: tuple[float, float, float, float]) -> BoxCover:
        """The cells whose centre is in ``bbox`` (as `bbox_cell_mask`), as whole tiles
        (per tile level, the tiles all of whose cells are inside) and single positions
        (the inside cells of the finest tiles the box's edge crosses)."""
        levels = self._tiles
        top = len(levels) - 1
        n = self.lat.size
        tiles: dict[int, np.ndarray] = {}
        cand = np.arange(levels[top][0].size)
        for k in range(top, -1, -1):
            lon_lo, lon_hi, lat_lo, lat_hi = (a[cand] for a in levels[k])
            inside, outside = _classify(lon_lo, lon_hi, lat_lo, lat_hi, bbox)
            tiles[k + _TILE_LOW] = cand[inside]
            partial = cand[~inside & ~outside]
            if k == 0:
                break
            below = levels[k - 1][0].size
            cand = (partial[:, None] * FANOUT + np.arange(FANOUT)).ravel()
            cand = cand[cand < below]
        size = FANOUT**_TILE_LOW
        pos = (partial[:, None] * size + np.arange(size)).ravel()
        pos = pos[pos < n]
        pos = pos[bbox_cell_mask(self.lon[pos], self.lat[pos], bbox)]
        return BoxCover(tiles, pos, n)

    def box_positions(self, bbox: tuple[float, float, float, float]) -> np.ndarray:
        """Sorted positions of the cells whose centre is in ``bbox``."""
        return self.cover(bbox).positions()

    def box_mask(self, bbox: tuple[float, float, float, float]) -> np.ndarray:
        """`bbox_cell_mask` of the cells (position order), from the tile index."""
        mask = np.zeros(self.lat.size, bool)
        mask[self.box_positions(bbox)] = True
        return mask

    @functools.cached_property
    def tree(self) -> Any:
        from scipy.spatial import cKDTree

        return cKDTree(unit_vectors(self.lon, self.lat))

    def nearest(self, point: tuple[float, float]) -> int | None:
        """Position of the cell nearest to ``point`` as `nearest_cell_index` finds it, or
        None when that is farther than 1.5 cell sizes (outside the grid)."""
        lon, lat = point
        target = unit_vectors(np.array(lon), np.array(lat))
        k = min(8, self.order.size)
        _, cand = self.tree.query(target, k=k)
        cand = np.atleast_1d(cand)
        cos = unit_vectors(self.lon[cand], self.lat[cand]) @ target
        best = cos.max()
        # ties: the smallest native index, as argmax over the native layout
        tied = cand[cos == best]
        pos = int(tied[np.argmin(self.order[tied])])
        distance = float(np.arccos(np.clip(best, -1.0, 1.0))) * EARTH_RADIUS_M
        if not distance <= 1.5 * float(np.sqrt(self.area[pos])):
            return None
        return pos


_GRIDS: dict[tuple[str, int], CellGrid] = {}
_LOCK = threading.Lock()


def cell_grid(folder: Path) -> CellGrid:
    """The `CellGrid` of a derived folder (cached until ``cells/order.npy`` changes)."""
    path = Path(folder) / "cells" / "order.npy"
    key = (str(path), path.stat().st_mtime_ns)
    with _LOCK:
        grid = _GRIDS.get(key)
        if grid is None:
            arrays = {
                n: np.load(path.with_name(f"{n}.npy")) for n in ("order", "lon", "lat", "area")
            }
            grid = _GRIDS[key] = CellGrid(**arrays, folder=Path(folder))
        return grid


# ------------------------------------------------------------------------------ reading


def _pool() -> ThreadPoolExecutor:
    """The planner's threads, here decoding chunks (blosc and numpy release the GIL);
    only leaf reads run on them."""
    from pipelines.planner import _pool as planner_pool

    return planner_pool()


_TASKS: ThreadPoolExecutor | None = None


def _task_pool() -> ThreadPoolExecutor:
    """Threads running a range map's reads at once (each read decodes its chunks on
    `_pool`: two pools, so no task waits on its own pool)."""
    global _TASKS
    if _TASKS is None:
        _TASKS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gridscope-cell-tasks")
    return _TASKS


Selector = slice | np.ndarray


class _Chunks:
    """A derived zarr v3 array read at orthogonal selections, chunk by chunk.

    Chunks are decoded by `pipelines.chunk_reader` (the chunk files of a local array
    this package wrote, decoded with numcodecs: about three times faster than zarr's
    per-call machinery for the few hundred small chunks of a box series), on threads;
    anything it does not read exactly like zarr (other codecs, sharding, a remote
    store) is read through zarr.
    """

    def __init__(self, arr: Any):
        self.arr = arr
        self.fast = chunk_reader(arr)
        self.shape = tuple(int(v) for v in arr.shape)
        self.chunks = tuple(int(v) for v in arr.chunks)
        self.dtype = np.dtype(arr.dtype)

    def read(self, selection: tuple[Selector, ...]) -> np.ndarray:
        """``arr`` at an orthogonal selection: per axis a slice (step 1) or sorted
        indices; only the chunks it touches are read, on threads."""
        fast = self.fast
        if fast is None:
            return np.asarray(self.arr.get_orthogonal_selection(selection))
        plans = [
            _axis_pieces(sel, n, c)
            for sel, n, c in zip(selection, self.shape, self.chunks, strict=True)
        ]
        out = np.empty(tuple(size for _, size in plans), self.dtype)
        if out.size == 0:
            return out

        def fill(piece: tuple) -> None:
            block = fast.chunk(tuple(p[0] for p in piece))
            for axis, (_, local, _) in enumerate(piece):
                if isinstance(local, slice):
                    block = block[(slice(None),) * axis + (local,)]
                else:
                    block = np.take(block, local, axis=axis)
            out[tuple(p[2] for p in piece)] = block

        pieces = list(itertools.product(*(p for p, _ in plans)))
        if len(pieces) > 1:
            list(_pool().map(fill, pieces))
        else:
            fill(pieces[0])
        return out


def _axis_pieces(sel: Selector, n: int, c: int) -> tuple[list[tuple[int, Selector, slice]], int]:
    """``(chunk, index in the chunk, slice of the output)`` per chunk a selection touches
    along one axis, and the selection's length."""
    pieces: list[tuple[int, Selector, slice]] = []
    if isinstance(sel, slice):
        start, stop, step = sel.indices(n)
        assert step == 1
        stop = max(stop, start)
        for cid in range(start // c, -(-stop // c)):
            lo, hi = max(start, cid * c), min(stop, (cid + 1) * c)
            pieces.append((cid, slice(lo - cid * c, hi - cid * c), slice(lo - start, hi - start)))
        return pieces, stop - start
    idx = np.asarray(sel, "int64")
    cids = idx // c
    breaks = np.flatnonzero(np.diff(cids)) + 1
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, idx.size], strict=True):
        local = idx[a:b] - cids[a] * c
        if local[-1] - local[0] == b - a - 1:
            local = slice(int(local[0]), int(local[-1]) + 1)
        pieces.append((int(cids[a]), local, slice(int(a), int(b))))
    return pieces, idx.size


_READERS: dict[int, _Chunks] = {}


def _chunks(arr: Any) -> _Chunks:
    reader = _READERS.get(id(arr))
    if reader is None or reader.arr is not arr:
        reader = _READERS[id(arr)] = _Chunks(arr)
    return reader


def gather(arr: Any, lead: Selector, positions: np.ndarray) -> np.ndarray:
    """``arr[lead, positions]`` of a (time or block, position) array, ``positions``
    sorted, reading only the chunks they touch."""
    return _chunks(arr).read((lead, positions))


PlanParts = tuple[str, int, Callable[[], xr.DataArray]]
#: A map plan's parts and its pyramid level (0: native cells).
MapPlanParts = tuple[str, int, Callable[[], xr.DataArray], int]


def plan_cell_series(
    da: xr.DataArray,
    query: Query,
    stores: Any,
    r0: int,
    r1: int,
    finish_series: Callable[[xr.DataArray], xr.DataArray],
) -> PlanParts:
    """A point or box series on a non-regular grid from the time-series copy.

    ``stores`` is the variable's `pipelines.derived.VariableStores`; steps
    ``[r0, r1)`` are read and ``finish_series`` (the planner's) selects the query's
    range and applies an anomaly. A box is decided on the Z-order tile index
    (`CellGrid.cover`): its whole tiles are read as block means and areas
    (``L<l>/{mean,area}``, `pipelines.timeseries_store.level_sums`),
    only the cells of tiles its edge crosses as values. Returns (description, bytes
    read, run).
    """
    grid = cell_grid(stores.folder)
    times = da["time"].isel(time=slice(r0, r1))
    nsteps = r1 - r0
    values = _SeriesValues(stores)
    if query.point is not None:
        pos = grid.nearest(query.point)
        if pos is None:
            nearest_cell_index(da, query.point)  # raises the grid's own message
            raise QueryError("point", "this point is outside the grid's cells")
        dims = spatial_dims(da)
        index = np.unravel_index(int(grid.order[pos]), tuple(int(da.sizes[d]) for d in dims))
        cell = da.isel({d: int(i) for d, i in zip(dims, index, strict=True)})
        coords = {k: v for k, v in cell.coords.items() if "time" not in v.dims}

        def run_point() -> xr.DataArray:
            x = values.read(slice(r0, r1), np.array([pos]))[:, 0]
            out = xr.DataArray(
                x, dims="time", coords={"time": times, **coords}, attrs=dict(da.attrs)
            )
            return finish_series(out)

        where = ", ".join(f"{d}={int(i)}" for d, i in zip(dims, index, strict=True))
        return (
            f"time-series copy of the native cells, cell {where}, steps {r0}..{r1 - 1}",
            nsteps * 4,
            run_point,
        )

    assert query.bbox is not None
    cover = grid.cover(query.bbox)
    blocks, singles = cover.blocks(stores.ts_levels)
    ncells = cover.count
    if ncells == 0:
        raise _no_cell_error(query.bbox)
    nread = singles.size + sum(2 * b.size for b in blocks.values())  # float32 mean + area

    def edge_sums() -> tuple[np.ndarray, np.ndarray]:
        x = values.read(slice(r0, r1), singles)
        valid = ~np.isnan(x)
        w = grid.area[singles]
        return np.where(valid, x, np.float32(0)).astype("float64") @ w, valid @ w

    def level_sum(lev: int) -> tuple[np.ndarray, np.ndarray]:
        mean, area = (
            gather(stores.array("timeseries", f"L{lev}/{name}"), slice(r0, r1), blocks[lev])
            for name in ("mean", "area")
        )
        wsum, warea = level_sums(mean, area)
        return wsum.sum(axis=1), warea.sum(axis=1)

    def run_box() -> xr.DataArray:
        tasks = _task_pool()
        edge = tasks.submit(edge_sums)
        sums = [tasks.submit(level_sum, lev) for lev in blocks]
        wsum, warea = edge.result()
        for future in sums:
            ws, wa = future.result()
            wsum = wsum + ws
            warea = warea + wa
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(warea > 0, wsum / np.where(warea > 0, warea, 1.0), np.nan)
        out = xr.DataArray(mean, dims="time", coords={"time": times}, attrs=dict(da.attrs))
        return finish_series(out)

    counts = ", ".join(
        [f"L0: {singles.size}"] + [f"L{lev}: {b.size}" for lev, b in sorted(blocks.items())]
    )
    return (
        f"time-series copy of the native cells, {ncells} cells as blocks [{counts}], "
        f"steps {r0}..{r1 - 1}",
        int(nread * nsteps * 4),
        run_box,
    )


def _view_size(boxes: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """Degrees of longitude and latitude the boxes' intersection spans (at most)."""
    width, height = 360.0, 180.0
    for west, south, east, north in boxes:
        span = (east - west) % 360.0
        width = min(width, 360.0 if span == 0 and east != west else span)
        height = min(height, north - south)
    return width, height


def choose_level(
    grid: CellGrid,
    boxes: list[tuple[float, float, float, float]],
    screen: tuple[int, int] | None,
    max_level: int,
) -> int:
    """The coarsest pyramid level with at least ``screen`` cells across the view, or 0
    (the native cells) when none has (or without a screen: full resolution)."""
    if screen is None:
        return 0
    width, height = _view_size(boxes)
    w, h = (max(int(v), 1) for v in screen)
    level = 0
    for k, nlat in enumerate(grid.level_rows[:max_level], start=1):
        res = 180.0 / nlat
        if width / res >= w and height / res >= h:
            level = k
        else:
            break
    return level


# ------------------------------------------------------------------------------ maps


class _LevelCells:
    """The cells of a pyramid level a view shows (a planner region of its lat-lon grid)."""

    def __init__(self, region: Any):
        self.region = region
        self.count = int(region.ncells)

    def read(self, arr: Any, lead: Selector | None = None) -> np.ndarray:
        """``arr[lead, cells]`` (``arr[cells]`` without ``lead``): (lead, lat, lon)."""
        first = () if lead is None else (lead,)
        parts = [
            _chunks(arr).read((*first, self.region.lat_slice, slice(a, b)))
            for a, b in self.region.runs
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


#: Source steps read at once for a level's min/max edge steps (`_LevelEdges`).
_EDGE_BATCH = 4


class _LevelEdges:
    """The extreme (min or max) over some steps of a pyramid level's min / max field over
    a region, made from the native cells under it (`LevelMembers`, `_group_extreme`:
    equal to the extreme of the fields the build computes, since extremes commute).
    The stores keep no per-step min/max fields below `pipelines.pyramid.MINMAX_FROM_LEVEL`
    (level 1): only the few edge steps of a range map need them, outside its stored
    blocks (fewer than ``2 * base_block``), and a min/max needs only their extreme, so
    the native values are reduced over the steps first and grouped by level cell once.

    The native values come from the time-series copy or the source, whichever decodes
    fewer steps for them: the copy's chunks hold ``unit_steps`` steps, a source's as it
    is chunked (often one step per chunk; whole when in memory), read a few at a time.
    """

    def __init__(self, grid: CellGrid, level: int, region: Any, kind: str, da: Any, stores: Any):
        self.grid, self.level, self.region, self.kind = grid, level, region, kind
        self.da, self.stores = da, stores
        self.shape = (int(region.lat_index.size), int(region.lon_index.size))
        self.reduce = np.fmin if kind == "min" else np.fmax

    @functools.cached_property
    def _members(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        members = self.grid.level_members(self.level)
        return members.of(self.region.lat_index, self.region.lon_index)

    @property
    def count(self) -> int:
        """Native cells a step reads."""
        return int(self._members[0].size)

    def _from_copy(self, steps: list[int]) -> bool:
        if not self.stores.has_timeseries or self.da.chunks is None:
            return False  # a source in memory: nothing to decode
        lengths = np.asarray(self.da.chunks[self.da.dims.index("time")])
        first = np.cumsum(lengths) - lengths
        raw = lengths[np.unique(np.searchsorted(first, steps, "right") - 1)].sum()
        unit = _SeriesValues(self.stores).unit
        return unit * np.unique(np.asarray(steps) // unit).size < raw

    def read(self, steps: list[int]) -> np.ndarray:
        """The extreme over ``steps`` of the field over the region: (1, lat, lon) float32
        (one "step": all that a range's min / max takes from its edge steps)."""
        positions, starts, present = self._members
        out = np.full((1, *self.shape), np.nan, "float32")
        if positions.size == 0 or not steps:
            return out
        if self._from_copy(steps):
            order = np.argsort(positions)
            copy = _SeriesValues(self.stores).read(np.asarray(steps), positions[order])
            values = self.reduce.reduce(copy, axis=0)
            local = np.empty(positions.size, "int64")
            local[order] = np.arange(positions.size)
        else:
            sel, local = _source_window(self.da, self.grid.order[positions])
            extreme = None
            for k in range(0, len(steps), _EDGE_BATCH):  # memory: a few windows
                sub = self.da.isel(time=steps[k : k + _EDGE_BATCH]).transpose("time", *sel)
                part = self.reduce.reduce(np.asarray(sub.isel(sel).values), axis=0)
                extreme = part if extreme is None else self.reduce(extreme, part, out=extreme)
            assert extreme is not None
            values = extreme.reshape(-1)
        _group_extreme(values, local, starts, present, out.reshape(-1), self.kind == "min")
        return out


class _NativeCells:
    """Native cells of a view, as sorted positions of the cell stores."""

    def __init__(self, positions: np.ndarray):
        self.positions = positions
        self.count = int(positions.size)

    def read(self, arr: Any, lead: Selector | None = None) -> np.ndarray:
        if lead is None:
            return _chunks(arr).read((self.positions,))
        return gather(arr, lead, self.positions)


@dataclasses.dataclass
class _NativeView:
    """Where a view's native cells go in the brute-force answer's layout: ``(y, x)``
    cropped to the rows and columns holding the boxes' cells (others NaN) or the
    boxes' cells in native order (`pipelines.selection.select_bbox`, box after box)."""

    cells: _NativeCells
    place: np.ndarray  # flat index into the answer of each position
    template: xr.DataArray  # the answer's dims and coordinates (no time)
    bounds: tuple[np.ndarray, np.ndarray] | None
    keep: Any = None  # what the view's cache key names, alive while it is kept

    def answer(self, values: np.ndarray, name: str, attrs: dict, **coords: Any) -> xr.DataArray:
        out = np.full(self.template.shape, np.nan, "float32")
        out.ravel()[self.place] = values
        result = self.template.copy(deep=False, data=out).rename(name)
        result.attrs = dict(attrs)
        if coords:
            result = result.assign_coords(coords)
        if self.bounds is not None:
            # the cells' polygons, for drawing (a DataArray cannot hold (cell, nv) coords)
            result.attrs["gridscope_lon_bounds"], result.attrs["gridscope_lat_bounds"] = self.bounds
        return result


#: The decoded time-series chunks of one unit of a view's cells (key, array, view,
#: {chunk: values}), kept for a time player's next steps.
_UNIT: tuple | None = None
_UNIT_LOCK = threading.Lock()
_UNIT_BYTES = 160 * 2**20


class _SeriesValues:
    """The time-series copy's ``values`` (time, position) of a variable: the one reader
    of it (a point or box series' cells, a level's min/max edge steps, a native view's
    steps), reading only the chunks the positions touch (`gather`).

    What it returns is the source's decoded data: a copy stored as a packed source's
    integer codes (`pipelines.timeseries_store.pack_values`: the manifest's
    ``ts_packing``, and the array itself in that integer dtype) goes through
    `pipelines.timeseries_store.decode_values`; a float copy is returned as stored
    (the cell stores' copy is float32 today, `pipelines.build`, even where the manifest
    records a packing for the variable).
    """

    def __init__(self, stores: Any):
        self.arr = stores.array("timeseries", "values")
        self.unit = int(self.arr.chunks[0])  # steps per chunk
        packing = (getattr(stores, "info", None) or {}).get("ts_packing")
        stored = np.dtype(self.arr.dtype)
        self.packing = (
            packing
            if packing and stored.kind in "iu" and stored == np.dtype(packing["dtype"])
            else None
        )

    def _decoded(self, raw: np.ndarray) -> np.ndarray:
        return decode_values(raw, self.packing) if self.packing is not None else raw

    def read(self, lead: Selector, positions: np.ndarray) -> np.ndarray:
        """``values[lead, positions]`` (``positions`` sorted), decoded."""
        return self._decoded(gather(self.arr, lead, positions))

    def read_view(self, view: _NativeView, steps: list[int]) -> np.ndarray:
        """``values[steps, view's cells]``, decoded.

        A chunk holds a unit of steps, all decoded to read one: the chunks decoded for
        one step of a view are kept (one unit of one view, at most `_UNIT_BYTES`), so a
        time player's next steps in that unit decode nothing.
        """
        global _UNIT
        arr = self.arr
        positions = view.cells.positions
        reader = _chunks(arr)
        fast = reader.fast
        if len(steps) != 1 or fast is None or len(reader.chunks) != 2:
            return self.read(np.asarray(steps), positions)
        step, size = int(steps[0]), reader.chunks[0]
        key = (id(view), id(arr), step // size)
        with _UNIT_LOCK:
            kept = _UNIT
        if kept is not None and kept[0] == key and kept[1] is arr and kept[2] is view:
            blocks = kept[3]
        else:
            blocks = {}
        pieces, n = _axis_pieces(positions, reader.shape[1], reader.chunks[1])
        out = np.empty(n, reader.dtype)
        row = step % size

        def fill(piece: tuple) -> None:
            cid, local, where = piece
            block = blocks.get(cid)
            if block is None:
                block = blocks[cid] = fast.chunk((step // size, cid))  # read-only
            out[where] = block[row, local]

        cached = [p for p in pieces if p[0] in blocks]
        missing = [p for p in pieces if p[0] not in blocks]
        if len(missing) > 1:
            list(_pool().map(fill, missing))  # decoded on threads
        elif missing:
            fill(missing[0])
        for piece in cached:
            fill(piece)
        if kept is None or blocks is not kept[3]:
            nbytes = len(blocks) * int(np.prod(reader.chunks)) * reader.dtype.itemsize
            if nbytes <= _UNIT_BYTES:
                with _UNIT_LOCK:
                    _UNIT = (key, arr, view, blocks)
        return self._decoded(out[None])


@numba.njit(cache=True, nogil=True)
def _rect_kernel(order, cand, ncols, r0, r1, c0, c1):  # pragma: no cover  (numba)
    """The rows and columns ``(r0, r1, c0, c1)`` spanned by the cells at positions
    ``cand`` that lie in the given ones, and how many do (one pass, no temporaries)."""
    lo_r, hi_r, lo_c, hi_c, n = r1, r0 - 1, c1, c0 - 1, 0
    inv = 1.0 / ncols
    for k in range(cand.shape[0]):
        flat = order[cand[k]]
        r = int((flat + 0.5) * inv)  # flat // ncols, exact below 2**50 cells
        c = flat - r * ncols
        if r0 <= r < r1 and c0 <= c < c1:
            lo_r, hi_r = min(lo_r, r), max(hi_r, r)
            lo_c, hi_c = min(lo_c, c), max(hi_c, c)
            n += 1
    return lo_r, hi_r + 1, lo_c, hi_c + 1, n


@numba.njit(cache=True, nogil=True)
def _place_kernel(order, pos, ncols, r0, c0, width):  # pragma: no cover  (numba)
    """Flat index in the ``(r0.., c0..)`` window of ``width`` columns of each position."""
    out = np.empty(pos.shape[0], np.int64)
    inv = 1.0 / ncols
    for k in range(pos.shape[0]):
        flat = order[pos[k]]
        r = int((flat + 0.5) * inv)  # flat // ncols, exact below 2**50 cells
        out[k] = (r - r0) * width + (flat - r * ncols - c0)
    return out


@numba.njit(cache=True, nogil=True)
def _rank_kernel(chosen, native):  # pragma: no cover  (numba)
    """Place of each of ``native`` among the chosen cells in native order (the count of
    chosen cells before it), without a cumulative sum over the whole grid."""
    rank = np.empty(chosen.shape[0], np.int64)
    k = 0
    for i in range(chosen.shape[0]):
        rank[i] = k
        if chosen[i]:
            k += 1
    out = np.empty(native.shape[0], np.int64)
    for j in range(native.shape[0]):
        out[j] = rank[native[j]]
    return out


#: A plan's native views kept for the next steps of the same view (most recent last).
_VIEWS: collections.OrderedDict[tuple, _NativeView] = collections.OrderedDict()
_VIEWS_SIZE = 4
_VIEWS_LOCK = threading.Lock()


def _identity(a: np.ndarray | None) -> tuple:
    """What identifies an array's values while it lives: its buffer, shape and strides."""
    if a is None:
        return ()
    return (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)


def _native_view(
    grid: CellGrid,
    da: xr.DataArray,
    boxes: list[tuple[float, float, float, float]],
    bounds: tuple[np.ndarray, np.ndarray] | None,
) -> _NativeView:
    """Where the cells of ``boxes`` go in the brute force's layout (see `_NativeView`).

    Kept for the last few views (keyed by the grid, the boxes and the very coordinate
    and bound arrays, which the entry holds): the next step of a view reads values only,
    and its coordinates are the same arrays, so the drawing finds its cached grid.
    """
    dims = spatial_dims(da)
    shape = tuple(int(da.sizes[d]) for d in dims)
    coords = {name: c for name, c in da.coords.items() if c.dims and set(c.dims) <= set(dims)}
    arrays = {
        name: np.asarray(c.transpose(*(d for d in dims if d in c.dims)).values)
        for name, c in coords.items()
    }
    key = (
        id(grid),
        dims,
        shape,
        tuple(tuple(float(v) for v in box) for box in boxes),
        tuple((name, _identity(a)) for name, a in arrays.items()),
        tuple(_identity(b) for b in bounds) if bounds is not None else None,
    )
    with _VIEWS_LOCK:
        view = _VIEWS.get(key)
        if view is not None:
            _VIEWS.move_to_end(key)
            return view
    view = _make_native_view(grid, dims, shape, boxes, coords, arrays, bounds)
    with _VIEWS_LOCK:
        # the key's buffers stay alive (and unique) while the entry holds them
        view.keep = (grid, arrays, bounds)
        _VIEWS[key] = view
        while len(_VIEWS) > _VIEWS_SIZE:
            _VIEWS.popitem(last=False)
    return view


def _make_native_view(
    grid: CellGrid,
    dims: tuple,
    shape: tuple[int, ...],
    boxes: list[tuple[float, float, float, float]],
    coords: dict[Any, xr.DataArray],
    arrays: dict[Any, np.ndarray],
    bounds: tuple[np.ndarray, np.ndarray] | None,
) -> _NativeView:
    pos: np.ndarray | None = None
    rect: tuple[int, ...] = (0, shape[0], 0, shape[-1])
    for box in boxes:
        cand = grid.box_positions(box)
        if len(dims) == 2:
            *span, kept = _rect_kernel(grid.order, cand, shape[1], *rect)
            if kept == 0:
                raise _no_cell_error(box)
            rect = tuple(int(v) for v in span)
        pos = cand if pos is None else np.intersect1d(pos, cand, assume_unique=True)
        if len(dims) == 1 and pos.size == 0:
            raise _no_cell_error(box)
    if pos is None:
        pos = np.arange(grid.order.size)
    # the answer's coordinates: the spatial ones, cropped (numpy, not through dask)
    if len(dims) == 2:
        window = (slice(rect[0], rect[1]), slice(rect[2], rect[3]))
        place = _place_kernel(grid.order, pos, shape[1], rect[0], rect[2], rect[3] - rect[2])
        cropped: dict[Any, tuple[Any, np.ndarray, dict[Any, Any]]] = {
            name: (dims, arrays[name][window], c.attrs)
            for name, c in coords.items()
            if len(c.dims) == 2
        }
        out_shape: tuple[int, ...] = (rect[1] - rect[0], rect[3] - rect[2])
        if bounds is not None:
            bounds = (bounds[0][window], bounds[1][window])
    else:
        native = grid.order[pos]
        chosen = np.zeros(grid.order.size, bool)
        chosen[native] = True
        cells = np.flatnonzero(chosen)  # native order (no sort)
        place = _rank_kernel(chosen, native)
        # np.take along the cells: ~3x faster than fancy indexing for (cell, nv) bounds
        cropped = {
            name: (c.dims, np.take(arrays[name], cells, axis=0), c.attrs)
            for name, c in coords.items()
        }
        out_shape = (cells.size,)
        if bounds is not None:
            bounds = (np.take(bounds[0], cells, axis=0), np.take(bounds[1], cells, axis=0))
    # assigned, not given to the constructor (which copies every coordinate)
    template = xr.DataArray(np.broadcast_to(np.int8(0), out_shape), dims=dims)
    template = template.assign_coords(cropped)
    return _NativeView(_NativeCells(pos), place, template, bounds)


_NEEDED = {
    "mean": ("sum", "count"),
    "std": ("sum", "sumsq", "count"),
    "min": ("min",),
    "max": ("max",),
}
_BYTES = {
    "sum": 8,
    "sumsq": 4,
    "count": 4,
    "min": 4,
    "max": 4,
}  # sumsq: m2 (sum, count read anyway)
_METHOD = {"mean": "mean", "min": "minimum", "max": "maximum", "std": "standard_deviation"}
#: Aggregate blocks read at once per statistic (bounds the memory of a range map).
_BATCH = 4


def combine_total(totals: dict[str, np.ndarray], name: str, part: np.ndarray) -> None:
    """Add one piece's statistic ``name`` to ``totals`` (min/max ignore NaN, the others
    add), in place."""
    if name not in totals:
        totals[name] = part
    elif name == "min":
        totals[name] = np.fmin(part, totals[name])
    elif name == "max":
        totals[name] = np.fmax(part, totals[name])
    else:
        totals[name] = part + totals[name]


def _moments_into(
    total: dict[str, np.ndarray], block: dict[str, np.ndarray], squares: bool
) -> None:
    """Add a batch of blocks' ``sum``, ``count`` (and ``sumsq``) to ``total`` in place."""
    nb = block["sum"].shape[0]
    shape = block["sum"].shape[1:]
    if "sum" not in total:
        total["sum"] = np.zeros(shape, "float64")
        total["count"] = np.zeros(shape, "int64")
        if squares:
            total["sumsq"] = np.zeros(shape, "float64")
    add_moments(
        total["sum"].reshape(-1),
        total["count"].reshape(-1),
        total["sumsq"].reshape(-1) if squares else np.zeros(0),
        np.ascontiguousarray(block["sum"], "float64").reshape(nb, -1),
        np.ascontiguousarray(block["count"]).reshape(nb, -1),
        np.ascontiguousarray(block["m2"]).reshape(nb, -1) if squares else np.zeros((0, 0)),
    )


@dataclasses.dataclass
class _RangeSource:
    """What a range map reads: one level's aggregates and raw steps over a view's cells."""

    stores: Any
    level: int
    cells: _LevelCells | _NativeCells
    raw: Callable[[list[int]], np.ndarray]  # raw steps (steps, cells) of the field
    table: Any
    #: native cells a raw step reads when not ``cells`` (a level's min/max: `_LevelEdges`)
    edge_cells: Callable[[], int] | None = None

    @functools.cached_property
    def shift(self) -> np.ndarray:
        return self.cells.read(self.stores.array("aggregates", f"L{self.level}/shift"))

    def totals(self, t0: int, t1: int, needed: tuple[str, ...]) -> dict[str, np.ndarray]:
        """``needed`` statistics of steps ``[t0, t1)`` (stored blocks plus raw edge steps),
        the raw steps' statistics and shares of the blocks read at the same time."""
        blocks, steps = decompose_range(t0, t1, self.table)
        flat = sorted(self.table.flat_index(s, b) for s, b in blocks)
        shift = self.shift
        tasks = _task_pool()

        def raw_stats() -> dict[str, np.ndarray]:
            raw = self.raw(steps)
            stats = block_stats(raw, shift, raw.shape[0])
            return {n: stat_of(stats, n)[0] for n in needed}

        def read(stat: str, rows: np.ndarray) -> np.ndarray:
            return self.cells.read(self.stores.array("aggregates", f"L{self.level}/{stat}"), rows)

        # sumsq is rebuilt per block from m2, sum and count (`stat_of`)
        stored = {n for n in needed if n != "sumsq"} | (
            {"sum", "m2", "count"} if "sumsq" in needed else set()
        )

        def share_totals(batches: list[np.ndarray]) -> dict[str, np.ndarray]:
            """Totals over some batches of blocks, each stored array read once; sums,
            counts and sums of squares added in place (`pipelines.aggregates.add_moments`)."""
            total: dict[str, np.ndarray] = {}
            for rows in batches:
                block = {stat: read(stat, rows) for stat in sorted(stored)}
                if "count" in needed:
                    _moments_into(total, block, "sumsq" in needed)
                for name in ("min", "max"):
                    if name in needed:
                        reduce = np.fmin if name == "min" else np.fmax
                        combine_total(total, name, reduce.reduce(block[name], axis=0))
            return total

        batches = [np.asarray(flat[k : k + _BATCH]) for k in range(0, len(flat), _BATCH)]
        shares = min(len(batches), 3)  # the batches in up to 3 interleaved shares
        edge = tasks.submit(raw_stats) if steps else None
        parts = [tasks.submit(share_totals, batches[k::shares]) for k in range(shares)]
        totals: dict[str, np.ndarray] = edge.result() if edge is not None else {}
        for future in parts:
            for name, value in future.result().items():
                combine_total(totals, name, value)
        return totals

    def cost(self, t0: int, t1: int, needed: tuple[str, ...]) -> tuple[int, str]:
        blocks, steps = decompose_range(t0, t1, self.table)
        per_block = sum(_BYTES[n] for n in needed)
        sizes: dict[int, int] = {}
        for s, _ in blocks:
            sizes[s] = sizes.get(s, 0) + 1
        text = ", ".join(f"{n}x{s}" for s, n in sorted(sizes.items(), reverse=True)) or "none"
        nbytes = self.cells.count * len(blocks) * per_block
        edge = f"{len(steps)} raw steps"
        if steps and self.edge_cells is not None:
            nbytes += self.edge_cells() * len(steps) * 4
            edge += f" (of the native cells: {self.edge_cells()})"
        else:
            nbytes += self.cells.count * len(steps) * 4
        return nbytes, f"blocks [{text}] + {edge} for steps {t0}..{t1 - 1}"


def _month_runs(months: np.ndarray, t0: int, t1: int) -> list[tuple[int, int, int]]:
    """``(month, first, stop)`` of each run of steps of one calendar month in ``[t0, t1)``."""
    m = months[t0:t1]
    if m.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(m)) + 1
    starts = np.r_[0, breaks]
    stops = np.r_[breaks, m.size]
    return [(int(m[a]), t0 + int(a), t0 + int(b)) for a, b in zip(starts, stops, strict=True)]


def _climatology(
    src: _RangeSource, months: np.ndarray, b0: int, b1: int, wanted: set[int]
) -> dict[int, np.ndarray]:
    """Each ``wanted`` calendar month's mean over the baseline steps ``[b0, b1)`` in it
    (NaN where none is valid), from the aggregates: as `monthly_climatology`."""
    sums: dict[int, dict[str, np.ndarray]] = {}
    for month, a, b in _month_runs(months, b0, b1):
        if month in wanted:
            part = src.totals(a, b, ("sum", "count"))
            for name, value in part.items():
                combine_total(sums.setdefault(month, {}), name, value)
    out = {}
    for month in wanted:
        tot = sums.get(month)
        if tot is None:
            out[month] = np.full(src.shift.shape, np.nan)
            continue
        count = tot["count"]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[month] = np.where(count > 0, src.shift + tot["sum"] / np.maximum(count, 1), np.nan)
    return out


def _anomaly_totals(
    src: _RangeSource,
    months: np.ndarray,
    t0: int,
    t1: int,
    baseline: tuple[int, int],
    needed: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """Totals of the anomalies ``y = x - clim(month)`` over ``[t0, t1)``, about 0.

    Per run of one month the stored statistics of ``d = x - shift`` become those of
    ``y = d + k`` with ``k = shift - clim``: ``sum y = sum d + k n``, ``sum y^2 = sum d^2 +
    2 k sum d + k^2 n``, ``min y = min x - clim``; a month without a climatology adds
    nothing (its anomalies are NaN, as in the brute force).
    """
    runs = _month_runs(months, t0, t1)
    clim = _climatology(src, months, *baseline, {m for m, _, _ in runs})
    totals: dict[str, np.ndarray] = {}
    for month, a, b in runs:
        part = src.totals(a, b, needed)
        ok = np.isfinite(clim[month])
        c = np.where(ok, clim[month], 0.0)
        if "count" in part:
            k = src.shift - c
            combine_total(totals, "count", np.where(ok, part["count"], 0))
            combine_total(totals, "sum", np.where(ok, part["sum"] + k * part["count"], 0.0))
            if "sumsq" in part:
                sq = part["sumsq"] + 2 * k * part["sum"] + k * k * part["count"]
                combine_total(totals, "sumsq", np.where(ok, sq, 0.0))
        for name in ("min", "max"):
            if name in part:
                combine_total(totals, name, np.where(ok, part[name] - c, np.nan))
    return totals


def _months(da: xr.DataArray) -> np.ndarray | None:
    """Calendar month of each step, or None on an axis without dates."""
    try:
        return np.asarray(da["time"].dt.month.values)
    except (AttributeError, TypeError):
        return None


def plan_cell_map(
    da: xr.DataArray,
    query: Query,
    stores: Any,
    boxes: list[tuple[float, float, float, float]],
    screen: tuple[int, int] | None,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> MapPlanParts | None:
    """A map of a non-regular grid from its derived stores, or None (brute force).

    With a ``screen``, the coarsest pyramid level with at least screen resolution over
    the view (a regular lat-lon answer with ``attrs["gridscope_level"] = k``), else the
    native cells of the view (read by the Z-order tile index: only the cells in the
    boxes). One step comes from the level's field or the cells' time-series copy, a
    range from the temporal aggregates; an anomaly subtracts the baseline's monthly
    climatology, itself from the aggregates. Native answers keep the brute force's
    layout (`pipelines.selection.select_bbox`); for a screen they carry the cells'
    polygons ``bounds`` (cropped) as ``attrs["gridscope_lon_bounds"]`` / ``..lat..``.
    Without a screen a single step is left to brute force.
    """
    if "time" not in da.dims:
        return None
    from pipelines.planner import _region
    from pipelines.pyramid import field_kind, stores_minmax
    from pipelines.selection import range_indices, step_index

    grid = cell_grid(stores.folder)
    single = query.time is not None
    anomaly = query.is_anomaly
    months = _months(da) if anomaly else None
    if anomaly and months is None:
        return None
    level = choose_level(grid, boxes, screen, stores.max_level)
    if anomaly and not single and level and query.agg in ("min", "max"):
        level = 0  # a level's min/max blocks are of its min/max fields, not its means
    if level == 0 and single and screen is None:
        return None
    table = stores.block_table(level)
    if table is None and (anomaly or not single):
        return None
    kind = field_kind(query.agg, single, anomaly)
    attrs = dict(da.attrs)
    attrs["gridscope_level"] = level
    if anomaly:
        attrs["long_name"] = f"{da.attrs.get('long_name', da.name)} anomaly"
    edges: _LevelEdges | None = None
    if level:
        region = _region(grid.level_geometry(level), boxes)
        cells: _LevelCells | _NativeCells = _LevelCells(region)
        lev_cells = cells

        # a min/max's edge steps: the stored field from MINMAX_FROM_LEVEL on, at level 1
        # (no stored per-step min/max field) made from the native cells
        edges = (
            _LevelEdges(grid, level, region, kind, da, stores)
            if kind != "mean" and not stores_minmax(level)
            else None
        )

        def raw(steps: list[int]) -> np.ndarray:
            if edges is not None:
                return edges.read(steps)
            return lev_cells.read(stores.array("pyramid", f"L{level}/{kind}"), np.asarray(steps))

        def result(values: np.ndarray, **coords: Any) -> xr.DataArray:
            return xr.DataArray(
                values,
                dims=("lat", "lon"),
                coords={
                    "lat": ("lat", region.lat, dict(da["lat"].attrs)),
                    "lon": ("lon", region.lon, dict(da["lon"].attrs)),
                    "cell_area": (("lat", "lon"), region.cell_area, dict(da["cell_area"].attrs)),
                },
                name=query.var,
                attrs=attrs,
            )

        where = f"pyramid level {level} of the native cells ({region.lat_index.size}x{region.lon_index.size} cells)"
    else:
        view = _native_view(grid, da, boxes, bounds if screen is not None else None)
        cells = view.cells
        native_cells = view.cells

        def raw(steps: list[int]) -> np.ndarray:
            if stores.has_timeseries:
                return _SeriesValues(stores).read_view(view, steps)
            return _raw_steps(da, grid.order[native_cells.positions], steps)

        def result(values: np.ndarray, **coords: Any) -> xr.DataArray:
            return view.answer(values, query.var, attrs, **coords)

        where = f"the native cells ({cells.count} cells)"
    src = _RangeSource(stores, level, cells, raw, table)
    if level and edges is not None:
        src.edge_cells = lambda: edges.count
    baseline = (
        range_indices(da, query.baseline_start, query.baseline_end, "baseline_start")
        if anomaly
        else (0, 0)
    )

    if single:
        step = step_index(da, str(query.time))

        def run_step() -> xr.DataArray:
            values = raw([step])[0]
            if anomaly:
                assert months is not None
                month = int(months[step])
                values = values - _climatology(src, months, *baseline, {month})[month]
            coords = {} if level else {"time": da["time"].values[step]}
            return result(np.asarray(values, "float32"), **coords)

        nbytes, text = cells.count * 4, f"step {step}"
        if anomaly:
            nbytes, text = _with_baseline(src, baseline, nbytes, text)
        prefix = "" if level else "time-series copy of "
        return f"{prefix}{where}, {text}", int(nbytes), run_step, level

    t0, t1 = range_indices(da, query.start, query.end)
    agg = query.agg
    needed = _NEEDED[agg]
    attrs["cell_methods"] = f"time: {_METHOD[agg]}"

    def run_range() -> xr.DataArray:
        if anomaly:
            assert months is not None
            totals = _anomaly_totals(src, months, t0, t1, baseline, needed)
            return result(finish(agg, totals, np.zeros(src.shift.shape)))
        return result(finish(agg, src.totals(t0, t1, needed), src.shift))

    nbytes, text = src.cost(t0, t1, needed)
    if anomaly:
        nbytes, text = _with_baseline(src, baseline, nbytes, text)
    on = "on" if level else "of"
    return f"temporal aggregates {on} {where}: {text}", int(nbytes), run_range, level


def _with_baseline(
    src: _RangeSource, baseline: tuple[int, int], nbytes: int, text: str
) -> tuple[int, str]:
    """A plan's bytes and words with an anomaly's climatology added."""
    cost, _ = src.cost(*baseline, ("sum", "count"))
    first, stop = baseline
    return nbytes + cost, f"{text}, anomalies against the climatology of steps {first}..{stop - 1}"


def _source_window(da: xr.DataArray, native: np.ndarray) -> tuple[dict[str, slice], np.ndarray]:
    """The source's smallest window holding the native flat indices ``native`` (any
    order), as an ``isel`` of its spatial dims (in order), and their flat indices in it."""
    dims = spatial_dims(da)
    shape = tuple(int(da.sizes[d]) for d in dims)
    if len(dims) == 2:
        rows = native // shape[1]
        cols = native - rows * shape[1]
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        sel = {dims[0]: slice(r0, r1), dims[1]: slice(c0, c1)}
        if (c0, c1) == (0, shape[1]):  # whole rows: the flat index, shifted
            return sel, native - r0 * shape[1]
        return sel, (rows - r0) * (c1 - c0) + (cols - c0)
    lo, hi = int(native.min()), int(native.max()) + 1
    return {dims[0]: slice(lo, hi)}, native - lo


def _raw_steps(da: xr.DataArray, native: np.ndarray, steps: list[int]) -> np.ndarray:
    """The raw values (steps, cells) of the native flat indices ``native`` (any order),
    read from the source's smallest window holding them (before the time-series copy
    is complete)."""
    sel, local = _source_window(da, native)
    sub = da.isel(time=steps).transpose("time", *sel).isel(sel)
    window = np.asarray(sub.values).reshape(len(steps), -1)
    return np.ascontiguousarray(window[:, local])
