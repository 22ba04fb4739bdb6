"""The results the views draw: the current map and series, recomputed when the state changes.

`ViewResults` watches an `ExplorerState` and keeps ``field`` (the map) and ``series``
up to date through `app.answers` and `app.map_views`. ``field`` is the whole map for small grids, and the
planner's answer for the map view's ``viewport`` and ``screen`` for large ones
(`app.map_views.start_map_view`), re-planned when the view pans or zooms.

In a served session cheap work on a small grid (a cache hit, or an in-process map
reading at most ``GRIDSCOPE_SYNC_BYTES``, default 2 MiB: a frame of a sample file) is
delivered at once, inside the widget's callback, so the new map is the first thing sent
to the browser; anything else -- opening, planning, costing and computing -- runs off
the event loop (a thread, then `app.jobs.run_job`), reports its progress, and is
dropped when the user changed something in the meantime (a generation counter; cluster
futures are cancelled), so one session's work never holds up the server's other
sessions. A series is recomputed only when its query changes.

A series that would read more than `app.costs.ask_limit` (a whole unbuilt terabyte
record) is costed and not started: ``series_question`` says what it would read and
about how long that takes, `compute_series_anyway` starts it (with progress in
``series_progress``) and `cancel_series` stops it. Outside a server (tests, a plain
Python session) `refresh()` computes synchronously.
"""

from __future__ import annotations

import time
from typing import Any

import param
import xarray as xr

from app import answers, cluster_health, costs, jobs, limits, map_views
from app.runtime import Runtime, using
from app.state import ExplorerState

__all__ = ["ViewResults"]

_MAP_FIELDS = ["dataset", "var", "time_mode", "time", "start", "end", "agg", "anomaly",
               "baseline_start", "baseline_end", "level"]  # fmt: skip
_SERIES_FIELDS = [*_MAP_FIELDS, "region", "bbox", "point"]


def _sync_bytes() -> int:
    from app.runtime import current

    return current().settings.sync_bytes


def _served() -> bool:
    import panel as pn

    doc = pn.state.curdoc
    return bool(doc is not None and doc.session_context is not None)


class ViewResults(param.Parameterized):
    """Current map and series of a state, with busy flags and the last error."""

    field = param.Parameter(
        default=None, doc="Full-resolution (lat, lon) map of the state's map_query."
    )
    series = param.Parameter(default=None, doc="Time series of the state's series_query, or None.")
    series_query = param.Parameter(default=None, doc="The Query that produced ``series``.")
    map_version = param.Integer(default=0, doc="Incremented when a new map arrives.")
    series_version = param.Integer(default=0, doc="Incremented when a new series arrives.")
    map_busy = param.Boolean(default=False, doc="A map computation is running.")
    series_busy = param.Boolean(default=False, doc="A series computation is running.")
    queued = param.Boolean(default=False, doc="A computation waits for a free slot (server busy).")
    map_error = param.String(
        default="", doc="Why the current map could not be computed ('' if it was)."
    )
    series_error = param.String(
        default="", doc="Why the current series could not be computed ('' if it was)."
    )
    error = param.String(
        default="", doc="The map's and the series' errors, in words (one line each)."
    )
    map_where = param.String(
        default="", doc="Where the last map was computed (cache, in-process, cluster)."
    )
    viewport = param.Parameter(
        default=None, doc="Map view (x0, x1, y0, y1) in degrees, or None (whole map)."
    )
    screen = param.Parameter(default=None, doc="Map plot size (width, height) in pixels, or None.")
    progress = param.String(
        default="", doc="Progress of a long map computation, in words ('' when none)."
    )
    series_progress = param.String(
        default="", doc="Progress of a long series computation, in words ('' when none)."
    )
    series_question = param.String(
        default="",
        doc="What the series would read and how long it would take, when it waits for the "
        "user's go-ahead ('' when it does not).",
    )

    def __init__(self, state: ExplorerState, runtime: Runtime | None = None, **params: Any):
        super().__init__(**params)
        self.state = state
        self.runtime = runtime  # what the views compute on (None: the process's runtime)
        self._generation = {"map": 0, "series": 0}
        self._jobs: dict[str, jobs.Job | None] = {"map": None, "series": None}
        self._pending_series_query: Any = None
        self._scheduled_series: Any = ()  # (dataset, series query) last scheduled
        self._view_key: Any = None  # what the current/pending map was computed for
        self._prestarted: dict[str, tuple[int, Any]] = {}
        self._confirmed: Any = None  # (dataset, series query) the user said to compute anyway
        state.param.watch(self._on_map_inputs, _MAP_FIELDS)
        state.param.watch(self._on_series_inputs, _SERIES_FIELDS)
        self.param.watch(self._on_view, ["viewport", "screen"])
        self.param.watch(self._join_errors, ["map_error", "series_error"])

    def _join_errors(self, *events: param.parameterized.Event) -> None:
        self.error = "\n\n".join(e for e in (self.map_error, self.series_error) if e)

    def set_view(self, viewport: Any = None, screen: Any = None) -> None:
        """The map plot's visible range and size; re-plans the map when that needs new data."""
        updates = {}
        if viewport is not None:
            updates["viewport"] = tuple(float(v) for v in viewport)
        if screen is not None and screen[0] and screen[1]:
            updates["screen"] = (int(screen[0]), int(screen[1]))
        self.param.update(**updates)

    # --- public ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute map and series now, synchronously."""
        self._scheduled_series = (self.state.dataset, self._series_query_or_error())
        for kind in ("map", "series"):
            self._generation[kind] += 1
            self._run_sync(kind)

    def start(self) -> None:
        """The first map and series of a page: off the event loop when served, else `refresh`.

        Cheap results on a small grid still arrive at once (in the page's first render);
        anything that opens, plans or reads more runs in the background.
        """
        if not _served():
            self.refresh()
            return
        self._scheduled_series = (self.state.dataset, self._series_query_or_error())
        self._schedule("map")
        self._schedule("series")

    def compute_series_anyway(self) -> None:
        """Start the series the user was asked about (`series_question`), whatever it reads."""
        try:
            self._confirmed = (self.state.dataset, self.state.series_query)
        except Exception:  # noqa: BLE001  (an invalid query: the job says so)
            self._confirmed = None
        self.series_question = ""
        self._schedule("series")

    def cancel_series(self) -> None:
        """Stop the running series; a costly one is asked about again."""
        self._confirmed = None
        self._schedule("series")

    @property
    def whole_map(self) -> bool:
        """Whether ``field`` is the whole map (small grid), not the view's crop."""
        try:
            ds = self.state.sources.open(self.state.dataset)
        except Exception:  # noqa: BLE001  (a broken dataset: nothing is drawn anyway)
            return True
        return (
            map_views.is_small_grid(ds)
            or map_views.view_request(self.viewport, self.screen)[0] is None
        )

    # --- scheduling -----------------------------------------------------------------------
    def _on_map_inputs(self, *events: param.parameterized.Event) -> None:
        self._schedule("map")

    def _series_query_or_error(self) -> Any:
        try:
            return self.state.series_query
        except Exception as exc:  # noqa: BLE001  (an invalid query: let the job say so)
            return ("invalid", repr(exc))

    def _on_series_inputs(self, *events: param.parameterized.Event) -> None:
        wanted = (self.state.dataset, self._series_query_or_error())
        if wanted == self._scheduled_series:
            return  # e.g. a new time step in step mode: same series, only the highlight moves
        self._scheduled_series = wanted
        self._schedule("series")

    def _current_view_key(self) -> Any:
        try:
            ds = self.state.sources.open(self.state.dataset)
        except Exception:  # noqa: BLE001
            return None
        if map_views.is_small_grid(ds):
            return ("whole",)
        return map_views.view_request(self.viewport, self.screen)[:2]

    def _on_view(self, *events: param.parameterized.Event) -> None:
        key = self._current_view_key()
        if key == self._view_key:
            return  # a small grid is drawn whole: panning and zooming need no new data
        self._schedule("map", delay=0.15)  # pan/zoom: wait for the gesture to settle

    def _schedule(self, kind: str, delay: float = 0.0) -> None:
        self._generation[kind] += 1
        previous = self._jobs.get(kind)
        if previous is not None:
            previous.cancel()
        self._jobs[kind] = None
        self._prestarted.pop(kind, None)
        if kind == "series" and (self.series_busy or self.series_progress):
            self.param.update(series_busy=False, series_progress="")
        if _served():
            generation = self._generation[kind]
            if not delay and self._try_now(kind, generation):
                return
            param.parameterized.async_executor(lambda: self._run_async(kind, generation, delay))
        else:
            self._run_sync(kind)

    def _try_now(self, kind: str, generation: int) -> bool:
        """Deliver a cheap result inside the current callback; False: run it off the loop."""
        try:
            if not self.state.sources.is_loaded(self.state.dataset):
                return False  # opening it may take a while
            ds = self.state.sources.open(self.state.dataset)
            if not map_views.is_small_grid(ds):
                return False  # planning and costing a large dataset's views may take a while
            job = self._start(kind)
        except costs.CostToConfirm as exc:
            self._ask(exc)
            return True
        except Exception:  # noqa: BLE001  (the async path reports it in words)
            return False
        cheap = (
            job is None
            or job.where == "cache"
            # the map is what the user waits for; a series is computed in a thread
            or (kind == "map" and job.where == "in-process" and job.input_bytes <= _sync_bytes())
        )
        if not cheap:
            self._prestarted[kind] = (generation, job)  # _run_async awaits it
            return False
        try:
            value = job.result() if job is not None else None
        except Exception as exc:  # noqa: BLE001
            self._fail(kind, exc)
            return True
        self._deliver(kind, value, job.where if job is not None else "")
        return True

    def _start(self, kind: str) -> jobs.Job | None:
        with using(self.runtime):  # the job keeps its runtime: its client, cache and slots
            return self._start_job(kind)

    def _task_counts(self) -> tuple[int, int] | None:
        with using(self.runtime):
            return cluster_health.cluster_task_counts()

    def _start_job(self, kind: str) -> jobs.Job | None:
        ds = self.state.sources.open(self.state.dataset)
        if kind == "map":
            self._view_key = self._current_view_key()
            return map_views.start_map_view(ds, self.state.map_query, self.viewport, self.screen)
        query = self.state.series_query
        self._pending_series_query = query
        if query is None:
            return None
        confirmed = self._confirmed == (self.state.dataset, query)
        return answers.start_series(ds, query, ask_above=None if confirmed else costs.ask_limit())

    def _deliver(self, kind: str, value: xr.DataArray | None, where: str) -> None:
        if kind == "map":
            self.param.update(
                field=value, map_version=self.map_version + 1, map_where=where, map_error=""
            )
        else:
            self.param.update(series=value, series_query=self._pending_series_query,
                              series_version=self.series_version + 1, series_error="",
                              series_question="")  # fmt: skip

    def _ask(self, question: costs.CostToConfirm) -> None:
        """No series yet: say what it would cost, and wait for `compute_series_anyway`."""
        self.param.update(series=None, series_query=None, series_version=self.series_version + 1,
                          series_error="", series_question=question.message, series_busy=False,
                          series_progress="")  # fmt: skip

    def _fail(self, kind: str, exc: Exception) -> None:
        text = limits.user_message(exc, self.state.dataset)  # words, no traceback, no paths
        setattr(self, f"{kind}_error", f"Could not compute the {kind}: {text}")
        if kind == "series":
            self.param.update(series=None, series_query=None, series_question="",
                              series_version=self.series_version + 1)  # fmt: skip

    def _run_sync(self, kind: str) -> None:
        try:
            job = self._start(kind)
            value = job.result() if job is not None else None
        except costs.CostToConfirm as exc:
            self._ask(exc)
            return
        except Exception as exc:  # shown to the user as words, never as a traceback
            self._fail(kind, exc)
            return
        self._deliver(kind, value, job.where if job is not None else "")

    async def _run_async(self, kind: str, generation: int, delay: float = 0.0) -> None:
        import asyncio

        if delay:
            await asyncio.sleep(delay)
        if generation != self._generation[kind]:
            return
        busy = f"{kind}_busy"
        setattr(self, busy, True)
        reporter = None
        try:
            prestarted = self._prestarted.pop(kind, None)
            if prestarted is not None and prestarted[0] == generation:
                job = prestarted[1]
            else:
                # opening, planning and costing run in a thread: never on the event loop
                job = await asyncio.get_running_loop().run_in_executor(None, self._start, kind)
            if generation != self._generation[kind]:
                if job is not None:
                    job.cancel()
                return  # superseded while it was being planned
            self._jobs[kind] = job
            if job is not None and job.where != "cache":
                reporter = asyncio.ensure_future(self._report_progress(kind, job, generation))
            if job is None:
                value = None
            else:
                value = await jobs.run_job(job, on_queued=lambda q: setattr(self, "queued", q))
        except costs.CostToConfirm as exc:
            if generation == self._generation[kind]:
                self._ask(exc)
            return
        except Exception as exc:
            if generation == self._generation[kind]:
                self._fail(kind, exc)
                self.param.update(**{busy: False, self._progress_name(kind): ""})
            return
        finally:
            if reporter is not None:
                reporter.cancel()
        if generation != self._generation[kind]:
            return  # stale: the user changed something meanwhile
        self._jobs[kind] = None
        self._deliver(kind, value, job.where if job is not None else "")
        self.param.update(**{busy: False, self._progress_name(kind): ""})

    @staticmethod
    def _progress_name(kind: str) -> str:
        return "progress" if kind == "map" else "series_progress"

    async def _report_progress(self, kind: str, job: jobs.Job, generation: int) -> None:
        """Every half second of a long job: bytes to read, where, done fraction (cluster)."""
        import asyncio

        started = time.monotonic()
        baseline = None
        while generation == self._generation[kind]:
            await asyncio.sleep(0.5)
            if generation != self._generation[kind] or getattr(job, "_value", None) is not None:
                return
            done = None
            if job.where.startswith("cluster"):
                counts = await asyncio.get_running_loop().run_in_executor(None, self._task_counts)
                if counts is not None:
                    baseline = baseline or counts
                    done = costs.done_fraction(baseline, counts)
            text = costs.progress_text(kind, job, time.monotonic() - started, done)
            setattr(self, self._progress_name(kind), text)
