"""The results the views draw: the current map and series, recomputed when the state changes.

`ViewResults` watches an `ExplorerState` and keeps ``field`` (the full-resolution
map) and ``series`` up to date through `app.compute`. In a served session the work
runs off the event loop and a result is dropped when the user changed something in
the meantime (a generation counter; cluster futures are cancelled). Outside a server
(tests, a plain Python session) `refresh()` computes synchronously.
"""

from __future__ import annotations

import asyncio
from typing import Any

import param
import xarray as xr

from app import compute
from app.state import ExplorerState
from pipelines import QueryError

__all__ = ["ViewResults"]

_MAP_FIELDS = ["dataset", "var", "time_mode", "time", "start", "end", "agg", "anomaly",
               "baseline_start", "baseline_end", "level"]  # fmt: skip
_SERIES_FIELDS = [*_MAP_FIELDS, "region", "bbox", "point"]


def _served() -> bool:
    import panel as pn

    doc = pn.state.curdoc
    return bool(doc is not None and doc.session_context is not None)


class ViewResults(param.Parameterized):
    """Current map and series of a state, with busy flags and the last error."""

    field = param.Parameter(default=None, doc="Full-resolution (lat, lon) map of the state's map_query.")
    series = param.Parameter(default=None, doc="Time series of the state's series_query, or None.")
    series_query = param.Parameter(default=None, doc="The Query that produced ``series``.")
    map_version = param.Integer(default=0, doc="Incremented when a new map arrives.")
    series_version = param.Integer(default=0, doc="Incremented when a new series arrives.")
    map_busy = param.Boolean(default=False, doc="A map computation is running.")
    series_busy = param.Boolean(default=False, doc="A series computation is running.")
    error = param.String(default="", doc="Last computation error, in words.")
    map_where = param.String(default="", doc="Where the last map was computed (cache, in-process, cluster).")

    def __init__(self, state: ExplorerState, **params: Any):
        super().__init__(**params)
        self.state = state
        self._generation = {"map": 0, "series": 0}
        self._jobs: dict[str, compute.Job | None] = {"map": None, "series": None}
        self._pending_series_query: Any = None
        state.param.watch(self._on_map_inputs, _MAP_FIELDS)
        state.param.watch(self._on_series_inputs, _SERIES_FIELDS)

    # --- public ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute map and series now, synchronously."""
        for kind in ("map", "series"):
            self._generation[kind] += 1
            self._run_sync(kind)

    # --- scheduling -----------------------------------------------------------------------
    def _on_map_inputs(self, *events: param.parameterized.Event) -> None:
        self._schedule("map")

    def _on_series_inputs(self, *events: param.parameterized.Event) -> None:
        self._schedule("series")

    def _schedule(self, kind: str) -> None:
        self._generation[kind] += 1
        previous = self._jobs.get(kind)
        if previous is not None:
            previous.cancel()
        if _served():
            generation = self._generation[kind]
            param.parameterized.async_executor(lambda: self._run_async(kind, generation))
        else:
            self._run_sync(kind)

    def _start(self, kind: str) -> compute.Job | None:
        ds = self.state.sources.open(self.state.dataset)
        if kind == "map":
            return compute.start_map(ds, self.state.map_query)
        query = self.state.series_query
        self._pending_series_query = query
        return None if query is None else compute.start_series(ds, query)

    def _deliver(self, kind: str, value: xr.DataArray | None, where: str) -> None:
        if kind == "map":
            self.param.update(field=value, map_version=self.map_version + 1, map_where=where, error="")
        else:
            self.param.update(series=value, series_query=self._pending_series_query,
                              series_version=self.series_version + 1)  # fmt: skip

    def _fail(self, kind: str, exc: Exception) -> None:
        text = exc.message if isinstance(exc, QueryError) else f"{type(exc).__name__}: {exc}"
        self.error = f"Could not compute the {kind}: {text}"
        if kind == "series":
            self.param.update(series=None, series_query=None, series_version=self.series_version + 1)

    def _run_sync(self, kind: str) -> None:
        try:
            job = self._start(kind)
            value = job.result() if job is not None else None
        except Exception as exc:  # shown to the user as words, never as a traceback
            self._fail(kind, exc)
            return
        self._deliver(kind, value, job.where if job is not None else "")

    async def _run_async(self, kind: str, generation: int) -> None:
        if generation != self._generation[kind]:
            return
        busy = f"{kind}_busy"
        setattr(self, busy, True)
        try:
            job = self._start(kind)
            self._jobs[kind] = job
            if job is None:
                value = None
            else:
                value = await asyncio.get_running_loop().run_in_executor(None, job.result)
        except Exception as exc:
            if generation == self._generation[kind]:
                self._fail(kind, exc)
                setattr(self, busy, False)
            return
        if generation != self._generation[kind]:
            return  # stale: the user changed something meanwhile
        self._jobs[kind] = None
        self._deliver(kind, value, job.where if job is not None else "")
        setattr(self, busy, False)
