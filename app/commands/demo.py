"""``gridscope demo``: write a synthetic ERA5-like dataset (zarr v3) to disk.

Thin wiring over `pipelines.synthetic.write_demo_store`.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="write a synthetic ERA5-like 0.25-degree dataset (zarr v3) of a given size",
        description=(
            "Write a deterministic synthetic ERA5-like dataset (t2m, sst with a land mask; "
            "latitude 90..-90, longitude 0..359.75) as a zarr v3 store. Re-running with the "
            "same options resumes an interrupted write."
        ),
    )
    parser.add_argument(
        "--size", default="1GB", help="uncompressed size, e.g. 1GB, 20GB (default 1GB)"
    )
    parser.add_argument("--out", required=True, help="path of the zarr store to write")
    parser.add_argument("--freq", choices=("daily", "hourly"), default="daily")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", default="1980-01-01", help="date of the first step")
    parser.add_argument(
        "--resolution", type=float, default=0.25, help="grid spacing in degrees (default 0.25)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.synthetic import spec_for_size, write_demo_store

    try:
        spec = spec_for_size(
            args.size, freq=args.freq, seed=args.seed, start=args.start, resolution=args.resolution
        )
    except ValueError as exc:
        import sys

        print(f"gridscope: error: --size/--resolution: {exc}", file=sys.stderr)
        return 2
    print(
        f"writing {spec.nsteps} {spec.freq} steps of {', '.join(spec.variables)} on a "
        f"{spec.nlat}x{spec.nlon} grid ({spec.nbytes / 1e9:.2f} GB uncompressed) to {args.out}"
    )
    write_demo_store(spec, args.out)
    print(f"done: {args.out}")
    return 0
