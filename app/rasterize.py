"""Fields on any grid drawn as a regular lat-lon raster at screen resolution.

Pure functions (no panel/holoviews/bokeh), in ``app/`` beside the other drawing code;
the dashboard, the PNG export and the CLI use them.

A map on screen is a regular array of pixels in geographic coordinates; the data may
live on a regular grid, a 2-D grid (rotated pole, projected, curvilinear: ``lon(y, x)``,
``lat(y, x)``) or an unstructured mesh (``lon(cell)``, ``lat(cell)``, with cell polygons
when known). `rasterize_to_screen` turns any of them into a ``(lat, lon)`` DataArray
whose cells are the pixels of a viewport:

- cells with polygons (2-D grids' bounds, or corners midway between their centres;
  unstructured cells' vertices), each larger than a pixel: a pixel holds the mean of
  the cells whose polygon contains the pixel's centre (even-odd rule, polygon edges
  straight in lon/lat; in practice the one cell under the pixel's centre);
- cells smaller than a pixel, or without polygons (point clouds): the mean of the cell
  centres in each pixel; a point cloud is drawn on a canvas coarse enough that most
  pixels hold a centre, and a pixel between centres takes the mean of its neighbours,
  so the picture has no speckle.

A pixel that no cell reaches is NaN. Both are small numba kernels compiled with
``cache=True`` (a server start loads them from disk instead of compiling for seconds).

What does not depend on the values is kept per grid (`_grid_index`, keyed by a
fingerprint of the coordinates): the flat centres, the midway corners of a 2-D grid
without bounds and, from a grid's second frame on when a frame shows less than half of
it, the cells sorted by a lon/lat bin of their centre, so a frame visits only the cells
of the bins in view (plus cells larger than the bins, always visited). A view that a
planner cut out of a larger grid is drawn whole, and its polygons (a window of the
larger grid's) are copied only when drawn as polygons. A frame then costs about the
cells in view plus the pixels: a 0.1-degree ocean grid of 6.5 M cells takes tens of
milliseconds seen whole, a few when zoomed in. A frame drawn as polygons a second time
(a view's next step) records which cell goes to which pixel, and later ones only add
their values in that order (`_replay`); a large first frame is drawn on two threads
when a core is idle (`_draw_split`); both bit for bit the one-thread drawing.

Longitudes: the viewport is given in the map's own frame, which may run past 180
(a Pacific-centred map runs 0..360, and panning goes further). Cells are copied at
multiples of 360 degrees to wherever the frame shows them, and a cell is never drawn
across the antimeridian: each polygon's corners are unwrapped one after the other from
the corner nearest its centre; a polygon whose corners go once around a pole (a cell
over the pole) is drawn as the cap between its edges and that pole.

`wrap_longitudes` does the same for a regular field already on a lat-lon grid: the copies
of a global field that cover a longitude window (a map centred on 180 shows the field
over 0..360; a map that pans past its edge shows the next turn of the globe).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import os
import threading
import warnings
import weakref
from collections.abc import Hashable
from typing import Any

import numba
import numpy as np
import xarray as xr

__all__ = ["grid_kind", "rasterize_to_screen", "warm_up", "wrap_longitudes"]

#: Grids with fewer cells are visited whole each frame (no spatial index).
_INDEX_MIN_CELLS = 20_000
#: Cells per lon/lat bin of the spatial index, on average.
_CELLS_PER_BIN = 32.0
#: Grids whose index (and midway corners) are kept, most recently used last.
_CACHE_SIZE = 6
#: The most bytes of the kept grids' copies (centres, flat polygons, bin order).
_CACHE_BYTES = 768 * 2**20
#: Frames per grid whose pixel/cell pairs are kept (a few views' next steps).
_PAIRS_KEPT = 2
#: Room for recorded pairs per pixel (a pixel centre is in about one polygon; more
#: pairs than that: drawn without recording).
_ROOM_PER_PIXEL = 4
#: The most vertices a polygon may have (a cell's own, plus three for a polar cap).
_MAX_VERTICES = 64


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


# ---------------------------------------------------------------------------------------
# numba kernels (cache=True: compiled once per machine, loaded from __pycache__ after)


@numba.njit(cache=True, nogil=True)
def _polygon(clon, clat, lonb, latb, xs, ys):  # pragma: no cover  (numba)
    """One cell's polygon in lon/lat, unwrapped, into ``xs``/``ys``; its vertex count.

    The first finite corner is moved by a multiple of 360 to within 180 of the centre,
    each next one to within 180 of the previous one (a corner is only moved when it
    must be, so neighbours share bit-identical edges). Repeated corners are dropped.
    Corners that go once around (a cell over a pole) close through the pole: the cap
    between the cell's edges and the pole nearer its corners. 0: nothing to draw.
    """
    nv = lonb.shape[0]
    n = 0
    ref = clon
    for k in range(nv):
        a = lonb[k]
        b = latb[k]
        if not (np.isfinite(a) and np.isfinite(b)):
            continue
        d = a - ref
        if d > 180.0 or d < -180.0:
            a = a - 360.0 * np.floor((d + 180.0) / 360.0)
        if n > 0 and a == xs[n - 1] and b == ys[n - 1]:
            continue
        xs[n] = a
        ys[n] = b
        n += 1
        ref = a
    while n > 1 and xs[n - 1] == xs[0] and ys[n - 1] == ys[0]:
        n -= 1
    if n < 3:
        return 0
    d = xs[0] - xs[n - 1]
    turn = 360.0 * np.floor((d + 180.0) / 360.0)
    if turn != 0.0:  # the corners went once around a pole: close through it
        mean_lat = 0.0
        for k in range(n):
            mean_lat += ys[k]
        pole = 90.0 if mean_lat >= 0.0 else -90.0
        xs[n] = xs[0] - turn
        ys[n] = ys[0]
        xs[n + 1] = xs[0] - turn
        ys[n + 1] = pole
        xs[n + 2] = xs[0]
        ys[n + 2] = pole
        n += 3
    return n


@numba.njit(cache=True, nogil=True)
def _index_cells(lon, lat, lonb, latb, bin_deg, nbx, nby, big_radius):  # pragma: no cover
    """The lon/lat bin of each cell's centre (``nbx * nby`` for a cell whose polygon
    reaches further than ``big_radius`` from it, -1 for no centre) and the farthest
    reach of the others' polygons."""
    n = lon.shape[0]
    bins = np.empty(n, np.int32)
    xs = np.empty(_MAX_VERTICES + 3)
    ys = np.empty(_MAX_VERTICES + 3)
    has_bounds = lonb.shape[0] == n and lonb.shape[1] > 0
    reach = 0.0
    for c in range(n):
        x = lon[c]
        y = lat[c]
        if not (np.isfinite(x) and np.isfinite(y)):
            bins[c] = -1
            continue
        r = 0.0
        if has_bounds:
            m = _polygon(x, y, lonb[c], latb[c], xs, ys)
            for k in range(m):
                r = max(r, abs(xs[k] - x), abs(ys[k] - y))
        if r > big_radius:
            bins[c] = nbx * nby
            continue
        reach = max(reach, r)
        xw = ((x + 180.0) % 360.0) - 180.0
        col = min(max(int((xw + 180.0) / bin_deg), 0), nbx - 1)
        row = min(max(int((y + 90.0) / bin_deg), 0), nby - 1)
        bins[c] = row * nbx + col
    return bins, reach


@numba.njit(cache=True, nogil=True)
def _counting_sort(bins, nbins):  # pragma: no cover  (numba)
    """Cells ordered by bin (native order within one) and each bin's start; -1 left out."""
    counts = np.zeros(nbins + 1, np.int64)
    for c in range(bins.shape[0]):
        if bins[c] >= 0:
            counts[bins[c] + 1] += 1
    for b in range(nbins):
        counts[b + 1] += counts[b]
    starts = counts.copy()
    order = np.empty(counts[nbins], np.int32)
    for c in range(bins.shape[0]):
        b = bins[c]
        if b >= 0:
            order[starts[b]] = c
            starts[b] += 1
    return order, counts


@numba.njit(cache=True, nogil=True)
def _draw_polygons(
    order, starts, stops, direct, lon, lat, lonb, latb, values,
    x0, x1, y0, y1, sums, counts, pix, cell,
):  # pragma: no cover  (numba)  # fmt: skip
    """Add each cell's value to the pixels whose centre its polygon contains (even-odd
    rule; an edge holds the pixel centres on its lower/left side only), at every copy
    of the cell 360 degrees apart that reaches the frame.

    With room in ``pix`` (flat pixel) and ``cell``, record those pairs instead, in the
    order the values would be added, for every cell whatever its value (`_replay` adds
    another step's values in the same order); returns how many, -1 when out of room.
    """
    height, width = sums.shape
    record = pix.shape[0] > 0
    npairs = 0
    dx = (x1 - x0) / width
    dy = (y1 - y0) / height
    xs = np.empty(_MAX_VERTICES + 3)
    ys = np.empty(_MAX_VERTICES + 3)
    xi = np.empty(_MAX_VERTICES + 3)
    for r in range(starts.shape[0]):
        for p in range(starts[r], stops[r]):
            c = p if direct else order[p]
            v = values[c]
            if not (record or np.isfinite(v)) or not np.isfinite(lon[c]) or not np.isfinite(lat[c]):
                continue
            n = _polygon(lon[c], lat[c], lonb[c], latb[c], xs, ys)
            if n == 0:
                continue
            lo, hi, bot, top = xs[0], xs[0], ys[0], ys[0]
            for k in range(1, n):
                lo, hi = min(lo, xs[k]), max(hi, xs[k])
                bot, top = min(bot, ys[k]), max(top, ys[k])
            if top < y0 or bot > y1:
                continue
            # the rows whose pixel centre lies within the polygon's latitudes (widened by
            # far more than rounding: other rows cross none of its edges)
            j0 = max(int(np.ceil((bot - y0) / dy - 0.5 - 1e-6)), 0)
            j1 = min(int(np.floor((top - y0) / dy - 0.5 + 1e-6)) + 1, height)
            if j0 >= j1:
                continue
            k0 = int(np.ceil((x0 - hi) / 360.0))
            k1 = int(np.floor((x1 - lo) / 360.0))
            for turn in range(k0, k1 + 1):
                shift = 360.0 * turn
                # no pixel centre column within the polygon's longitudes (widened by far
                # more than rounding): it holds no pixel centre (a cell thinner than a pixel)
                a = (lo + shift - x0) / dx - 0.5
                b = (hi + shift - x0) / dx - 0.5
                if np.floor(b + 1e-6) < np.ceil(a - 1e-6):
                    continue
                for j in range(j0, j1):
                    yc = y0 + dy * (j + 0.5)
                    m = 0
                    for k in range(n):
                        ya, yb = ys[k], ys[(k + 1) % n]
                        xa, xb = xs[k], xs[(k + 1) % n]
                        if ya == yb:
                            continue
                        if ya > yb:
                            ya, yb, xa, xb = yb, ya, xb, xa
                        if ya <= yc < yb:
                            xc = xa + (yc - ya) * (xb - xa) / (yb - ya) + shift
                            q = m  # insertion sort: a polygon has a few crossings
                            while q > 0 and xi[q - 1] > xc:
                                xi[q] = xi[q - 1]
                                q -= 1
                            xi[q] = xc
                            m += 1
                    for q in range(0, m - 1, 2):
                        left, right = xi[q], xi[q + 1]
                        i = max(int(np.ceil((left - x0) / dx - 0.5)) - 1, 0)
                        while i < width and x0 + dx * (i + 0.5) < left:
                            i += 1
                        while i < width and x0 + dx * (i + 0.5) < right:
                            if record:
                                if npairs == pix.shape[0]:
                                    return -1
                                pix[npairs] = j * width + i
                                cell[npairs] = c
                                npairs += 1
                            else:
                                sums[j, i] += v
                                counts[j, i] += 1.0
                            i += 1
    return npairs


@numba.njit(cache=True, nogil=True)
def _replay(pix, cell, values, sums, counts):  # pragma: no cover  (numba)
    """Add the finite values of recorded ``(pixel, cell)`` pairs, in their order (the
    additions `_draw_polygons` makes for these values, in the same order)."""
    flat_sums = sums.reshape(-1)
    flat_counts = counts.reshape(-1)
    for k in range(pix.shape[0]):
        v = values[cell[k]]
        if np.isfinite(v):
            flat_sums[pix[k]] += v
            flat_counts[pix[k]] += 1.0


@numba.njit(cache=True, nogil=True)
def _draw_points(
    order, starts, stops, direct, lon, lat, values, shifts, x0, x1, y0, y1, sums, counts
):  # pragma: no cover  (numba)
    """Add each cell's value to the pixel holding its centre (wrapped into -180..180,
    then at each of ``shifts``); the frame's east and north edges belong to its last
    pixels."""
    height, width = sums.shape
    sx = width / (x1 - x0)
    sy = height / (y1 - y0)
    nshift = shifts.shape[0]
    for r in range(starts.shape[0]):
        for p in range(starts[r], stops[r]):
            c = p if direct else order[p]
            y = lat[c]
            if not (y0 <= y <= y1):
                continue
            v = values[c]
            if not np.isfinite(v):
                continue
            base = lon[c]
            if not (-180.0 <= base < 180.0):
                base = ((base + 180.0) % 360.0) - 180.0
            j = min(int((y - y0) * sy), height - 1)
            for s in range(nshift):
                x = base + shifts[s]
                if x0 <= x <= x1:
                    i = min(int((x - x0) * sx), width - 1)
                    sums[j, i] += v
                    counts[j, i] += 1.0


# ---------------------------------------------------------------------------------------
# per grid: what does not depend on the values


class _GridIndex:
    """A grid's flat centres and polygons, and (once a frame shows a small part of it)
    its cells sorted by lon/lat bin.

    The polygons are kept as given (``cells + (nv,)``, any memory layout: a planner's
    view of a larger grid's bounds is a window of them) and copied flat only when a frame
    draws polygons or the bins are built; a frame of cells smaller than its pixels draws
    their centres and samples a few polygons (`sample_bounds`), so it copies none.
    """

    def __init__(
        self,
        lon: np.ndarray,
        lat: np.ndarray,
        lon_bounds: np.ndarray | None,
        lat_bounds: np.ndarray | None,
    ):
        self.lon, self.lat = lon, lat
        self._given = None if lon_bounds is None or lat_bounds is None else (lon_bounds, lat_bounds)
        self._flat: tuple[np.ndarray, np.ndarray] | None = None
        self.order: np.ndarray | None = None  # cells by bin (None: visit all)
        self.bin_start: np.ndarray | None = None  # bin b is order[start[b]:start[b + 1]]
        self.bin_deg, self.nbx, self.nby = 360.0, 1, 1
        self.reach = 180.0  # the farthest a binned cell's polygon reaches from its centre
        self.frames = 0
        # per (frame, screen) drawn as polygons: times seen, then the recorded pairs
        self._seen: dict[tuple, int] = {}
        self._pairs: collections.OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return int(self.lon.size)

    @property
    def nbytes(self) -> int:
        flat = 0 if self._flat is None else self._flat[0].nbytes + self._flat[1].nbytes
        order = 0 if self.order is None else self.order.nbytes
        pairs = sum(p.nbytes + c.nbytes for p, c in list(self._pairs.values()))
        return int(self.lon.nbytes + self.lat.nbytes + flat + order + pairs)

    def pairs(self, key: tuple) -> tuple[tuple[np.ndarray, np.ndarray] | None, bool]:
        """The recorded ``(pixel, cell)`` pairs of a frame (None: not recorded), and
        whether to record them now (the frame's second drawing: a view's next step)."""
        with self._lock:
            pairs = self._pairs.get(key)
            if pairs is not None:
                self._pairs.move_to_end(key)
                return pairs, False
            if len(self._seen) > 64:
                self._seen.clear()
            self._seen[key] = self._seen.get(key, 0) + 1
            return None, self._seen[key] > 1

    def keep_pairs(self, key: tuple, pairs: tuple[np.ndarray, np.ndarray], order: Any) -> None:
        """Keep a frame's pairs (the last `_PAIRS_KEPT` frames), unless the cells were
        sorted into bins meanwhile (``order`` is what they were drawn with)."""
        with self._lock:
            if order is self.order:
                self._pairs[key] = pairs
                while len(self._pairs) > _PAIRS_KEPT:
                    self._pairs.popitem(last=False)

    @property
    def has_polygons(self) -> bool:
        return self._given is not None and self._given[0].shape[-1] > 0

    def flat_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The polygons as contiguous float64 ``(cell, nv)`` (copied once)."""
        with self._lock:
            if self._flat is None:
                if not self.has_polygons:
                    self._flat = (np.empty((0, 0)), np.empty((0, 0)))
                else:
                    lonb, latb = self._given  # type: ignore[misc]
                    nv = lonb.shape[-1]
                    self._flat = (_flat64(lonb).reshape(self.size, nv),
                                  _flat64(latb).reshape(self.size, nv))  # fmt: skip
            return self._flat

    def sample_bounds(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The polygons ``(len(cells), nv)`` of a few cells (no copy of the others)."""
        if self._flat is not None and self._flat[0].size:
            return self._flat[0][cells], self._flat[1][cells]
        lonb, latb = self._given  # type: ignore[misc]
        where = np.unravel_index(cells, lonb.shape[:-1])
        return np.asarray(lonb[where], "float64"), np.asarray(latb[where], "float64")

    def in_frame_share(self, frame: tuple[float, float, float, float]) -> float:
        """The share of (a sample of) the centres inside ``frame`` (any turn of the globe)."""
        x0, x1, y0, y1 = frame
        step = max(self.size // 2048, 1)
        lon, lat = self.lon[::step], self.lat[::step]
        inside_lat = (lat >= y0) & (lat <= y1)
        if x1 - x0 >= 360.0:
            inside = inside_lat
        else:
            east = (lon - x0) % 360.0  # degrees east of the frame's west edge
            inside = inside_lat & (east <= x1 - x0)
        return float(inside.mean()) if lon.size else 1.0

    def index_for(self, frame: tuple[float, float, float, float]) -> None:
        """Sort the cells by bin from the grid's second frame on, when this frame shows
        less than half of them (a view a planner cut out is drawn whole, unsorted)."""
        with self._lock:
            self.frames += 1
            wanted = (
                self.order is None
                and self.frames > 1
                and self.size >= _INDEX_MIN_CELLS
                and self.in_frame_share(frame) < 0.5
            )
        if wanted:
            self._build_bins()

    def _build_bins(self) -> None:
        n = self.size
        # bins divide 360 exactly, so a column of bins is the same at every turn of the globe
        nbx = int(np.ceil(360.0 / np.clip(np.sqrt(64800.0 * _CELLS_PER_BIN / n), 0.1, 10.0)))
        bin_deg = 360.0 / nbx
        nby = int(np.ceil(180.0 / bin_deg))
        lonb, latb = self.flat_bounds()
        bins, reach = _index_cells(self.lon, self.lat, lonb, latb, bin_deg, nbx, nby, 2 * bin_deg)
        order, start = _counting_sort(bins, nbx * nby + 1)
        with self._lock:
            if self.order is None:
                self.bin_deg, self.nbx, self.nby, self.reach = bin_deg, nbx, nby, float(reach)
                self.bin_start = start
                self.order = order  # last: a frame reading ``order`` sees the rest set
                self._pairs.clear()  # recorded in the unsorted order

    def ranges(
        self, frame: tuple[float, float, float, float], margin: float
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(starts, stops, direct)``: the runs of cells to visit for ``frame`` widened by
        ``margin`` degrees (positions in ``order``, or cell numbers when ``direct``)."""
        everything = (np.array([0]), np.array([self.size]), True)
        if self.order is None or self.bin_start is None:
            return everything
        x0, x1, y0, y1 = frame
        b, nbx = self.bin_deg, self.nbx
        margin += 1e-6 * b  # a centre on a bin's edge: either bin is visited
        r0 = min(max(int(np.floor((y0 - margin + 90.0) / b)), 0), self.nby - 1)
        r1 = min(max(int(np.floor((y1 + margin + 90.0) / b)), 0), self.nby - 1)
        if (x1 - x0) + 2 * margin + 2 * b >= 360.0:
            cols = [(0, nbx - 1)]
        else:
            c0 = int(np.floor((x0 - margin + 180.0) / b))
            c1 = int(np.floor((x1 + margin + 180.0) / b))
            c0, c1 = c0 % nbx, c0 % nbx + (c1 - c0)
            cols = [(c0, min(c1, nbx - 1))] + ([(0, c1 - nbx)] if c1 >= nbx else [])
        rows = np.arange(r0, r1 + 1)
        if cols == [(0, nbx - 1)]:  # whole rows: one run
            starts = [self.bin_start[r0 * nbx]]
            stops = [self.bin_start[(r1 + 1) * nbx]]
        else:
            starts = [self.bin_start[rows * nbx + a] for a, _ in cols]
            stops = [self.bin_start[rows * nbx + z + 1] for _, z in cols]
        big = self.nby * nbx  # cells reaching further than the bins: always visited
        s = np.concatenate([np.atleast_1d(starts).ravel(), [self.bin_start[big]]])
        e = np.concatenate([np.atleast_1d(stops).ravel(), [self.bin_start[big + 1]]])
        if int((e - s).sum()) > self.size // 2:
            return everything  # most of the grid: in memory order, without the index
        return s.astype("int64"), e.astype("int64"), False


def _flat64(a: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype="float64"))


def _fingerprint(arrays: tuple[np.ndarray | None, ...]) -> str:
    """A digest of coordinate arrays: shapes, an even sample of their values and, for
    the centres (the first two), their sums (one pass over each, no copy of a window)."""
    h = hashlib.blake2b(digest_size=20)
    for k, a in enumerate(arrays):
        if a is None:
            h.update(b"none")
            continue
        total = float(np.add.reduce(a, axis=None)) if k < 2 else 0.0
        h.update(repr((a.shape, a.dtype.str, total)).encode())
        if a.size:
            picks = np.r_[
                np.arange(0, a.size, max(a.size // 8192, 1)), np.arange(max(a.size - 64, 0), a.size)
            ]
            h.update(np.ascontiguousarray(a[np.unravel_index(picks, a.shape)]).tobytes())
    return h.hexdigest()


_INDEXES: collections.OrderedDict[str, _GridIndex] = collections.OrderedDict()
_SEEN: dict[tuple[int, ...], tuple[tuple[Any, ...], str]] = {}
_LOCK = threading.Lock()


def _grid_index(
    lon: np.ndarray,
    lat: np.ndarray,
    lon_bounds: np.ndarray | None,
    lat_bounds: np.ndarray | None,
    shape: tuple[int, ...],
) -> _GridIndex:
    """The cached `_GridIndex` of a grid (``shape``: the field's horizontal shape).

    Keyed by a fingerprint of the coordinates (the same grid reached through another
    dataset or a reopened file shares it); the fingerprint itself is remembered for the
    very array objects it was computed from (while they live), so a dashboard's frames
    over one grid cost no hashing. A 2-D grid without bounds gets its midway corners here.
    Grids are kept most recently used last, at most `_CACHE_SIZE` of them and
    `_CACHE_BYTES` of copies (the latest always).
    """
    arrays = (lon, lat, lon_bounds, lat_bounds)
    ident = tuple(id(a) for a in arrays)
    with _LOCK:
        seen = _SEEN.get(ident)
    key = None
    if seen is not None and all(
        (r is None and a is None) or (r is not None and r() is a)
        for r, a in zip(seen[0], arrays, strict=True)
    ):
        key = seen[1]
    if key is None:
        key = _fingerprint(arrays) + repr(shape)
        refs = tuple(None if a is None else weakref.ref(a) for a in arrays)
        with _LOCK:
            if len(_SEEN) > 64:
                _SEEN.clear()
            _SEEN[ident] = (refs, key)
    with _LOCK:
        index = _INDEXES.get(key)
        if index is not None:
            _INDEXES.move_to_end(key)
            return index
    ncell = lon.size
    if lon_bounds is None or lat_bounds is None:
        if len(shape) == 2 and min(shape) >= 2:
            lon_bounds, lat_bounds = _corners_2d(lon.reshape(shape), lat.reshape(shape))
        else:
            lon_bounds = lat_bounds = None
    if lon_bounds is not None and lat_bounds is not None:
        nv = lon_bounds.shape[-1] if lon_bounds.ndim else 0
        if (
            lon_bounds.shape != lat_bounds.shape
            or lon_bounds.size != ncell * nv
            or nv > _MAX_VERTICES
        ):
            raise ValueError(
                f"cell polygons need lon and lat bounds of one shape with at most "
                f"{_MAX_VERTICES} corners, not {lon_bounds.shape} and {lat_bounds.shape}"
            )
        if lon_bounds.shape[:-1] != tuple(shape) and lon_bounds.shape[:-1] != (ncell,):
            lon_bounds = lon_bounds.reshape(ncell, nv)
            lat_bounds = lat_bounds.reshape(ncell, nv)
    index = _GridIndex(_flat64(lon).ravel(), _flat64(lat).ravel(), lon_bounds, lat_bounds)
    with _LOCK:
        _INDEXES[key] = index
        total = sum(i.nbytes for i in _INDEXES.values())
        while len(_INDEXES) > 1 and (len(_INDEXES) > _CACHE_SIZE or total > _CACHE_BYTES):
            total -= _INDEXES.popitem(last=False)[1].nbytes
    return index


# ---------------------------------------------------------------------------------------
# drawing


def _shifts(x0: float, x1: float) -> np.ndarray:
    """Multiples of 360 that move longitudes in -180..180 onto ``x0..x1``."""
    first = int(np.floor((x0 - 180.0) / 360.0))
    last = int(np.ceil((x1 + 180.0) / 360.0))
    ks = [k for k in range(first, last + 1) if -180.0 + 360.0 * k <= x1 and 180.0 + 360.0 * k >= x0]
    return np.array(ks, dtype="float64") * 360.0


@numba.njit(cache=True, nogil=True)
def _mean(sums, counts):  # pragma: no cover  (numba)
    """``sums / counts`` per pixel, NaN where ``counts`` is 0 (into ``sums``)."""
    h, w = sums.shape
    for j in range(h):
        for i in range(w):
            sums[j, i] = sums[j, i] / counts[j, i] if counts[j, i] > 0 else np.nan
    return sums


def _smaller_than_pixels(
    index: _GridIndex,
    ranges: tuple[np.ndarray, np.ndarray, bool],
    frame: tuple[float, float, float, float],
    screen: tuple[int, int],
) -> bool:
    """Whether the typical cell in view is smaller than a pixel both ways (a sample)."""
    starts, stops, direct = ranges
    lengths = stops - starts
    total = int(lengths.sum())
    if total < screen[0] * screen[1] // 4:
        return False  # few cells: polygons are cheap
    picks = np.linspace(0, total - 1, min(total, 1000)).astype("int64")
    run = np.searchsorted(np.cumsum(lengths), picks, side="right")
    pos = starts[run] + picks - (np.cumsum(lengths) - lengths)[run]
    cells = pos if direct or index.order is None else index.order[pos]
    lonb, latb = index.sample_bounds(cells)
    centre = index.lon[cells][:, None]
    lonb = centre + ((lonb - centre + 180.0) % 360.0) - 180.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN corners
        dlon = np.nanmedian(np.nanmax(lonb, 1) - np.nanmin(lonb, 1))
        dlat = np.nanmedian(np.nanmax(latb, 1) - np.nanmin(latb, 1))
    x0, x1, y0, y1 = frame
    return bool(dlon < (x1 - x0) / screen[0] and dlat < (y1 - y0) / screen[1])


def _draw_centres(
    index: _GridIndex,
    values: np.ndarray,
    frame: tuple[float, float, float, float],
    screen: tuple[int, int],
    *,
    full_resolution: bool,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Cell centres as points: the mean of the centres in each pixel.

    A point cloud is drawn on a canvas coarse enough to hold about two centres per
    pixel; cells smaller than a pixel (``full_resolution``) on the screen's own.
    """
    x0, x1, y0, y1 = frame
    ranges = index.ranges(frame, 0.0)
    shifts = _shifts(x0, x1)
    width, height = screen

    def draw(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        sums, counts = np.zeros(shape[::-1]), np.zeros(shape[::-1])
        _draw_points(index.order if index.order is not None else np.empty(0, np.int32),
                     *ranges, index.lon, index.lat, values, shifts, x0, x1, y0, y1,
                     sums, counts)  # fmt: skip
        return sums, counts

    sums, counts = draw(screen)
    if not full_resolution:
        # a canvas with about two centres per pixel: a point cloud drawn without holes
        scale = min(1.0, np.sqrt(max(counts.sum(), 1.0) / 2.0 / (width * height)))
        coarse = (max(int(width * scale), 1), max(int(height * scale), 1))
        if coarse != screen:
            sums, counts = draw(coarse)
            screen = coarse
    return _fill_gaps(_mean(sums, counts)), screen


def _draw_cells(
    index: _GridIndex,
    values: np.ndarray,
    frame: tuple[float, float, float, float],
    screen: tuple[int, int],
) -> tuple[np.ndarray, tuple[int, int], str]:
    """``(pixels, shape, how)``: polygons when cells are larger than pixels, else centres."""
    if not index.has_polygons:
        pixels, shape = _draw_centres(index, values, frame, screen, full_resolution=False)
        return pixels, shape, "points"
    ranges = index.ranges(frame, index.reach)
    if _smaller_than_pixels(index, ranges, frame, screen):
        # many cells to a pixel: the mean of the centres in each pixel is the picture
        pixels, shape = _draw_centres(index, values, frame, screen, full_resolution=True)
        return pixels, shape, "polygons"
    sums, counts = np.zeros(screen[::-1]), np.zeros(screen[::-1])
    key = (frame, screen)
    pairs, record = index.pairs(key)
    if pairs is None:
        order = index.order
        args = (order if order is not None else np.empty(0, np.int32), *ranges, index.lon,
                index.lat, *index.flat_bounds(), values, *frame, sums, counts)  # fmt: skip
        if record:
            # the frame's second drawing (a view's next step): which cell goes to which
            # pixel is recorded once, and each later step only adds its values
            room = _ROOM_PER_PIXEL * screen[0] * screen[1] + 1024
            pix, cell = np.empty(room, np.int32), np.empty(room, np.int64)
            n = _draw_polygons(*args, pix, cell)
            if n >= 0:
                pairs = (pix[:n].copy(), cell[:n].copy())
                index.keep_pairs(key, pairs, order)
        if pairs is None:
            _draw_split(args, ranges, screen)
            return _mean(sums, counts), screen, "polygons"
    _replay(pairs[0], pairs[1], values, sums, counts)
    return _mean(sums, counts), screen, "polygons"


def _halves(
    ranges: tuple[np.ndarray, np.ndarray, bool],
) -> tuple[tuple[np.ndarray, np.ndarray, bool], tuple[np.ndarray, np.ndarray, bool]]:
    """The runs of cells cut in two halves, the first half's cells first."""
    starts, stops, direct = ranges
    lengths = stops - starts
    ends = np.cumsum(lengths)
    half = int(ends[-1]) // 2
    k = int(np.searchsorted(ends, half, side="right"))
    k = min(k, starts.size - 1)
    cut = int(starts[k] + half - (ends[k] - lengths[k]))
    first = (np.r_[starts[:k], starts[k]], np.r_[stops[:k], cut], direct)
    second = (np.r_[cut, starts[k + 1 :]], np.r_[stops[k], stops[k + 1 :]], direct)
    return first, second


def _draw_split(
    args: tuple, ranges: tuple[np.ndarray, np.ndarray, bool], screen: tuple[int, int]
) -> None:
    """`_draw_polygons` on two threads, bit for bit as on one: the first half of the
    cells is drawn on a worker while this thread records the second half's
    ``(pixel, cell)`` pairs, which are then added in order after the first half's."""
    order, _, _, _, lon, lat, lonb, latb, values, x0, x1, y0, y1, sums, counts = args
    total = int((ranges[1] - ranges[0]).sum())
    none = (np.empty(0, np.int32), np.empty(0, np.int64))
    if total < _SPLIT_MIN_CELLS or not _core_to_spare():
        _draw_polygons(*args, *none)
        return
    first, second = _halves(ranges)
    rest = (lon, lat, lonb, latb, values, x0, x1, y0, y1, sums, counts)
    drawing = _split_pool().submit(_draw_polygons, order, *first, *rest, *none)
    room = _ROOM_PER_PIXEL * screen[0] * screen[1] + 1024
    pix, cell = np.empty(room, np.int32), np.empty(room, np.int64)
    n = _draw_polygons(order, *second, *rest, pix, cell)
    drawing.result()
    if n >= 0:
        _replay(pix[:n], cell[:n], values, sums, counts)
    else:  # more pairs than room: the second half drawn after the first
        _draw_polygons(order, *second, *rest, *none)


def _core_to_spare() -> bool:
    """Whether the machine's load leaves a core idle (the second thread then runs beside
    the first; on a busy machine it would only add the recording's work)."""
    try:
        return os.getloadavg()[0] <= (os.cpu_count() or 1) - 1
    except OSError:
        return False


_SPLIT: Any = None
#: Frames of fewer cells are drawn on one thread.
_SPLIT_MIN_CELLS = 200_000


def _split_pool() -> Any:
    global _SPLIT
    if _SPLIT is None:
        from concurrent.futures import ThreadPoolExecutor

        _SPLIT = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gridscope-rasterize")
    return _SPLIT


def _fill_gaps(values: np.ndarray) -> np.ndarray:
    """Empty pixels between points take the mean of their valid 3x3 neighbours (one pass).

    Where centres are sparser than the canvas (a refined mesh's coarse part) a pixel
    may hold none; a gap wider than one pixel stays empty (no data there). A pixel with
    fewer than 3 valid neighbours stays empty (the edge of the data).
    """
    return _fill_gaps_kernel(np.ascontiguousarray(values, dtype="float64"))


@numba.njit(cache=True, nogil=True)
def _fill_gaps_kernel(values):  # pragma: no cover  (numba)
    h, w = values.shape
    out = values.copy()
    for j in range(h):
        for i in range(w):
            if np.isfinite(values[j, i]):
                continue
            total = 0.0
            count = 0
            for jj in range(max(j - 1, 0), min(j + 2, h)):
                for ii in range(max(i - 1, 0), min(i + 2, w)):
                    v = values[jj, ii]
                    if np.isfinite(v):
                        total += v
                        count += 1
            if count >= 3:
                out[j, i] = total / count
    return out


def _values(field: xr.DataArray, dims: tuple[Hashable, ...]) -> np.ndarray:
    """The field's values flat in the order of its coordinates' dimensions (float32 kept)."""
    if field.dims != dims:
        field = field.transpose(*dims)
    values = np.asarray(field.values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype("float64")
    return np.ascontiguousarray(values).reshape(-1)


def _coord(field: xr.DataArray, name: str, dims: tuple[Hashable, ...]) -> np.ndarray:
    coord = field[name]
    if coord.dims != dims:
        coord = coord.transpose(*dims)
    return np.asarray(coord.values, dtype="float64")


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
        corners are then put midway between its centres. The grid's arrays must not be
        changed in place between calls (what depends only on them is cached).

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
        lon_bounds = lat_bounds = None
    dims = tuple(field["lon"].dims)
    shape = tuple(int(field.sizes[d]) for d in dims)
    lon, lat = _coord(field, "lon", dims), _coord(field, "lat", dims)
    if lon_bounds is None or lat_bounds is None:
        lon_bounds = lat_bounds = None
    else:
        if isinstance(lon_bounds, xr.DataArray):
            lon_bounds = lon_bounds.transpose(*dims, ...).values
        if isinstance(lat_bounds, xr.DataArray):
            lat_bounds = lat_bounds.transpose(*dims, ...).values
        lon_bounds, lat_bounds = np.asarray(lon_bounds), np.asarray(lat_bounds)
    index = _grid_index(lon, lat, lon_bounds, lat_bounds, shape)
    index.index_for(frame)
    values = _values(field, dims)
    pixels, out_shape, how = _draw_cells(index, values, frame, screen)
    out = _empty(frame, out_shape).copy(data=pixels)
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
    """Draw tiny grids once (loads the numba kernels, compiled once per machine and
    cached on disk; the first start on a new machine compiles them: a few seconds)."""
    lon = np.array([[0.0, 1.0], [0.0, 1.0]])
    lat = np.array([[0.0, 0.0], [1.0, 1.0]])
    for dtype in ("float32", "float64"):
        grid = xr.DataArray(np.ones((2, 2), dtype), dims=("y", "x"),
                            coords={"lon": (("y", "x"), lon), "lat": (("y", "x"), lat)})  # fmt: skip
        for _ in range(3):  # drawn, recorded, replayed
            rasterize_to_screen(grid, None, (8, 4))
        cells = grid.stack(cell=("y", "x")).drop_vars(["cell", "y", "x"])
        rasterize_to_screen(cells, None, (8, 4))
    flat = np.ascontiguousarray(lon.ravel())
    bounds = np.ascontiguousarray(np.stack([flat - 0.5, flat + 0.5, flat + 0.5, flat - 0.5], 1))
    bins, _ = _index_cells(flat, flat, bounds, bounds, 90.0, 4, 2, 180.0)
    _counting_sort(bins, 9)
