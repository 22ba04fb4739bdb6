"""Fields on any grid drawn as a regular lat-lon raster at screen resolution.

Pure functions (no panel/holoviews/bokeh), in ``app/`` rather than ``pipelines/``
because they draw with datashader, which the layering rule keeps out of the core
packages (tests/test_layering.py); the dashboard, the PNG export and the CLI use them.

A map on screen is a regular array of pixels in geographic coordinates; the data may
live on a regular grid, a 2-D grid (rotated pole, projected, curvilinear: ``lon(y, x)``,
``lat(y, x)``) or an unstructured mesh (``lon(cell)``, ``lat(cell)``, with cell polygons
when known). `rasterize_to_screen` turns any of them into a ``(lat, lon)`` DataArray
whose cells are the pixels of a viewport, with datashader:

- cells with polygons (2-D grids' bounds, or corners midway between their centres;
  unstructured cells' vertices): ``Canvas.trimesh`` over a fan triangulation of each
  polygon, one value per cell (not ``Canvas.quadmesh``, which infers corners from
  longitudes and so smears the cells of a seam where longitude jumps by 360);
- unstructured cells without polygons (point clouds): ``Canvas.points`` on a canvas
  coarse enough that most pixels hold a centre, and a pixel between centres takes the
  mean of its neighbours, so the picture has no speckle.

Every aggregation is the mean of the cells that touch a pixel; a pixel that no cell
touches is NaN.

Longitudes: the viewport is given in the map's own frame, which may run past 180
(a Pacific-centred map runs 0..360, and panning goes further). Cells are copied at
multiples of 360 degrees to wherever the frame shows them, and a cell is never drawn
across the antimeridian: each polygon's corners are unwrapped around its own centre, and a polygon that still spans
more than 180 degrees of longitude (one around a pole) is left out.

`wrap_longitudes` does the same for a regular field already on a lat-lon grid: the copies
of a global field that cover a longitude window (a map centred on 180 shows the field
over 0..360; a map that pans past its edge shows the next turn of the globe).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import xarray as xr

__all__ = ["grid_kind", "rasterize_to_screen", "warm_up", "wrap_longitudes"]

#: Corners of one cell spanning more longitude than this cross the antimeridian.
_MAX_CELL_SPAN = 180.0


def grid_kind(field: xr.DataArray) -> str:
    """``"regular"``, ``"2d"`` or ``"unstructured"``: how ``field``'s cells are laid out.

    Read from the coordinates themselves (the normalised contract of `data_catalog`):
    ``lon`` a dimension coordinate is a regular grid; ``lon`` on two dimensions a 2-D
    grid; ``lon`` on the field's single dimension an unstructured mesh.
    """
    if "lon" not in field.coords or "lat" not in field.coords:
        raise ValueError("a map field needs lon and lat coordinates")
    lon = field["lon"]
    if lon.dims == ("lon",) and "lon" in field.dims:
        return "regular"
    if lon.ndim == 2:
        return "2d"
    if lon.ndim == 1 and lon.dims == field["lat"].dims:
        return "unstructured"
    raise ValueError(f"cannot tell the grid of a field with lon on {lon.dims}")


def _frame(
    viewport: tuple[float, float, float, float] | None, centre: float
) -> tuple[float, float, float, float]:
    if viewport is None:
        return (centre - 180.0, centre + 180.0, -90.0, 90.0)
    x0, x1, y0, y1 = (float(v) for v in viewport)
    if not np.all(np.isfinite([x0, x1, y0, y1])) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"a viewport is (lon0, lon1, lat0, lat1) increasing, not {viewport}")
    return (x0, x1, y0, y1)


def _shifts(lo: float, hi: float, x0: float, x1: float) -> list[float]:
    """Multiples of 360 that move longitudes spanning ``lo..hi`` onto ``x0..x1``."""
    first = int(np.floor((x0 - hi) / 360.0))
    last = int(np.ceil((x1 - lo) / 360.0))
    return [
        360.0 * k for k in range(first, last + 1) if lo + 360.0 * k <= x1 and hi + 360.0 * k >= x0
    ]


def _canvas(frame: tuple[float, float, float, float], screen: tuple[int, int]) -> object:
    import datashader as ds

    x0, x1, y0, y1 = frame
    width, height = max(int(screen[0]), 1), max(int(screen[1]), 1)
    return ds.Canvas(plot_width=width, plot_height=height, x_range=(x0, x1), y_range=(y0, y1))


def _empty(frame: tuple[float, float, float, float], screen: tuple[int, int]) -> xr.DataArray:
    x0, x1, y0, y1 = frame
    width, height = max(int(screen[0]), 1), max(int(screen[1]), 1)
    dx, dy = (x1 - x0) / width, (y1 - y0) / height
    lon = x0 + dx * (np.arange(width) + 0.5)
    lat = y0 + dy * (np.arange(height) + 0.5)
    return xr.DataArray(
        np.full((height, width), np.nan), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )


def _breaks(values: np.ndarray, axis: int) -> np.ndarray:
    """Edges between centres along ``axis``: midpoints, extrapolated half a cell at the ends."""
    a = np.moveaxis(values, axis, 0)
    half = np.diff(a, axis=0) / 2.0
    edges = np.concatenate([a[:1] - half[:1], a[:-1] + half, a[-1:] + half[-1:]])
    return np.moveaxis(edges, 0, axis)


def _corners_2d(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners ``(y, x, 4)`` of a 2-D grid's cells, midway between centres on the sphere.

    Interpolated on unit vectors, not on longitudes, so a seam where longitude jumps by
    360 (the antimeridian, or a bipolar grid's fold) gives corners next to the centres.
    """
    lon_r, lat_r = np.deg2rad(lon), np.deg2rad(lat)
    xyz = np.stack([np.cos(lat_r) * np.cos(lon_r), np.cos(lat_r) * np.sin(lon_r), np.sin(lat_r)])
    edges = np.stack([_breaks(_breaks(c, 0), 1) for c in xyz])
    edges /= np.linalg.norm(edges, axis=0, keepdims=True)
    elon = np.rad2deg(np.arctan2(edges[1], edges[0]))
    elat = np.rad2deg(np.arcsin(np.clip(edges[2], -1.0, 1.0)))

    def quad(e: np.ndarray) -> np.ndarray:
        return np.stack([e[:-1, :-1], e[:-1, 1:], e[1:, 1:], e[1:, :-1]], axis=-1)

    return quad(elon), quad(elat)


def _crop_to_frame(
    lon: np.ndarray, lat: np.ndarray, frame: tuple[float, float, float, float]
) -> tuple[slice, slice]:
    """Slices of the rows and columns of a 2-D grid around the centres in the frame.

    A zoomed view of a large grid then computes corners and triangles for the cells it
    shows, not for the whole grid; a cell just outside is kept (it may reach in).
    """
    x0, x1, y0, y1 = frame
    if x1 - x0 >= 360.0:
        return slice(None), slice(None)
    margin = 0.1 * max(x1 - x0, y1 - y0) + 2.0
    inside = (lat >= y0 - margin) & (lat <= y1 + margin)
    inside &= ((lon - (x0 - margin)) % 360.0) <= (x1 - x0) + 2 * margin
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2)


def _rasterize_2d(
    field: xr.DataArray,
    frame: tuple[float, float, float, float],
    screen: tuple[int, int],
    lon_bounds: np.ndarray | None,
    lat_bounds: np.ndarray | None,
) -> np.ndarray:
    """A 2-D grid's cells as quadrilaterals: the file's bounds, or corners between centres."""
    dims = field["lon"].dims
    values = np.asarray(field.transpose(*dims).values, dtype="float64")
    lon = np.asarray(field["lon"].transpose(*dims).values, dtype="float64")
    lat = np.asarray(field["lat"].transpose(*dims).values, dtype="float64")
    if min(lon.shape) < 2:
        return _rasterize_points(field, frame, screen)[0]
    if values.size >= screen[0] * screen[1] // 4:
        # spacing of the centres (a sample of rows and columns): cells smaller than a
        # pixel are drawn as the mean of the centres in each pixel, with no corners
        rows, cols = (
            slice(None, None, max(lon.shape[0] // 50, 1)),
            slice(None, None, max(lon.shape[1] // 50, 1)),
        )
        dlon = np.abs(((np.diff(lon[rows], axis=1) + 180.0) % 360.0) - 180.0)
        dlat = np.abs(np.diff(lat[:, cols], axis=0))
        x0, x1, y0, y1 = frame
        if (
            np.nanmedian(dlon) < (x1 - x0) / screen[0]
            and np.nanmedian(dlat) < (y1 - y0) / screen[1]
        ):
            return _rasterize_points(field, frame, screen, full_resolution=True)[0]
    r, c = _crop_to_frame(lon, lat, frame)
    lon, lat, values = lon[r, c], lat[r, c], values[r, c]
    if min(lon.shape) < 2:
        return _empty(frame, screen).values
    if lon_bounds is None or lat_bounds is None:
        lon_bounds, lat_bounds = _corners_2d(lon, lat)
    else:
        lon_bounds, lat_bounds = lon_bounds[r, c], lat_bounds[r, c]
    ncell = values.size
    return _rasterize_polygons(
        values.ravel(), lon.ravel(), lat.ravel(),
        np.asarray(lon_bounds, dtype="float64").reshape(ncell, -1),
        np.asarray(lat_bounds, dtype="float64").reshape(ncell, -1),
        frame, screen,
    )  # fmt: skip


def _fan_triangles(
    lon_bounds: np.ndarray, lat_bounds: np.ndarray, centre_lon: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Triangles (x, y of 3 vertices each), their cells' values and cell lon extents."""
    lonb = np.asarray(lon_bounds, dtype="float64")
    latb = np.asarray(lat_bounds, dtype="float64")
    # each polygon's corners unwrapped around its own centre: no cell spans the globe
    lonb = centre_lon[:, None] + ((lonb - centre_lon[:, None] + 180.0) % 360.0) - 180.0
    ok = (
        np.isfinite(values)
        & np.isfinite(lonb[:, :3]).all(axis=1)
        & np.isfinite(latb[:, :3]).all(axis=1)
    )
    span = np.nanmax(lonb, axis=1) - np.nanmin(lonb, axis=1)
    ok &= span <= _MAX_CELL_SPAN  # a polygon around a pole: no longitude range fits it
    nv = lonb.shape[1]
    xs, ys, vs, cells = [], [], [], []
    for k in range(1, nv - 1):
        # fan from corner 0; a repeated or missing (NaN) corner gives a degenerate triangle
        tri_ok = ok & np.isfinite(lonb[:, k + 1]) & np.isfinite(latb[:, k + 1])
        idx = np.flatnonzero(tri_ok)
        xs.append(np.stack([lonb[idx, 0], lonb[idx, k], lonb[idx, k + 1]], axis=1))
        ys.append(np.stack([latb[idx, 0], latb[idx, k], latb[idx, k + 1]], axis=1))
        vs.append(values[idx])
        cells.append(idx)
    x = np.concatenate(xs) if xs else np.empty((0, 3))
    y = np.concatenate(ys) if ys else np.empty((0, 3))
    v = np.concatenate(vs) if vs else np.empty(0)
    # one winding for all triangles (datashader reads the winding of the first one only)
    cross = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    flip = cross > 0
    x[flip, 1], x[flip, 2] = x[flip, 2].copy(), x[flip, 1].copy()
    y[flip, 1], y[flip, 2] = y[flip, 2].copy(), y[flip, 1].copy()
    return x, y, v, x.min(axis=1) if len(x) else v, x.max(axis=1) if len(x) else v


def _smaller_than_pixels(
    lon_span: np.ndarray,
    lat_bounds: np.ndarray,
    cells: np.ndarray,
    frame: tuple[float, float, float, float],
    screen: tuple[int, int],
) -> bool:
    """Whether the typical cell in view is smaller than a pixel both ways."""
    if cells.size < screen[0] * screen[1] // 4:
        return False  # few cells: triangles are cheap
    sample = cells[:: max(cells.size // 5000, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        dlon = np.nanmedian(lon_span[sample])
        dlat = np.nanmedian(np.nanmax(lat_bounds[sample], 1) - np.nanmin(lat_bounds[sample], 1))
    x0, x1, y0, y1 = frame
    return bool(dlon < (x1 - x0) / screen[0] and dlat < (y1 - y0) / screen[1])


def _rasterize_polygons(
    values: np.ndarray,
    centre: np.ndarray,
    centre_lat: np.ndarray,
    lon_bounds: np.ndarray,
    lat_bounds: np.ndarray,
    frame: tuple[float, float, float, float],
    screen: tuple[int, int],
) -> np.ndarray:
    """Cells as polygons ``(cell, nv)``: a fan of triangles each, one value per cell."""
    import datashader as ds
    import pandas as pd

    x0, x1, y0, y1 = frame
    # only the cells that touch the frame at some turn of the globe are triangulated
    lonb = centre[:, None] + ((lon_bounds - centre[:, None] + 180.0) % 360.0) - 180.0
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN corners: not drawn
        lo, hi = np.nanmin(lonb, axis=1), np.nanmax(lonb, axis=1)
        near = (np.nanmax(lat_bounds, axis=1) >= y0) & (np.nanmin(lat_bounds, axis=1) <= y1)
        turn = np.floor((x1 - lo) / 360.0)  # the last copy starting west of the frame's end
        near &= hi + 360.0 * turn >= x0
    cells = np.flatnonzero(near)
    if _smaller_than_pixels(hi - lo, lat_bounds, cells, frame, screen):
        # many cells to a pixel: the mean of the centres in each pixel is the picture,
        # at a fraction of the cost of triangles
        field = xr.DataArray(values[cells], dims="cell", coords={
            "lon": ("cell", centre[cells]), "lat": ("cell", centre_lat[cells])})  # fmt: skip
        return _rasterize_points(field, frame, screen, full_resolution=True)[0]
    x, y, v, xmin, xmax = _fan_triangles(
        lon_bounds[cells], lat_bounds[cells], centre[cells], values[cells]
    )
    keep_y = (y.max(axis=1) >= y0) & (y.min(axis=1) <= y1) if len(y) else np.zeros(0, bool)
    pieces = []
    for shift in _shifts(float(xmin.min(initial=0.0)), float(xmax.max(initial=0.0)), x0, x1):
        sel = keep_y & (xmax + shift >= x0) & (xmin + shift <= x1)
        if sel.any():
            pieces.append((x[sel] + shift, y[sel], v[sel]))
    if not pieces:
        return _empty(frame, screen).values
    px = np.concatenate([p[0] for p in pieces])
    py = np.concatenate([p[1] for p in pieces])
    pv = np.concatenate([p[2] for p in pieces])
    mesh = pd.DataFrame({"x": px.ravel(), "y": py.ravel(), "value": np.repeat(pv, 3)})
    canvas = _canvas(frame, screen)
    agg = canvas.trimesh(mesh, None, mesh=mesh, agg=ds.mean("value"), interpolate="nearest")
    return np.asarray(agg.values, dtype="float64")


def _rasterize_points(
    field: xr.DataArray,
    frame: tuple[float, float, float, float],
    screen: tuple[int, int],
    *,
    full_resolution: bool = False,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Cell centres as points: the mean of the centres in each pixel.

    A point cloud is drawn on a canvas coarse enough to hold about two centres per
    pixel; cells smaller than a pixel (``full_resolution``) on the screen's own.
    """
    import datashader as ds
    import pandas as pd

    values = np.asarray(field.values, dtype="float64").ravel()
    lon = np.asarray(field["lon"].values, dtype="float64").ravel()
    lat = np.asarray(field["lat"].values, dtype="float64").ravel()
    x0, x1, y0, y1 = frame
    base = ((lon + 180.0) % 360.0) - 180.0
    xs, ys, vs = [], [], []
    for shift in _shifts(-180.0, 180.0, x0, x1):
        sel = (base + shift >= x0) & (base + shift <= x1) & (lat >= y0) & (lat <= y1)
        xs.append(base[sel] + shift)
        ys.append(lat[sel])
        vs.append(values[sel])
    x = np.concatenate(xs) if xs else np.empty(0)
    # a canvas with about two centres per pixel: a point cloud drawn without holes
    width, height = max(int(screen[0]), 1), max(int(screen[1]), 1)
    scale = 1.0 if full_resolution else min(1.0, np.sqrt(max(x.size, 1) / 2.0 / (width * height)))
    coarse = (max(int(width * scale), 1), max(int(height * scale), 1))
    if x.size == 0:
        return _empty(frame, coarse).values, coarse
    frame_df = pd.DataFrame({"x": x, "y": np.concatenate(ys), "value": np.concatenate(vs)})
    agg = _canvas(frame, coarse).points(frame_df, "x", "y", agg=ds.mean("value"))
    return _fill_gaps(np.asarray(agg.values, dtype="float64")), coarse


def _fill_gaps(values: np.ndarray) -> np.ndarray:
    """Empty pixels between points take the mean of their valid 3x3 neighbours (one pass).

    Where centres are sparser than the canvas (a refined mesh's coarse part) a pixel
    may hold none; a gap wider than one pixel stays empty (no data there).
    """
    valid = np.isfinite(values)
    padded = np.pad(np.where(valid, values, 0.0), 1)
    counts = np.pad(valid.astype("float64"), 1)
    h, w = values.shape
    total = sum(padded[i : i + h, j : j + w] for i in range(3) for j in range(3))
    count = sum(counts[i : i + h, j : j + w] for i in range(3) for j in range(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, values, np.where(count >= 3, total / count, np.nan))


def rasterize_to_screen(
    field: xr.DataArray,
    viewport: tuple[float, float, float, float] | None,
    screen: tuple[int, int],
    centre: float = 0.0,
    *,
    lon_bounds: np.ndarray | xr.DataArray | None = None,
    lat_bounds: np.ndarray | xr.DataArray | None = None,
) -> xr.DataArray:
    """``field`` on any grid as a regular ``(lat, lon)`` raster of the viewport's pixels.

    Parameters
    ----------
    field
        A 2-D map on native cells: dims ``(y, x)`` with ``lon(y, x)``, ``lat(y, x)``, or
        dims ``(cell,)`` with ``lon(cell)``, ``lat(cell)`` (geographic degrees); a
        regular ``(lat, lon)`` field is accepted too (drawn as its cells).
    viewport
        ``(lon0, lon1, lat0, lat1)`` in the map's frame (``lon0 < lon1``, either may be
        outside -180..180: cells are copied at multiples of 360 to where it shows them);
        None: the whole globe around ``centre``.
    screen
        ``(width, height)`` in pixels.
    centre
        Central longitude of the map; sets the frame when ``viewport`` is None.
    lon_bounds, lat_bounds
        Corners of unstructured cells, ``(cell, nv)``; read from ``field``'s coordinates
        ``lon_bounds``/``lat_bounds`` when not given; ``(y, x, nv)`` for a 2-D grid.
        Unstructured cells without them are drawn as a point cloud; a 2-D grid's
        corners are then put midway between its centres.

    Returns
    -------
    xarray.DataArray
        ``(lat, lon)`` with pixel-centre coordinates in the frame (lon ascending, may
        exceed 180), the mean of the cells touching each pixel, NaN where none does;
        ``field``'s name and attributes, and ``attrs["gridscope_rasterized"]`` saying how
        it was drawn (``"polygons"`` or ``"points"``).
    """
    frame = _frame(viewport, centre)
    screen = (max(int(screen[0]), 1), max(int(screen[1]), 1))
    kind = grid_kind(field)
    if lon_bounds is None and "lon_bounds" in field.coords:
        lon_bounds = field.coords["lon_bounds"]
    if lat_bounds is None and "lat_bounds" in field.coords:
        lat_bounds = field.coords["lat_bounds"]
    if lon_bounds is not None:
        lon_bounds = np.asarray(lon_bounds, dtype="float64")
    if lat_bounds is not None:
        lat_bounds = np.asarray(lat_bounds, dtype="float64")
    if kind == "regular":
        field = field.transpose("lat", "lon")
        lon2, lat2 = np.meshgrid(field["lon"].values, field["lat"].values)
        field = xr.DataArray(
            field.values,
            dims=("y", "x"),
            coords={"lon": (("y", "x"), lon2), "lat": (("y", "x"), lat2)},
            name=field.name,
            attrs=field.attrs,
        )
        kind, lon_bounds, lat_bounds = "2d", None, None
    if kind == "2d":
        values = _rasterize_2d(field, frame, screen, lon_bounds, lat_bounds)
        how, shape = "polygons", screen
    elif lon_bounds is not None and lat_bounds is not None:
        values = _rasterize_polygons(
            np.asarray(field.values, dtype="float64"),
            np.asarray(field["lon"].values, dtype="float64"),
            np.asarray(field["lat"].values, dtype="float64"),
            lon_bounds, lat_bounds, frame, screen,
        )  # fmt: skip
        how, shape = "polygons", screen
    else:
        values, shape = _rasterize_points(field, frame, screen)
        how = "points"
    out = _empty(frame, shape).copy(data=values)
    out.name = field.name
    out.attrs = {**field.attrs, "gridscope_rasterized": how}
    return out


def wrap_longitudes(field: xr.DataArray, lon0: float, lon1: float) -> xr.DataArray:
    """A regular ``(..., lon)`` field moved (and, if global, repeated) onto ``lon0..lon1``.

    A global field (its longitudes span the whole circle at an even step) is repeated at
    multiples of 360 so that every longitude of the window, plus one cell either side,
    has its cell; a regional field is moved by the one multiple of 360 that puts its
    middle inside the window. Longitudes stay ascending and evenly spaced.
    """
    lon = np.asarray(field["lon"].values, dtype="float64")
    if lon.size < 2 or lon1 <= lon0:
        return field
    step = float(np.median(np.diff(lon)))
    span = float(lon[-1] - lon[0]) + step
    is_global = step > 0 and abs(span - 360.0) <= 0.5 * step
    if not is_global or not np.allclose(np.diff(lon), step, rtol=1e-3, atol=1e-9):
        middle = 0.5 * (lon[0] + lon[-1])
        shift = 360.0 * np.round((0.5 * (lon0 + lon1) - middle) / 360.0)
        if not shift:
            return field
        return field.assign_coords(lon=("lon", lon + shift, dict(field["lon"].attrs)))
    first = int(np.floor((lon0 - step - lon[-1]) / 360.0))
    last = int(np.ceil((lon1 + step - lon[0]) / 360.0))
    index, coords = [], []
    for k in range(first, last + 1):
        shifted = lon + 360.0 * k
        sel = np.flatnonzero((shifted >= lon0 - step) & (shifted <= lon1 + step))
        index.append(sel)
        coords.append(shifted[sel])
    if not sum(len(i) for i in index):
        return field
    out = field.isel(lon=np.concatenate(index))
    out = out.assign_coords(lon=("lon", np.concatenate(coords), dict(field["lon"].attrs)))
    out.attrs = field.attrs
    return out


@functools.cache
def warm_up() -> None:
    """Draw a two-cell mesh as polygons and as points once (numba compiles datashader's
    trimesh and points glyphs: seconds, better spent at start-up than on a first map)."""
    cells = xr.DataArray(
        np.ones(2), dims="cell", coords={"lon": ("cell", [0.0, 1.0]), "lat": ("cell", [0.0, 1.0])}
    )
    lon_bounds = np.array([[-0.5, 0.5, 0.5, -0.5], [0.5, 1.5, 1.5, 0.5]])
    lat_bounds = np.array([[-0.5, -0.5, 0.5, 0.5], [0.5, 0.5, 1.5, 1.5]])
    rasterize_to_screen(cells, None, (8, 4), lon_bounds=lon_bounds, lat_bounds=lat_bounds)
    rasterize_to_screen(cells, None, (8, 4))
