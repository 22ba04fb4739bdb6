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
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from app import limits
from app.limits import DEFAULT_WAIT_LIMIT, ClusterUnavailable, JobCancelled, RequestTimeout
from pipelines import Query, QueryError, compute_map, compute_series

__all__ = [
    "CostToConfirm",
    "Job",
    "ask_limit",
    "check_query",
    "cluster_status",
    "estimated_input_bytes",
    "full_map",
    "map_for_view",
    "resolve_time_labels",
    "run_job",
    "read_rate",
    "series_for",
    "start_map",
    "start_series",
    "use_client",
]

log = logging.getLogger("gridscope.compute")

_CLIENT: Any = None
_CACHE_SIZE = 64
_cache: collections.OrderedDict[tuple[int, str, str], xr.DataArray] = collections.OrderedDict()
_cache_lock = threading.Lock()


def use_client(client: Any, spec: Any = None) -> None:
    """Register the `distributed.Client` that heavy reductions run on (None: in-process).

    ``spec`` (a `pipelines.cluster.ClusterSpec`) is how to reconnect when the scheduler
    is lost; by default the client's scheduler address.
    """
    global _CLIENT
    _CLIENT = client
    _HEALTH.reset(client, spec)


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


# --- the cluster: lost, reconnected, fallen back from ---------------------------------
class _ClusterHealth:
    """Whether the registered cluster answers; reconnects in the background when lost.

    A lost scheduler (connection closed, futures cancelled by the client, no reply) marks
    the cluster unavailable: jobs then run in-process when small enough
    (``GRIDSCOPE_FALLBACK_BYTES``, default 256 MB) and are refused in words otherwise,
    while a thread tries `pipelines.cluster.connect` every ``GRIDSCOPE_RECONNECT_INTERVAL``
    seconds (default 2) and swaps the new client in once it has a worker.
    """

    def __init__(self) -> None:
        self.available = True
        self.reason = ""
        self.lost = 0  # times the cluster was found lost
        self.reconnected = 0
        self.spec: Any = None
        self.address: str | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def reset(self, client: Any, spec: Any) -> None:
        self._stop.set()
        self._stop = threading.Event()
        self._thread = None
        self.available, self.reason, self.spec = True, "", spec
        self.address = _scheduler_address(client)

    def mark_lost(self, exc: BaseException | str) -> None:
        with self._lock:
            if not self.available:
                return
            self.available = False
            self.lost += 1
            self.reason = exc if isinstance(exc, str) else type(exc).__name__
            log.warning(
                "Dask cluster unavailable (%s); computing small jobs in-process", self.reason
            )
            if _CLIENT is not None:
                self._thread = threading.Thread(target=self._reconnect, args=(self._stop,),
                                                name="gridscope-reconnect", daemon=True)  # fmt: skip
                self._thread.start()

    def _reconnect(self, stop: threading.Event) -> None:
        from pipelines.cluster import ClusterError, ClusterSpec, connect

        while not stop.wait(_env_float("GRIDSCOPE_RECONNECT_INTERVAL", 2.0)):
            old = _CLIENT
            if old is not None and getattr(old, "status", "") == "running" and _has_workers(old):
                client = old  # the client reconnected by itself
            else:
                spec = self.spec
                if spec is None or spec.kind in ("scheduler", "local"):
                    if not self.address:
                        return
                    spec = ClusterSpec(scheduler=self.address)
                try:
                    client = connect(spec, timeout=5.0)
                except (ClusterError, OSError, ValueError, RuntimeError):
                    continue
                if not _has_workers(client):
                    _close_quietly(client)
                    continue
            with self._lock:
                if stop.is_set():
                    if client is not old:
                        _close_quietly(client)
                    return
                if client is not old:
                    _swap_client(client)
                    if old is not None:
                        threading.Thread(target=_close_quietly, args=(old,), daemon=True).start()
                self.available, self.reason = True, ""
                self.reconnected += 1
            log.warning("Dask cluster available again at %s", self.address)
            return


_HEALTH = _ClusterHealth()


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _scheduler_address(client: Any) -> str | None:
    try:
        return str(client.scheduler.address) if client is not None else None
    except AttributeError:
        return None


def _has_workers(client: Any) -> bool:
    """Whether ``client`` is connected to a scheduler that has a worker (asks it)."""
    if client is None or getattr(client, "status", "") != "running":
        return False
    try:
        return bool(client.scheduler_info(n_workers=-1).get("workers"))
    except Exception:  # noqa: BLE001  (any failure to ask means: not usable yet)
        return False


def _close_quietly(client: Any) -> None:
    try:
        client.close(timeout=2)
    except Exception:  # noqa: BLE001
        pass


def _swap_client(client: Any) -> None:
    global _CLIENT
    _CLIENT = client


def cluster_status() -> dict[str, Any]:
    """``{"client", "available", "reason", "lost", "reconnected"}`` of the registered cluster."""
    return {
        "client": _CLIENT is not None,
        "available": _CLIENT is not None and _HEALTH.available,
        "reason": _HEALTH.reason,
        "lost": _HEALTH.lost,
        "reconnected": _HEALTH.reconnected,
    }


def _cluster_usable(client: Any) -> bool:
    if client is None:
        return False
    if not _HEALTH.available:
        return False
    status = getattr(client, "status", "running")
    if status not in ("running", "newly-created"):
        _HEALTH.mark_lost(f"client {status}")
        return False
    return True


def fallback_limit() -> int:
    """Input bytes up to which a job runs in-process while the cluster is unavailable."""
    try:
        return int(float(os.environ.get("GRIDSCOPE_FALLBACK_BYTES", 256e6)))
    except ValueError:
        return int(256e6)


def _is_connection_loss(exc: BaseException) -> bool:
    try:
        from distributed.comm.core import CommClosedError
    except ImportError:  # pragma: no cover
        CommClosedError = OSError  # type: ignore[assignment,misc]
    return isinstance(exc, (CommClosedError, ConnectionError, OSError)) and not isinstance(
        exc, TimeoutError
    )


# --- cancellation of in-process work -------------------------------------------------------
_tls = threading.local()
_callback_registered = False


class _Token:
    def __init__(self, cancelled: threading.Event, deadline: float | None, limit: float | None):
        self.cancelled, self.deadline, self.limit = cancelled, deadline, limit

    def check(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RequestTimeout(self.limit or 0)


def _register_cancel_callback() -> None:
    """A dask pre-task hook: in-process graphs stop at the next task when cancelled/late."""
    global _callback_registered
    if _callback_registered:
        return
    from dask.callbacks import Callback

    class _Cancel(Callback):
        def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
            token = getattr(_tls, "token", None)
            if token is not None:
                token.check()

    _Cancel().register()
    _callback_registered = True


# --- jobs: compute in-process or on the cluster, cancellable -------------------------
def _is_plan(lazy: Any) -> bool:
    """A plain callable (a planner's ``Plan.compute``), not a dask collection."""
    return callable(lazy) and not hasattr(lazy, "__dask_graph__")


class Job:
    """A running computation whose result may no longer be wanted.

    ``result()`` blocks (and caches the answer); ``cancel()`` releases the cluster
    future so superseded work stops, and stops in-process dask graphs at their next
    task. A cluster job whose scheduler is lost is recomputed in-process when small
    (``where`` then says so) or fails with `ClusterUnavailable`; a worker lost mid-way
    is handled by the scheduler, which recomputes its tasks elsewhere.
    """

    def __init__(
        self, lazy: Any, input_bytes: int, client: Any = None, *, key: Any = None, value: Any = None
    ):
        self.input_bytes = input_bytes
        self.where = "cache" if value is not None else "in-process"
        self.cancelled = threading.Event()
        self.time_limit: float | None = None  # the server's limit, for messages
        self._future = None
        self._lazy = lazy
        self._key = key
        self._value = value
        self._error: BaseException | None = None
        if value is None and client is not None and input_bytes > inprocess_limit():
            if _cluster_usable(client):
                try:
                    self._submit(client)
                except Exception as exc:  # noqa: BLE001  (a lost scheduler, in words)
                    if not _is_connection_loss(exc) and getattr(client, "status", "") == "running":
                        raise
                    _HEALTH.mark_lost(exc)
                    self._fall_back()
            else:
                self._fall_back()

    def _submit(self, client: Any) -> None:
        if _is_plan(self._lazy):  # a planner's Plan.compute: run the whole plan on a worker
            self._future = client.submit(self._lazy, pure=False)
            self.where = "cluster"
        elif getattr(self._lazy, "chunks", None) is not None or hasattr(
            self._lazy, "__dask_graph__"
        ):
            self._future = client.compute(self._lazy)
            self.where = "cluster"

    def _fall_back(self) -> None:
        self._future = None
        if self.input_bytes > fallback_limit():
            self._error = ClusterUnavailable(self.input_bytes)
        else:
            self.where = "in-process (cluster unavailable)"

    def result(self, timeout: float | None = None) -> xr.DataArray:
        """The answer; ``timeout`` seconds at most (`RequestTimeout`), then cancelled."""
        if self._value is not None:
            return self._value
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        if self._future is not None:
            value = self._cluster_result(timeout, deadline)
        else:
            value = self._local_result(timeout, deadline)
        _observe_rate(self.input_bytes, time.monotonic() - started)
        self._value = value
        if self._key is not None:
            _cache_put(self._key, value)
        return value

    def _cluster_result(self, timeout: float | None, deadline: float | None) -> Any:
        from concurrent.futures import CancelledError

        wait = timeout if timeout is not None else DEFAULT_WAIT_LIMIT
        try:
            return self._future.result(timeout=wait)
        except TimeoutError:
            self._future.cancel()
            if self.cancelled.is_set():
                raise JobCancelled() from None
            if not _has_workers(_CLIENT):
                _HEALTH.mark_lost("no reply from the cluster")
            raise RequestTimeout(self.time_limit or wait) from None
        except (CancelledError, OSError) as exc:
            if self.cancelled.is_set():
                raise JobCancelled() from None
            if isinstance(exc, OSError) and not _is_connection_loss(exc):
                raise
            _HEALTH.mark_lost(exc)  # the client cancels its futures when the scheduler goes
            self._fall_back()
            if self._error is not None:
                raise self._error from None
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            return self._local_result(
                timeout, None if remaining is None else time.monotonic() + remaining
            )
        except Exception as exc:
            if type(exc).__name__ == "KilledWorker":
                raise QueryError(
                    "cluster",
                    "Dask workers died repeatedly while computing this view; "
                    "try again, or choose a shorter time range or a coarser view",
                ) from None
            raise

    def _local_result(self, timeout: float | None, deadline: float | None) -> Any:
        if self._error is not None:
            raise self._error
        _register_cancel_callback()
        previous = getattr(_tls, "token", None)
        _tls.token = token = _Token(self.cancelled, deadline, self.time_limit or timeout)
        try:
            token.check()
            if _is_plan(self._lazy):
                value = self._lazy()
            else:
                import dask

                with dask.config.set(scheduler="threads"):
                    value = self._lazy.compute()
        finally:
            _tls.token = previous
        token.check()  # uninterruptible work that ran late still counts as late
        return value

    def cancel(self) -> None:
        if self._value is None:
            self.cancelled.set()
        if self._future is not None and self._value is None:
            self._future.cancel()


async def run_job(job: Job, on_queued: Callable[[bool], None] | None = None) -> xr.DataArray:
    """Await ``job`` off the event loop under the server's limits (`app.limits`).

    Waits for one of the global slots (``on_queued(True)`` while waiting, then
    ``on_queued(False)``), runs the job in a thread and gives up after the time limit
    (`RequestTimeout`, the job cancelled). The slot is released when the work really
    stops, so the limit holds even for work that cannot be interrupted.
    """
    import asyncio

    if job._value is not None:
        return job._value
    lim = limits.current()
    slots = limits.slots()
    timeout = lim.request_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    queued = False
    try:
        while not slots.try_acquire():
            if not queued:
                queued = True
                slots.add_queued(1)
                if on_queued is not None:
                    on_queued(True)
            if job.cancelled.is_set():
                raise JobCancelled()
            if deadline is not None and time.monotonic() > deadline:
                raise RequestTimeout(timeout or 0)
            await asyncio.sleep(0.05)
    finally:
        if queued:
            slots.add_queued(-1)
            if on_queued is not None:
                on_queued(False)

    job.time_limit = timeout

    def work() -> Any:
        try:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.01)
            return job.result(remaining)
        finally:
            slots.release()

    future = asyncio.get_running_loop().run_in_executor(None, work)
    if deadline is None:
        return await future
    try:
        # a little grace: the job's own limit fires first where it can
        return await asyncio.wait_for(
            asyncio.shield(future), max(deadline - time.monotonic(), 0) + 2.0
        )
    except TimeoutError:
        job.cancel()
        raise RequestTimeout(timeout or 0) from None


# --- questions the app asks ---------------------------------------------------------------
def estimated_input_bytes(ds: xr.Dataset, query: Query, *, series: bool = False) -> int:
    """Bytes of raw data the brute-force plan reads for ``query``."""
    from pipelines.evaluate import field_for
    from pipelines.reductions import spatial_dims
    from pipelines.selection import select_bbox, select_time_range

    da = field_for(ds, query)
    dims = spatial_dims(da)  # (lat, lon), (y, x) or (cell,): every grid kind
    cells = int(np.prod([da.sizes[d] for d in dims]))
    if series and query.bbox is not None:
        box = select_bbox(da, query.bbox)
        cells = int(np.prod([box.sizes[d] for d in dims]))
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


def _job(kind: str, ds: xr.Dataset, query: Query, ask_above: int | None = None) -> Job:
    key = (id(ds), kind, query.to_json())
    cached = _cache_get(key)
    if cached is not None:
        return Job(None, 0, key=key, value=cached)
    planner = _planner()
    if planner is not None:
        plan = planner.plan_map(ds, query) if kind == "map" else planner.plan_series(ds, query)
        size = int(getattr(plan, "estimated_bytes", 0))
        raw = str(getattr(plan, "description", "")).startswith("brute force")
        if raw and kind == "series":
            size = max(size, _series_chunk_bytes(ds, query))
        limits.check_cost(size)  # costed before anything runs
        _ask_first(kind, size, raw, ask_above)
        return Job(plan.compute, size, _CLIENT, key=key)
    if kind == "map":
        lazy = compute_map(ds, query)
        size = estimated_input_bytes(ds, query)
    else:
        lazy = compute_series(ds, query)
        size = max(estimated_input_bytes(ds, query, series=True), _series_chunk_bytes(ds, query))
    limits.check_cost(size)
    _ask_first(kind, size, True, ask_above)
    return Job(lazy, size, _CLIENT, key=key)


# --- asking before a long read ------------------------------------------------------------
class CostToConfirm(Exception):
    """A job would read more than the dashboard starts on its own; nothing was started.

    ``message`` says how much it reads and about how long that takes, in words; the
    view offers to run it anyway (`start_series` with ``ask_above=None``).
    """

    def __init__(self, kind: str, estimated_bytes: int, raw: bool):
        self.kind, self.estimated_bytes, self.raw = kind, int(estimated_bytes), raw
        self.seconds = estimated_bytes / read_rate()
        where = "the cluster" if _CLIENT is not None else "this server"
        source = "from the unbuilt record" if raw else "from the fast-access stores"
        self.message = (
            f"This {kind} reads {format_bytes(estimated_bytes)} {source} "
            f"(about {format_duration(self.seconds)} on {where})."
        )
        super().__init__(self.message)


def ask_limit() -> int:
    """Input bytes above which the dashboard asks before computing a series.

    ``GRIDSCOPE_ASK_BYTES`` (a size: ``1e9``, ``500MB``), by default 256 MB: what the
    server would compute in-process (`fallback_limit`); a series above it is costed and
    waits for the user's go-ahead.
    """
    try:
        return limits.parse_bytes(os.environ.get("GRIDSCOPE_ASK_BYTES", "256MB"))
    except ValueError:
        log.warning("GRIDSCOPE_ASK_BYTES is not a size; asking above 256 MB")
        return int(256e6)


def _ask_first(kind: str, size: int, raw: bool, ask_above: int | None) -> None:
    if ask_above is not None and size > ask_above:
        raise CostToConfirm(kind, size, raw)


_rate_lock = threading.Lock()
_observed_rate: list[float] = []  # bytes per second of recent large jobs


def _observe_rate(nbytes: int, seconds: float) -> None:
    """Remember how fast a large job read its input (for the time a question quotes)."""
    if nbytes < 16 * 2**20 or seconds <= 0:
        return
    with _rate_lock:
        _observed_rate.append(nbytes / seconds)
        del _observed_rate[:-8]


def read_rate() -> float:
    """Bytes per second a job reads: ``GRIDSCOPE_READ_RATE``, recent large jobs, or 100 MB/s."""
    try:
        return max(float(os.environ["GRIDSCOPE_READ_RATE"]), 1.0)
    except (KeyError, ValueError):
        pass
    with _rate_lock:
        if _observed_rate:
            return float(np.median(_observed_rate))
    return 100e6


def format_duration(seconds: float) -> str:
    """``"40 s"``, ``"12 min"``, ``"4 h"``, ``"3 days"``: a rough duration in words."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _series_chunk_bytes(ds: xr.Dataset, query: Query) -> int:
    """Bytes of the stored chunks a brute-force series touches (whole chunks are read).

    A point series of a store chunked one step per chunk reads every step's whole field,
    not one value per step; the planner's cell count alone would call it cheap.
    """
    from pipelines.evaluate import field_for
    from pipelines.reductions import spatial_dims
    from pipelines.selection import (
        is_regular,
        native_bbox_indexer,
        nearest_cell_index,
        select_bbox,
        select_time_range,
    )

    da = field_for(ds, query)
    if da.chunks is None or "time" not in da.dims:
        return 0
    chunks = dict(zip(da.dims, da.chunks, strict=True))
    index: dict[str, np.ndarray] = {}
    if query.point is not None:  # any grid kind: the nearest cell's index per spatial dim
        index = {d: np.array([i]) for d, i in nearest_cell_index(da, query.point).items()}
    elif query.bbox is not None and not is_regular(da):
        selection, _ = native_bbox_indexer(da, query.bbox)
        index = {d: np.arange(da.sizes[d])[sel] for d, sel in selection.items()}
    elif query.bbox is not None:
        grid = xr.DataArray(
            np.zeros((da.sizes["lat"], da.sizes["lon"]), "int8"),
            dims=("lat", "lon"),
            coords={"lat": da["lat"].values, "lon": da["lon"].values,
                    "ilat": ("lat", np.arange(da.sizes["lat"])),
                    "ilon": ("lon", np.arange(da.sizes["lon"]))},
        )  # fmt: skip
        box = select_bbox(grid, query.bbox)
        index = {"lat": box["ilat"].values, "lon": box["ilon"].values}
    else:
        return 0

    def touched(dim: str, index: np.ndarray) -> int:
        sizes = np.asarray(chunks[dim])
        which = np.unique(np.searchsorted(np.cumsum(sizes), index, side="right"))
        return int(sizes[which].sum())

    if query.is_anomaly:
        steps = da.sizes["time"]
    else:
        # the variable, not its bare time coordinate: its attrs say e.g. "climatology"
        steps = select_time_range(da, query.start, query.end).sizes["time"]
    cells = int(np.prod([touched(d, index[d]) for d in spatial_dims(da)]))
    return cells * steps * da.dtype.itemsize


def start_map(ds: xr.Dataset, query: Query) -> Job:
    """Start computing the full-resolution map of ``query`` (cache, in-process or cluster)."""
    return _job("map", ds, query)


def start_series(ds: xr.Dataset, query: Query, *, ask_above: int | None = None) -> Job:
    """Start computing the time series of ``query`` (cache, in-process or cluster).

    With ``ask_above`` (bytes), a series that would read more raises `CostToConfirm`
    before anything starts: the dashboard asks the user first (`ask_limit`).
    """
    return _job("series", ds, query, ask_above)


def full_map(ds: xr.Dataset, query: Query) -> xr.DataArray:
    """The in-memory (lat, lon) map of ``query`` at full resolution (cached)."""
    return start_map(ds, query).result()


def series_for(ds: xr.Dataset, query: Query) -> xr.DataArray:
    """The in-memory time series of ``query`` (cached)."""
    return start_series(ds, query).result()


def small_grid_cells() -> int:
    """Grids of at most this many cells (``GRIDSCOPE_SMALL_GRID_CELLS``, default 600k) are small.

    A small grid's map (the bundled samples: COADS 180x90, ETOPO20 1081x540) is kept whole
    in memory and cropped/coarsened in-process: panning and zooming then cost no new job.
    Larger grids (a 0.25° reanalysis: 1440x721) are read through the planner for the
    viewport at screen resolution, so a frame reads about one screen of cells at any zoom.
    """
    try:
        return int(float(os.environ.get("GRIDSCOPE_SMALL_GRID_CELLS", 600_000)))
    except ValueError:
        return 600_000


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
    key = (id(ds), "map", query.to_json())
    cached = _cache_get(key)
    if cached is not None:
        return Job(None, 0, key=key, value=cached)
    lazy = compute_map(ds, query)
    frame = int(np.prod([ds.sizes[d] for d in ds["lon"].dims])) * ds[query.var].dtype.itemsize
    size = max(estimated_input_bytes(ds, query), frame)  # at least one frame of cells
    limits.check_cost(size)
    return Job(lazy, size, _CLIENT, key=key)


def _stored_view(
    plan: Any,
    frame: tuple[float, float, float, float] | None,
    screen: tuple[int, int],
    shift: float,
    key: Any,
) -> Job:
    """A non-regular grid's view from its derived stores: a regular pyramid level (moved
    under the plot by ``shift``) or the view's native cells, rasterized."""
    from app.rasterize import rasterize_to_screen

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
        bounds = {name: np.asarray(field[name].values)
                  for name in ("lon_bounds", "lat_bounds") if name in field.coords}  # fmt: skip
        out = rasterize_to_screen(field, frame, screen, **(bounds if len(bounds) == 2 else {}))
        out.attrs["gridscope_plan"] = f"{field.size:,} native cells drawn at screen resolution"
        return out

    return Job(run, size, _CLIENT, key=key)


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
    key = (id(ds), "raster", query.to_json(), vp, sc)
    cached = _cache_get(key)
    if cached is not None:
        return Job(None, 0, key=key, value=cached)
    planner = _planner()
    wrapped, _sc, shift = view_request(viewport, sc)
    if planner is not None and wrapped is not None:
        plan = planner.plan_map(ds, query, viewport=wrapped, screen=sc)
        if not str(getattr(plan, "description", "")).startswith("brute force"):
            return _stored_view(plan, vp, sc, shift, key)  # built stores answer this view
    native = _native_map(ds, query)
    bounds = {name: np.asarray(ds[name].values)
              for name in ("lon_bounds", "lat_bounds") if name in ds.variables}  # fmt: skip

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
    if not is_regular_grid(ds):
        return _rasterized_view(ds, query, viewport, screen)
    planner = _planner()
    vp, sc, shift = view_request(viewport, screen)
    if planner is None or vp is None or is_small_grid(ds):
        return start_map(ds, query)  # the whole map; the caller crops it (regrid_to_screen)
    key = (id(ds), "view", query.to_json(), vp, sc, shift)
    cached = _cache_get(key)
    if cached is not None:
        return Job(None, 0, key=key, value=cached)
    plan = planner.plan_map(ds, query, viewport=vp, screen=sc)
    size = int(getattr(plan, "estimated_bytes", 0))
    try:
        from app.limits import check_cost
    except ImportError:  # pragma: no cover
        check_cost = None
    if check_cost is not None:
        check_cost(size)  # costed before anything runs

    def run() -> xr.DataArray:
        out = plan.compute()
        out.attrs["gridscope_plan"] = plan.description
        out.attrs["gridscope_estimated_bytes"] = size
        if shift:
            out = out.assign_coords(lon=("lon", out["lon"].values + shift, dict(out["lon"].attrs)))
        return out

    return Job(run, size, _CLIENT, key=key)


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
    if is_small_grid(ds) or _planner() is None or view_request(viewport, screen)[0] is None:
        return regrid_to_screen(field, viewport, _screen(screen))
    return field


def cluster_task_counts() -> tuple[int, int] | None:
    """``(tasks known to the scheduler, of which still to run)`` or None (no cluster).

    Asked of the scheduler each time a long view reports progress; the done fraction of
    a job is how much of the work that was pending when it started has finished.
    """
    client = _CLIENT
    if client is None:
        return None

    def counts(dask_scheduler: Any) -> tuple[int, int]:
        pending = sum(1 for ts in dask_scheduler.tasks.values()
                      if ts.state in ("waiting", "processing", "queued", "no-worker"))  # fmt: skip
        return len(dask_scheduler.tasks), pending

    try:
        return tuple(client.run_on_scheduler(counts))  # type: ignore[return-value]
    except Exception:  # noqa: BLE001  (progress is best effort)
        return None


def done_fraction(start: tuple[int, int], now: tuple[int, int]) -> float | None:
    """Fraction of the work pending at ``start`` (or added since) that is finished ``now``."""
    total = max(start[1], now[1], 1)
    if start[1] == 0 and now[1] == 0:
        return None
    return min(max(1.0 - now[1] / total, 0.0), 1.0)


def format_bytes(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def progress_text(kind: str, job: Job, elapsed: float, done: float | None = None) -> str:
    """One line for a running job: what it reads, where, how far (cluster), how long."""
    where = job.where.replace("in-process", "on the server")
    parts = [f"Computing the {kind} {where}: reading about {format_bytes(job.input_bytes)}"]
    if done is not None:
        parts.append(f"{done:.0%} of the cluster's tasks done")
    parts.append(f"{elapsed:.0f} s")
    return ", ".join(parts) + "."


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


def check_query(ds: xr.Dataset, query: Query) -> None:
    """Raise the `QueryError` that computing ``query`` would raise (builds lazily only).

    The lazy map and series are built over `_metadata_only` (one chunk per variable):
    the errors depend on coordinates and attributes only, and building a series graph
    over a record of 350k one-step chunks costs seconds of CPU per call.
    """
    ds = _metadata_only(ds)
    compute_map(ds, query.replace(bbox=None, point=None))
    if query.bbox is not None or query.point is not None:
        if "time" in ds.dims and "time" in ds[query.var].dims:
            compute_series(ds, query.replace(time=None))
        elif query.bbox is not None:
            compute_map(ds, query)


def _metadata_only(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with each many-chunked data variable as one lazy chunk of zeros.

    Same dimensions, coordinates, dtypes and attributes (so the same errors),
    but any lazy graph built on it has a handful of tasks. Variables in a few chunks
    (the bundled samples) are kept: their graphs are small already.
    """
    import dask.array as dsa

    replaced = {
        name: var.copy(deep=False, data=dsa.zeros(var.shape, dtype=var.dtype, chunks=var.shape))
        for name, var in ds.data_vars.items()
        if var.chunks is not None and math.prod(len(c) for c in var.chunks) > 64
    }
    return ds.assign(replaced) if replaced else ds


def resolve_time_labels(
    ds: xr.Dataset, query: Query, labels: Sequence[str]
) -> dict[str, str | None]:
    """Map the time labels of ``query`` onto the dataset's step ``labels``.

    ``time`` goes to the step `pipelines.selection.step_index` selects (the one rule
    for a single time); ``start``/``baseline_start`` to the first step of the range and
    ``end``/``baseline_end`` to its last step, so a link written with
    ``start=1985&end=1986`` lands on the steps it covers.
    """
    from pipelines.evaluate import field_for
    from pipelines.selection import range_indices, step_index

    da = field_for(ds, query)
    out: dict[str, str | None] = {}
    if query.time is not None:
        out["time"] = labels[step_index(da, query.time)]
    for first, last, field in (
        ("start", "end", "start"),
        ("baseline_start", "baseline_end", "baseline_start"),
    ):
        a, b = getattr(query, first), getattr(query, last)
        if a is None and b is None:
            out[first] = out[last] = None
            continue
        begin, stop = range_indices(da, a, b, field)
        out[first], out[last] = labels[begin], labels[stop - 1]
    return out
