"""The one place where the app asks for numbers: maps and series for a `Query`.

Everything the dashboard draws or downloads comes from `start_map` / `full_map`,
`start_series` / `series_for` and `map_for_view`. They use the planner
(`pipelines.planner.plan_map` / `plan_series`) when it is importable, otherwise the
brute-force reference `pipelines.compute_map` / `compute_series`: switching is here only.

Where the work runs: small jobs (a map frame of a sample dataset is well under a
megabyte) run in-process, because a round trip through a distributed scheduler costs
tens of milliseconds, more than the work itself; jobs whose input is larger than
``GRIDSCOPE_INPROCESS_BYTES`` (default 32 MiB) run on the Dask cluster registered with
`use_client` (a planner's plan is submitted whole to a worker; a brute-force graph is
computed by the cluster), and can be cancelled when superseded. Results are cached per process (they are small: a map or a series), so
panning, zooming and other sessions asking the same question reuse them.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from pipelines import Query, compute_map, compute_series

__all__ = [
    "Job",
    "check_query",
    "estimated_input_bytes",
    "full_map",
    "map_for_view",
    "resolve_time_labels",
    "series_for",
    "start_map",
    "start_series",
    "use_client",
]

_CLIENT: Any = None
_CACHE_SIZE = 64
_cache: collections.OrderedDict[tuple[int, str, str], xr.DataArray] = collections.OrderedDict()
_cache_lock = threading.Lock()


def use_client(client: Any) -> None:
    """Register the `distributed.Client` that heavy reductions run on (None: in-process)."""
    global _CLIENT
    _CLIENT = client


def current_client() -> Any:
    return _CLIENT


def inprocess_limit() -> int:
    """Input bytes below which a job runs in-process (``GRIDSCOPE_INPROCESS_BYTES``)."""
    try:
        return int(os.environ.get("GRIDSCOPE_INPROCESS_BYTES", 32 * 2**20))
    except ValueError:
        return 32 * 2**20


def _planner() -> Any:
    try:
        from pipelines import planner
    except ImportError:
        return None
    if not hasattr(planner, "plan_map") or not hasattr(planner, "plan_series"):
        return None
    return planner


# --- jobs: compute in-process or on the cluster, cancellable -------------------------
class Job:
    """A running computation whose result may no longer be wanted.

    ``result()`` blocks (and caches the answer); ``cancel()`` releases the cluster
    future so superseded work stops (in-process jobs are short and simply have their
    result dropped).
    """

    def __init__(self, lazy: Any, input_bytes: int, client: Any = None, *, key: Any = None, value: Any = None):
        self.input_bytes = input_bytes
        self.where = "cache" if value is not None else "in-process"
        self._future = None
        self._lazy = lazy
        self._key = key
        self._value = value
        if value is None and client is not None and input_bytes > inprocess_limit():
            if callable(lazy):  # a planner's Plan.compute: run the whole plan on a worker
                self.where = "cluster"
                self._future = client.submit(lazy, pure=False)
            elif getattr(lazy, "chunks", None) is not None:
                self.where = "cluster"
                self._future = client.compute(lazy)

    def result(self) -> xr.DataArray:
        if self._value is not None:
            return self._value
        if self._future is not None:
            value = self._future.result()
        elif callable(self._lazy):
            value = self._lazy()
        else:
            import dask

            with dask.config.set(scheduler="threads"):
                value = self._lazy.compute()
        self._value = value
        if self._key is not None:
            _cache_put(self._key, value)
        return value

    def cancel(self) -> None:
        if self._future is not None and self._value is None:
            self._future.cancel()


# --- questions the app asks ---------------------------------------------------------------
def estimated_input_bytes(ds: xr.Dataset, query: Query, *, series: bool = False) -> int:
    """Bytes of raw data the brute-force plan reads for ``query``."""
    from pipelines.evaluate import field_for
    from pipelines.selection import select_bbox, select_time_range

    da = field_for(ds, query)
    cells = da.sizes.get("lat", 1) * da.sizes.get("lon", 1)
    if series and query.bbox is not None:
        box = select_bbox(da, query.bbox)
        cells = box.sizes["lat"] * box.sizes["lon"]
    elif series and query.point is not None:
        cells = 1
    steps = 1
    if "time" in da.dims:
        if query.time is not None and not series:
            steps = 1
        else:
            steps = select_time_range(da, query.start, query.end).sizes["time"]
        if query.is_anomaly:
            steps += select_time_range(
                da, query.baseline_start, query.baseline_end, "baseline_start"
            ).sizes["time"]
    return int(steps * cells * da.dtype.itemsize)


def _cache_get(key: Any) -> xr.DataArray | None:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    return None


def _cache_put(key: Any, value: xr.DataArray) -> None:
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def _job(kind: str, ds: xr.Dataset, query: Query) -> Job:
    key = (id(ds), kind, query.to_json())
    cached = _cache_get(key)
    if cached is not None:
        return Job(None, 0, key=key, value=cached)
    planner = _planner()
    if planner is not None:
        plan = planner.plan_map(ds, query) if kind == "map" else planner.plan_series(ds, query)
        return Job(plan.compute, int(getattr(plan, "estimated_bytes", 0)), _CLIENT, key=key)
    if kind == "map":
        lazy = compute_map(ds, query)
        size = estimated_input_bytes(ds, query)
    else:
        lazy = compute_series(ds, query)
        size = estimated_input_bytes(ds, query, series=True)
    return Job(lazy, size, _CLIENT, key=key)


def start_map(ds: xr.Dataset, query: Query) -> Job:
    """Start computing the full-resolution map of ``query`` (cache, in-process or cluster)."""
    return _job("map", ds, query)


def start_series(ds: xr.Dataset, query: Query) -> Job:
    """Start computing the time series of ``query`` (cache, in-process or cluster)."""
    return _job("series", ds, query)


def full_map(ds: xr.Dataset, query: Query) -> xr.DataArray:
    """The in-memory (lat, lon) map of ``query`` at full resolution (cached)."""
    return start_map(ds, query).result()


def series_for(ds: xr.Dataset, query: Query) -> xr.DataArray:
    """The in-memory time series of ``query`` (cached)."""
    return start_series(ds, query).result()


def map_for_view(
    ds: xr.Dataset,
    query: Query,
    viewport: tuple[float, float, float, float] | None = None,
    screen: tuple[int, int] | None = None,
) -> xr.DataArray:
    """The map of ``query`` as seen in ``viewport`` (x0, x1, y0, y1) on ``screen`` pixels.

    Cells inside the viewport (plus one cell of margin) are kept; when there are more
    of them than pixels the field is block-averaged down to about screen resolution
    (NaN cells skipped), so the browser receives about one value per pixel.
    """
    planner = _planner()
    if planner is not None and viewport is not None:
        return planner.plan_map(ds, query, viewport=viewport, screen=screen).compute()
    field = full_map(ds, query)
    return regrid_to_screen(field, viewport, screen)


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


def check_query(ds: xr.Dataset, query: Query) -> None:
    """Raise the `QueryError` that computing ``query`` would raise (builds lazily only)."""
    compute_map(ds, query.replace(bbox=None, point=None))
    if query.bbox is not None or query.point is not None:
        if "time" in ds.dims and "time" in ds[query.var].dims:
            compute_series(ds, query.replace(time=None))
        elif query.bbox is not None:
            compute_map(ds, query)


def resolve_time_labels(ds: xr.Dataset, query: Query, labels: Sequence[str]) -> dict[str, str | None]:
    """Map the time labels of ``query`` onto the dataset's step ``labels``.

    ``time`` goes to the nearest step; ``start``/``baseline_start`` to the first step of
    the range and ``end``/``baseline_end`` to its last step, so a link written with
    ``start=1985&end=1986`` lands on the steps it covers.
    """
    from pipelines.evaluate import field_for
    from pipelines.selection import select_time_range, select_time_step

    da = field_for(ds, query)
    index = ds.indexes["time"]
    out: dict[str, str | None] = {}
    if query.time is not None:
        step = select_time_step(da, query.time)
        out["time"] = labels[int(index.get_loc(step["time"].values[()]))]
    for first, last, field in (("start", "end", "start"), ("baseline_start", "baseline_end", "baseline_start")):
        a, b = getattr(query, first), getattr(query, last)
        if a is None and b is None:
            out[first] = out[last] = None
            continue
        selected = select_time_range(da, a, b, field)
        times = selected.indexes["time"]
        out[first] = labels[int(index.get_loc(times[0]))]
        out[last] = labels[int(index.get_loc(times[-1]))]
    return out
