"""What a new dashboard page costs the server: CPU, Bokeh models and wall time per page.

``python -m tests.bench.page_cost`` (``make bench ARGS='--only page'``) starts a real
``gridscope serve`` (the bundled catalog, its own process group), then opens pages one
after another through the Bokeh protocol, as a browser does but without one
(`bokeh.client.pull_session`, then the ``document_ready`` event a browser sends once
the page is drawn, which runs the page's ``pn.state.onload`` work): the default view and
a permalink view (another variable, a time range, a point, a Pacific-centred map). Per
page it records

- the server's CPU seconds (user + system of the server process only, not its Dask
  workers: psutil, the difference around the page, taken once the server has gone
  quiet, so the work the page queued after its first render counts too),
- the number of Bokeh models in the session's document (what the browser must build),
- the wall time until the document arrived.

It prints p50/p95 per view beside the goals of issue 13 (<= 150 ms CPU, <= 150 models),
and, with ``--old REF``, the same for another commit of the code, served from a git
worktree (``git worktree add /tmp/gridscope-old REF`` is made when missing), so a change
is measured against what it replaced on the same machine in the same run. The first
page of each server is a warm-up and not counted (the first session of a process
imports and compiles what every later one reuses).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from tests.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Goals of issue 13 item 4 for a page's first render.
GOAL_CPU_MS = 150.0
GOAL_MODELS = 150

#: The views measured: the default page and a permalink (range, point, other centre).
VIEWS = {
    "default": "",
    "permalink": "dataset=coads&var=AIRT&start=Mar&end=Aug&agg=mean&point=-31,9"
    "&cmap=viridis&centre=180",
}


@dataclass
class PageCost:
    """What one page cost."""

    first_cpu_s: float  #: until the document arrived (the first render)
    first_models: int  #: in the document as it arrived
    cpu_s: float  #: until the server was idle again (the page's queued work included)
    models: int  #: in the document then
    wall_s: float  #: until the document arrived


@dataclass
class ViewCosts:
    """The pages of one view on one server."""

    pages: list[PageCost] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def ms(name: str, q: float) -> float:
            values = np.array([getattr(p, name) for p in self.pages]) * 1000
            return round(float(np.percentile(values, q)), 1)

        return {
            "n": len(self.pages),
            "first_models": max(p.first_models for p in self.pages),
            "models": max(p.models for p in self.pages),
            **{f"{key}_ms_p{q}": ms(f"{key}_s", q)
               for key in ("first_cpu", "cpu", "wall") for q in (50, 95)},
        }  # fmt: skip


def _server_cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@contextlib.contextmanager
def served(code_root: Path, port: int, log: Path) -> Iterator[tuple[int, str]]:
    """``gridscope serve`` of the code under ``code_root``; yields (pid, url) once live."""
    import psutil

    env = dict(os.environ, PYTHONPATH=str(code_root))
    cmd = [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())",
           "serve", "--port", str(port), "--address", "127.0.0.1", "--no-show"]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, cwd=code_root, env=env, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gridscope serve exited ({proc.returncode}); see {log}")
            try:
                with urllib.request.urlopen(f"{url}/liveness", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gridscope serve not live after 180 s; see {log}")
            time.sleep(0.5)
        yield proc.pid, url
    finally:
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.Error:
            family = []
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(family, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()


def _cpu_rate(pid: int, seconds: float) -> float:
    """The server's CPU seconds per second over ``seconds`` (its idle work: the Dask
    scheduler, heartbeats, periodic callbacks of pages still open)."""
    before = _server_cpu(pid)
    time.sleep(seconds)
    return (_server_cpu(pid) - before) / seconds


def open_page(pid: int, url: str, query: str) -> PageCost:
    """One page of ``url?query`` through the Bokeh protocol, measured, then closed.

    The server's idle CPU rate, measured just before, is taken off the page's CPU: the
    page is charged only for what it added. The page is done when the server's CPU rate
    is back within 20 ms/s of idle; the settled page's models are then counted in a
    second pull of the same session.
    """
    import panel.models  # noqa: F401  (the client decodes Panel's model types)
    from bokeh.client import pull_session
    from bokeh.events import DocumentReady
    from bokeh.models import Plot

    arguments = dict(parse_qsl(query))
    idle = _cpu_rate(pid, 1.0)
    cpu0, start = _server_cpu(pid), time.monotonic()
    t0 = time.perf_counter()
    session = pull_session(url=f"{url}/", arguments=arguments or None)
    wall = time.perf_counter() - t0
    first_cpu = _server_cpu(pid) - cpu0 - idle * (time.monotonic() - start)
    first_models = len(list(session.document.models))
    try:
        # what a browser sends once it has drawn the page: Panel runs the onload work
        session.document.callbacks.send_event(DocumentReady())
        end = start + 30.0
        while time.monotonic() < end:
            session.force_roundtrip()
            if _cpu_rate(pid, 0.3) <= idle + 0.02:
                break
        cpu = _server_cpu(pid) - cpu0 - idle * (time.monotonic() - start)
        # the page as it is now, pulled again: a bokeh.client session drops the patches
        # that arrive while it waits for a reply, so its own document stays as first sent
        again = pull_session(session_id=session.id, url=f"{url}/")
        models = list(again.document.models)
        again.close()
        if not any(isinstance(m, Plot) for m in models):
            raise RuntimeError(f"the page of {query or 'the default view'!r} has no map "
                               "(an error page?): see the server log")  # fmt: skip
    finally:
        session.close()
    time.sleep(0.5)  # the closed page's clean-up, before the next idle rate
    return PageCost(first_cpu_s=max(first_cpu, 0.0), first_models=first_models,
                    cpu_s=max(cpu, 0.0), models=len(models), wall_s=wall)  # fmt: skip


def measure(code_root: Path, pages: int, log: Path) -> dict[str, ViewCosts]:
    """Pages of every view (`VIEWS`), one after another, on a server of ``code_root``."""
    costs = {name: ViewCosts() for name in VIEWS}
    with served(code_root, free_port(), log) as (pid, url):
        for query in VIEWS.values():
            open_page(pid, url, query)  # warm-up: the process's first page of this view
        for _ in range(pages):
            for name, query in VIEWS.items():
                costs[name].pages.append(open_page(pid, url, query))
    return costs


def _worktree(ref: str) -> Path:
    """A checkout of ``ref`` beside the repository (made once, reused)."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    path = Path(f"/tmp/gridscope-old-{sha}")
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=REPO_ROOT,
                       check=True, capture_output=True)  # fmt: skip
    return path


def format_table(results: dict[str, dict[str, ViewCosts]]) -> str:
    """Rows per code and view, each figure beside its goal (first render: the document as
    it arrived; settled: once the page's queued work, e.g. its series, was done)."""
    head = (f"{'code':<12} {'view':<10} {'pages':>5} | {'first render: models':>20} "
            f"{'cpu p50':>8} {'cpu p95':>8} | {'settled: models':>15} {'cpu p50':>8} "
            f"{'cpu p95':>8} | {'wall p50':>8} {'wall p95':>8}")  # fmt: skip
    lines = [head, "-" * len(head)]

    def mark(value: float, goal: float) -> str:
        return f"{value:g}{'' if value <= goal else '!'}"

    for code, views in results.items():
        for view, costs in views.items():
            s = costs.summary()
            lines.append(
                f"{code:<12} {view:<10} {s['n']:>5} | {mark(s['first_models'], GOAL_MODELS):>20} "
                f"{mark(s['first_cpu_ms_p50'], GOAL_CPU_MS):>8} "
                f"{mark(s['first_cpu_ms_p95'], GOAL_CPU_MS):>8} | "
                f"{mark(s['models'], GOAL_MODELS):>15} {s['cpu_ms_p50']:>8g} {s['cpu_ms_p95']:>8g} | "
                f"{s['wall_ms_p50']:>8g} {s['wall_ms_p95']:>8g}"
            )
    lines.append(f"goals (issue 13): first render <= {GOAL_MODELS} models and <= {GOAL_CPU_MS:g} ms "
                 "server CPU (p95); '!' marks a figure over its goal. CPU in ms of the server "
                 "process (Dask workers not counted), its idle rate taken off; wall in ms.")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.page_cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--pages", type=int, default=10, help="pages per view (default 10)")
    parser.add_argument("--old", metavar="REF", default="",
                        help="also measure this commit (a git worktree), e.g. HEAD~3")  # fmt: skip
    parser.add_argument("--no-current", action="store_true",
                        help="measure only --old (e.g. while the working tree is mid-change)")  # fmt: skip
    parser.add_argument("--out", default="bench-results/page_cost.json")
    parser.add_argument("--log-dir", default="bench-results")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server too
    codes = {} if args.no_current else {"current": REPO_ROOT}
    if args.old:
        codes[f"old {args.old}"[:12]] = _worktree(args.old)
    results: dict[str, dict[str, ViewCosts]] = {}
    for name, root in codes.items():
        print(f"== {name}: {root}", flush=True)
        log = Path(args.log_dir) / f"page_cost_{name.replace(' ', '_').replace('~', '-')}.log"
        results[name] = measure(root, args.pages, log)
    print(format_table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({code: {view: costs.summary() for view, costs in views.items()}
                               for code, views in results.items()}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
