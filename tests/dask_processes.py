"""A real ``dask scheduler`` and two ``dask worker`` processes on loopback, for tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ports import free_port

_BIN = Path(sys.executable).parent


def _wait_for_workers(address: str, count: int, timeout: float = 60.0) -> None:
    import distributed

    with distributed.Client(address, timeout=timeout, set_as_default=False) as client:
        client.wait_for_workers(count, timeout=timeout)


def start_scheduler(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(_BIN / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_worker(address: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(_BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
         "--host", "127.0.0.1", "--memory-limit", "2GiB"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def tasks_done(client) -> int:
    """Tasks the scheduler of ``client`` has computed so far (counted per task prefix)."""
    return client.run_on_scheduler(
        lambda dask_scheduler: sum(
            tp.state_counts["memory"] for tp in dask_scheduler.task_prefixes.values()
        )
    )


def stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 10
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.fixture(scope="session")
def dask_processes():
    """Address of a real scheduler with two single-thread worker processes.

    One for the whole test session (five modules use it; starting three processes that
    import distributed costs several seconds of CPU each time): tests connect their own
    clients and never stop its processes, and a test that checks what ran on it counts
    tasks before and after (`tasks_done`), never since the start."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [start_scheduler(port)]
    try:
        time.sleep(0.5)
        processes += [start_worker(address), start_worker(address)]
        _wait_for_workers(address, 2)
        yield address
    finally:
        stop(processes)
