"""What one request may cost, how many run at once, and failures in words.

Pure, UI-free pieces used by `app.jobs` and `app.answers` (costing, slots, time limits) and by the
views (messages):

- `Limits`: the per-request byte budget, the global number of computations running at
  once and the per-computation time limit, from ``gridscope serve`` flags or the
  environment (``GRIDSCOPE_MAX_REQUEST_BYTES``, ``GRIDSCOPE_MAX_CONCURRENT``,
  ``GRIDSCOPE_REQUEST_TIMEOUT``). ``--public`` gives every limit a default.
- `check_cost`: refuse a request above the budget *before* it starts, with a message
  that suggests a coarser view or a shorter range.
- `Slots`: a global counting semaphore; computations beyond the limit wait ("queued").
- `user_message` / `scrub`: one line for the user, naming the dataset and the problem,
  never a traceback or a file-system path.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import threading
from collections.abc import Mapping

from pipelines.query import QueryError
from pipelines.sizes import parse_bytes

__all__ = [
    "DEFAULT_PUBLIC_MAX_REQUEST_BYTES",
    "ClusterUnavailable",
    "JobCancelled",
    "Limits",
    "RequestTimeout",
    "RequestTooLarge",
    "Slots",
    "check_cost",
    "check_origins",
    "configure",
    "current",
    "format_bytes",
    "parse_bytes",
    "scrub",
    "slots",
    "user_message",
]

DEFAULT_PUBLIC_MAX_REQUEST_BYTES = 2 * 10**9
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_REQUEST_TIMEOUT = 60.0
#: A session is never left waiting longer than this, limit or not (cluster futures).
DEFAULT_WAIT_LIMIT = 600.0


class RequestTooLarge(QueryError):
    """The request would read more than the per-request budget; nothing was started."""

    def __init__(self, estimated: int, budget: int):
        size, allowed = format_bytes(estimated), format_bytes(budget)
        if size == allowed:  # just above the budget: rounded, both would read the same
            size, allowed = f"{estimated:,} bytes", f"{budget:,} bytes"
        super().__init__(
            "query",
            f"this view would read {size} of data, more than the {allowed} allowed per "
            "request on this server; zoom out to a coarser view, choose a shorter time range "
            "or a smaller region",
        )
        self.estimated_bytes = estimated
        self.budget = budget


class RequestTimeout(QueryError):
    """The computation ran past the time limit and was cancelled."""

    def __init__(self, seconds: float):
        super().__init__(
            "query",
            f"this computation took longer than the {seconds:g} s allowed on this server and "
            "was cancelled; choose a shorter time range, a smaller region or a coarser view",
        )
        self.seconds = seconds


class ClusterUnavailable(QueryError):
    """The Dask cluster cannot be reached and the job is too large to run in-process."""

    def __init__(self, estimated: int | None = None):
        size = f" ({format_bytes(estimated)})" if estimated else ""
        super().__init__(
            "cluster",
            "the Dask cluster is unavailable (reconnecting); this view is too large"
            f"{size} to compute on the web server meanwhile; try again shortly, or choose "
            "a shorter time range or a coarser view",
        )


class JobCancelled(Exception):
    """A computation was cancelled because the session asked for something else."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Server-wide limits; ``None`` means unlimited.

    Attributes
    ----------
    public
        Public mode: catalog datasets only, every limit on by default.
    max_request_bytes
        Bytes of input one computation may read (from its plan), checked before it starts.
    max_concurrent
        Computations running at once over all sessions; the rest wait in a queue.
    request_timeout
        Seconds one computation may run (queue wait included) before it is cancelled.
    """

    public: bool = False
    max_request_bytes: int | None = None
    max_concurrent: int | None = None
    request_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.max_request_bytes is not None and self.max_request_bytes <= 0:
            raise ValueError(f"max request bytes must be positive, got {self.max_request_bytes}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"max concurrent must be at least 1, got {self.max_concurrent}")
        if self.request_timeout is not None and not (
            math.isfinite(self.request_timeout) and self.request_timeout > 0
        ):
            raise ValueError(
                f"request timeout must be a positive number of seconds, got {self.request_timeout}"
            )

    @classmethod
    def from_options(
        cls,
        *,
        public: bool = False,
        max_request_bytes: int | None = None,
        max_concurrent: int | None = None,
        request_timeout: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Limits:
        """Flags first, then ``GRIDSCOPE_*`` variables, then the public-mode defaults.

        Raises `ValueError` with a one-line message for a malformed value.
        """
        from app.settings import Settings, SettingsError

        try:
            settings = Settings.from_env(os.environ if environ is None else environ)
        except SettingsError as exc:
            raise ValueError(str(exc)) from None
        if max_request_bytes is None:
            max_request_bytes = settings.max_request_bytes
        if max_concurrent is None:
            max_concurrent = settings.max_concurrent
        if request_timeout is None:
            request_timeout = settings.request_timeout
        if public:
            max_request_bytes = (
                DEFAULT_PUBLIC_MAX_REQUEST_BYTES if max_request_bytes is None else max_request_bytes
            )
            max_concurrent = DEFAULT_MAX_CONCURRENT if max_concurrent is None else max_concurrent
            request_timeout = (
                DEFAULT_REQUEST_TIMEOUT if request_timeout is None else request_timeout
            )
        return cls(public, max_request_bytes, max_concurrent, request_timeout)


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} bytes"


class Slots:
    """A global limit on computations running at once; the others wait (queued).

    Non-blocking `try_acquire` so callers can wait without holding a thread (an async
    loop polls) and give up when cancelled or out of time.
    """

    def __init__(self, limit: int | None):
        self.limit = limit
        self._lock = threading.Lock()
        self.running = 0
        self.queued = 0
        self.peak = 0

    def try_acquire(self) -> bool:
        with self._lock:
            if self.limit is not None and self.running >= self.limit:
                return False
            self.running += 1
            self.peak = max(self.peak, self.running)
            return True

    def release(self) -> None:
        with self._lock:
            self.running = max(self.running - 1, 0)

    def add_queued(self, delta: int) -> None:
        with self._lock:
            self.queued = max(self.queued + delta, 0)


def configure(limits: Limits) -> None:
    """Set the limits of this process's runtime (``gridscope serve`` does, once)."""
    from app.runtime import current as current_runtime

    current_runtime().configure_limits(limits)


def current() -> Limits:
    """The limits of this process's runtime (`app.runtime.Runtime.limits`)."""
    from app.runtime import current as current_runtime

    return current_runtime().limits


def slots() -> Slots:
    """The computation slots of this process's runtime."""
    from app.runtime import current as current_runtime

    return current_runtime().slots


def check_cost(estimated_bytes: int, limits: Limits | None = None) -> None:
    """Raise `RequestTooLarge` when ``estimated_bytes`` exceeds the per-request budget."""
    budget = (limits or current()).max_request_bytes
    if budget is not None and estimated_bytes > budget:
        raise RequestTooLarge(int(estimated_bytes), budget)


# --- words for the user ------------------------------------------------------------------
# absolute POSIX paths (two components or more), Windows paths and file:// URLs
_PATH = re.compile(
    r"(file://\S+|(?<![\w.:/])(?:~|/)[\w.@%+-]+(?:/[\w.@%+=-]*)+|[A-Za-z]:\\[^\s'\"]+)"
)
_URL_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)


def scrub(text: str, limit: int = 400, *, file_names: bool = False) -> str:
    """One line without file-system paths, credentials or traceback text.

    ``file_names``: a path is replaced by its last part (``ocean.nc``, no folders), for
    messages about one file that must say which; otherwise by ``<file>``.
    """
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    if line.startswith("Traceback"):
        line = ""
    line = _URL_CREDENTIALS.sub(r"\1", line)
    if file_names:
        line = _PATH.sub(lambda m: re.split(r"[\\/]", m.group().rstrip("\\/"))[-1], line)
    else:
        line = _PATH.sub("<file>", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


_CHUNK_HINTS = ("decompress", "codec", "blosc", "zstd", "gzip", "crc", "checksum", "buffer",
                "chunk", "corrupt", "unexpected end", "invalid", "truncated")  # fmt: skip


def user_message(exc: BaseException, dataset: str | None = None) -> str:
    """The problem in one line for the page: what failed, for which dataset, no paths."""
    where = f"dataset {dataset!r}: " if dataset else "the data: "
    if isinstance(exc, QueryError):
        return scrub(exc.message)
    name = type(exc).__name__
    try:
        from data_catalog.errors import CatalogError, DatasetOpenError
    except ImportError:  # pragma: no cover
        CatalogError = DatasetOpenError = ()  # type: ignore[assignment,misc]
    if isinstance(exc, (DatasetOpenError, CatalogError)):
        # the file's name and all that was looked for and found (a grid not understood)
        detail = scrub(str(exc), 1000, file_names=True)
        return f"Could not open {where}{detail}"
    if isinstance(exc, FileNotFoundError):
        return f"Could not read {where}a file of its data is missing ({name})."
    if isinstance(exc, JobCancelled):
        return "The computation was cancelled."
    text = str(exc).lower()
    if isinstance(exc, (OSError, ValueError, RuntimeError, TypeError, KeyError)) and any(
        hint in text for hint in _CHUNK_HINTS
    ):
        return (f"Could not read {where}a chunk of its data is corrupt or unreadable ({name}: "
                f"{scrub(str(exc), 160)}).")  # fmt: skip
    detail = scrub(str(exc), 200)
    where = f" dataset {dataset!r}" if dataset else ""
    return f"Could not compute{where}: {name}" + (f": {detail}" if detail else "") + "."


# --- server settings ---------------------------------------------------------------------
def check_origins(origins: list[str], *, public: bool) -> list[str]:
    """The websocket origin allow-list; `ValueError` for ``*`` (any host) in public mode.

    ``origins`` are the ``--allow-websocket-origin`` values plus ``BOKEH_ALLOW_WS_ORIGIN``
    (which Bokeh would otherwise apply on its own). Host wildcards such as
    ``*.example.org`` stay allowed; a bare ``*`` or ``*:PORT`` does not.
    """
    cleaned = [o.strip() for o in origins if o and o.strip()]
    if public:
        for origin in cleaned:
            host = origin.split(":", 1)[0]
            if host in ("*", "") or "*" in host and not host.startswith("*."):
                raise ValueError(
                    f"--public needs an explicit websocket origin allow-list; {origin!r} would "
                    "accept pages from any site (give --allow-websocket-origin HOST[:PORT], "
                    "e.g. gridscope.example.org)"
                )
    return cleaned
