"""The one place where the app asks for numbers: maps and series for a `Query`.

Everything the dashboard draws or downloads, the API serves and ``gridscope export``
writes comes from `start_map` / `full_map`, `start_series` / `series_for` and
`app.map_views.map_for_view`. They use the planner (`pipelines.planner.plan_map` /
`plan_series`) when it is importable, otherwise the brute-force reference
`pipelines.compute_map` / `compute_series`: switching is here only. Each answer is
costed against the request budget before it starts (`app.limits.check_cost`), found in
the runtime's answer cache when it was computed before (by any session, API request or
server process: `app.answer_cache`), else run as an `app.jobs.Job`.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from app import limits
from app.answer_cache import answer_key, store_version
from app.costs import ask_first, estimated_input_bytes, series_chunk_bytes
from app.jobs import Job
from pipelines import Query, compute_map, compute_series

__all__ = ["answer_key_for", "full_map", "planner", "series_for", "start_map", "start_series"]


def planner() -> Any:
    """`pipelines.planner` when it has `plan_map` and `plan_series`, else None."""
    try:
        from pipelines import planner
    except ImportError:
        return None
    if not hasattr(planner, "plan_map") or not hasattr(planner, "plan_series"):
        return None
    return planner


def answer_key_for(ds: xr.Dataset, kind: str, *parts: Any) -> str:
    """The answer cache's key of an answer of ``kind`` about ``ds`` (`answer_key`).

    Under a byte budget (public mode) the budget is part of the key: an answer computed
    without one (by another server sharing the cache) never slips past it, so whether a
    link is refused never depends on who asked first.
    """
    budget = limits.current().max_request_bytes
    return answer_key(kind, store_version(ds), parts if budget is None else (*parts, budget))


def _job(kind: str, ds: xr.Dataset, query: Query, ask_above: int | None = None) -> Job:
    from app.runtime import current

    runtime = current()
    key = answer_key_for(ds, kind, query.to_json())
    cached = runtime.cache.get(key)
    if cached is not None:
        return Job(None, 0, key=key, value=cached, runtime=runtime)
    plans = planner()
    if plans is not None:
        plan = plans.plan_map(ds, query) if kind == "map" else plans.plan_series(ds, query)
        size = int(getattr(plan, "estimated_bytes", 0))
        raw = str(getattr(plan, "description", "")).startswith("brute force")
        if raw and kind == "series":
            size = max(size, series_chunk_bytes(ds, query))
        limits.check_cost(size)  # costed before anything runs
        ask_first(kind, size, raw, ask_above)
        return Job(plan.compute, size, runtime.client, key=key, runtime=runtime)
    if kind == "map":
        lazy = compute_map(ds, query)
        size = estimated_input_bytes(ds, query)
    else:
        lazy = compute_series(ds, query)
        size = max(estimated_input_bytes(ds, query, series=True), series_chunk_bytes(ds, query))
    limits.check_cost(size)
    ask_first(kind, size, True, ask_above)
    return Job(lazy, size, runtime.client, key=key, runtime=runtime)


def start_map(ds: xr.Dataset, query: Query) -> Job:
    """Start computing the full-resolution map of ``query`` (cache, in-process or cluster)."""
    return _job("map", ds, query)


def start_series(ds: xr.Dataset, query: Query, *, ask_above: int | None = None) -> Job:
    """Start computing the time series of ``query`` (cache, in-process or cluster).

    With ``ask_above`` (bytes), a series that would read more raises `CostToConfirm`
    before anything starts: the dashboard asks the user first (`app.costs.ask_limit`).
    """
    return _job("series", ds, query, ask_above)


def full_map(ds: xr.Dataset, query: Query) -> xr.DataArray:
    """The in-memory (lat, lon) map of ``query`` at full resolution (cached)."""
    return start_map(ds, query).result()


def series_for(ds: xr.Dataset, query: Query) -> xr.DataArray:
    """The in-memory time series of ``query`` (cached)."""
    return start_series(ds, query).result()
