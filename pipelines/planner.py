"""The query planner: the cheapest exact plan for a map or a series, from what exists.

`plan_map` and `plan_series` return a `Plan`; nothing is read until `Plan.compute()`.
For every query the planner looks up the derived stores of the dataset
(`pipelines.derived.find_derived`, re-checked cheaply on every call, so levels are used
as soon as a running build completes them) and picks:

- a map of one step: the coarsest pyramid level with at least screen resolution over
  the viewport (level 0 is the raw data);
- a mean/min/max/std map over a time range: that level's temporal aggregates, a
  segment-tree cover of the range by the fewest stored blocks plus raw edge steps
  (at level >= 1 the pyramid's field of those steps: the mean, or for a min/max its
  stored min/max field from `pipelines.pyramid.MINMAX_FROM_LEVEL` (2) on and at level 1
  the raw cells under the view coarsened, 4 per level cell); a mean may read an
  edge's smallest block whole and subtract its steps outside the range (`_signed_cover`);
- a point or region series: the time-series copy (region: quadtree cover by coarse
  blocks plus thin strips, area-weighted in float64);
- anything else (anomalies, nothing built yet): brute force (`compute_map` /
  `compute_series`) on the raw data, or on the chosen pyramid level.

Zoom levels: ``screen=None`` means full resolution (level 0). With a ``screen`` the map
may come back at a coarser pyramid level; a level-``L`` answer is, by definition, the
query evaluated on the level-``L`` dataset (`pipelines.pyramid.level_dataset`: area-weighted
mean field, or the min/max field for a min/max over time). Without derived stores,
a coarser level is only returned where coarsening the full-resolution answer gives
exactly that (single steps, min/max over time); otherwise the map is full resolution.

Derived arrays in a local folder are read chunk by chunk through
`pipelines.chunk_reader` (zarr's own decoder, without its asynchronous read path: a third
to a half of the CPU): a region series decodes each chunk of the time-series copy once
for every cover piece in it, with chunk shapes from the arrays.

Every plan knows the bytes of input it reads (``estimated_bytes``); `Plan.compute`
refuses to start a plan above the budget (``max_bytes`` or ``GRIDSCOPE_MAX_BYTES``)
with a `PlanBudgetError`. The planner keeps no answers: the app's one answer cache
(`app.answer_cache`) keeps them, keyed on the query, the view and the stores' version.
``GRIDSCOPE_MAX_BYTES`` is read here, not passed in, because a plan may run on a Dask
worker (submitted whole), where the app's settings do not exist.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import numba
import numpy as np
import xarray as xr

from pipelines.aggregates import (
    STATS,
    BlockStats,
    BlockTable,
    add_moments,
    block_stats,
    decompose_range,
    finish,
    stat_of,
)
from pipelines.cell_stores import LevelRegrid, combine_total, plan_cell_map, plan_cell_series
from pipelines.chunk_reader import read
from pipelines.derived import VariableStores, find_derived, level_store_name
from pipelines.evaluate import compute_map, compute_series, field_for
from pipelines.pyramid import LevelGrid, coarsen_fields, field_kind, level_grid, stores_minmax
from pipelines.query import Query, QueryError
from pipelines.reductions import anomaly, monthly_climatology, spatial_dims
from pipelines.selection import (
    is_regular,
    nearest_cell,
    nearest_cell_index,
    range_indices,
    select_bbox,
    select_time_range,
    step_index,
)
from pipelines.timeseries_store import cheapest_cover, decode_values, level_sums, lon_runs

__all__ = ["LOCAL_BYTES", "Plan", "PlanBudgetError", "plan_map", "plan_series"]

Viewport = tuple[float, float, float, float]
Screen = tuple[int, int]

#: Coarsest level the fallback (no derived stores) coarsens to.
_FALLBACK_MAX_LEVEL = 6
#: Plans reading less than this run on local threads, not on a distributed cluster
#: (``gridscope export`` starts no cluster for them either).
LOCAL_BYTES = 256 * 10**6


class PlanBudgetError(QueryError):
    """A plan would read more than the configured budget; nothing was read."""

    def __init__(self, estimated: int, budget: int, description: str):
        super().__init__(
            "query",
            f"this view would read {_size_text(estimated)} of data, more than the limit of "
            f"{_size_text(budget)}; choose a shorter time range or a smaller region, or "
            f"build derived stores with 'gridscope build' ({description})",
        )
        self.estimated_bytes = estimated
        self.budget = budget


def _size_text(nbytes: float) -> str:
    """``nbytes`` in words with two decimals of its unit (``0.04 MB``, not ``0.00 GB``)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.2f} {unit}"
    return f"{int(nbytes)} bytes"


@dataclasses.dataclass
class Plan:
    """How a query will be answered; `compute` runs it.

    Attributes
    ----------
    estimated_bytes
        Bytes of input the plan reads (uncompressed).
    description
        Which store, level and blocks it uses, for the user.
    level
        Pyramid level of a map (0 = full resolution); 0 for series.
    """

    description: str
    estimated_bytes: int
    level: int
    _run: Callable[[], xr.DataArray]
    _key: Hashable
    max_bytes: int | None = None

    def compute(self) -> xr.DataArray:
        """The result, in memory (raises `PlanBudgetError` above the budget)."""
        budget = self.max_bytes
        # read here, not passed in: a plan may run on a Dask worker, without the app's settings
        if budget is None and os.environ.get("GRIDSCOPE_MAX_BYTES"):
            budget = _env_budget(os.environ["GRIDSCOPE_MAX_BYTES"])
        if budget is not None and self.estimated_bytes > budget:
            raise PlanBudgetError(self.estimated_bytes, budget, self.description)
        return self._run()


def _env_budget(text: str) -> int:
    """``GRIDSCOPE_MAX_BYTES`` in bytes (the app's size syntax: 2GB, 500MiB, 1e9)."""
    from pipelines.sizes import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise ValueError(f"GRIDSCOPE_MAX_BYTES={exc}") from None


# --------------------------------------------------------------------------- helpers

_GRIDS: dict[tuple, LevelGrid] = {}


def _grid(ds: xr.Dataset, level: int) -> LevelGrid:
    key = (
        str(ds.attrs.get("gridscope_source", id(ds))),
        ds.sizes["lat"],
        ds.sizes["lon"],
        float(ds["lat"][0]),
        float(ds["lon"][0]),
        level,
    )
    grid = _GRIDS.get(key)
    if grid is None:
        base = key[:5] + (0,)
        if base not in _GRIDS:
            _GRIDS[base] = level_grid(
                ds["lat"].values, ds["lon"].values, np.asarray(ds["cell_area"].values), 0
            )
        g0 = _GRIDS[base]
        grid = _GRIDS[key] = level_grid(g0.lat, g0.lon, g0.cell_area, level)
    return grid


@dataclasses.dataclass
class _Region:
    """Cells of one level selected by the query's bbox and the viewport."""

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
        return lon_runs(self.lon_index.tolist())

    @property
    def ncells(self) -> int:
        return self.lat_index.size * self.lon_index.size


def _region(
    grid: LevelGrid | LevelRegrid, bboxes: list[tuple[float, float, float, float]]
) -> _Region:
    da = xr.DataArray(
        np.zeros(grid.shape, "int8"),
        dims=("lat", "lon"),
        coords={
            "lat": grid.lat,
            "lon": grid.lon,
            "ilat": ("lat", np.arange(grid.shape[0])),
            "ilon": ("lon", np.arange(grid.shape[1])),
        },
    )
    for box in bboxes:
        da = select_bbox(da, box)
    ilat, ilon = da["ilat"].values, da["ilon"].values
    return _Region(
        ilat, ilon, da["lat"].values, da["lon"].values, grid.cell_area[np.ix_(ilat, ilon)]
    )


def _bboxes(query: Query, viewport: Viewport | None) -> list[tuple[float, float, float, float]]:
    boxes = []
    if query.bbox is not None:
        boxes.append(query.bbox)
    if viewport is not None:
        x0, x1, y0, y1 = (float(v) for v in viewport)
        if abs(x1 - x0) >= 360.0:  # zoomed out past a whole turn: every longitude
            x0, x1 = -180.0, 180.0
        boxes.append((x0, min(y0, y1), x1, max(y0, y1)))
    return boxes


def _read(arr: Any, lead: Any, lat: slice, runs: list[tuple[int, int]]) -> np.ndarray:
    """Orthogonal read of (lead, lat, lon runs) from a zarr array, lon runs joined."""
    parts = [arr.get_orthogonal_selection((lead, lat, slice(a, b))) for a, b in runs]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


def _read_steps(
    stores: VariableStores,
    store: str,
    path: str,
    steps: list[int],
    lat: slice,
    runs: list[tuple[int, int]],
) -> np.ndarray:
    """Steps ``steps`` of a (time, lat, lon) derived array over (lat, lon runs), lon runs
    joined: one step at a time through `pipelines.chunk_reader` where it reads the array,
    else zarr's orthogonal selection (`_read`)."""
    arr = stores.array(store, path)
    if stores.reader(store, path) is None:
        return _read(arr, steps, lat, runs)
    out = np.empty((len(steps), lat.stop - lat.start, sum(b - a for a, b in runs)), arr.dtype)
    for k, step in enumerate(steps):
        out[k] = _read_runs(stores, store, path, (slice(step, step + 1),), lat, runs)[0]
    return out


def _compute_local(obj: xr.DataArray, nbytes: float) -> xr.DataArray:
    if nbytes < LOCAL_BYTES:
        return obj.compute(scheduler="threads")
    return obj.compute()


def _with_anomaly(selected: xr.DataArray, full: xr.DataArray, query: Query) -> xr.DataArray:
    """Same operations as `pipelines.evaluate` so results are the same numbers."""
    if not query.is_anomaly:
        return selected
    baseline = select_time_range(full, query.baseline_start, query.baseline_end, "baseline_start")
    return anomaly(selected, monthly_climatology(baseline))


def _as_indexer(index: np.ndarray) -> Any:
    """A slice when ``index`` is contiguous (cheap on dask: no take/shuffle over all chunks)."""
    index = np.asarray(index)
    if index.size and np.all(np.diff(index) == 1):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _only_step(da: xr.DataArray, query: Query) -> xr.DataArray:
    """For a single-step query, ``da`` limited to that step and its neighbours.

    Cropping a long (e.g. 350k-step) dask array with index arrays costs seconds of graph
    work per chunk of time; selecting the step first keeps planning in milliseconds.
    The neighbours keep the record's spacing, so the same label selects the same step.
    """
    if query.time is None or query.is_anomaly or "time" not in da.dims:
        return da
    step = step_index(da, query.time)
    return da.isel(time=slice(max(step - 1, 0), step + 2))


def _cropped_dataset(ds: xr.Dataset, da: xr.DataArray, region: _Region, var: str) -> xr.Dataset:
    """``da`` limited to the region's cells (with the region's coordinates), as a dataset."""
    crop = da.isel(lat=_as_indexer(region.lat_index), lon=_as_indexer(region.lon_index))
    crop = crop.assign_coords(lon=("lon", region.lon, dict(da["lon"].attrs)))
    out = xr.Dataset({var: crop}, attrs=dict(ds.attrs))
    return out


def _map_result(
    values: np.ndarray,
    region: _Region,
    da: xr.DataArray,
    query: Query,
    level: int,
    time: Any = None,
) -> xr.DataArray:
    coords: dict[str, Any] = {
        "lat": ("lat", region.lat, dict(da["lat"].attrs)),
        "lon": ("lon", region.lon, dict(da["lon"].attrs)),
        "cell_area": (("lat", "lon"), region.cell_area, dict(da["cell_area"].attrs)),
    }
    if time is not None:
        coords["time"] = time
    attrs = dict(da.attrs)
    if query.time is None and "time" in da.dims:
        name = {"mean": "mean", "min": "minimum", "max": "maximum", "std": "standard_deviation"}
        attrs["cell_methods"] = f"time: {name[query.agg]}"
    attrs["gridscope_level"] = level
    return xr.DataArray(values, dims=("lat", "lon"), coords=coords, name=query.var, attrs=attrs)


def _key(
    ds: xr.Dataset, version: str, what: str, query: Query, viewport: Any, screen: Any
) -> Hashable:
    vp = None if viewport is None else tuple(float(v) for v in viewport)
    sc = None if screen is None else tuple(int(v) for v in screen)
    return (str(ds.attrs.get("gridscope_source", id(ds))), version, what, query, vp, sc)


def _choose_level(n_lat0: int, n_lon0: int, screen: Screen | None, max_level: int) -> int:
    if screen is None:
        return 0
    width, height = (max(int(v), 1) for v in screen)
    level = 0
    for candidate in range(1, max_level + 1):
        s = 2**candidate
        if math.ceil(n_lon0 / s) >= width and math.ceil(n_lat0 / s) >= height:
            level = candidate
        else:
            break
    return level


# --------------------------------------------------------------------------- maps


def _derived_stores(ds: xr.Dataset, var: str, da: xr.DataArray) -> tuple[Any, str]:
    """The derived stores of the variable at the level ``da`` (the query's field) is
    on (None without a build, or when that level was not built) and the version that
    keys cached results ("raw" when nothing is built)."""
    derived = find_derived(ds)
    if derived is None:
        return None, "raw"
    level = None
    if "level" in ds[var].dims:
        if "level" in da.dims or "level" not in da.coords:
            return None, derived.version
        level = float(da["level"].values)
    return derived.variable(level_store_name(var, level)), derived.version


def plan_map(
    ds: xr.Dataset,
    query: Query,
    *,
    viewport: Viewport | None = None,
    screen: Screen | None = None,
    max_bytes: int | None = None,
) -> Plan:
    """Plan the 2-D (lat, lon) map of ``query``.

    Parameters
    ----------
    ds
        Normalised dataset (``data_catalog`` contract).
    query
        The view; ``point`` is ignored, ``bbox`` crops the map.
    viewport
        ``(x0, x1, y0, y1)`` in degrees (lon west, lon east, lat south, lat north);
        ``x0 > x1`` crosses the antimeridian. Crops the map like a bbox.
    screen
        ``(width, height)`` in pixels. The map comes back at the coarsest pyramid level
        with at least this many cells across the viewport; ``None`` means full resolution.
    max_bytes
        Budget of bytes to read; default ``GRIDSCOPE_MAX_BYTES`` (unset: no limit).

    Returns
    -------
    Plan
        ``plan.compute()`` gives the map as an in-memory DataArray with ``lat``, ``lon``,
        ``cell_area`` coordinates and ``attrs["gridscope_level"]``.
    """
    da = field_for(ds, query)
    has_time = "time" in da.dims
    if query.time is not None and not has_time:
        raise QueryError("time", "this dataset has no time axis; leave time empty")
    if not is_regular(da):
        return _plan_native_map(ds, da, query, viewport, screen, max_bytes)
    boxes = _bboxes(query, viewport)
    region0 = _region(_grid(ds, 0), boxes)
    stores, version = _derived_stores(ds, query.var, da)
    key = _key(ds, version, "map", query, viewport, screen)
    single = query.time is not None
    kind = field_kind(query.agg, single, query.is_anomaly)
    step = step_index(da, query.time) if query.time is not None else -1
    t0, t1 = range_indices(da, query.start, query.end) if has_time and not single else (0, 0)

    if stores is not None and has_time:
        level = _choose_level(
            region0.lat_index.size, region0.lon_index.size, screen, stores.max_level
        )
        region = _region(_grid(ds, level), boxes) if level else region0
        table = stores.block_table(level)
        if single and not query.is_anomaly:
            return _plan_step(ds, da, query, region, level, stores, step, key, max_bytes)
        if not single and not query.is_anomaly and table is not None:
            return _plan_aggregates(
                ds, da, query, region, level, stores, kind, t0, t1, key, max_bytes
            )
        if level > 0 and kind in ("min", "max") and not stores_minmax(level):
            # level 1 stores no min/max fields: the level's min/max field over the range
            # is the range's min/max of the raw data, coarsened (fmin/fmax commute)
            return _plan_brute_coarsened(ds, da, query, level, boxes, kind, key, max_bytes, t0, t1)
        if level > 0:
            return _plan_brute_on_level(
                ds, da, query, region, level, stores, kind, key, max_bytes, t0, t1
            )
        return _plan_brute(ds, da, query, region0, 0, key, max_bytes, t0, t1)

    exact_coarsen = not query.is_anomaly and (single or kind in ("min", "max"))
    nx = ds.sizes["lon"]
    max_level = 0
    if exact_coarsen:
        while max_level < _FALLBACK_MAX_LEVEL and nx % 2 ** (max_level + 1) == 0:
            max_level += 1
    level = _choose_level(region0.lat_index.size, region0.lon_index.size, screen, max_level)
    if level == 0:
        return _plan_brute(ds, da, query, region0, 0, key, max_bytes, t0, t1)
    return _plan_brute_coarsened(ds, da, query, level, boxes, kind, key, max_bytes, t0, t1)


def _plan_brute(
    ds: xr.Dataset,
    da: xr.DataArray,
    query: Query,
    region: _Region,
    level: int,
    key: Hashable,
    max_bytes: int | None,
    t0: int,
    t1: int,
) -> Plan:
    nsteps = 1 if query.time is not None else max(t1 - t0, 1)
    if query.is_anomaly:
        nsteps = da.sizes.get("time", 1)
    nbytes = region.ncells * nsteps * da.dtype.itemsize
    cropped = _cropped_dataset(ds, _only_step(da, query), region, query.var)
    q = query.replace(bbox=None, level=None)

    def run() -> xr.DataArray:
        out = _compute_local(compute_map(cropped, q), nbytes)
        out.attrs["gridscope_level"] = level
        return out

    return Plan(
        f"brute force on the raw data (level 0, {region.lat_index.size}x{region.lon_index.size} "
        f"cells, {nsteps} steps)",
        int(nbytes),
        level,
        run,
        key,
        max_bytes,
    )


def _fine_cells(region: _Region, level: int, ny: int, nx: int) -> tuple[slice, list[slice]]:
    """The level-0 cells under a level-``level`` region: its rows, and per run of level
    columns (`_Region.runs`) the run's level-0 columns. Both start on a block edge, and
    only a run's last block can be partial (the grid's last row or column), so
    `coarsen_fields` on each run's cells gives exactly the level's blocks."""
    s = 2**level
    lat = region.lat_slice
    rows = slice(lat.start * s, min(lat.stop * s, ny))
    return rows, [slice(a * s, min(b * s, nx)) for a, b in region.runs]


def _fine_ncells(region: _Region, level: int, ny: int, nx: int) -> int:
    rows, cols = _fine_cells(region, level, ny, nx)
    return (rows.stop - rows.start) * sum(c.stop - c.start for c in cols)


def _coarsen_runs(
    values: np.ndarray, area: np.ndarray, cols: list[slice], level: int, kind: str
) -> np.ndarray:
    """``values`` (..., rows, the runs' columns joined) coarsened to ``level``'s ``kind``
    field run by run (`_fine_cells`), joined again."""
    out, start = [], 0
    for c in cols:
        width = c.stop - c.start
        part = np.ascontiguousarray(values[..., start : start + width])
        out.append(coarsen_fields(part, area[:, start : start + width], level)[-1][kind])
        start += width
    return out[0] if len(out) == 1 else np.concatenate(out, axis=-1)


def _plan_brute_coarsened(
    ds: xr.Dataset,
    da: xr.DataArray,
    query: Query,
    level: int,
    boxes: list,
    kind: str,
    key: Hashable,
    max_bytes: int | None,
    t0: int,
    t1: int,
) -> Plan:
    region = _region(_grid(ds, level), boxes)
    rows, cols = _fine_cells(region, level, ds.sizes["lat"], ds.sizes["lon"])
    lon_fine = np.concatenate([np.arange(c.start, c.stop) for c in cols])
    nsteps = 1 if query.time is not None else max(t1 - t0, 1)
    nbytes = (rows.stop - rows.start) * lon_fine.size * nsteps * da.dtype.itemsize
    crop = _only_step(da, query).isel(lat=rows, lon=_as_indexer(lon_fine))
    crop = crop.assign_coords(lon=("lon", np.arange(lon_fine.size, dtype="float64")))
    fine = xr.Dataset({query.var: crop}, attrs=dict(ds.attrs))
    area = np.asarray(ds["cell_area"].values)[rows][:, lon_fine]
    q = query.replace(bbox=None, level=None)

    def run() -> xr.DataArray:
        full = _compute_local(compute_map(fine, q), nbytes)
        values = _coarsen_runs(np.asarray(full.values), area, cols, level, kind)
        return _map_result(values, region, da, query, level, full.coords.get("time"))

    return Plan(
        f"brute force on the raw data, coarsened exactly to level {level} "
        f"({region.lat_index.size}x{region.lon_index.size} cells)",
        int(nbytes),
        level,
        run,
        key,
        max_bytes,
    )


def _plan_step(
    ds: xr.Dataset,
    da: xr.DataArray,
    query: Query,
    region: _Region,
    level: int,
    stores: VariableStores,
    step: int,
    key: Hashable,
    max_bytes: int | None,
) -> Plan:
    nbytes = region.ncells * 4
    time = da["time"].values[step]
    if level == 0:
        return _plan_brute(ds, da, query, region, 0, key, max_bytes, 0, 0)

    def run() -> xr.DataArray:
        path = f"L{level}/mean"
        values = _read_steps(stores, "pyramid", path, [step], region.lat_slice, region.runs)[0]
        values = values[:, _run_positions(region)]
        return _map_result(values, region, da, query, level, time)

    return Plan(
        f"pyramid level {level} step {step} ({region.lat_index.size}x{region.lon_index.size} cells)",
        int(nbytes),
        level,
        run,
        key,
        max_bytes,
    )


def _run_positions(region: _Region) -> np.ndarray:
    """Columns of a runs-joined read that are the region's (all of them, in order)."""
    return np.arange(region.lon_index.size)


def _plan_aggregates(
    ds: xr.Dataset,
    da: xr.DataArray,
    query: Query,
    region: _Region,
    level: int,
    stores: VariableStores,
    kind: str,
    t0: int,
    t1: int,
    key: Hashable,
    max_bytes: int | None,
) -> Plan:
    table = stores.block_table(level)
    assert table is not None
    agg = query.agg
    blocks, minus_blocks, steps, minus = _signed_cover(t0, t1, table, agg)
    flat = [table.flat_index(s, b) for s, b in blocks]
    flat_minus = [table.flat_index(s, b) for s, b in minus_blocks]
    needed = {
        "mean": ("sum", "count"),
        "std": ("sum", "sumsq", "count"),
        "min": ("min",),
        "max": ("max",),
    }[agg]
    # sumsq is rebuilt from m2 and the sum and count read anyway (`_block_totals`)
    per_cell = {"sum": 8, "sumsq": 4, "count": 4, "min": 4, "max": 4}
    # a min/max's edge steps at level 1 are the raw cells under the region (`_edge_raw`)
    edge_cells = region.ncells
    if level and agg in ("min", "max") and not stores_minmax(level):
        edge_cells = _fine_ncells(region, level, da.sizes["lat"], da.sizes["lon"])
    nbytes = region.ncells * (len(flat) + len(flat_minus)) * sum(per_cell[n] for n in needed)
    nbytes += edge_cells * (len(steps) + len(minus)) * 4

    def run() -> xr.DataArray:
        lat, runs = region.lat_slice, region.runs
        pool = _pool()
        # everything is read concurrently; the edge steps are reduced in one numba pass.
        # The edge task waits on the shift task, submitted before it (FIFO): no deadlock.
        shift_future = pool.submit(_read_2d, stores, f"L{level}/shift", lat, runs)
        edge_future = (
            pool.submit(_edge_stats, da, stores, region, level, agg, steps, shift_future)
            if steps
            else None
        )
        minus_future = (
            pool.submit(_edge_stats, da, stores, region, level, agg, minus, shift_future)
            if minus
            else None
        )
        # the blocks in up to 3 interleaved shares, each share's statistics read once
        shares = min(len(flat), 3)
        block_futures = [
            pool.submit(_block_totals, stores, level, needed, flat[k::shares], lat, runs)
            for k in range(shares)
        ]
        minus_blocks_future = (
            pool.submit(_block_totals, stores, level, needed, flat_minus, lat, runs)
            if flat_minus
            else None
        )
        shift = shift_future.result()
        totals: dict[str, np.ndarray] = {}
        if edge_future is not None:
            stats = edge_future.result()
            totals = {name: stat_of(stats, name)[0] for name in needed}
        for future in block_futures:
            for name, total in future.result().items():
                if name in totals and name in ("sum", "count", "sumsq"):
                    np.add(total, totals[name], out=total)  # what combine_total adds, in place
                    totals[name] = total
                else:
                    combine_total(totals, name, total)
        if minus_future is not None:  # steps of the blocks outside the range, taken out
            stats = minus_future.result()
            for name in needed:
                np.subtract(totals[name], stat_of(stats, name)[0], out=totals[name])
        if minus_blocks_future is not None:  # blocks of larger blocks outside the range
            for name, total in minus_blocks_future.result().items():
                np.subtract(totals[name], total, out=totals[name])
        if agg in ("mean", "std"):
            values = _finish_moments(agg, totals, shift)
        else:
            values = finish(agg, totals, shift)
        return _map_result(values, region, da, query, level)

    def listed(chosen: list[tuple[int, int]]) -> str:
        sizes: dict[int, int] = {}
        for s, _ in chosen:
            sizes[s] = sizes.get(s, 0) + 1
        return ", ".join(f"{n}x{s}" for s, n in sorted(sizes.items(), reverse=True)) or "none"

    return Plan(
        f"temporal aggregates level {level} ({region.lat_index.size}x{region.lon_index.size} cells): "
        f"blocks [{listed(blocks)}]"
        + (f" - blocks [{listed(minus_blocks)}]" if minus_blocks else "")
        + f" + {len(steps)} raw steps"
        + (f" - {len(minus)} raw steps" if minus else "")
        + f" for steps {t0}..{t1 - 1}",
        int(nbytes),
        level,
        run,
        key,
        max_bytes,
    )


#: What reading one smallest aggregate block costs, in raw edge steps, for the
#: aggregations `_signed_cover` may answer as a difference: a mean (sum, count), measured
#: at full resolution on 2 cores (10 GB bench store, chunk_reader): a block ~10 ms, a raw
#: step of the source ~10 ms (dask, CF decoding, then the edge reduction). Never a std:
#: its blocks' m2 is stored as float32, so taking out steps whose squares dwarf what is
#: left (a storm next to calm days) leaves float32 rounding of the whole block as the
#: answer (tests/test_range_outliers.py: 0.46 for a true 0.013); the sums of a mean are
#: float64 sums of float32 values, which subtract exactly.
_BLOCK_COST = {"mean": 1.0}


def _signed_cover(
    t0: int, t1: int, table: BlockTable, agg: str
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[int], list[int]]:
    """`decompose_range` of ``[t0, t1)`` as ``(blocks, minus_blocks, steps, minus)``: for
    a mean, whose statistics (sum, count) subtract exactly, three of the
    four blocks of one larger stored block become that block less the fourth (2 reads
    for 3), and an edge's smallest block is read whole and its steps outside the range
    taken out (``minus``) where that reads less than the edge's raw steps
    (`_BLOCK_COST`): 7 raw steps of an 8-step block become the block less 1 step.
    Min/max (nothing to take out) and std (`_BLOCK_COST`) keep the plain cover."""
    blocks, steps = decompose_range(t0, t1, table)
    if agg not in _BLOCK_COST:
        return blocks, [], steps, []
    plus, minus = _edge_blocks(t0, t1, table, agg, blocks, steps)
    minus_blocks: list[tuple[int, int]] = []
    sizes = table.usable_sizes
    for size, parent in zip(sizes, sizes[1:], strict=False):
        ratio = parent // size
        kids: dict[int, list[int]] = {}
        for s, b in blocks:
            if s == size:
                kids.setdefault(b // ratio, []).append(b)
        for p, inside in sorted(kids.items()):
            if 1 + ratio - len(inside) < len(inside) and p < table.count(parent):
                blocks = [(s, b) for s, b in blocks if s != size or b not in inside]
                blocks.append((parent, p))
                minus_blocks += [
                    (size, k) for k in range(p * ratio, (p + 1) * ratio) if k not in inside
                ]
    return blocks, minus_blocks, plus, minus


def _edge_blocks(
    t0: int,
    t1: int,
    table: BlockTable,
    agg: str,
    blocks: list[tuple[int, int]],
    steps: list[int],
) -> tuple[list[int], list[int]]:
    """The edge steps read (``plus``) and taken out (``minus``) of `_signed_cover`,
    appending the edges' smallest blocks read whole to ``blocks``."""
    base = table.base
    groups: dict[int, list[int]] = {}
    for step in steps:
        groups.setdefault(step // base, []).append(step)
    plus: list[int] = []
    minus: list[int] = []
    for g, inside in sorted(groups.items()):
        outside = [t for t in range(g * base, (g + 1) * base) if not t0 <= t < t1]
        whole = len(inside) + len(outside) == base and g < table.count(base)
        if whole and len(outside) + _BLOCK_COST[agg] < len(inside):
            blocks.append((base, g))
            minus += outside
        else:
            plus += inside
    return plus, minus


def _read_2d(
    stores: VariableStores, path: str, lat: slice, runs: list[tuple[int, int]]
) -> np.ndarray:
    """A 2-D aggregates array ``path`` (the shift) over (lat, lon runs), runs joined."""
    return _read_runs(stores, "aggregates", path, (), lat, runs)


def _read_runs(
    stores: VariableStores,
    store: str,
    path: str,
    lead: tuple[slice, ...],
    lat: slice,
    runs: list[tuple[int, int]],
) -> np.ndarray:
    """``array[lead + (lat, lon run)]`` of a derived array, lon runs joined; whole chunks
    decoded by `pipelines.chunk_reader` where it reads the array (half zarr's CPU)."""
    arr, fast = stores.array(store, path), stores.reader(store, path)
    parts = [read(arr, fast, (*lead, lat, slice(a, b))) for a, b in runs]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads that overlap a range map's reads (zarr decode and numba release the GIL)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gridscope-planner")
    return _POOL


def _block_totals(
    stores: VariableStores,
    level: int,
    names: tuple[str, ...],
    flat: list[int],
    lat: slice,
    runs: list[tuple[int, int]],
) -> dict[str, np.ndarray]:
    """The statistics ``names`` totalled over the stored blocks ``flat``, read one block
    at a time into in-place accumulators (a fraction of the memory of reading them all
    at once); each stored array is read once per block. A mean's or std's ``sum``,
    ``count`` and ``sumsq`` (rebuilt from ``m2``, ``sum`` and ``count``, `stat_of`) are
    added in one numba pass per block (`pipelines.aggregates.add_moments`: numpy's temporaries took ~15 ms
    per full-resolution block, more than decoding it)."""

    def read(stat: str, index: int) -> np.ndarray:
        lead = (slice(index, index + 1),)
        return _read_runs(stores, "aggregates", f"L{level}/{stat}", lead, lat, runs)[0]

    shape = (lat.stop - lat.start, sum(b - a for a, b in runs))
    totals: dict[str, np.ndarray] = {}
    moments = "sum" in names
    if moments:
        totals["sum"] = np.zeros(shape, "float64")
        totals["count"] = np.zeros(shape, "int64")
        if "sumsq" in names:
            totals["sumsq"] = np.zeros(shape, "float64")
    empty = np.zeros(0)
    for index in flat:
        if moments:
            m2 = read("m2", index).reshape(1, -1) if "sumsq" in names else np.zeros((0, 0))
            add_moments(
                totals["sum"].reshape(-1),
                totals["count"].reshape(-1),
                totals["sumsq"].reshape(-1) if "sumsq" in names else empty,
                read("sum", index).reshape(1, -1),
                read("count", index).reshape(1, -1),
                m2,
            )
        for name, op in (("min", np.fmin), ("max", np.fmax)):
            if name in names:
                value = read(name, index)
                if name not in totals:
                    totals[name] = np.array(value, copy=True)
                else:
                    op(totals[name], value, out=totals[name])
    return totals


def _finish_moments(agg: str, totals: dict[str, np.ndarray], shift: np.ndarray) -> np.ndarray:
    """`pipelines.aggregates.finish` of a mean or std, the same float64 operations in one
    numba pass (numpy's ~10 temporaries of a full-resolution map cost 15-20 ms)."""
    total = totals["sum"]
    out = np.empty(total.shape, "float32")
    shape = total.shape
    flat = [np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1) for a in (total, shift)]
    count = np.ascontiguousarray(totals["count"]).reshape(-1)
    squares = np.ascontiguousarray(totals["sumsq"]).reshape(-1) if agg == "std" else np.zeros(0)
    _finish_kernel(agg == "std", flat[1], flat[0], count, squares, out.reshape(-1))
    return out


@numba.njit(cache=True, nogil=True)
def _finish_kernel(std, shift, tsum, tcount, tsumsq, out):  # pragma: no cover - numba
    for k in range(out.size):
        if tcount[k] <= 0:
            out[k] = np.nan
            continue
        mean_d = tsum[k] / np.float64(tcount[k])
        if std:
            var = tsumsq[k] / np.float64(tcount[k]) - mean_d * mean_d
            out[k] = np.sqrt(var if not var < 0.0 else 0.0)
        else:
            out[k] = np.float64(shift[k]) + mean_d


def _edge_stats(
    da: xr.DataArray,
    stores: VariableStores,
    region: _Region,
    level: int,
    agg: str,
    steps: list[int],
    shift: Future,
) -> BlockStats | dict[str, np.ndarray]:
    """Stats of a range's raw edge steps over the region, as one block (leading axis 1).

    The steps are read as stored (float32, no float64 copy) and reduced in one pass by
    the build's numba kernel (float64 accumulators), overlapping the other reads; a
    min/max needs only its own field: numpy's NaN-ignoring fmin/fmax over the steps
    (the same values, ~5x less CPU than the kernel's five statistics).
    """
    raw = _edge_raw(da, stores, region, level, agg, steps)
    if agg in ("min", "max"):
        op = np.fmin if agg == "min" else np.fmax
        return {agg: op.reduce(raw, axis=0, keepdims=True).astype("float32", copy=False)}
    return block_stats(raw, shift.result(), raw.shape[0])


def _edge_raw(
    da: xr.DataArray,
    stores: VariableStores,
    region: _Region,
    level: int,
    agg: str,
    steps: list[int],
) -> np.ndarray:
    """The edge steps of a range over the region (steps, lat, lon): the raw data at
    level 0, the pyramid's stored field at level >= 1 (mean for a mean or std, the
    min/max field for a min/max from `pipelines.pyramid.MINMAX_FROM_LEVEL` on); for a
    min/max at level 1 one field, the steps' min/max of the raw cells under the region
    coarsened to the level (the build stores no per-step min/max fields there: 4 raw
    cells per level cell, where level ``L`` would take ``4**L``)."""
    if level == 0:
        sub = da.isel(
            time=_as_indexer(np.asarray(steps)),
            lat=_as_indexer(region.lat_index),
            lon=_as_indexer(region.lon_index),
        )
        return np.asarray(_compute_local(sub, len(steps) * region.ncells * 4).values)
    if agg in ("min", "max") and not stores_minmax(level):
        rows, cols = _fine_cells(region, level, da.sizes["lat"], da.sizes["lon"])
        lon_fine = np.concatenate([np.arange(c.start, c.stop) for c in cols])
        sub = da.isel(time=_as_indexer(np.asarray(steps)), lat=rows, lon=_as_indexer(lon_fine))
        nbytes = len(steps) * (rows.stop - rows.start) * lon_fine.size * 4
        raw = np.asarray(_compute_local(sub, nbytes).values)
        area = np.asarray(da["cell_area"].values)[rows][:, lon_fine]
        # fmin/fmax commute: the steps' min/max first (one pass), then one field coarsened
        field = {"min": np.fmin, "max": np.fmax}[agg].reduce(raw, axis=0)[None]
        return _coarsen_runs(field, area, cols, level, agg)
    field = agg if agg in ("min", "max") else "mean"
    return _read_steps(stores, "pyramid", f"L{level}/{field}", steps, region.lat_slice, region.runs)


def _level_dataarray(
    ds: xr.Dataset, da: xr.DataArray, stores: VariableStores, level: int, kind: str
) -> xr.Dataset:
    """The pyramid's stored ``kind`` field of ``level`` as a lazy dataset."""
    import dask.array as dsa

    grid = _grid(ds, level)
    arr = stores.array("pyramid", f"L{level}/{kind}")
    data = dsa.from_zarr(arr)
    out = xr.DataArray(
        data,
        dims=("time", "lat", "lon"),
        coords={
            "time": da["time"],
            "lat": ("lat", grid.lat, dict(da["lat"].attrs)),
            "lon": ("lon", grid.lon, dict(da["lon"].attrs)),
            "cell_area": (("lat", "lon"), grid.cell_area, dict(da["cell_area"].attrs)),
        },
        attrs=dict(da.attrs),
    )
    return xr.Dataset({da.name: out}, attrs=dict(ds.attrs))


def _plan_brute_on_level(
    ds: xr.Dataset,
    da: xr.DataArray,
    query: Query,
    region: _Region,
    level: int,
    stores: VariableStores,
    kind: str,
    key: Hashable,
    max_bytes: int | None,
    t0: int,
    t1: int,
) -> Plan:
    """A map on the level's stored ``kind`` field (an anomaly, or a range map before
    the level's aggregates are complete: min/max fields from
    `pipelines.pyramid.MINMAX_FROM_LEVEL` on) by brute force; its bytes those of the
    range ``[t0, t1)`` (an anomaly's: every step, for the climatology)."""
    level_ds = _level_dataarray(ds, da, stores, level, kind)
    plan = _plan_brute(level_ds, level_ds[query.var], query, region, level, key, max_bytes, t0, t1)
    plan.description = f"brute force on pyramid level {level} ({kind} field)"
    return plan


# --------------------------------------------------------------------------- series


def plan_series(ds: xr.Dataset, query: Query, *, max_bytes: int | None = None) -> Plan:
    """Plan the time series of ``query`` (``point``: nearest cell; ``bbox``: area-weighted mean).

    Returns
    -------
    Plan
        ``plan.compute()`` gives a 1-D (time) in-memory DataArray, the same numbers as
        `pipelines.compute_series`.
    """
    da = field_for(ds, query)
    if "time" not in da.dims:
        raise QueryError("var", f"{query.var!r} has no time axis, so it has no time series")
    if query.time is not None:
        raise QueryError("time", "a time series takes start/end, not a single time")
    if query.point is None and query.bbox is None:
        raise QueryError("point", "a time series needs a point (lon,lat) or a bbox (W,S,E,N)")
    if not is_regular(da):
        return _plan_native_series(ds, da, query, max_bytes)
    stores, version = _derived_stores(ds, query.var, da)
    key = _key(ds, version, "series", query, None, None)
    t0, t1 = range_indices(da, query.start, query.end)
    if query.is_anomaly:
        r0, r1 = 0, da.sizes["time"]
    else:
        r0, r1 = t0, t1
    nsteps = r1 - r0
    if stores is None or not stores.has_timeseries:
        region = _region(_grid(ds, 0), [query.bbox]) if query.bbox is not None else None
        ncells = 1 if region is None else region.ncells
        nbytes = ncells * da.sizes["time"] * da.dtype.itemsize

        return _brute_series(
            ds, query, f"brute force on the raw data ({ncells} cells)", nbytes, key, max_bytes
        )

    times = da["time"].isel(time=slice(r0, r1))
    # a packed source's copy holds its integers: decoded as xarray decodes the source
    packing = stores.info.get("ts_packing")
    itemsize = np.dtype(packing["dtype"]).itemsize if packing else 4
    if query.point is not None:
        i, j = nearest_cell(da, query.point)

        def run_point() -> xr.DataArray:
            arr, fast = _ts_array(stores, 0, "values")
            cell = read(arr, fast, (slice(r0, r1), slice(i, i + 1), slice(j, j + 1)))
            values = decode_values(cell[:, 0, 0], packing)
            region_da = xr.DataArray(
                values,
                dims="time",
                coords={"time": times, "lat": da["lat"].values[i], "lon": da["lon"].values[j]},
                attrs=dict(da.attrs),
            )
            return _finish_series(region_da, query, t0, t1, r0)

        return Plan(
            f"time-series copy, cell ({i}, {j}), steps {r0}..{r1 - 1}",
            nsteps * itemsize,
            0,
            run_point,
            key,
            max_bytes,
        )

    assert query.bbox is not None
    region = _region(_grid(ds, 0), [query.bbox])
    ny, nx = ds.sizes["lat"], ds.sizes["lon"]
    i0, i1 = region.lat_slice.start, region.lat_slice.stop
    chunks = {
        lev: tuple(stores.array("timeseries", "values" if lev == 0 else f"L{lev}/mean").chunks[1:])
        for lev in (0, *stores.ts_levels)
    }
    pieces = []
    for a, b in region.runs:
        pieces += cheapest_cover(
            i0, i1, a, b, ny, nx, stores.ts_max_level, chunks, levels=stores.ts_levels
        )
    area0 = _grid(ds, 0).cell_area
    nbytes = nsteps * sum(
        (p[2] - p[1]) * (p[4] - p[3]) * (itemsize if p[0] == 0 else 8) for p in pieces
    )

    def run_region() -> xr.DataArray:
        wsum = np.zeros(nsteps)
        warea = np.zeros(nsteps)
        tasks = _chunk_cells(pieces, stores)
        sums = partial(_chunk_sums, stores, r0, r1, packing, area0)
        for ws, wa in _pool().map(sums, tasks):
            wsum += ws
            warea += wa
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(warea > 0, wsum / np.where(warea > 0, warea, 1.0), np.nan)
        region_da = xr.DataArray(values, dims="time", coords={"time": times}, attrs=dict(da.attrs))
        return _finish_series(region_da, query, t0, t1, r0)

    levels = sorted({p[0] for p in pieces})
    return Plan(
        f"time-series copy, {len(pieces)} pieces at levels {levels}, steps {r0}..{r1 - 1}",
        int(nbytes),
        0,
        run_region,
        key,
        max_bytes,
    )


def _ts_array(stores: VariableStores, level: int, name: str) -> tuple[Any, Any]:
    """A time-series array (``values`` at level 0, a level's ``mean``/``area``) and its
    `pipelines.chunk_reader` reader (None: zarr's read path)."""
    path = "values" if level == 0 else f"L{level}/{name}"
    return stores.array("timeseries", path), stores.reader("timeseries", path)


def _chunk_cells(
    pieces: list[tuple[int, int, int, int, int]], stores: VariableStores
) -> list[tuple[int, int, int, np.ndarray]]:
    """The cells of a region cover's ``pieces``, grouped by (level, spatial chunk):
    ``(level, chunk row, chunk column, flat positions in the chunk cropped to the
    array)``. Each chunk is then decoded once for all the pieces in it (the thin strips
    around a cover's core share chunks: 10-20% fewer decodes on the bench's boxes), its
    chunk shape taken from the array (builds choose their tiles)."""
    cells: dict[tuple[int, int, int], list[np.ndarray]] = {}
    for lev, bi0, bi1, bj0, bj1 in pieces:
        arr = _ts_array(stores, lev, "mean")[0]
        cy, cx = (int(c) for c in arr.chunks[1:])
        nx = int(arr.shape[2])
        for ci in range(bi0 // cy, (bi1 - 1) // cy + 1):
            for cj in range(bj0 // cx, (bj1 - 1) // cx + 1):
                width = min((cj + 1) * cx, nx) - cj * cx
                rows = np.arange(max(bi0, ci * cy), min(bi1, (ci + 1) * cy)) - ci * cy
                cols = np.arange(max(bj0, cj * cx), min(bj1, (cj + 1) * cx)) - cj * cx
                cells.setdefault((lev, ci, cj), []).append((rows[:, None] * width + cols).ravel())
    return [(*key, np.sort(np.concatenate(parts))) for key, parts in cells.items()]


def _chunk_block(arr: Any, fast: Any, window: tuple[slice, slice], a: int, b: int) -> np.ndarray:
    """Steps ``[a, b)`` of a (time, lat, lon) array over the spatial ``window`` (one chunk
    of the level's ``mean``/``values`` array, cropped to the array) as (steps, cells):
    one decoded chunk where the window and steps lie in one chunk of ``arr``, a read of
    the selection otherwise (an array chunked differently, or no fast reader)."""
    ct, cy, cx = (int(c) for c in arr.chunks)
    rows, cols = window
    tk, ci, cj = a // ct, rows.start // cy, cols.start // cx
    one_chunk = (
        fast is not None
        and (b - 1) // ct == tk
        and rows.start % cy == 0
        and cols.start % cx == 0
        and rows.stop <= (ci + 1) * cy
        and cols.stop <= (cj + 1) * cx
    )
    if one_chunk:
        block = fast.chunk((tk, ci, cj))[
            a - tk * ct : b - tk * ct, : rows.stop - rows.start, : cols.stop - cols.start
        ]
    else:
        block = read(arr, fast, (slice(a, b), rows, cols))
    return block.reshape(b - a, -1)


def _chunk_sums(
    stores: VariableStores,
    r0: int,
    r1: int,
    packing: dict[str, Any] | None,
    area0: np.ndarray,
    task: tuple[int, int, int, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted sums and valid areas (float64, steps ``[r0, r1)``) of the cells
    ``task`` names in one spatial chunk of one time-series level, read one time chunk
    at a time: raw values weighted by the cells' areas at level 0, a level's stored
    means and areas (`level_sums`) above it."""
    lev, ci, cj, cells = task
    arr, fast = _ts_array(stores, lev, "mean")
    ct, cy, cx = (int(c) for c in arr.chunks)
    rows = slice(ci * cy, min((ci + 1) * cy, int(arr.shape[1])))
    cols = slice(cj * cx, min((cj + 1) * cx, int(arr.shape[2])))
    wsum, warea = np.zeros(r1 - r0), np.zeros(r1 - r0)
    if lev == 0:
        w = np.asarray(area0[rows, cols], "float64").ravel()[cells]
    else:
        area_arr, area_fast = _ts_array(stores, lev, "area")
    for tk in range(r0 // ct, (r1 - 1) // ct + 1):
        a, b = max(r0, tk * ct), min(r1, (tk + 1) * ct)
        out = slice(a - r0, b - r0)
        if lev == 0:
            x = decode_values(_chunk_block(arr, fast, (rows, cols), a, b)[:, cells], packing)
            missing = np.isnan(x)
            if missing.any():
                x = np.where(missing, x.dtype.type(0), x)
                # the valid cells' area, summed (not total minus missing: all-missing is 0)
                wsum[out] = x.astype("float64") @ w
                warea[out] = (~missing).astype("float64") @ w
            else:
                wsum[out] = x.astype("float64") @ w
                warea[out] = w.sum()
        else:
            mean = _chunk_block(arr, fast, (rows, cols), a, b)[:, cells]
            area = _chunk_block(area_arr, area_fast, (rows, cols), a, b)[:, cells]
            ws, wa = level_sums(mean, area)
            wsum[out] = ws.sum(axis=1)
            warea[out] = wa.sum(axis=1)
    return wsum, warea


# --------------------------------------------------------------------------- other grids

#: Why a non-regular grid is answered by brute force (said in every such plan).
NATIVE_NOTE = "no derived stores built for it ('gridscope build'), or none usable"


def _ncells(da: xr.DataArray) -> int:
    return math.prod(int(da.sizes[d]) for d in spatial_dims(da))


def _plan_native_map(
    ds: xr.Dataset,
    da: xr.DataArray,
    query: Query,
    viewport: Viewport | None,
    screen: Screen | None,
    max_bytes: int | None,
) -> Plan:
    """A map of a rotated, projected, curvilinear or unstructured grid: brute force on
    its native cells, cropped to the bbox and viewport (cells outside masked); from the
    cells' derived stores when built (`pipelines.cell_stores`: a regular lat-lon pyramid
    level when the screen allows, the cells' temporal aggregates for a range)."""
    stores, version = _derived_stores(ds, query.var, da)
    if stores is not None and stores.layout == "cells":
        parts = plan_cell_map(
            da, query, stores, _bboxes(query, viewport), screen, _cell_bounds(ds, da)
        )
        if parts is not None:
            key = _key(ds, version, "map", query, viewport, screen)
            return Plan(parts[0], parts[1], parts[3], parts[2], key, max_bytes)
    crop = _only_step(da, query)
    for box in _bboxes(query, viewport):
        crop = select_bbox(crop, box)
    ncells = _ncells(crop)
    nsteps = 1 if query.time is not None else da.sizes.get("time", 1)
    if query.time is None and not query.is_anomaly and "time" in da.dims:
        t0, t1 = range_indices(da, query.start, query.end)
        nsteps = max(t1 - t0, 1)
    nbytes = ncells * nsteps * da.dtype.itemsize
    cropped = xr.Dataset({query.var: crop}, attrs=dict(ds.attrs))
    q = query.replace(bbox=None, level=None)
    kind = ds.attrs.get("gridscope_grid", "native")

    def run() -> xr.DataArray:
        out = _compute_local(compute_map(cropped, q), nbytes)
        out.attrs["gridscope_level"] = 0
        return out

    why = NATIVE_NOTE if stores is None else "finer than the pyramid's levels, or an anomaly"
    return Plan(
        f"brute force on the native cells of a {kind} grid ({ncells} cells, {nsteps} steps; {why})",
        int(nbytes),
        0,
        run,
        _key(ds, "raw", "map", query, viewport, screen),
        max_bytes,
    )


def _cell_bounds(ds: xr.Dataset, da: xr.DataArray) -> tuple[np.ndarray, np.ndarray] | None:
    """The cells' polygons (``lon_bounds``, ``lat_bounds``: cells + (nv,)) when known."""
    if "lon_bounds" not in ds.variables or "lat_bounds" not in ds.variables:
        return None
    dims = spatial_dims(da)
    lon_b, lat_b = (
        np.asarray(ds[n].transpose(*dims, ...).values) for n in ("lon_bounds", "lat_bounds")
    )
    return lon_b, lat_b


def _plan_native_series(
    ds: xr.Dataset, da: xr.DataArray, query: Query, max_bytes: int | None
) -> Plan:
    """A series on a non-regular grid: from the cells' time-series copy when built
    (`pipelines.cell_stores`), else brute force on its native cells."""
    stores, version = _derived_stores(ds, query.var, da)
    if stores is not None and stores.layout == "cells" and stores.has_timeseries:
        t0, t1 = range_indices(da, query.start, query.end)
        r0, r1 = (0, da.sizes["time"]) if query.is_anomaly else (t0, t1)
        desc, nbytes, run_cells = plan_cell_series(
            da, query, stores, r0, r1, lambda region: _finish_series(region, query, t0, t1, r0)
        )
        key = _key(ds, version, "series", query, None, None)
        return Plan(desc, nbytes, 0, run_cells, key, max_bytes)
    if query.point is not None:
        index = nearest_cell_index(da, query.point)  # a point outside the grid fails here
        where = "cell " + ", ".join(f"{d}={i}" for d, i in index.items())
        ncells = 1
    else:
        assert query.bbox is not None
        ncells = _ncells(select_bbox(da, query.bbox))
        where = f"{ncells} cells"
    nbytes = ncells * da.sizes["time"] * da.dtype.itemsize
    kind = ds.attrs.get("gridscope_grid", "native")
    return _brute_series(
        ds,
        query,
        f"brute force on the native cells of a {kind} grid ({where}; {NATIVE_NOTE})",
        nbytes,
        _key(ds, "raw", "series", query, None, None),
        max_bytes,
    )


def _brute_series(
    ds: xr.Dataset,
    query: Query,
    description: str,
    nbytes: int,
    key: Hashable,
    max_bytes: int | None,
) -> Plan:
    """A series by brute force (`compute_series` on the raw data, any grid)."""

    def run() -> xr.DataArray:
        return _compute_local(compute_series(ds, query), nbytes)

    return Plan(description, int(nbytes), 0, run, key, max_bytes)


def _finish_series(region: xr.DataArray, query: Query, t0: int, t1: int, r0: int) -> xr.DataArray:
    selected = region.isel(time=slice(t0 - r0, t1 - r0))
    out = _with_anomaly(selected, region, query)
    out.name = query.var
    return out


__all__ += ["STATS"]
