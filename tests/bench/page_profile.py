"""Where a dashboard page and a session update spend the server's CPU, in-process.

``python -m tests.bench.page_profile`` builds the default page of the bundled catalog
into a Bokeh document (as a served session does, without the websocket), then applies
the updates a person makes: a new time step, another variable, a point region, a box
region. For each it prints the CPU seconds (``time.process_time``) and how many Bokeh
models the document gained, p50 over ``--repeat`` runs; ``--profile NAME`` prints the
cProfile of that step (``page``, ``time``, ``var``, ``point``, ``box``) sorted by
cumulative time. `tests.bench.page_cost` measures the same through a real server.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["main"]


def _page() -> tuple[Any, Any, Any]:
    """(state, results, document) of a new default page, its map and series computed."""
    import panel as pn
    from bokeh.document import Document

    from app.sources import DatasetSources
    from app.state import ExplorerState
    from app.views.dashboard import Dashboard
    from app.views.results import ViewResults

    global _SOURCES
    if _SOURCES is None:
        _SOURCES = DatasetSources.from_catalog()
    state = ExplorerState(_SOURCES)
    results = ViewResults(state)
    results.refresh()
    doc = Document()
    with _curdoc(doc):
        doc.add_root(pn.Column(Dashboard(state, results=results)).get_root(doc))
    return state, results, doc


_SOURCES: Any = None


class _curdoc:
    def __init__(self, doc: Any) -> None:
        self.doc = doc

    def __enter__(self) -> None:
        import panel as pn

        self._old = pn.state.curdoc
        pn.state.curdoc = self.doc

    def __exit__(self, *_: Any) -> None:
        import panel as pn

        pn.state.curdoc = self._old


def _updates(state: Any) -> dict[str, Callable[[], None]]:
    info = state.sources.info(state.dataset)
    other_var = next(v for v in info.variables if v != state.var)
    return {
        "time": lambda: setattr(
            state, "time", info.times[(info.times.index(state.time) + 1) % len(info.times)]
        ),  # fmt: skip
        "var": lambda: setattr(state, "var", other_var),
        "point": lambda: state.param.update(region="Point", point=(10.0 + np.random.rand(), 20.0)),
        "box": lambda: state.param.update(
            region="Custom box", bbox=(-30.0, -10.0, 20.0 + np.random.rand(), 15.0), point=None
        ),  # fmt: skip
    }


def _measure(repeat: int, profile: str | None) -> dict[str, list[tuple[float, int]]]:
    out: dict[str, list[tuple[float, int]]] = {}
    _page()  # warm-up: imports, first compilations
    for _ in range(repeat):
        profiler = cProfile.Profile() if profile == "page" else None
        t0 = time.process_time()
        if profiler:
            profiler.enable()
        state, _results, doc = _page()
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        out.setdefault("page", []).append((time.process_time() - t0, len(doc.models)))
        for name, update in _updates(state).items():
            before = {m.id for m in doc.models}
            profiler = cProfile.Profile() if profile == name else None
            t0 = time.process_time()
            with _curdoc(doc):
                if profiler:
                    profiler.enable()
                update()
                if profiler:
                    profiler.disable()
            cpu = time.process_time() - t0
            if profiler:
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
            new = len({m.id for m in doc.models} - before)
            out.setdefault(name, []).append((cpu, new))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", choices=["page", "time", "var", "point", "box"])
    args = parser.parse_args(argv)
    results = _measure(args.repeat, args.profile)
    print(f"{'step':8} {'cpu ms p50':>10} {'models (page) / new models (update)':>36}")
    for name, rows in results.items():
        cpu = np.median([r[0] for r in rows]) * 1000
        print(f"{name:8} {cpu:10.1f} {max(r[1] for r in rows):>36}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
