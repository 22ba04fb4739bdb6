"""Resident memory and CPU time of the server process and, separately, of its children (Dask workers)."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import psutil

MIB = 1024 * 1024


@dataclass
class Sample:
    t: float  #: seconds since the sampler started
    server_mib: float  #: the server process itself (Bokeh/Panel sessions live here)
    workers_mib: float  #: all its descendants: Dask nannies and workers

    @property
    def total_mib(self) -> float:
        return self.server_mib + self.workers_mib


@dataclass
class MemorySampler:
    pid: int
    samples: list[Sample] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def sample(self) -> Sample | None:
        try:
            proc = psutil.Process(self.pid)
            server = proc.memory_info().rss
            children = 0
            for child in proc.children(recursive=True):
                try:
                    children += child.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            return None
        s = Sample(round(time.monotonic() - self.t0, 2), server / MIB, children / MIB)
        self.samples.append(s)
        return s

    def cpu_seconds(self) -> float:
        """CPU time (user+system) used so far by the server and its children."""
        return tree_cpu_seconds(self.pid)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its descendants."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


async def settled_sample(sampler: MemorySampler, n: int = 3, every: float = 0.5) -> Sample | None:
    """Median of a few samples (memory read right after a burst jitters)."""
    got: list[Sample] = []
    for _ in range(n):
        s = sampler.sample()
        if s is not None:
            got.append(s)
        await asyncio.sleep(every)
    if not got:
        return None
    return Sample(
        got[-1].t,
        statistics.median(g.server_mib for g in got),
        statistics.median(g.workers_mib for g in got),
    )


def mib_figures(s: Sample | None) -> dict[str, float] | None:
    """A sample as the results' ``{server_mib, workers_mib, total_mib}``."""
    if s is None:
        return None
    return {"server_mib": round(s.server_mib, 1), "workers_mib": round(s.workers_mib, 1),
            "total_mib": round(s.total_mib, 1)}  # fmt: skip


def listening_pid(port: int) -> int | None:
    """The pid of the local process listening on `port` (our own processes only)."""
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.Error:
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return c.pid
    return None
