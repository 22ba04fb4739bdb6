"""The app's runtime state in one object: settings, cluster, limits, answer cache, builds.

``gridscope serve`` makes one `Runtime` (`app.server.serve`) and a notebook's
`app.explorer.Explorer` makes one when none exists; `install` makes it the process's
runtime and `current` hands it to the code that computes (`app.jobs`, `app.answers`,
`app.map_views`, `app.costs`, the API). It is the only mutable module-level state of the
app: everything else that changes while serving (the Dask client and its health, the
byte budget and the slots, the answer cache, the observed read rate, the background
builds) is an attribute of it, so a test or a notebook can make a fresh one.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping
from typing import Any

from app.answer_cache import AnswerCache
from app.builds import BuildJobs
from app.cluster_health import ClusterHealth
from app.costs import ReadRate
from app.limits import Limits, Slots
from app.settings import Settings

__all__ = ["Runtime", "current", "install"]


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

    @property
    def client(self) -> Any:
        """The registered `distributed.Client`, or None (everything in-process)."""
        return self.cluster.client


_lock = threading.Lock()
_installed: list[Runtime] = []  # the process's runtime, once made


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the process's runtime (``serve`` does, once); returns it."""
    with _lock:
        _installed[:] = [runtime]
    return runtime


def current() -> Runtime:
    """The process's runtime; made from the environment on first use when none was installed."""
    with _lock:
        if not _installed:
            _installed.append(Runtime.from_env())
        return _installed[0]
