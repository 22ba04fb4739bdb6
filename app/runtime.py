"""The app's runtime state in one object: settings, cluster, limits, answer cache, builds.

``gridscope serve`` makes one `Runtime` (`app.server.serve`) and a notebook's
`app.explorer.Explorer` makes one when none exists; `install` makes it the process's
runtime and `current` hands it to the code that computes (`app.jobs`, `app.answers`,
`app.map_views`, `app.costs`, the API). It is the only mutable module-level state of the
app: everything else that changes while serving (the Dask client and its health, the
byte budget and the slots, the answer cache, the observed read rate, the background
builds) is an attribute of it, so a test or a notebook can make a fresh one.

A notebook's `Explorer` given its own Dask client computes on a runtime of its own
(`Runtime.with_client`: the process's settings, cache and limits, its own cluster); its
work runs inside `using`, which makes that runtime the one `current` returns in that
thread or task only, so two Explorers on two clients in one notebook each compute on
their own and the process's client is left as it was.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from app.answer_cache import AnswerCache
from app.builds import BuildJobs
from app.cluster_health import ClusterHealth
from app.costs import ReadRate
from app.limits import Limits, Slots
from app.settings import Settings

__all__ = ["Runtime", "current", "install", "using"]


@dataclasses.dataclass(eq=False)
class Runtime:
    """What a serving process (or a notebook) holds while it runs.

    Attributes
    ----------
    settings
        The ``GRIDSCOPE_*`` settings, read once (`app.settings.Settings`).
    cluster
        The Dask client (None: everything in-process), its health and reconnection.
    limits, slots
        The per-request byte budget and time limit; the computations running at once.
    cache
        The one answer cache (memory, then the directory shared by server processes).
    rates
        Read rates of recent large jobs (the time a cost question quotes).
    builds
        Background builds of derived stores, one per dataset.
    """

    settings: Settings
    cluster: ClusterHealth
    cache: AnswerCache
    limits: Limits = dataclasses.field(default_factory=Limits)
    slots: Slots = dataclasses.field(default_factory=lambda: Slots(None))
    rates: ReadRate = dataclasses.field(default_factory=ReadRate)
    builds: BuildJobs = dataclasses.field(default_factory=BuildJobs)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        client: Any = None,
        spec: Any = None,
        limits: Limits | None = None,
    ) -> Runtime:
        """A runtime for ``settings``: its cache made, ``client`` (with ``spec``) registered."""
        cache = AnswerCache(
            settings.cache_memory_bytes, settings.cache_directory, settings.cache_bytes
        )
        runtime = cls(settings=settings, cluster=ClusterHealth(settings), cache=cache)
        runtime.cluster.use(client, spec)
        if limits is not None:
            runtime.configure_limits(limits)
        return runtime

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Runtime:
        """`from_settings` of the environment's settings (`Settings.from_env`)."""
        return cls.from_settings(Settings.from_env(os.environ if environ is None else environ),
                                 **kwargs)  # fmt: skip

    def configure_limits(self, limits: Limits) -> None:
        """Use ``limits`` (``gridscope serve``'s flags): the budget, the slots, the time limit."""
        self.limits = limits
        self.slots = Slots(limits.max_concurrent)

    def update_settings(self, **changes: Any) -> Settings:
        """Replace some settings (flags given after start, or a test's); returns the new ones."""
        self.settings = dataclasses.replace(self.settings, **changes)
        self.cluster.settings = self.settings
        return self.settings

    def with_client(self, client: Any, spec: Any = None) -> Runtime:
        """A runtime computing on ``client`` that shares everything else with this one.

        Its settings, answer cache (answers do not depend on where they were computed),
        limits, slots, read rates and builds are this runtime's; its cluster (the client,
        its health and reconnection) is its own, so using it changes nothing here.
        """
        other = dataclasses.replace(self, cluster=ClusterHealth(self.settings))
        other.cluster.use(client, spec)
        return other

    @property
    def client(self) -> Any:
        """The registered `distributed.Client`, or None (everything in-process)."""
        return self.cluster.client


_lock = threading.Lock()
_installed: list[Runtime] = []  # the process's runtime, once made
_active: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "gridscope_runtime", default=None
)  # the runtime `using` put in place for this thread or task (None: the process's)


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the process's runtime (``serve`` does, once); returns it."""
    with _lock:
        _installed[:] = [runtime]
    return runtime


@contextlib.contextmanager
def using(runtime: Runtime | None) -> Iterator[Runtime]:
    """Make ``runtime`` the one `current` returns in this thread or task during the block.

    Code run in the block (planning, costing, starting jobs, which keep their runtime)
    computes on ``runtime``'s client (dask's implicit computes too, `_implicit_computes_on`); other threads, and this one after the block, see
    the runtime they saw before. None: no change (the process's runtime).
    """
    if runtime is None:
        yield current()
        return
    token = _active.set(runtime)
    try:
        with _implicit_computes_on(runtime.client):
            yield runtime
    finally:
        _active.reset(token)


def _implicit_computes_on(client: Any) -> contextlib.AbstractContextManager:
    """Send dask's implicit computes in this thread or task (``.values`` of a lazy
    coordinate while planning) to ``client`` while a default distributed client takes them.

    In a notebook the last `distributed.Client` made takes every implicit compute of the
    process; inside `using`, an Explorer's own client takes its own. Where no default
    client exists they run on local threads, and that is left as it is.
    """
    import dask

    if client is None or dask.config.get("scheduler", None) != "dask.distributed":
        return contextlib.nullcontext()
    return client.as_current()


def current() -> Runtime:
    """The runtime `using` put in place here, else the process's runtime (made from the
    environment on first use when none was installed)."""
    active = _active.get()
    if active is not None:
        return active
    with _lock:
        if not _installed:
            _installed.append(Runtime.from_env())
        return _installed[0]
