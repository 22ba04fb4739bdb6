"""What each API endpoint answers, from the same functions as the dashboard and the CLI.

Maps come from `app.map_views.start_map_view` (the dashboard's map job: the whole map,
or the planner's answer for a viewport and screen on a large grid) cropped and
coarsened like the dashboard's map (`app.map_views.regrid_to_screen`); series from
`app.answers.start_series`. Both run through `app.jobs.run_job`: costed against
the per-request budget before they start, queued behind ``--max-concurrent``, cancelled
after ``--request-timeout``, off the event loop. Files are written by `app.exports`
(the dashboard's download buttons and ``gridscope export`` write with the same
functions), so the three doors give the same numbers.

Every answer has a strong ETag: a hash of the endpoint, the normalised request
(`ApiParams.key`), the store version (`store_version`) and the gridscope version, so a
conditional request is answered without computing, and a cached answer is found by
its ETag in the one answer cache (`app.answer_cache`), which the dashboard's maps and
series share, as do the other server processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import xarray as xr

from app import exports, labels, limits
from app.answer_cache import AnswerCache, code_version, gridscope_version, store_version
from app.answers import start_map, start_series
from app.api.errors import ApiError
from app.api.params import ApiParams
from app.costs import CostToConfirm
from app.jobs import run_job
from app.map_views import is_small_grid, regrid_to_screen, start_map_view, view_request
from app.query_checks import check_query
from app.sources import DatasetSources
from pipelines.query import Query, QueryError

__all__ = [
    "ApiContext",
    "MAP_FORMATS",
    "SERIES_FORMATS",
    "cache_key",
    "catalog_version",
    "check_queue",
    "dataset_version",
    "datasets_document",
    "etag_for",
    "gridscope_version",
    "map_answer",
    "open_for",
    "query_document",
    "series_answer",
    "series_query",
    "store_version",
]

MAP_FORMATS = {"png": "image/png", "nc": "application/x-netcdf", "json": "application/json"}
SERIES_FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")
#: Seconds before a dataset that failed to open (a remote store out of reach) is tried again.
RETRY_FAILED_SECONDS = 60.0
#: Seconds a dataset's store version is trusted before its files are looked at again: a
#: rebuilt or appended store is answered from within this long after it is published.
VERSION_CHECK_SECONDS = 1.0
#: Request query strings whose reading (`parse_params`) is remembered per context.
REMEMBERED_REQUESTS = 4096


@dataclasses.dataclass
class ApiContext:
    """What the API handlers share: the datasets, the answer cache and the API's settings.

    Attributes
    ----------
    sources
        The served datasets (the dashboard's `DatasetSources`); nothing else is opened.
    cache
        The runtime's answer cache (`app.answer_cache`): finished bodies keyed by ETag,
        beside the dashboard's maps and series.
    max_json_cells
        Largest map a ``map.json`` answer holds (``GRIDSCOPE_API_JSON_CELLS``, 250 000).
    max_queued
        Computations that may wait for a slot before more are refused with 429
        (``GRIDSCOPE_API_MAX_QUEUED``, default 16; only with ``--max-concurrent``).
    max_age
        ``Cache-Control: max-age`` of catalog datasets' answers, seconds
        (``GRIDSCOPE_API_MAX_AGE``, default 3600); extra sources get ``no-cache``.
    catalog_ids
        Dataset ids that are catalog entries (public, cacheable answers).
    public
        Public mode (``--public``): any web page may read the answers (CORS ``*``);
        otherwise only pages of the server's own origin may (a page elsewhere must not
        read a private server's data through the visitor's browser).
    """

    sources: DatasetSources
    cache: AnswerCache
    max_json_cells: int = 250_000
    max_queued: int = 16
    max_age: int = 3600
    catalog_ids: frozenset[str] = frozenset()
    public: bool = False
    version_check_seconds: float = VERSION_CHECK_SECONDS
    opened: set[str] = dataclasses.field(default_factory=set)
    failed: dict[str, tuple[float, str]] = dataclasses.field(default_factory=dict)
    #: dataset (or ``""``: the whole catalog) -> (when it was checked, its store version)
    versions: dict[str, tuple[float, str]] = dataclasses.field(default_factory=dict)
    _requests: dict[tuple[str, str], tuple[ApiParams, str]] = dataclasses.field(
        default_factory=dict, repr=False
    )

    @classmethod
    def from_runtime(cls, sources: DatasetSources, runtime: Any = None) -> ApiContext:
        """The API's settings and cache from ``runtime`` (default: `app.runtime.current`).

        ``public`` is the runtime's `app.limits.Limits` setting (configured before this).
        """
        from app.runtime import current

        runtime = runtime if runtime is not None else current()
        settings = runtime.settings
        catalog = frozenset(i for i in sources.ids if _SLUG.fullmatch(i) and not os.path.exists(i))
        return cls(
            sources=sources,
            cache=runtime.cache,
            max_json_cells=settings.api_json_cells,
            max_queued=settings.api_max_queued,
            max_age=settings.api_max_age,
            catalog_ids=catalog,
            public=runtime.limits.public,
        )

    def request(
        self, endpoint: str, text: str, read: Callable[[str], tuple[ApiParams, str]]
    ) -> tuple[ApiParams, str]:
        """``read(text)`` (the request and its normal form), remembered per endpoint.

        A popular link repeats the same query string, so a warm request or a 304 costs a
        dict lookup instead of parsing and normalising it again. Only requests that read
        without error are kept, at most `REMEMBERED_REQUESTS` (the oldest go first).
        """
        known = self._requests.get((endpoint, text))
        if known is None:
            known = read(text)
            if len(self._requests) >= REMEMBERED_REQUESTS:
                del self._requests[next(iter(self._requests))]
            self._requests[(endpoint, text)] = known
        return known

    def recent_version(self, dataset: str) -> str | None:
        """``dataset``'s store version if it was checked under `version_check_seconds` ago."""
        seen = self.versions.get(dataset)
        if seen is not None and time.monotonic() - seen[0] < self.version_check_seconds:
            return seen[1]
        return None

    def cache_control(self, dataset: str | None = None) -> str:
        """Public and cacheable for catalog data; revalidated (ETag) for other sources."""
        if dataset is None or dataset in self.catalog_ids:
            return f"public, max-age={self.max_age}"
        return "no-cache"


def cache_key(etag: str, version: str) -> str:
    """The answer cache's key of the answer with ``etag``: kept in this process only
    (``local:``) when its data has no file (`app.answer_cache.store_version`); under a
    byte budget the budget is part of it (see `app.answers.answer_key_for`)."""
    budget = limits.current().max_request_bytes
    suffix = "" if budget is None else f":budget={budget}"
    return ("local:" if "memory=" in version else "") + "api:" + etag + suffix


@functools.lru_cache(maxsize=REMEMBERED_REQUESTS)
def etag_for(endpoint: str, key: str, version: str) -> str:
    """The strong ETag of an answer (quoted, as the header carries it).

    The code's version (`app.answer_cache.code_version`) is part of it: an answer
    drawn by other code is another answer.
    """
    text = "\n".join((endpoint, key, version, code_version()))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:40] + '"'


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run blocking work (opening, planning, drawing) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


def open_for(ctx: ApiContext, dataset: str) -> xr.Dataset:
    """The served dataset ``dataset``; 404 for any other name (nothing else is opened)."""
    if dataset not in ctx.sources.ids:
        shown = ", ".join(ctx.sources.ids[:20])
        name = limits.scrub(repr(dataset[:80]))
        raise ApiError(404, "dataset", f"unknown dataset {name}; available: {shown}")
    return ctx.sources.open(dataset)


async def dataset_version(ctx: ApiContext, dataset: str) -> str:
    """The store version of ``dataset``, opening it in a thread the first time only.

    Once open, finding the version costs file-metadata calls (`app.sources` checks
    whether the source grew, `store_version` reads the stores' stamps), so a cached
    answer or a 304 is found without a thread hop; and it is looked at no more than once
    per `ApiContext.version_check_seconds`: a popular link costs a dict lookup.
    """
    version = ctx.recent_version(dataset)
    if version is not None:
        return version
    checked = time.monotonic()
    if dataset in ctx.opened:
        version = store_version(open_for(ctx, dataset))
        ctx.versions[dataset] = (checked, version)
        return version
    failed = ctx.failed.get(dataset)
    if failed is not None and time.monotonic() - failed[0] < RETRY_FAILED_SECONDS:
        raise ApiError(503, "dataset", failed[1], retry_after=int(RETRY_FAILED_SECONDS))
    from data_catalog.errors import DatasetOpenError

    try:
        version = await in_thread(lambda: store_version(open_for(ctx, dataset)))
    except DatasetOpenError as exc:  # tried again after a while, not on every request
        ctx.failed[dataset] = (time.monotonic(), limits.user_message(exc, dataset))
        raise
    ctx.failed.pop(dataset, None)
    ctx.opened.add(dataset)
    ctx.versions[dataset] = (checked, version)
    return version


def check_queue(ctx: ApiContext) -> None:
    """429 when every slot is taken and ``max_queued`` computations already wait."""
    slots = limits.slots()
    if slots.limit is None or slots.running < slots.limit:
        return
    if slots.queued >= ctx.max_queued:
        raise ApiError(
            429,
            "query",
            f"the server is busy ({slots.running} computations running, {slots.queued} "
            "waiting); try again in a few seconds",
            retry_after=2,
        )


# --- maps ---------------------------------------------------------------------------------
async def _map_field(ctx: ApiContext, ds: xr.Dataset, params: ApiParams) -> xr.DataArray:
    """The whole map on the dataset's own cells (what ``gridscope export`` writes) or,
    with a viewport or a screen size, the dashboard's map of that view
    (`app.map_views.map_for_view`'s steps, run under the server's limits)."""
    check_queue(ctx)
    if params.viewport is None and params.screen is None:
        return await run_job(await in_thread(start_map, ds, params.query))
    job = await in_thread(start_map_view, ds, params.query, params.viewport, params.screen)
    field = await run_job(job)
    if is_small_grid(ds) or view_request(params.viewport, params.screen)[0] is None:
        field = await in_thread(regrid_to_screen, field, params.viewport, params.screen)
    return field


def _colour(field: xr.DataArray, params: ApiParams) -> tuple[str, tuple[float, float]]:
    """The dashboard's colour map and range for this view (`app.views.map_view.colour_range`)."""
    from app.state import DIVERGING_CMAPS, SEQUENTIAL_CMAPS
    from app.views.map_view import colour_range

    anomaly = params.query.is_anomaly
    cmap = params.cmap or (DIVERGING_CMAPS[0] if anomaly else SEQUENTIAL_CMAPS[0])
    view = SimpleNamespace(
        clim_mode="fixed" if params.clim is not None else "auto",
        clim=params.clim,
        is_diverging=anomaly or cmap in DIVERGING_CMAPS,
    )
    return cmap, colour_range(np.asarray(field.values), view)  # type: ignore[arg-type]


def _render_map(
    fmt: str,
    field: xr.DataArray,
    params: ApiParams,
    max_cells: int,
    words: Any,
    grid: xr.Dataset | None = None,
) -> bytes:
    if fmt == "png":  # drawn as the dashboard's "Map PNG" download draws it
        cmap, clim = _colour(field, params)
        buffer = io.BytesIO()
        exports.map_to_png(
            field, buffer, cmap=cmap, clim=clim, title=words.title(), label=words.quantity
        )
        return buffer.getvalue()
    if fmt == "nc":
        return exports.map_to_netcdf(field, query=params.query, words=words, grid=grid) or b""
    _check_cells(int(field.size), max_cells)
    if field.dims != ("lat", "lon") and set(field.dims) == {"lat", "lon"}:
        field = field.transpose("lat", "lon")
    document = {
        "dataset": params.query.dataset,
        "var": params.query.var,
        "long_name": str(field.attrs.get("long_name", params.query.var)),
        "units": str(field.attrs.get("units", "")),
        "query": params.query.to_dict(),
        "level": int(field.attrs.get("gridscope_level", 0) or 0),
        "dims": [str(d) for d in field.dims],
        "lat": _nested(field["lat"].values),
        "lon": _nested(field["lon"].values),
        "values": _nested(field.values),
    }
    return json.dumps(document, allow_nan=False).encode()


def _check_cells(cells: int, max_cells: int) -> None:
    if cells > max_cells:
        raise ApiError(
            413,
            "query",
            f"this map has {cells} cells, more than the {max_cells} a map.json answer may hold; "
            "ask for map.nc, or give width and height (a screen size) or x_range and y_range "
            "(a smaller view)",
        )


def _nested(values: Any) -> Any:
    """Nested lists of floats, ``None`` for missing values (JSON has no NaN)."""
    array = np.asarray(values, dtype="float64")
    if array.ndim == 0:
        return float(array) if math.isfinite(array) else None
    if array.ndim == 1:
        return [float(v) if math.isfinite(v) else None for v in array]
    return [_nested(row) for row in array]


async def map_answer(ctx: ApiContext, fmt: str, params: ApiParams) -> bytes:
    """The body of ``map.<fmt>`` for ``params`` (computed; the caller caches it)."""
    ds = await in_thread(open_for, ctx, params.query.dataset)
    if (
        fmt == "json"
        and params.screen is None
        and params.viewport is None
        and params.query.bbox is None
    ):
        da = ds[params.query.var] if params.query.var in ds.data_vars else None
        if da is not None:  # an unknown variable is named by the computation
            cells = math.prod(n for d, n in da.sizes.items() if d not in ("time", "level"))
            _check_cells(int(cells), ctx.max_json_cells)
    field = await _map_field(ctx, ds, params)
    words = labels.view_labels(params.query, ctx.sources.info(params.query.dataset))
    grid = None
    if fmt == "nc" and params.viewport is None and params.screen is None:
        # native cells, as ``gridscope export`` writes them: with their bounds and the
        # grid-mapping variable their ``grid_mapping`` attribute names
        grid = await in_thread(exports.native_grid_variables, ds, field, params.query)
    return await in_thread(_render_map, fmt, field, params, ctx.max_json_cells, words, grid)


# --- series ---------------------------------------------------------------------------------
def series_query(query: Query) -> Query:
    """The dashboard's series query: a single ``time`` only highlights a step of the series."""
    if query.bbox is None and query.point is None:
        raise QueryError("bbox", "a time series needs a point (lon,lat) or a bbox (W,S,E,N)")
    return query.replace(time=None) if query.time is not None else query


async def series_answer(ctx: ApiContext, fmt: str, params: ApiParams) -> bytes:
    """The body of ``series.<fmt>`` for ``params``."""
    ds = await in_thread(open_for, ctx, params.query.dataset)
    query = series_query(params.query)
    check_queue(ctx)
    job = await in_thread(start_series, ds, query)
    series = await run_job(job)
    text = exports.series_to_csv(series, var=query.var)
    if fmt == "csv":
        return text.encode()
    rows = [line.split(",", 1) for line in text.splitlines()[1:]]
    document = {
        "dataset": query.dataset,
        "var": query.var,
        "long_name": str(series.attrs.get("long_name", query.var)),
        "units": str(series.attrs.get("units", "")),
        "query": query.to_dict(),
        "time": [t for t, _ in rows],
        "values": [float(v) if v else None for _, v in rows],
    }
    return json.dumps(document, allow_nan=False).encode()


# --- the catalog and query checks --------------------------------------------------------------
def _grid(ds: xr.Dataset) -> dict[str, Any]:
    """The dataset's horizontal grid (`data_catalog.grid.grid_of`): kind, cells, extent."""
    from data_catalog.grid import grid_of

    grid = grid_of(ds)
    return {
        "kind": grid.kind,
        "shape": {d: int(n) for d, n in zip(grid.dims, grid.shape, strict=True)},
        "lon": [float(np.nanmin(grid.lon)), float(np.nanmax(grid.lon))],
        "lat": [float(np.nanmin(grid.lat)), float(np.nanmax(grid.lat))],
    }


def catalog_version(ctx: ApiContext) -> str:
    """The store versions of all datasets (the catalog listing's ETag input).

    A dataset that cannot be opened (a remote store without network) is listed with
    its error and tried again at most once a minute, not on every request. Looked at no
    more than once per `ApiContext.version_check_seconds`, like `dataset_version`.
    """
    version = ctx.recent_version("")
    if version is not None:
        return version
    checked = time.monotonic()
    parts = []
    for dataset in ctx.sources.ids:
        failed = ctx.failed.get(dataset)
        if failed is not None and time.monotonic() - failed[0] < RETRY_FAILED_SECONDS:
            parts.append(f"{dataset}=error")
            continue
        try:
            parts.append(f"{dataset}={store_version(ctx.sources.open(dataset))}")
        except Exception as exc:  # noqa: BLE001  (listed with its error)
            ctx.failed[dataset] = (time.monotonic(), limits.user_message(exc, dataset))
            parts.append(f"{dataset}=error")
            continue
        ctx.failed.pop(dataset, None)
        ctx.opened.add(dataset)
    ctx.versions[""] = (checked, "\n".join(parts))
    return ctx.versions[""][1]


def _dataset_entry(ctx: ApiContext, dataset: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": dataset, "title": ctx.sources.title(dataset)}
    if dataset in ctx.failed:
        entry["error"] = ctx.failed[dataset][1]
        return entry
    try:
        info = ctx.sources.info(dataset)
        ds = ctx.sources.open(dataset)
        grid = _grid(ds)
    except Exception as exc:  # noqa: BLE001  (a broken dataset is listed with the reason)
        entry["error"] = limits.user_message(exc, dataset)
        return entry
    entry["attribution"] = info.attribution
    entry["grid"] = grid
    entry["time"] = (
        {"steps": len(info.times), "first": info.times[0], "last": info.times[-1],
         "climatology": info.climatology}
        if info.times else None
    )  # fmt: skip
    entry["variables"] = [
        {"name": v.name, "long_name": v.long_name, "units": v.units,
         "levels": list(v.levels), "has_time": v.has_time}
        for v in info.variables.values()
    ]  # fmt: skip
    return entry


def datasets_document(ctx: ApiContext) -> dict[str, Any]:
    """The served datasets: variables, units, time range, grid (opened lazily, once)."""
    return {
        "gridscope_version": gridscope_version(),
        "datasets": [_dataset_entry(ctx, dataset) for dataset in ctx.sources.ids],
    }


def _series_charge(ds: xr.Dataset, query: Query) -> int:
    """The bytes `app.answers.start_series` charges the budget for ``query``, found
    without starting it (asked to stop before anything runs: `CostToConfirm`)."""
    try:
        job = start_series(ds, query, ask_above=0)
    except (CostToConfirm, limits.RequestTooLarge) as exc:
        return int(exc.estimated_bytes)
    return int(job.input_bytes)  # 0: the answer is cached


def query_document(ctx: ApiContext, params: ApiParams) -> dict[str, Any]:
    """A query checked against its data, with its cost and normalised permalink.

    Raises the `QueryError` the map or series would raise (400), 404 for an unknown
    dataset; ``fits_budget`` says whether the server's byte budget lets it run.
    """
    from pipelines.planner import plan_map, plan_series

    ds = open_for(ctx, params.query.dataset)
    check_query(ds, params.query)
    vp, sc, _ = view_request(params.viewport, params.screen)
    map_plan = plan_map(ds, params.query, viewport=vp, screen=sc)
    cost: dict[str, Any] = {"map": {"bytes": int(map_plan.estimated_bytes),
                                    "plan": limits.scrub(map_plan.description)}}  # fmt: skip
    series: Query | None = None
    if params.query.point is not None or params.query.bbox is not None:
        if "time" in ds[params.query.var].dims:
            series = series_query(params.query)
            plan = plan_series(ds, series)
            cost["series"] = {
                "bytes": _series_charge(ds, series),
                "plan": limits.scrub(plan.description),
            }
    budget = limits.current().max_request_bytes
    fits = all(budget is None or c["bytes"] <= budget for c in cost.values())
    return {
        "valid": True,
        "query": params.query.to_dict(),
        "permalink": "?" + params.to_query_string(),
        "cost": cost,
        "budget_bytes": budget,
        "fits_budget": fits,
        "endpoints": {
            "map": ["map.png", "map.nc", "map.json"],
            "series": ["series.csv", "series.json"] if series is not None else [],
        },
    }
