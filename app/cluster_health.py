"""The Dask cluster the app computes on: its client, whether it answers, reconnecting.

One `ClusterHealth` lives on the `app.runtime.Runtime`. A lost scheduler (connection
closed, futures cancelled by the client, no reply) marks the cluster unavailable: jobs
then run in-process when small enough (``GRIDSCOPE_FALLBACK_BYTES``, default 256 MB) and
are refused in words otherwise (`app.jobs.Job`), while a thread tries
`pipelines.cluster.connect` every ``GRIDSCOPE_RECONNECT_INTERVAL`` seconds (default 2)
and swaps the new client in once it has a worker.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from app.settings import Settings

__all__ = [
    "ClusterHealth",
    "cluster_status",
    "cluster_task_counts",
    "current_client",
    "has_workers",
    "is_connection_loss",
    "use_client",
]

log = logging.getLogger("gridscope.compute")


class ClusterHealth:
    """The registered client (None: in-process), whether it answers, and its reconnection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: Any = None
        self.available = True
        self.reason = ""
        self.lost = 0  # times the cluster was found lost
        self.reconnected = 0
        self.spec: Any = None
        self.address: str | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def use(self, client: Any, spec: Any = None) -> None:
        """Register ``client`` (None: in-process); ``spec`` says how to reconnect when lost
        (a `pipelines.cluster.ClusterSpec`; by default the client's scheduler address)."""
        self._stop.set()
        self._stop = threading.Event()
        self._thread = None
        self.client = client
        self.available, self.reason, self.spec = True, "", spec
        self.address = _scheduler_address(client)

    def status(self) -> dict[str, Any]:
        """``{"client", "available", "reason", "lost", "reconnected"}``."""
        return {
            "client": self.client is not None,
            "available": self.client is not None and self.available,
            "reason": self.reason,
            "lost": self.lost,
            "reconnected": self.reconnected,
        }

    def usable(self, client: Any) -> bool:
        """Whether jobs may be sent to ``client`` now (a closed client marks it lost)."""
        if client is None or not self.available:
            return False
        status = getattr(client, "status", "running")
        if status not in ("running", "newly-created"):
            self.mark_lost(f"client {status}")
            return False
        return True

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
            if self.client is not None:
                self._thread = threading.Thread(target=self._reconnect, args=(self._stop,),
                                                name="gridscope-reconnect", daemon=True)  # fmt: skip
                self._thread.start()

    def _reconnect(self, stop: threading.Event) -> None:
        from pipelines.cluster import ClusterError, ClusterSpec, connect

        while not stop.wait(self.settings.reconnect_interval):
            old = self.client
            if old is not None and getattr(old, "status", "") == "running" and has_workers(old):
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
                if not has_workers(client):
                    _close_quietly(client)
                    continue
            with self._lock:
                if stop.is_set():
                    if client is not old:
                        _close_quietly(client)
                    return
                if client is not old:
                    self.client = client
                    if old is not None:
                        threading.Thread(target=_close_quietly, args=(old,), daemon=True).start()
                self.available, self.reason = True, ""
                self.reconnected += 1
            log.warning("Dask cluster available again at %s", self.address)
            return


def _scheduler_address(client: Any) -> str | None:
    try:
        return str(client.scheduler.address) if client is not None else None
    except AttributeError:
        return None


def has_workers(client: Any) -> bool:
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


def is_connection_loss(exc: BaseException) -> bool:
    """Whether ``exc`` says the scheduler is out of reach (not a timeout)."""
    try:
        from distributed.comm.core import CommClosedError
    except ImportError:  # pragma: no cover
        CommClosedError = OSError  # type: ignore[assignment,misc]
    return isinstance(exc, (CommClosedError, ConnectionError, OSError)) and not isinstance(
        exc, TimeoutError
    )


# --- the process's cluster (on the current runtime) ----------------------------------------
def use_client(client: Any, spec: Any = None) -> None:
    """Register the `distributed.Client` heavy reductions run on (None: in-process)."""
    from app.runtime import current

    current().cluster.use(client, spec)


def current_client() -> Any:
    """The current runtime's client, or None."""
    from app.runtime import current

    return current().cluster.client


def cluster_status() -> dict[str, Any]:
    """``{"client", "available", "reason", "lost", "reconnected"}`` of the registered cluster."""
    from app.runtime import current

    return current().cluster.status()


def cluster_task_counts() -> tuple[int, int] | None:
    """``(tasks known to the scheduler, of which still to run)`` or None (no cluster).

    Asked of the scheduler each time a long view reports progress; the done fraction of
    a job is how much of the work that was pending when it started has finished.
    """
    client = current_client()
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
