"""Jobs: one computation, run in-process or on the Dask cluster, cancellable, time-limited.

Small jobs (a map frame of a sample dataset is well under a megabyte) run in-process,
because a round trip through a distributed scheduler costs tens of milliseconds, more
than the work itself; jobs whose input is larger than ``GRIDSCOPE_INPROCESS_BYTES``
(default 32 MiB) run on the cluster of the runtime (`app.runtime.Runtime.cluster`: a
planner's plan is submitted whole to a worker; a brute-force graph is computed by the
cluster), and can be cancelled when superseded. A finished job's answer goes into the
runtime's answer cache under the job's key. `run_job` awaits a job under the server's
limits (slots, time limit) off the event loop.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import xarray as xr

from app.cluster_health import has_workers, is_connection_loss
from app.limits import DEFAULT_WAIT_LIMIT, ClusterUnavailable, JobCancelled, RequestTimeout
from pipelines import QueryError

__all__ = ["Job", "run_job"]


# --- cancellation of in-process work -------------------------------------------------------
_tls = threading.local()  # the token of the in-process job running on this thread


class _Token:
    def __init__(self, cancelled: threading.Event, deadline: float | None, limit: float | None):
        self.cancelled, self.deadline, self.limit = cancelled, deadline, limit

    def check(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RequestTimeout(self.limit or 0)


@functools.cache
def _cancel_callback() -> Any:
    """A dask pre-task hook: in-process graphs stop at the next task when cancelled/late."""
    from dask.callbacks import Callback

    class _Cancel(Callback):
        def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
            token = getattr(_tls, "token", None)
            if token is not None:
                token.check()

    return _Cancel()


def _ensure_cancel_callback() -> Any:
    """The hook, put (back) among dask's global callbacks before every in-process job.

    Registering it once is not enough: while a graph runs, dask's local scheduler swaps
    the process-wide ``Callback.active`` for an empty set and then puts back what it saw
    (`dask.callbacks.local_callbacks`), so two graphs computed at once on two threads (two
    pages, a build's threads) can leave it empty for good, and no job could be stopped.
    A dask collection is also given the hook explicitly (`Job._local_result`).
    """
    from dask.callbacks import Callback

    hook = _cancel_callback()
    Callback.active.add(hook._callback)
    return hook


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
        self,
        lazy: Any,
        input_bytes: int,
        client: Any = None,
        *,
        key: str | None = None,
        value: Any = None,
        runtime: Any = None,
    ):
        from app.runtime import current

        self.runtime = runtime if runtime is not None else current()
        self.input_bytes = input_bytes
        self.where = "cache" if value is not None else "in-process"
        self.cancelled = threading.Event()
        self.time_limit: float | None = None  # the server's limit, for messages
        self._future = None
        self._lazy = lazy
        self._key = key
        self._value = value
        self._error: BaseException | None = None
        if (
            value is None
            and client is not None
            and input_bytes > self.runtime.settings.inprocess_bytes
        ):
            if self.runtime.cluster.usable(client):
                try:
                    self._submit(client)
                except Exception as exc:  # noqa: BLE001  (a lost scheduler, in words)
                    if not is_connection_loss(exc) and getattr(client, "status", "") == "running":
                        raise
                    self.runtime.cluster.mark_lost(exc)
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
        if self.input_bytes > self.runtime.settings.fallback_bytes:
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
        self.runtime.rates.observe(self.input_bytes, time.monotonic() - started)
        self._value = value
        if self._key is not None:
            self.runtime.cache.put(self._key, value)
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
            if not has_workers(self.runtime.cluster.client):
                self.runtime.cluster.mark_lost("no reply from the cluster")
            raise RequestTimeout(self.time_limit or wait) from None
        except (CancelledError, OSError) as exc:
            if self.cancelled.is_set():
                raise JobCancelled() from None
            if isinstance(exc, OSError) and not is_connection_loss(exc):
                raise
            self.runtime.cluster.mark_lost(
                exc
            )  # the client cancels its futures when the scheduler goes
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
        hook = _ensure_cancel_callback()
        previous = getattr(_tls, "token", None)
        _tls.token = token = _Token(self.cancelled, deadline, self.time_limit or timeout)
        try:
            token.check()
            if _is_plan(self._lazy):
                value = self._lazy()
            else:
                value = self._lazy.compute(scheduler="threads", callbacks=[hook._callback])
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
    """Await ``job`` off the event loop under its runtime's limits (`app.limits.Limits`).

    Waits for one of the global slots (``on_queued(True)`` while waiting, then
    ``on_queued(False)``), runs the job in a thread and gives up after the time limit
    (`RequestTimeout`, the job cancelled). The slot is released when the work really
    stops, so the limit holds even for work that cannot be interrupted.
    """
    import asyncio

    if job._value is not None:
        return job._value
    slots = job.runtime.slots
    timeout = job.runtime.limits.request_timeout
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
