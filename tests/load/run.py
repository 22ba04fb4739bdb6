"""Load tests of a loopback `gridscope serve`: headless (default) or with Chromium.

``python -m tests.load.run`` (``make loadtest``) runs the headless benchmark of
`tests.load.headless`: 100 sessions through the Bokeh protocol and the HTTP API, the
server measured, not browsers (``--help`` for its flags).

``python -m tests.load.run --browsers [--sessions 20] [--minutes 3] [--port auto] [--url URL]``
(``make loadtest ARGS=--browsers``) is the secondary check with real browsers:

1. starts ``gridscope serve --no-show`` on 127.0.0.1 (or attaches to ``--url``, which must
   be loopback) and samples its resident memory: the server process (where the Bokeh /
   Panel sessions live) and its children (Dask nannies and workers), separately;
2. opens one *warm-up* session that does each action once and stays open: the memory
   with it open is the *reference*, so one-off costs (imports, coastlines, first
   compute, per-variable caches) do not count as a leak, and the server holds the same
   single session in the reference and at the end;
3. opens the load sessions (one Chromium, one browser context each, starts spread over a
   short ramp); each changes time step, region preset, variable and zoom (mouse wheel on
   the map) at human pace (1-4 s think time, seeded) and times each action to the map
   canvas visibly changing (`tests.load.probe`); a session's acting time counts from its
   page being ready (``--session-seconds``, or at least one think time past the end),
   so a page that loaded slowly on a busy machine (40 s and more) still acts; new
   sessions start only before the end; no change in 30 s, a failed load, a
   visible error/warning/'Traceback', a page error, a dropped websocket or a server exit
   are errors;
4. closes the load sessions and samples memory while the server discards them (Bokeh
   drops a closed session after its unused-session lifetime), up to ``--release-wait``
   seconds, stopping early once memory is back within 10% of the reference.

Two measures of memory are compared with the reference. Resident memory (RSS, sampled
from outside) is the issue's goal: back within 10%. The live heap is what a leak is: the
server logs its allocated blocks and gc-tracked objects each time it has collected
after sessions closed (`app.server.memory_report`); a warm-up *probe* session opened and
closed gives that reading for the reference. A leak (exit status 1) is the live heap not
coming back within 10%; RSS can stay higher without one, because CPython's allocator
keeps arenas that still hold a single live object after a burst of sessions (and
reuses them: a second identical burst does not raise it).

Everything runs under a hard cap (``--minutes`` plus a fixed allowance). Prints a table
and writes ``bench-results/loadtest.json``. Exit status 1 on errors or a leak.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil

from tests.browser.conftest import CHROMIUM_ARGS, stop_server, wait_for_liveness
from tests.conftest import CHROMIUM_PATH, REPO_ROOT
from tests.load.figures import ms, percentiles, write_result
from tests.load.heap import has_reading, heap_reports, next_reading
from tests.load.memory import MemorySampler, Sample, listening_pid, mib_figures, settled_sample
from tests.load.session import ACTIONS, Session
from tests.ports import free_port

RESULTS = REPO_ROOT / "bench-results"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
#: Memory after closing the sessions may exceed the reference by this fraction.
LEAK_TOLERANCE = 0.10
#: Server flags that make Bokeh discard closed sessions promptly (seconds), passed when
#: ``gridscope serve --help`` offers them; Bokeh's defaults (15 s lifetime, checked every
#: 17 s) leave a closed session in memory for up to 32 s.
SESSION_FLAGS = {"--unused-session-lifetime": 2.0, "--check-unused-sessions": 1.0}


@dataclass
class LoadConfig:
    sessions: int = 20
    minutes: float = 3.0
    url: str | None = None
    port: int | None = None
    seed: int = 7
    think: tuple[float, float] = (1.0, 4.0)
    #: spread session starts over this long (default: 2 s each, at most 60 s)
    ramp_s: float | None = None
    release_wait_s: float = 60.0
    #: keep sampling at least this long after closing, even when already within tolerance
    #: (Bokeh discards a closed session 15-32 s later with its default lifetimes)
    release_min_s: float | None = None  #: default: 8 s with the session flags, else 35 s
    #: each simulated user closes its session after this long and opens a new one
    #: (None: one session per user for the whole run); churn makes a per-session leak add up
    session_s: float | None = None
    #: each session acts at least this many times, past its end if need be
    min_actions: int = 0
    warmup: bool = True
    server_args: list[str] = field(default_factory=list)
    hard_cap_s: float | None = None  #: whole run, default minutes*60 + 300
    out: Path | None = RESULTS / "loadtest.json"
    log: Path = RESULTS / "loadtest-serve.log"


@dataclass
class LoadResult:
    config: dict[str, Any]
    sessions: int = 0
    sessions_loaded: int = 0
    sessions_with_updates: int = 0
    actions: int = 0
    latency: dict[str, Any] = field(default_factory=dict)
    page_load: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    #: the server's own live-heap readings: reference and after (`HEAP_LINE`)
    heap: dict[str, Any] = field(default_factory=dict)
    leak: bool | None = None  #: the live heap did not come back (RSS when it is unknown)
    rss_within_goal: bool | None = None  #: RSS back within LEAK_TOLERANCE of the reference
    cpu: dict[str, Any] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    server_flags: list[str] = field(default_factory=list)
    per_session: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.leak is False


def _within(after: Sample, ref: Sample) -> bool:
    """After-close memory back within tolerance of the reference, server and total."""
    return (after.server_mib <= ref.server_mib * (1 + LEAK_TOLERANCE)
            and after.total_mib <= ref.total_mib * (1 + LEAK_TOLERANCE))  # fmt: skip


def session_flags() -> list[str]:
    """`SESSION_FLAGS` that this `gridscope serve` understands, in the unit its help names."""
    exe = Path(sys.executable).with_name("gridscope")
    try:
        text = subprocess.run(
            [str(exe), "serve", "--help"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    flags: list[str] = []
    for flag, seconds in SESSION_FLAGS.items():
        match = re.search(re.escape(flag) + r"[ =]([A-Z_]+)", text)
        if match is None:
            continue
        value = seconds * 1000 if match.group(1).startswith(("MS", "MILLI")) else seconds
        flags += [flag, f"{value:g}"]
    return flags


def start_server(port: int, extra: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """``gridscope serve`` on 127.0.0.1:`port` (its own process group), once live."""
    exe = Path(sys.executable).with_name("gridscope")
    cmd = [str(exe), "serve", "--port", str(port), "--address", "127.0.0.1", "--no-show", *extra]
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("w")
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_liveness(url, proc, log, timeout=120)
    except Exception:
        stop_tree(proc)
        raise
    return proc, url


def stop_tree(proc: subprocess.Popen) -> None:
    """Stop the server, then any of its children (Dask workers) that outlive it."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    stop_server(proc)
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass


def _own_cpu_seconds(exclude_pid: int | None) -> float:
    """CPU time of this process's descendants (Playwright driver, Chromium), minus the server tree."""
    me = psutil.Process()
    excluded: set[int] = set()
    if exclude_pid is not None:
        try:
            server = psutil.Process(exclude_pid)
            excluded = {exclude_pid, *(c.pid for c in server.children(recursive=True))}
        except psutil.Error:
            pass
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        if p.pid in excluded:
            continue
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user * 0 + t.children_system * 0
        except psutil.Error:
            pass
    return total


async def _sample_loop(
    sampler: MemorySampler | None, stop: asyncio.Event, dead: list[str], every: float
) -> None:
    while not stop.is_set():
        if sampler is not None:
            if not sampler.alive():
                dead.append("server exited")
                return
            sampler.sample()
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except TimeoutError:
            pass


async def _drive(cfg: LoadConfig, url: str, sampler: MemorySampler | None, result: LoadResult,
                 started: float, heap_log: Path | None) -> None:  # fmt: skip
    from playwright.async_api import async_playwright

    mem: dict[str, Sample | None] = {}
    dead: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS)
        try:
            warm: Session | None = None
            if cfg.warmup:
                t = time.monotonic()
                warm = Session(browser, url, index=-1, seed=cfg.seed, think=cfg.think)
                if await warm.open():
                    for kind in ACTIONS:
                        await warm.act(kind)
                    await warm.settle()
                result.errors += warm.stats.errors
                if heap_log is not None:  # the live heap with the warm session open
                    seen = len(heap_reports(heap_log))
                    probe = Session(browser, url, index=-2, seed=cfg.seed, think=cfg.think)
                    await probe.open()
                    await probe.close()
                    result.errors += probe.stats.errors
                    # the warm session stays open: the reference holds that one
                    result.heap["reference"] = await next_reading(heap_log, seen, 45.0, sessions=1)
                result.durations["warmup_s"] = round(time.monotonic() - t, 1)
            if sampler is not None:
                await asyncio.sleep(1.0)
                mem["reference"] = await settled_sample(sampler)

            # --- load ---------------------------------------------------------------------
            stop = asyncio.Event()
            sampler_task = asyncio.create_task(_sample_loop(sampler, stop, dead, every=1.0))
            cpu0_server = sampler.cpu_seconds() if sampler else 0.0
            cpu0_client = _own_cpu_seconds(sampler.pid if sampler else None)
            load_start = time.monotonic()
            deadline = load_start + cfg.minutes * 60
            ramp = cfg.ramp_s if cfg.ramp_s is not None else min(60.0, 2.0 * cfg.sessions)
            sessions: list[Session] = []

            async def user(slot: int) -> None:
                await asyncio.sleep(ramp * slot / max(1, cfg.sessions))
                generation = 0
                # a new session only when it has time to load and act (churn)
                room = cfg.think[1] + (cfg.session_s or 0.0) / 2
                while time.monotonic() < deadline - room:
                    s = Session(
                        browser,
                        url,
                        index=slot + generation * cfg.sessions,
                        seed=cfg.seed,
                        think=cfg.think,
                    )
                    sessions.append(s)
                    if await s.open():
                        # acting time counts from the page being ready: a page that
                        # loaded slowly (a busy machine) still acts
                        ready = time.monotonic()
                        end = (
                            max(deadline, ready + room)
                            if cfg.session_s is None
                            else ready + cfg.session_s
                        )
                        await s.run(end, cfg.min_actions)
                    if cfg.session_s is None:
                        break
                    await s.close()
                    generation += 1

            try:
                await asyncio.gather(*(user(slot) for slot in range(cfg.sessions)))
            finally:
                load_s = time.monotonic() - load_start
                result.cpu = {
                    "server_cores": round((sampler.cpu_seconds() - cpu0_server) / load_s, 2) if sampler else None,
                    "browser_cores": round((_own_cpu_seconds(sampler.pid if sampler else None) - cpu0_client) / load_s, 2),
                    "machine_cores": os.cpu_count(),
                }  # fmt: skip
                result.durations["load_s"] = round(load_s, 1)
                heap_seen = len(heap_reports(heap_log))
                held = 1 if warm is not None else 0  # sessions the server keeps: the warm one
                for s in sessions:
                    await s.close()
                stop.set()
                await sampler_task
            closed_at = time.monotonic()
            result.errors += dead
            for s in sessions:
                st = s.stats
                result.errors += st.errors
                result.per_session.append({"index": st.index, "load_s": None if st.load_s is None else round(st.load_s, 2),
                                           "actions": len(st.latencies), "errors": len(st.errors),
                                           "unsettled": st.unsettled})  # fmt: skip
            lat = [v for s in sessions for _, v in s.stats.latencies]
            result.sessions = len(sessions)
            result.sessions_loaded = sum(s.stats.load_s is not None for s in sessions)
            result.sessions_with_updates = sum(bool(s.stats.latencies) for s in sessions)
            result.actions = len(lat)
            result.latency = {"all": percentiles(lat)}
            for kind in ACTIONS:
                result.latency[kind] = percentiles(
                    [v for s in sessions for k, v in s.stats.latencies if k == kind]
                )
            result.page_load = percentiles(
                [s.stats.load_s for s in sessions if s.stats.load_s is not None]
            )
            if sampler is not None and sampler.samples:
                load_samples = [x for x in sampler.samples if x.t >= load_start - sampler.t0]
                peak = max(load_samples or sampler.samples, key=lambda x: x.total_mib)
                mem["peak"] = peak
                mem["peak_server"] = max(
                    load_samples or sampler.samples, key=lambda x: x.server_mib
                )

            # --- release ------------------------------------------------------------------
            if sampler is not None and not dead:
                ref = mem.get("reference") or mem.get("start")
                after = None
                release_deadline = closed_at + cfg.release_wait_s
                release_min = cfg.release_min_s
                if release_min is None:
                    release_min = (
                        8.0 if any(f in result.server_flags for f in SESSION_FLAGS) else 35.0
                    )
                while time.monotonic() < release_deadline:
                    await asyncio.sleep(1.0)
                    if not sampler.alive():
                        result.errors.append("server exited after the sessions closed")
                        break
                    after = sampler.sample()
                    if (after is not None and ref is not None and _within(after, ref)
                            and time.monotonic() - closed_at >= release_min
                            and (heap_log is None or has_reading(heap_log, heap_seen, held))):  # fmt: skip
                        # confirm with a settled reading before stopping early
                        after = await settled_sample(sampler)
                        if after is not None and _within(after, ref):
                            break
                mem["after"] = after
                # no closed session still held (a reading with one counts its whole page)
                result.heap["after"] = await next_reading(heap_log, heap_seen, 1.0, sessions=held)
                result.durations["release_s"] = round(time.monotonic() - closed_at, 1)
            if warm is not None:
                await warm.check_problems(with_text=True)
                result.errors += [e for e in warm.stats.errors if e not in result.errors]
                await warm.close()
        finally:
            await browser.close()
    result.memory.update({k: mib_figures(v) for k, v in mem.items()})


async def run_load_async(cfg: LoadConfig) -> LoadResult:
    started = time.monotonic()
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    result = LoadResult(config=config)
    proc: subprocess.Popen | None = None
    sampler: MemorySampler | None = None
    hard_cap = cfg.hard_cap_s or cfg.minutes * 60 + 300
    try:
        if cfg.url:
            host = urlparse(cfg.url).hostname or ""
            if host not in LOOPBACK:
                raise ValueError(
                    f"--url must be a loopback address (127.0.0.1/localhost), not {host!r}"
                )
            url = cfg.url.rstrip("/")
            port = urlparse(cfg.url).port or 80
            pid = listening_pid(port)
            sampler = MemorySampler(pid) if pid else None
        else:
            result.server_flags = session_flags() + list(cfg.server_args)
            t = time.monotonic()
            proc, url = start_server(cfg.port or free_port(), result.server_flags, cfg.log)
            result.durations["server_start_s"] = round(time.monotonic() - t, 1)
            sampler = MemorySampler(proc.pid)
        if sampler is not None:
            await asyncio.sleep(2.0)
            start = await settled_sample(sampler)
            result.memory["start"] = mib_figures(start)
        try:
            heap_log = None if cfg.url else cfg.log
            await asyncio.wait_for(
                _drive(cfg, url, sampler, result, started, heap_log), timeout=hard_cap
            )
        except TimeoutError:
            result.errors.append(f"hard cap of {hard_cap:.0f} s reached")
        ref, after = (
            result.memory.get("reference") or result.memory.get("start"),
            result.memory.get("after"),
        )
        if ref and after:
            result.rss_within_goal = after["server_mib"] <= ref["server_mib"] * (
                1 + LEAK_TOLERANCE
            ) and after["total_mib"] <= ref["total_mib"] * (1 + LEAK_TOLERANCE)
            result.leak = not result.rss_within_goal
        heap_ref, heap_after = result.heap.get("reference"), result.heap.get("after")
        if heap_ref and heap_after:
            result.leak = heap_after["blocks"] > heap_ref["blocks"] * (1 + LEAK_TOLERANCE)
        if proc is not None and proc.poll() is not None:
            result.errors.append(f"server exited with {proc.returncode}")
    finally:
        if proc is not None:
            stop_tree(proc)
        result.durations["total_s"] = round(time.monotonic() - started, 1)
    if sampler is not None:
        result.memory["timeline"] = [
            [s.t, round(s.server_mib, 1), round(s.workers_mib, 1)] for s in sampler.samples
        ]
    write_result(cfg.out, result)
    return result


def run_load(cfg: LoadConfig) -> LoadResult:
    return asyncio.run(run_load_async(cfg))


def format_table(r: LoadResult) -> str:
    churn = r.config.get("session_s")
    lines = [f"gridscope load test: {r.config['sessions']} concurrent users x {r.config['minutes']} min, "
             f"{r.sessions} sessions" + (f" (each ~{churn:g} s)" if churn else "") + " "
             f"({r.sessions_loaded} loaded, {r.sessions_with_updates} with updates)", "",
             f"{'update latency':<16}{'n':>7}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}"]  # fmt: skip
    for kind in ("all", *ACTIONS):
        p = r.latency.get(kind) or {}
        lines.append(
            f"{kind:<16}{p.get('n', 0):>7}{ms(p.get('p50_ms')):>10}{ms(p.get('p95_ms')):>10}{ms(p.get('max_ms')):>10}"
        )
    p = r.page_load
    lines.append(
        f"{'page load':<16}{p.get('n', 0):>7}{ms(p.get('p50_ms')):>10}{ms(p.get('p95_ms')):>10}{ms(p.get('max_ms')):>10}"
    )
    lines += ["", f"{'memory (MiB)':<16}{'server':>10}{'workers':>10}{'total':>10}"]
    for key, label in (
        ("start", "start"),
        ("reference", "reference"),
        ("peak", "peak"),
        ("after", "after close"),
    ):
        m = r.memory.get(key)
        if m:
            lines.append(
                f"{label:<16}{m['server_mib']:>10.0f}{m['workers_mib']:>10.0f}{m['total_mib']:>10.0f}"
            )
    ref, after = r.memory.get("reference") or r.memory.get("start"), r.memory.get("after")
    if ref and after:
        lines.append(f"RSS after vs reference: server {after['server_mib'] / ref['server_mib'] - 1:+.1%}, "
                     f"total {after['total_mib'] / ref['total_mib'] - 1:+.1%} "
                     f"-> {'within' if r.rss_within_goal else 'NOT within'} {LEAK_TOLERANCE:.0%}")  # fmt: skip
    heap_ref, heap_after = r.heap.get("reference"), r.heap.get("after")
    if heap_ref and heap_after:
        lines.append(f"live heap after vs reference: blocks {heap_ref['blocks']:,} -> {heap_after['blocks']:,} "
                     f"({heap_after['blocks'] / heap_ref['blocks'] - 1:+.1%}), gc objects "
                     f"{heap_ref['objects']:,} -> {heap_after['objects']:,} "
                     f"({heap_after['objects'] / heap_ref['objects'] - 1:+.1%})")  # fmt: skip
    if r.leak is not None:
        basis = "live heap" if heap_ref and heap_after else "RSS"
        lines.append(
            f"-> {'LEAK' if r.leak else 'no leak'} ({basis}, tolerance {LEAK_TOLERANCE:.0%})"
        )
    start = r.memory.get("start")
    if start and after:
        lines.append(
            f"after vs start:     server {after['server_mib'] / start['server_mib'] - 1:+.1%}, "
            f"total {after['total_mib'] / start['total_mib'] - 1:+.1%}"
        )
    if r.cpu:
        lines.append(
            f"cpu during load: server+workers {r.cpu.get('server_cores')} cores, "
            f"browser {r.cpu.get('browser_cores')} cores, machine {r.cpu.get('machine_cores')}"
        )
    lines.append(f"durations: {r.durations}")
    lines.append(f"server flags: {' '.join(r.server_flags) or '(none)'}")
    lines.append(f"errors: {len(r.errors)}")
    lines += [f"  {e}" for e in r.errors[:30]]
    if len(r.errors) > 30:
        lines.append(f"  ... {len(r.errors) - 30} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The headless benchmark, or with ``--browsers`` the Chromium load test."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--browsers" in argv:
        argv.remove("--browsers")
        return browsers_main(argv)
    return headless_main(argv)


def headless_main(argv: list[str]) -> int:
    from tests.load.headless import HeadlessConfig, format_table, run_headless

    ap = argparse.ArgumentParser(
        prog="python -m tests.load.run",
        description="Headless load benchmark (tests/load/headless.py); --browsers: the Chromium run",
    )
    ap.add_argument("--sessions", type=int, default=100, help="concurrent sessions (default 100)")
    ap.add_argument("--seconds", type=float, default=180.0, help="acting time (default 180)")
    ap.add_argument("--think", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"),
                    help="seconds between one user's changes (default 2 6)")  # fmt: skip
    ap.add_argument("--ramp", type=float, default=None,
                    help="seconds over which sessions arrive (default 0.6 s each, at most 60)")  # fmt: skip
    ap.add_argument("--cpu-pages", type=int, default=5, help="pages measured one at a time")
    ap.add_argument("--page-timeout", type=float, default=280.0,
                    help="a page not ready after this long is an error (default 280 s: Bokeh's "
                         "session tokens expire after 300 s)")  # fmt: skip
    ap.add_argument("--no-api", action="store_true", help="skip the HTTP API run")
    ap.add_argument("--api-clients", type=int, default=50)
    ap.add_argument("--api-cold", type=int, default=300, help="distinct cold requests")
    ap.add_argument("--api-warm-seconds", type=float, default=20.0)
    ap.add_argument("--url", help="use this running loopback server instead of starting one")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra 'gridscope serve' argument (repeatable), e.g. --server-arg=--num-procs=2")  # fmt: skip
    ap.add_argument("--out", type=Path, default=RESULTS / "loadtest-headless.json")
    args = ap.parse_args(argv)
    if not 1 <= args.sessions <= 500 or not 0 < args.seconds <= 1800:
        ap.error("bounded: 1..500 sessions, at most 1800 seconds")
    if args.url and (urlparse(args.url).hostname or "") not in LOOPBACK:
        ap.error("--url must be a loopback address (127.0.0.1/localhost)")
    cfg = HeadlessConfig(
        sessions=args.sessions, seconds=args.seconds, think=tuple(args.think), ramp_s=args.ramp,
        cpu_pages=args.cpu_pages, page_timeout_s=args.page_timeout, api=not args.no_api, api_clients=args.api_clients,
        api_cold=args.api_cold, api_warm_seconds=args.api_warm_seconds, url=args.url,
        seed=args.seed, server_args=args.server_arg, out=args.out,
    )  # fmt: skip
    result = run_headless(cfg)
    print(format_table(result))
    print(f"\nwrote {cfg.out}")
    return 0 if not result.goals_missed else 1


def browsers_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.load.run --browsers", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--port", default="auto", help="server port, or 'auto' for a free one")
    ap.add_argument("--url", help="use this running loopback server instead of starting one")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="seconds over which the sessions arrive (default 2 s each, at most 60 s)",
    )
    ap.add_argument(
        "--release-wait",
        type=float,
        default=60.0,
        help="seconds to wait for closed sessions to be dropped",
    )
    ap.add_argument(
        "--release-min", type=float, default=None, help="sample at least this long after closing"
    )
    ap.add_argument(
        "--session-seconds",
        type=float,
        default=None,
        help="churn: each user reopens a fresh session after this long (default: one session each)",
    )
    ap.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra 'gridscope serve' argument (repeatable)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "loadtest.json")
    args = ap.parse_args(argv)
    if not CHROMIUM_PATH.exists():
        print(f"no Chromium at {CHROMIUM_PATH}", file=sys.stderr)
        return 2
    if not 1 <= args.sessions <= 100 or not 0 < args.minutes <= 30:
        ap.error("bounded: 1..100 sessions, at most 30 minutes")
    cfg = LoadConfig(sessions=args.sessions, minutes=args.minutes, url=args.url,
                     port=None if args.port == "auto" else int(args.port), seed=args.seed,
                     ramp_s=args.ramp, release_wait_s=args.release_wait, release_min_s=args.release_min,
                     session_s=args.session_seconds, server_args=args.server_arg, out=args.out)  # fmt: skip
    result = run_load(cfg)
    print(format_table(result))
    print(f"\nwrote {cfg.out}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
