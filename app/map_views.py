"""Maps as a plot shows them: a viewport and a screen size, on every kind of grid.

`map_for_view` / `start_map_view` answer "the map of this query as seen in this view":
a small regular grid's whole map cropped and coarsened in-process (`regrid_to_screen`),
a large one through the planner at about screen resolution, a non-regular grid's view
from its derived stores or its native cells drawn at screen resolution
(`app.rasterize`). `view_request` rounds a view so that nearly equal views share an
answer in the cache; `resolution_text` says what resolution a map is shown at.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from app import limits
from app.answers import answer_key_for, planner, start_map
from app.costs import estimated_input_bytes
from app.jobs import Job
from pipelines import Query, QueryError, compute_map

__all__ = [
    "is_regular_grid",
    "is_small_grid",
    "map_for_view",
    "regrid_to_screen",
    "resolution_text",
    "small_grid_cells",
    "start_map_view",
    "view_request",
]


def small_grid_cells() -> int:
    """Grids of at most this many cells (``GRIDSCOPE_SMALL_GRID_CELLS``, default 600k) are small.

    A small grid's map (the bundled samples: COADS 180x90, ETOPO20 1081x540) is kept whole
    in memory and cropped/coarsened in-process: panning and zooming then cost no new job.
    Larger grids (a 0.25° reanalysis: 1440x721) are read through the planner for the
    viewport at screen resolution, so a frame reads about one screen of cells at any zoom.
    """
    from app.runtime import current

    return current().settings.small_grid_cells


def is_small_grid(ds: xr.Dataset) -> bool:
    """Whether maps of ``ds`` are kept whole in memory (see `small_grid_cells`).

    Never for a grid that is not regular: its map is drawn for each view (`start_map_view`).
    """
    if not is_regular_grid(ds):
        return False
    return int(ds.sizes.get("lat", 1)) * int(ds.sizes.get("lon", 1)) <= small_grid_cells()


def is_regular_grid(ds: xr.Dataset) -> bool:
    """Whether ``ds`` is on a regular lat-lon grid (``attrs["gridscope_grid"]``, default yes)."""
    return str(ds.attrs.get("gridscope_grid", "") or "regular") == "regular"


def _native_map(ds: xr.Dataset, query: Query) -> Job:
    """The map of a non-regular grid on its native cells (brute force: one frame's cells)."""
    from app.runtime import current

    runtime = current()
    key = answer_key_for(ds, "map", query.to_json())
    cached = runtime.cache.get(key)
    if cached is not None:
        return Job(None, 0, key=key, value=cached, runtime=runtime)
    lazy = compute_map(ds, query)
    frame = int(np.prod([ds.sizes[d] for d in ds["lon"].dims])) * ds[query.var].dtype.itemsize
    size = max(estimated_input_bytes(ds, query), frame)  # at least one frame of cells
    limits.check_cost(size)
    return Job(lazy, size, runtime.client, key=key, runtime=runtime)


def _stored_view(
    plan: Any,
    frame: tuple[float, float, float, float] | None,
    screen: tuple[int, int],
    shift: float,
    key: str,
) -> Job:
    """A non-regular grid's view from its derived stores: a regular pyramid level (moved
    under the plot by ``shift``) or the view's native cells, rasterized."""
    from app.rasterize import rasterize_to_screen
    from app.runtime import current

    size = int(getattr(plan, "estimated_bytes", 0))
    limits.check_cost(size)

    def run() -> xr.DataArray:
        field = plan.compute()
        if "lat" in field.dims and "lon" in field.dims:
            if shift:
                lon = ("lon", field["lon"].values + shift, dict(field["lon"].attrs))
                field = field.assign_coords(lon=lon)
            field.attrs["gridscope_plan"] = plan.description
            return field
        # the view's cells' polygons, handed over beside the field (not kept in answers)
        bounds = {name: field.attrs.pop(f"gridscope_{name}")
                  for name in ("lon_bounds", "lat_bounds") if f"gridscope_{name}" in field.attrs}  # fmt: skip
        out = rasterize_to_screen(field, frame, screen, **(bounds if len(bounds) == 2 else {}))
        # what the stores answered, then how it was drawn (the status line says "from the
        # fast-access stores" after a build)
        out.attrs["gridscope_plan"] = (
            f"{plan.description}; {field.size:,} native cells drawn at screen resolution"
        )
        return out

    return Job(run, size, current().client, key=key)


def _rasterized_view(
    ds: xr.Dataset,
    query: Query,
    viewport: tuple[float, float, float, float] | None,
    screen: tuple[int, int] | None,
) -> Job:
    """The map of a non-regular grid drawn for a view: its native map, rasterized.

    The native map (cells on ``(y, x)`` or ``(cell,)``) is one cached job; each view
    draws it at screen resolution in geographic coordinates (`app.rasterize`), in the
    plot's own frame (longitudes past 180 on a Pacific-centred map).
    """
    from app.rasterize import rasterize_to_screen

    vp = None
    if viewport is not None and view_request(viewport, screen)[0] is not None:
        x0, x1, y0, y1 = (float(v) for v in viewport)
        padx, pady = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
        vp = (round(x0 - padx, 3), round(x1 + padx, 3),
              round(max(y0 - pady, -90.0), 3), round(min(y1 + pady, 90.0), 3))  # fmt: skip
    sc = _screen(screen) or (700, 350)
    key = answer_key_for(ds, "raster", query.to_json(), vp, sc)
    cached = _cached(key)
    if cached is not None:
        return cached
    plans = planner()
    wrapped, _sc, shift = view_request(viewport, sc)
    if plans is not None and wrapped is not None:
        try:
            plan = plans.plan_map(ds, query, viewport=wrapped, screen=sc)
        except QueryError:
            # no cell in this view (a regional grid panned away from its domain): the
            # whole grid's answer drawn in the view, an empty picture; when the query's
            # own box holds no cell this raises that error, in the user's words
            plan = plans.plan_map(ds, query, screen=sc)
        if not str(getattr(plan, "description", "")).startswith("brute force"):
            return _stored_view(plan, vp, sc, shift, key)  # built stores answer this view
    native = _native_map(ds, query)
    cells = ds
    if query.bbox is not None:  # the native map holds the box's cells only (an API request)
        from pipelines.selection import native_bbox_indexer

        cells = ds.isel(native_bbox_indexer(ds, query.bbox)[0])
    bounds = {name: np.asarray(cells[name].values)
              for name in ("lon_bounds", "lat_bounds") if name in cells.variables}  # fmt: skip

    def run() -> xr.DataArray:
        field = native.result()
        out = rasterize_to_screen(field, vp, sc, **(bounds if len(bounds) == 2 else {}))
        out.attrs["gridscope_plan"] = f"{field.size:,} native cells drawn at screen resolution"
        return out

    return Job(run, native.input_bytes, None, key=key)  # the native job picks its own place


def view_request(
    viewport: tuple[float, float, float, float] | None, screen: tuple[int, int] | None
) -> tuple[tuple[float, float, float, float] | None, tuple[int, int] | None, float]:
    """``(viewport, screen, shift)`` to ask the planner for what a plot shows.

    The viewport gets a 5 % margin (a small pan needs no new frame), is clipped to the
    globe and wrapped into -180..180 (``x0 > x1`` when it crosses the antimeridian);
    ``shift`` (a multiple of 360) moves the answer's longitudes back under the plot's
    x range. Values are rounded so that nearly equal views share a cache entry.
    """
    if viewport is None:
        return None, _screen(screen), 0.0
    x0, x1, y0, y1 = (float(v) for v in viewport)
    if not all(np.isfinite([x0, x1, y0, y1])) or x1 <= x0 or y1 <= y0:
        return None, _screen(screen), 0.0
    padx, pady = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
    y0, y1 = max(y0 - pady, -90.0), min(y1 + pady, 90.0)
    if y1 <= y0:
        y0, y1 = -90.0, 90.0
    a, b = x0 - padx, x1 + padx
    if b - a >= 360.0:
        return (-180.0, 180.0, round(y0, 3), round(y1, 3)), _screen(screen), 0.0
    wrapped = ((a + 180.0) % 360.0) - 180.0
    shift = a - wrapped
    east = wrapped + (b - a)
    if east > 180.0:
        east -= 360.0
    return (
        (round(wrapped, 3), round(east, 3), round(y0, 3), round(y1, 3)),
        _screen(screen),
        round(shift / 360.0) * 360.0,
    )


def _screen(screen: tuple[int, int] | None) -> tuple[int, int] | None:
    if screen is None or not screen[0] or not screen[1]:
        return None
    return (max(int(screen[0]), 1), max(int(screen[1]), 1))


def start_map_view(
    ds: xr.Dataset,
    query: Query,
    viewport: tuple[float, float, float, float] | None = None,
    screen: tuple[int, int] | None = None,
) -> Job:
    """Start computing the map of ``query`` for a plot's viewport and size (see `map_for_view`).

    For a small grid (or without a viewport) this is the whole map (`start_map`), which
    the caller crops with `regrid_to_screen`; otherwise the planner's answer for the view.
    """
    from app.runtime import current

    if not is_regular_grid(ds):
        return _rasterized_view(ds, query, viewport, screen)
    plans = planner()
    vp, sc, shift = view_request(viewport, screen)
    if plans is None or vp is None or is_small_grid(ds):
        return start_map(ds, query)  # the whole map; the caller crops it (regrid_to_screen)
    key = answer_key_for(ds, "view", query.to_json(), vp, sc, shift)
    cached = _cached(key)
    if cached is not None:
        return cached
    plan = plans.plan_map(ds, query, viewport=vp, screen=sc)
    size = int(getattr(plan, "estimated_bytes", 0))
    limits.check_cost(size)  # costed before anything runs

    def run() -> xr.DataArray:
        out = plan.compute()
        out.attrs["gridscope_plan"] = plan.description
        out.attrs["gridscope_estimated_bytes"] = size
        if shift:
            out = out.assign_coords(lon=("lon", out["lon"].values + shift, dict(out["lon"].attrs)))
        return out

    return Job(run, size, current().client, key=key)


def map_for_view(
    ds: xr.Dataset,
    query: Query,
    viewport: tuple[float, float, float, float] | None = None,
    screen: tuple[int, int] | None = None,
) -> xr.DataArray:
    """The map of ``query`` as seen in ``viewport`` (x0, x1, y0, y1) on ``screen`` pixels.

    Small grids (`is_small_grid`) are computed whole and cropped/coarsened in-process
    (`regrid_to_screen`: at most ~2 cells per pixel). Larger ones go through the planner
    (`pipelines.planner.plan_map` with the viewport, plus a margin, and the screen size):
    the coarsest pyramid level with at least screen resolution, so a frame reads about
    one screen of cells at any zoom; ``attrs["gridscope_level"]`` says which level.
    Results are cached on (query, viewport, screen).
    """
    job = start_map_view(ds, query, viewport, screen)
    field = job.result()
    if is_small_grid(ds) or planner() is None or view_request(viewport, screen)[0] is None:
        return regrid_to_screen(field, viewport, _screen(screen))
    return field


def resolution_text(field: xr.DataArray) -> str:
    """``"0.5° (pyramid level 1)"`` or ``"0.25° (full resolution)"`` for a map."""
    lon = np.asarray(field["lon"].values) if "lon" in field.coords else np.array([])
    step = float(np.median(np.abs(np.diff(lon)))) if lon.size > 1 else float("nan")
    level = int(field.attrs.get("gridscope_level", 0) or 0)
    deg = f"{step:.4g}°" if np.isfinite(step) else "?"
    return f"{deg} (pyramid level {level})" if level else f"{deg} (full resolution)"


def regrid_to_screen(
    field: xr.DataArray,
    viewport: tuple[float, float, float, float] | None,
    screen: tuple[int, int] | None,
) -> xr.DataArray:
    """Crop ``field`` to the viewport and coarsen it to at most ~2 cells per pixel."""
    out = field
    if viewport is not None:
        x0, x1, y0, y1 = viewport
        lon, lat = field["lon"].values, field["lat"].values
        dx = float(np.abs(np.diff(lon)).max()) if lon.size > 1 else 0.0
        dy = float(np.abs(np.diff(lat)).max()) if lat.size > 1 else 0.0
        ilon = np.flatnonzero((lon >= x0 - dx) & (lon <= x1 + dx))
        ilat = np.flatnonzero((lat >= y0 - dy) & (lat <= y1 + dy))
        if ilon.size and ilat.size:
            out = out.isel(lon=slice(ilon[0], ilon[-1] + 1), lat=slice(ilat[0], ilat[-1] + 1))
    if screen is not None:
        width, height = max(int(screen[0]), 1), max(int(screen[1]), 1)
        fx = max(out.sizes["lon"] // (2 * width), 1)
        fy = max(out.sizes["lat"] // (2 * height), 1)
        if fx > 1 or fy > 1:
            attrs = out.attrs
            out = out.coarsen(lon=fx, lat=fy, boundary="trim").mean()  # NaN cells skipped
            out.attrs = attrs
    return out


def _cached(key: str) -> Job | None:
    """A finished job holding the cached answer under ``key``, or None."""
    from app.runtime import current

    runtime = current()
    value = runtime.cache.get(key)
    return None if value is None else Job(None, 0, key=key, value=value, runtime=runtime)
