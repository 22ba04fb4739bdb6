"""``gridscope build``: build a source's derived stores (pyramid, aggregates, time series).

Thin wiring over `pipelines.build.build_derived`; resumable (re-run to continue).
"""

from __future__ import annotations

import argparse

from app.commands.cluster_flags import add_cluster_flags, cluster_spec


def _levels(text: str) -> int | None:
    """``--levels``: ``auto`` (None) or an integer 0..8."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 8:
        raise argparse.ArgumentTypeError(f"{text!r}: give 'auto' or a level from 0 to 8")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "build",
        help="build derived stores (pyramid, time aggregates, time-series copy) for fast views",
        description=(
            "Build the derived zarr v3 stores the planner uses to answer maps and series "
            "at interactive speed. Runs on the Dask cluster named as for 'gridscope serve' "
            "(a LocalCluster by default; --scheduler synchronous runs in this process) "
            "and is resumable: re-run the same command after an interruption. On a source "
            "that gained time steps since its last build, only the new steps are built "
            "(an append); a running server switches to the new version when it is complete."
        ),
    )
    parser.add_argument("source", help="catalog id or path of the source dataset")
    parser.add_argument(
        "--out",
        default=None,
        help="folder or fsspec URL (s3://..., gs://...) for derived stores (default: "
        "$GRIDSCOPE_DERIVED_DIR, else next to the source); a URL is built in a local "
        "staging folder ($GRIDSCOPE_STAGING_DIR) and uploaded, its manifest last",
    )
    parser.add_argument(
        "--levels",
        type=_levels,
        default=None,
        help="coarsest pyramid/aggregate level, 0..8, or 'auto' (the default: levels "
        "down to one of at most ~1 M cells; a 0.25-degree global grid needs none)",
    )
    parser.add_argument(
        "--ts-levels", type=int, default=5, help="coarsest time-series region level (default 5)"
    )
    parser.add_argument(
        "--base-block", type=int, default=8, help="shortest aggregate block in steps (default 8)"
    )
    parser.add_argument(
        "--unit-steps", type=int, default=64, help="steps per build unit (default 64)"
    )
    parser.add_argument("--vars", default=None, help="comma-separated variables (default: all)")
    add_cluster_flags(parser, in_process=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from pipelines.build import BuildConfig
    from pipelines.cluster import ClusterError
    from pipelines.derived import DerivedStores, derived_dir_for
    from pipelines.locations import build_derived_at

    try:
        spec = cluster_spec(args)
        config = BuildConfig(
            max_level=args.levels,
            ts_max_level=args.ts_levels,
            base_block=args.base_block,
            unit_steps=args.unit_steps,
            variables=tuple(v.strip() for v in args.vars.split(",")) if args.vars else None,
        )
        before = DerivedStores(derived_dir_for(args.source, args.out)).manifest()
        folder = build_derived_at(args.source, args.out, scheduler=spec, config=config)
    except (ValueError, ClusterError) as exc:
        print(f"gridscope: error: {exc}", file=sys.stderr)
        return 2
    print(f"derived stores complete: {folder}")
    from app.builds import _variables_built

    built, left_out = _variables_built(args.source, folder)
    print(f"variables: {', '.join(built) or 'none'} (var@level=L: one vertical level)")
    if left_out:
        print(f"not built (maps and series read the raw data): {left_out}")
    manifest = DerivedStores(folder).manifest()
    last = manifest.get("last_build", {})
    if manifest.get("version") == before.get("version"):
        print(f"nothing new to build (version {manifest.get('version')})")
    elif last.get("appended_from") is not None:
        steps = int(manifest["fingerprint"]["nsteps"]) - int(last["appended_from"])
        print(f"appended {steps} new time steps ({last['units']} units read, "
              f"{last['blocks_combined']} long blocks combined); version {manifest['version']}")  # fmt: skip
    else:
        print(f"version {manifest.get('version')}")
    if args.out is not None:
        print(
            f"set GRIDSCOPE_DERIVED_DIR={args.out} (or the catalog entry's 'derived') for the planner to find them"
        )
    return 0
