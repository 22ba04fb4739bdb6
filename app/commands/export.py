"""``gridscope export map|series``: write the numbers behind a view to a file.

The flags are the `Query` fields (``--baseline-start`` is ``baseline_start``), and the
answer comes from the dashboard's planner (`pipelines.planner.plan_map` / `plan_series`:
the derived stores of ``gridscope build`` when they exist, brute force on the raw data
otherwise), so an export and the dashboard showing the same query compute the same
numbers from the same stores. On stderr: the plan's cost estimate first (bytes to read
and what it reads), then progress. ``--max-bytes`` refuses a plan above it before
anything is read; a plan above the in-process limit runs its Dask graphs on the
cluster named by the flags of ``gridscope serve`` and ``gridscope build``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.commands.cluster_flags import add_cluster_flags
from pipelines.query import AGGREGATIONS, Query, QueryError

__all__ = ["add_parser", "query_from_args", "run"]

_MAP_SUFFIXES = (".nc", ".png")
_SERIES_SUFFIXES = (".csv",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a map (netCDF/PNG) or a time series (CSV)")
    kinds = parser.add_subparsers(dest="kind", required=True, parser_class=type(parser))
    map_parser = kinds.add_parser("map", help="a map: one time step or a reduction over a range")
    series_parser = kinds.add_parser("series", help="a time series at a point or over a box")
    for p, suffixes in ((map_parser, _MAP_SUFFIXES), (series_parser, _SERIES_SUFFIXES)):
        p.add_argument("source", metavar="SOURCE", help="catalog id, or a netCDF/zarr path or URL")
        p.add_argument("--var", required=True, help="variable name")
        p.add_argument("--start", help="range start, e.g. 1982 or 1982-03 (default: record start)")
        p.add_argument("--end", help="range end, inclusive, e.g. 1992 (default: record end)")
        p.add_argument("--baseline-start", help="anomaly baseline start (needs --baseline-end)")
        p.add_argument("--baseline-end", help="anomaly baseline end")
        p.add_argument("--level", help="vertical level: one the variable has, e.g. 500")
        p.add_argument("--catalog", help="catalog YAML (default: the bundled catalog)")
        p.add_argument("-o", "--output", required=True, help=f"output file ({', '.join(suffixes)})")
        p.add_argument("--max-bytes", type=_max_bytes, metavar="SIZE",
                       help="refuse (before reading anything) when the plan would read more "
                            "than SIZE, e.g. 2GB (env GRIDSCOPE_MAX_BYTES)")  # fmt: skip
        add_cluster_flags(p, in_process=True)
        p.set_defaults(run=run, suffixes=suffixes)
    map_parser.add_argument(
        "--time",
        help="a single time step: a step's date, or the first step of a period such as 1985-07 "
        "(a number on a numbered step axis)",
    )
    map_parser.add_argument(
        "--agg", default="mean", help=f"reduction over the range: {', '.join(AGGREGATIONS)}"
    )
    map_parser.add_argument("--bbox", help="crop to W,S,E,N, e.g. -80,0,-10,60 (W>E crosses 180)")
    map_parser.add_argument("--cmap", help="colour map for PNG (colorcet name)")
    region = series_parser.add_mutually_exclusive_group(required=True)
    region.add_argument("--point", help="LON,LAT of the nearest cell, e.g. -140,0")
    region.add_argument("--bbox", help="area-weighted mean over W,S,E,N")


def query_from_args(args: argparse.Namespace) -> Query:
    """The Query named by the flags (flag names are the Query field names)."""
    fields = (
        "var",
        "time",
        "start",
        "end",
        "agg",
        "baseline_start",
        "baseline_end",
        "bbox",
        "point",
        "level",
    )
    values = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    return Query(dataset=args.source, **values)


def run(args: argparse.Namespace) -> int:
    from data_catalog import load_catalog, open_dataset
    from pipelines.planner import PlanBudgetError, plan_map, plan_series

    output = Path(args.output)
    if output.suffix.lower() not in args.suffixes:
        raise QueryError("output", f"{output.name!r} must end in {' or '.join(args.suffixes)}")
    if not output.parent.exists():
        raise QueryError("output", f"folder {str(output.parent)!r} does not exist")
    query = query_from_args(args)
    catalog = load_catalog(args.catalog) if args.catalog else None
    ds = open_dataset(query.dataset, catalog)

    # the dashboard's planner: derived stores when built, brute force otherwise
    from app.runtime import current

    settings = current().settings  # GRIDSCOPE_* read once (a malformed one: refused in words)
    budget = args.max_bytes if args.max_bytes is not None else settings.max_bytes
    if args.kind == "map":
        plan = plan_map(ds, query, max_bytes=budget)
    else:
        plan = plan_series(ds, query, max_bytes=budget)
    _say(f"gridscope export: reads about {_size_text(plan.estimated_bytes)}: {plan.description}")
    if budget is not None and plan.estimated_bytes > budget:
        raise PlanBudgetError(plan.estimated_bytes, budget, plan.description)
    result = _compute(plan, args)

    from app import exports

    if args.kind == "map":
        field = result.copy()
        field.attrs.pop("gridscope_level", None)  # the planner's, not the data's
        entry = _catalog_entry(query.dataset, catalog)
        words = exports.export_words(ds, query, entry.title if entry is not None else None)
        if output.suffix.lower() == ".png":
            exports.map_to_png(field, output, cmap=args.cmap, title=words.title(region=True),
                               label=words.quantity)  # fmt: skip
        else:
            grid = exports.native_grid_variables(ds, field, query)
            exports.map_to_netcdf(field, output, query=query, words=words, grid=grid)
    else:
        exports.series_to_csv(result, output)
    print(f"wrote {output}")
    return 0


def _compute(plan: Any, args: argparse.Namespace) -> Any:
    """Run ``plan``, with progress on stderr.

    A plan reading less than the planner's own local limit
    (`pipelines.planner.LOCAL_BYTES`: the planner computes such plans on local threads
    whatever cluster there is) runs in this process, as does any plan with
    ``--scheduler synchronous``; a larger one sends its Dask graphs to the cluster the
    flags name (a LocalCluster by default), started for this export and closed after it.
    """
    import time

    from app.commands.cluster_flags import cluster_spec
    from pipelines import planner
    from pipelines.cluster import ClusterError, connect, disconnect

    started = time.monotonic()
    spec = None
    if plan.estimated_bytes >= planner.LOCAL_BYTES and args.scheduler != "synchronous":
        try:
            spec = cluster_spec(args)
        except ClusterError as exc:
            raise QueryError("scheduler", str(exc)) from None
    if spec is None:
        from dask.diagnostics import ProgressBar

        _say("gridscope export: computing in this process")
        with ProgressBar(minimum=1.0, out=sys.stderr):
            result = plan.compute()
    else:
        where = spec.scheduler or spec.gateway or spec.kubernetes or "a local cluster"
        _say(f"gridscope export: computing on {where}")
        try:
            client = connect(spec)
        except ClusterError as exc:
            raise QueryError("scheduler", str(exc)) from None
        try:
            result = _compute_on(client, plan)
        finally:
            disconnect(client)
    seconds = time.monotonic() - started
    rate = plan.estimated_bytes / 1e6 / max(seconds, 1e-9)
    _say(f"gridscope export: done in {seconds:.1f} s ({rate:.1f} MB/s of input)")
    return result


def _compute_on(client: Any, plan: Any) -> Any:
    """``plan.compute()`` with its Dask graphs run by ``client``, saying every few
    seconds how long it has run and how many tasks the cluster is working on."""
    import threading
    import time

    import dask

    done = threading.Event()
    started = time.monotonic()

    def heartbeat() -> None:
        while not done.wait(2.0):
            try:
                busy = sum(len(keys) for keys in client.processing().values())
            except Exception:  # noqa: BLE001  (progress only: a slow scheduler is no error)
                busy = "?"
            _say(f"gridscope export: {time.monotonic() - started:.0f} s, {busy} tasks running")

    thread = threading.Thread(target=heartbeat, name="gridscope-export-progress", daemon=True)
    thread.start()
    try:
        with dask.config.set(scheduler=client):
            return plan.compute()
    finally:
        done.set()
        thread.join()


def _size_text(nbytes: int) -> str:
    from app.limits import format_bytes

    return format_bytes(nbytes)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _max_bytes(text: str) -> int:
    from app.limits import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _catalog_entry(dataset: str, catalog: Any) -> Any:
    """The catalog entry of ``dataset`` (for its title), or None for a path."""
    from data_catalog import load_catalog

    try:
        for entry in (catalog or load_catalog()).entries:
            if entry.id == dataset:
                return entry
    except Exception:  # noqa: BLE001  (no usable catalog: the title is the dataset's own)
        return None
    return None
