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
- ``timeseries.zarr/<var>/L<l>/{wsum,warea}`` (time, ceil(n / 4**l)) float64: per
  aligned block of ``4**l`` consecutive positions and step, the sum of area * value
  and of area over valid cells. A box series takes each selected cell from the
  coarsest block that lies wholly inside the box (`block_cover`), so it reads
  O(perimeter) values per step, and sums in float64;
- ``aggregates.zarr/<var>/L0/{sum,sumsq,count,min,max}`` (block, position) and
  ``L0/shift`` (position): the temporal aggregates of `pipelines.aggregates` per cell.

Map pyramid: levels ``k = 1..max_level`` are regular global lat-lon grids of
``nlat_k x 2 nlat_k`` cells (`pyramid_shapes`: level 1 about twice the native cell
size, each next level about twice as coarse), filled by an area-weighted sparse
regridding matrix per level (`regrid_matrix`, ``cells/regrid_L<k>.npz``, computed once
per grid): **each native cell's whole area goes to the target cell containing its
centre**. We chose this over exact polygon overlaps because (a) the levels are coarser
than the native grid, where a cell straddling a target edge moves at most half a native
cell, (b) it needs no cell polygons (point clouds have none) and no spherical polygon
clipping, and (c) it conserves exactly: a level's area-weighted mean over the globe or
over whole target cells equals the native one, and each matrix row sums to the area
its target cell covers. A level's ``mean`` is the area-weighted mean of the valid
native cells in each target cell, ``min``/``max`` their extremes (NaN where no valid
centre falls). As for regular grids, a level-``k`` answer is the query evaluated on the
level-``k`` dataset; temporal aggregates are stored per level as on regular grids.
Target cells with no native centre (only at levels finer than the native grid
somewhere, e.g. lat-lon cells near the poles of a uniform mesh) are NaN.

Answers are the brute-force ones (`pipelines.evaluate`) on the native cells: the same
cells (box membership by `pipelines.selection.bbox_cell_mask` on the same centres,
nearest cell on the sphere as `pipelines.selection.nearest_cell_index`), the same
statistics up to float rounding (sums in float64; min/max exact).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from data_catalog.grid import EARTH_RADIUS_M, unit_vectors
from pipelines.aggregates import BlockStats, block_stats, decompose_range, finish
from pipelines.query import Query, QueryError
from pipelines.reductions import spatial_dims
from pipelines.selection import bbox_cell_mask, nearest_cell_index, select_bbox

__all__ = [
    "FANOUT",
    "CellGrid",
    "LevelRegrid",
    "block_cover",
    "block_sums",
    "cell_grid",
    "cell_order",
    "level_fields",
    "native_index",
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


def block_cover(mask: np.ndarray, max_level: int, min_level: int = 1) -> list[np.ndarray]:
    """Which blocks of each level cover the positions where ``mask`` is true.

    Returns ``used[l]`` (boolean per level-``l`` block, ``used[0]`` per position): a
    selected position is taken from the coarsest level in ``min_level..max_level``
    whose block lies wholly inside the mask, else from level 0; each selected position
    is covered exactly once. Levels below ``min_level`` are not used: the border of a
    box then reads its raw cells (in the chunks a thin band of blocks would touch
    anyway) instead of thin bands of small blocks at every level.
    """
    full = [np.asarray(mask, bool)]
    for _ in range(max_level):
        prev = full[-1]
        m = -(-prev.size // FANOUT)
        padded = np.ones(m * FANOUT, bool)
        padded[: prev.size] = prev
        full.append(np.asarray(padded.reshape(m, FANOUT).all(axis=1)))
    low = min(max(min_level, 1), max_level) if max_level else 0
    used = [np.zeros(f.size, bool) for f in full]
    covered = np.zeros(0, bool)  # covered blocks of the level above (none above the top)
    for lev in range(max_level, low - 1, -1):
        here = full[lev].copy()
        if covered.size:
            here &= ~_expand(covered, here.size)
        used[lev] = here if lev else full[0]
        covered = here | (_expand(covered, here.size) if covered.size else False)
    if low > 0:
        used[0] = full[0] & ~_expand_levels(covered, low, full[0].size)
    return used


def _expand(parent: np.ndarray, n: int) -> np.ndarray:
    """Each block of the level above repeated for its ``FANOUT`` children (``n`` kept)."""
    out = np.empty((parent.size, FANOUT), bool)
    out[:] = parent[:, None]
    return out.reshape(-1)[:n]


def _expand_levels(blocks: np.ndarray, levels: int, n: int) -> np.ndarray:
    """Level-``levels`` blocks as a mask over ``n`` positions."""
    size = FANOUT**levels
    out = np.empty((blocks.size, size), bool)
    out[:] = blocks[:, None]
    return out.reshape(-1)[:n]


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

    @property
    def lat(self) -> np.ndarray:
        res = 180.0 / self.nlat
        return -90.0 + res * (np.arange(self.nlat) + 0.5)

    @property
    def lon(self) -> np.ndarray:
        res = 180.0 / self.nlat
        return -180.0 + res * (np.arange(2 * self.nlat) + 0.5)


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
    the regridding matrix of each pyramid level (``cells/regrid_L<k>.npz``, columns in
    position order) with ``cells/levels.json``."""
    import json

    from scipy import sparse

    order = cell_order(lon, lat)
    out = Path(folder) / "cells"
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "lon": np.asarray(lon, "float64").ravel()[order],
        "lat": np.asarray(lat, "float64").ravel()[order],
        "area": np.asarray(area, "float64").ravel()[order],
    }
    shapes = pyramid_shapes(arrays["area"], max_level)
    for k, nlat in enumerate(shapes, start=1):
        matrix = regrid_matrix(arrays["lon"], arrays["lat"], arrays["area"], nlat)
        sparse.save_npz(out / f"regrid_L{k}.npz", matrix)
    (out / "levels.json").write_text(json.dumps({"nlat": shapes}))
    for name, arr in (("order", order), *arrays.items()):  # order last: it marks completion
        tmp = out / f".{name}.tmp.npy"
        np.save(tmp, arr)
        tmp.replace(out / f"{name}.npy")


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
        """Pyramid level ``k`` (>= 1), its matrix loaded once."""
        cache = self.__dict__.setdefault("_levels", {})
        if k not in cache:
            from scipy import sparse

            assert self.folder is not None
            matrix = sparse.load_npz(self.folder / "cells" / f"regrid_L{k}.npz").tocsr()
            cache[k] = LevelRegrid(self.level_rows[k - 1], matrix)
        return cache[k]

    @functools.cached_property
    def position(self) -> np.ndarray:
        """Position of each native flat index (the inverse of ``order``)."""
        pos = np.empty_like(self.order)
        pos[self.order] = np.arange(self.order.size)
        return pos

    @functools.cached_property
    def _lat_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Latitude min / max of each run of `TS_CHUNK` positions."""
        n = self.lat.size
        m = -(-n // TS_CHUNK)
        pad = np.full(m * TS_CHUNK, np.nan)
        pad[:n] = self.lat
        runs = pad.reshape(m, TS_CHUNK)
        return np.nanmin(runs, axis=1), np.nanmax(runs, axis=1)

    def box_mask(self, bbox: tuple[float, float, float, float]) -> np.ndarray:
        """`bbox_cell_mask` of the cells (position order), computed only on runs of
        positions whose latitude range reaches the box (the same values, much faster
        for boxes that span a fraction of the latitudes)."""
        _, south, _, north = bbox
        lo, hi = self._lat_ranges
        # margins wider than bbox_cell_mask's tolerance: a run is skipped only when none
        # of its cells can be inside
        runs = np.flatnonzero((hi >= south - 1e-6) & (lo <= north + 1e-6))
        mask = np.zeros(self.lat.size, bool)
        if runs.size == 0:
            return mask
        breaks = np.flatnonzero(np.diff(runs) > 1) + 1
        for part in np.split(runs, breaks):
            a, b = int(part[0]) * TS_CHUNK, min((int(part[-1]) + 1) * TS_CHUNK, self.lat.size)
            mask[a:b] = bbox_cell_mask(self.lon[a:b], self.lat[a:b], bbox)
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


def native_index(da: xr.DataArray, boxes: list[tuple[float, float, float, float]]) -> xr.DataArray:
    """The native flat index of each cell of ``da`` cropped like `select_bbox` does for
    each box in turn (float64, NaN where a cropped (y, x) grid is masked)."""
    template = da.isel(time=0, drop=True) if "time" in da.dims else da
    dims = spatial_dims(template)
    shape = tuple(int(template.sizes[d]) for d in dims)
    index = np.arange(int(np.prod(shape)), dtype="float64").reshape(shape)
    out = xr.DataArray(index, dims=dims, coords=template.coords)
    for box in boxes:
        out = select_bbox(out, box)
    return out


# ------------------------------------------------------------------------------ reading

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gridscope-cells")
    return _POOL


_LEVEL_POOL: ThreadPoolExecutor | None = None
#: Coarsest-first block levels used by box series start here (see `block_cover`).
_MIN_SERIES_LEVEL = 3


def _level_pool() -> ThreadPoolExecutor:
    """Threads reading a box series' levels at once (each read uses `_pool` for its
    chunk runs, so the two pools are separate: no thread waits on its own pool)."""
    global _LEVEL_POOL
    if _LEVEL_POOL is None:
        _LEVEL_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gridscope-levels")
    return _LEVEL_POOL


def _chunk_runs(positions: np.ndarray, chunk: int) -> list[tuple[int, int, int, int]]:
    """Runs of consecutive chunks touched by sorted ``positions``:
    ``(first chunk, end chunk, first index into positions, end index)``."""
    if positions.size == 0:
        return []
    cid = positions // chunk
    breaks = np.flatnonzero(np.diff(cid) > 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [positions.size]])
    return [
        (int(cid[a]), int(cid[b - 1]) + 1, int(a), int(b))
        for a, b in zip(starts, ends, strict=True)
    ]


def gather(arr: Any, lead: Any, positions: np.ndarray) -> np.ndarray:
    """``arr[lead, positions]`` for sorted ``positions``, reading only the chunks they
    touch (one read per run of consecutive chunks, runs read on threads)."""
    chunk = int(arr.chunks[-1])
    n = int(arr.shape[-1])
    runs = _chunk_runs(positions, chunk)

    def read(run: tuple[int, int, int, int]) -> np.ndarray:
        c0, c1, a, b = run
        lo, hi = c0 * chunk, min(c1 * chunk, n)
        part = arr.get_orthogonal_selection((lead, slice(lo, hi)))
        return part[..., positions[a:b] - lo]

    parts = list(_pool().map(read, runs)) if len(runs) > 1 else [read(r) for r in runs]
    if not parts:
        lead_n = (
            len(range(*lead.indices(int(arr.shape[0])))) if isinstance(lead, slice) else len(lead)
        )
        return np.empty((lead_n, 0), arr.dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


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
    range and applies an anomaly. Returns (description, bytes read, run).
    """
    grid = cell_grid(stores.folder)
    times = da["time"].isel(time=slice(r0, r1))
    nsteps = r1 - r0
    if query.point is not None:
        pos = grid.nearest(query.point)
        if pos is None:
            nearest_cell_index(da, query.point)  # raises the grid's own message
            raise QueryError("point", "this point is outside the grid's cells")
        native = int(grid.order[pos])
        dims = spatial_dims(da)
        index = np.unravel_index(native, tuple(int(da.sizes[d]) for d in dims))

        def run_point() -> xr.DataArray:
            values = stores.array("timeseries", "values")[r0:r1, pos]
            cell = da.isel({d: int(i) for d, i in zip(dims, index, strict=True)})
            coords = {k: v for k, v in cell.coords.items() if "time" not in v.dims}
            out = xr.DataArray(
                values, dims="time", coords={"time": times, **coords}, attrs=dict(da.attrs)
            )
            return finish_series(out)

        where = ", ".join(f"{d}={int(i)}" for d, i in zip(dims, index, strict=True))
        return (
            f"time-series copy of the native cells, cell {where}, steps {r0}..{r1 - 1}",
            nsteps * 4,
            run_point,
        )

    assert query.bbox is not None
    mask = grid.box_mask(query.bbox)
    if not mask.any():
        select_bbox(da, query.bbox)  # raises the no-cell message
    used = block_cover(mask, stores.ts_max_level, _MIN_SERIES_LEVEL)
    picks = [np.flatnonzero(u) for u in used]
    nread = sum(p.size * (1 if lev == 0 else 4) for lev, p in enumerate(picks))

    def level_sums(lev: int) -> tuple[np.ndarray, np.ndarray]:
        idx = picks[lev]
        if idx.size == 0:
            return np.zeros(nsteps), np.zeros(nsteps)
        if lev == 0:
            x = gather(stores.array("timeseries", "values"), slice(r0, r1), idx)
            w = grid.area[idx]
            missing = np.isnan(x)
            if missing.any():
                x = np.where(missing, np.float32(0), x)
                return x.astype("float64") @ w, (~missing).astype("float64") @ w
            return x.astype("float64") @ w, np.full(nsteps, w.sum())
        ws = gather(stores.array("timeseries", f"L{lev}/wsum"), slice(r0, r1), idx)
        wa = gather(stores.array("timeseries", f"L{lev}/warea"), slice(r0, r1), idx)
        return ws.sum(axis=1), wa.sum(axis=1)

    def run_box() -> xr.DataArray:
        wsum = np.zeros(nsteps)
        warea = np.zeros(nsteps)
        levels = [lev for lev, p in enumerate(picks) if p.size]
        for ws, wa in _level_pool().map(level_sums, levels):
            wsum += ws
            warea += wa
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(warea > 0, wsum / np.where(warea > 0, warea, 1.0), np.nan)
        out = xr.DataArray(values, dims="time", coords={"time": times}, attrs=dict(da.attrs))
        return finish_series(out)

    counts = ", ".join(f"L{lev}: {p.size}" for lev, p in enumerate(picks) if p.size)
    return (
        f"time-series copy of the native cells, {int(mask.sum())} cells as blocks [{counts}], "
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


@dataclasses.dataclass
class _LevelRegion:
    lat_index: np.ndarray
    lon_index: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    cell_area: np.ndarray

    @property
    def lat_slice(self) -> slice:
        return slice(int(self.lat_index[0]), int(self.lat_index[-1]) + 1)

    @property
    def runs(self) -> list[tuple[int, int]]:
        from pipelines.timeseries_store import lon_runs

        return lon_runs(self.lon_index.tolist())


def _level_region(
    level: LevelRegrid, boxes: list[tuple[float, float, float, float]]
) -> _LevelRegion:
    da = xr.DataArray(
        np.zeros(level.shape, "int8"),
        dims=("lat", "lon"),
        coords={
            "lat": level.lat,
            "lon": level.lon,
            "ilat": ("lat", np.arange(level.shape[0])),
            "ilon": ("lon", np.arange(level.shape[1])),
        },
    )
    for box in boxes:
        da = select_bbox(da, box)
    ilat, ilon = da["ilat"].values, da["ilon"].values
    area = level.covered_area[np.ix_(ilat, ilon)]
    return _LevelRegion(ilat, ilon, da["lat"].values, da["lon"].values, area)


def _read_level(arr: Any, lead: Any, region: _LevelRegion) -> np.ndarray:
    parts = [
        arr.get_orthogonal_selection((lead, region.lat_slice, slice(a, b))) for a, b in region.runs
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


def _combine_totals(totals: dict[str, np.ndarray], name: str, part: np.ndarray) -> None:
    if name not in totals:
        totals[name] = part
    elif name == "min":
        totals[name] = np.fmin(part, totals[name])
    elif name == "max":
        totals[name] = np.fmax(part, totals[name])
    else:
        totals[name] = part + totals[name]


_NEEDED = {
    "mean": ("sum", "count"),
    "std": ("sum", "sumsq", "count"),
    "min": ("min",),
    "max": ("max",),
}
_BYTES = {"sum": 8, "sumsq": 8, "count": 4, "min": 4, "max": 4}
_METHOD = {"mean": "mean", "min": "minimum", "max": "maximum", "std": "standard_deviation"}


def plan_cell_map(
    da: xr.DataArray,
    query: Query,
    stores: Any,
    boxes: list[tuple[float, float, float, float]],
    screen: tuple[int, int] | None,
) -> MapPlanParts | None:
    """A map of a non-regular grid from its derived stores, or None (brute force).

    With a ``screen``, the coarsest pyramid level with at least screen resolution over
    the view (a regular lat-lon answer with ``attrs["gridscope_level"] = k``): one step
    from the level's field, a range from its temporal aggregates. Finer than level 1
    (or without a screen): a range map from the native cells' aggregates; a single step
    is left to brute force on the native cells of the view.
    """
    if "time" not in da.dims or query.is_anomaly:
        return None
    from pipelines.pyramid import field_kind
    from pipelines.selection import range_indices, step_index

    grid = cell_grid(stores.folder)
    single = query.time is not None
    level = choose_level(grid, boxes, screen, stores.max_level)
    if level == 0:
        if single:
            return None
        t0, t1 = range_indices(da, query.start, query.end)
        parts = plan_cell_range_map(da, query, stores, boxes, t0, t1)
        return None if parts is None else (*parts, 0)
    lev = grid.level(level)
    region = _level_region(lev, boxes)
    kind = field_kind(query.agg, single, False)
    ncells = region.lat_index.size * region.lon_index.size
    attrs = dict(da.attrs)
    attrs["gridscope_level"] = level

    def result(values: np.ndarray) -> xr.DataArray:
        coords = {
            "lat": ("lat", region.lat, dict(da["lat"].attrs)),
            "lon": ("lon", region.lon, dict(da["lon"].attrs)),
            "cell_area": (("lat", "lon"), region.cell_area, dict(da["cell_area"].attrs)),
        }
        return xr.DataArray(values, dims=("lat", "lon"), coords=coords, name=query.var, attrs=attrs)

    where = f"pyramid level {level} of the native cells ({region.lat_index.size}x{region.lon_index.size} cells"
    if query.time is not None:
        step = step_index(da, query.time)

        def run_step() -> xr.DataArray:
            arr = stores.array("pyramid", f"L{level}/{kind}")
            return result(_read_level(arr, step, region))

        return f"{where}), step {step}", ncells * 4, run_step, level
    table = stores.block_table(level)
    if table is None:
        return None
    t0, t1 = range_indices(da, query.start, query.end)
    blocks, steps = decompose_range(t0, t1, table)
    flat = [table.flat_index(s, b) for s, b in blocks]
    agg = query.agg
    needed = _NEEDED[agg]
    nbytes = ncells * (len(flat) * sum(_BYTES[n] for n in needed) + len(steps) * 4)
    attrs["cell_methods"] = f"time: {_METHOD[agg]}"

    def run_range() -> xr.DataArray:
        shift_arr = stores.array("aggregates", f"L{level}/shift")
        parts = [shift_arr[region.lat_slice, a:b] for a, b in region.runs]
        shift = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
        totals: dict[str, np.ndarray] = {}
        if steps:
            raw = _read_level(stores.array("pyramid", f"L{level}/{kind}"), steps, region)
            stats = block_stats(raw, shift, raw.shape[0])
            totals = {n: getattr(stats, n)[0] for n in needed}
        if flat:
            futures = {
                n: _pool().submit(
                    _read_level, stores.array("aggregates", f"L{level}/{n}"), flat, region
                )
                for n in needed
            }
            for n, fut in futures.items():
                part = fut.result()
                op = {"min": np.fmin, "max": np.fmax}.get(n)
                if op is not None:
                    part = op.reduce(part, axis=0)
                else:
                    part = part.sum(axis=0, dtype="int64" if n == "count" else "float64")
                _combine_totals(totals, n, part)
        return result(finish(agg, totals, shift))

    sizes: dict[int, int] = {}
    for s, _ in blocks:
        sizes[s] = sizes.get(s, 0) + 1
    text = ", ".join(f"{n}x{s}" for s, n in sorted(sizes.items(), reverse=True)) or "none"
    return (
        f"temporal aggregates on {where}): blocks [{text}] + {len(steps)} raw steps for steps "
        f"{t0}..{t1 - 1}",
        int(nbytes),
        run_range,
        level,
    )


def plan_cell_range_map(
    da: xr.DataArray,
    query: Query,
    stores: Any,
    boxes: list[tuple[float, float, float, float]],
    t0: int,
    t1: int,
) -> PlanParts | None:
    """A mean/min/max/std map over steps ``[t0, t1)`` of a non-regular grid's native cells
    (cropped to ``boxes`` like `select_bbox`) from the temporal aggregates; None when
    no aggregate block is usable."""
    table = stores.block_table(0)
    if table is None:
        return None
    grid = cell_grid(stores.folder)
    template = native_index(da, boxes)
    flat_index = template.values
    valid = np.isfinite(flat_index)
    native = flat_index[valid].astype("int64")
    pos = grid.position[native]
    sort = np.argsort(pos, kind="stable")
    pos_sorted = pos[sort]
    blocks, steps = decompose_range(t0, t1, table)
    flat = [table.flat_index(s, b) for s, b in blocks]
    agg = query.agg
    needed = {
        "mean": ("sum", "count"),
        "std": ("sum", "sumsq", "count"),
        "min": ("min",),
        "max": ("max",),
    }[agg]
    per_cell = {"sum": 8, "sumsq": 8, "count": 4, "min": 4, "max": 4}
    nbytes = pos.size * (len(flat) * sum(per_cell[n] for n in needed) + len(steps) * 4)

    def total(name: str) -> np.ndarray:
        arr = stores.array("aggregates", f"L0/{name}")
        op = {"min": np.fmin, "max": np.fmax}.get(name, np.add)
        out: np.ndarray | None = None
        for index in flat:
            block = gather(arr, [index], pos_sorted)[0]
            if out is None:
                out = block.astype(
                    {"count": "int64", "min": block.dtype, "max": block.dtype}.get(name, "float64")
                )
            else:
                op(out, block, out=out)
        assert out is not None
        return out

    def run() -> xr.DataArray:
        shift = stores.array("aggregates", "L0/shift").get_orthogonal_selection((pos_sorted,))
        totals: dict[str, np.ndarray] = {}
        if steps:
            raw = _raw_steps(da, native[sort], steps)
            stats: BlockStats = block_stats(raw, shift, raw.shape[0])
            totals = {n: getattr(stats, n)[0] for n in needed}
        for name in needed if flat else ():
            part = total(name)
            if name not in totals:
                totals[name] = part
            elif name == "min":
                totals[name] = np.fmin(part, totals[name])
            elif name == "max":
                totals[name] = np.fmax(part, totals[name])
            else:
                totals[name] = part + totals[name]
        values_sorted = finish(agg, totals, shift)
        values = np.empty(pos.size, "float32")
        values[sort] = values_sorted
        out = np.full(flat_index.shape, np.nan, "float32")
        out[valid] = values
        attrs = dict(da.attrs)
        attrs["cell_methods"] = f"time: {_METHOD[agg]}"
        attrs["gridscope_level"] = 0
        return xr.DataArray(
            out, dims=template.dims, coords=template.coords, name=query.var, attrs=attrs
        )

    sizes: dict[int, int] = {}
    for s, _ in blocks:
        sizes[s] = sizes.get(s, 0) + 1
    text = ", ".join(f"{n}x{s}" for s, n in sorted(sizes.items(), reverse=True)) or "none"
    return (
        f"temporal aggregates of the native cells ({pos.size} cells): blocks [{text}] + "
        f"{len(steps)} raw steps for steps {t0}..{t1 - 1}",
        int(nbytes),
        run,
    )


def _raw_steps(da: xr.DataArray, native: np.ndarray, steps: list[int]) -> np.ndarray:
    """The raw values (steps, cells) of the native flat indices ``native`` (any order),
    read from the source's smallest window holding them."""
    dims = spatial_dims(da)
    shape = tuple(int(da.sizes[d]) for d in dims)
    sub = da.isel(time=steps).transpose("time", *dims)
    if len(dims) == 2:
        rows, cols = np.unravel_index(native, shape)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        window = np.asarray(sub.isel({dims[0]: slice(r0, r1), dims[1]: slice(c0, c1)}).values)
        return np.ascontiguousarray(window[:, rows - r0, cols - c0])
    lo, hi = int(native.min()), int(native.max()) + 1
    window = np.asarray(sub.isel({dims[0]: slice(lo, hi)}).values)
    return np.ascontiguousarray(window[:, native - lo])
