"""gridscope vs the naive xarray/hvplot approach, on two dataset sizes and a virtual TB source.

``python -m tests.bench.run`` (what ``make bench`` calls) writes or reuses synthetic
ERA5-like stores under ``bench-data/``, builds their derived stores, then times p50/p95
over randomised queries for the planner and for what a user would write by hand
(``xr.open_zarr`` + ``hvplot.image(rasterize=True)`` rendered + ``.sel().mean("time")`` +
``.sel(method="nearest")`` + ``.weighted()``). Prints a table, writes
``bench-results/latest.json``. All gridscope queries run before any naive one so the
reported peak RSS is the server's (the naive ones load far more).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

QUERIES = ("map_frame", "range_map", "point_series", "area_series")


def _percentiles(times: list[float]) -> dict[str, float]:
    arr = np.asarray(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "n": len(times),
    }


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _random_queries(
    nsteps: int, times: Any, n: int, seed: int, hourly: bool
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    per_month = 24 * 30 if hourly else 30
    out = []
    for _ in range(n):
        width = float(rng.uniform(20, 360))
        height = float(min(rng.uniform(10, 180), 180))
        x0 = float(rng.uniform(-180, 180 - width)) if width < 360 else -180.0
        y0 = float(rng.uniform(-90, 90 - height))
        length = int(rng.integers(min(per_month, nsteps), nsteps + 1))
        start = int(rng.integers(0, nsteps - length + 1))
        bw, bh = float(rng.uniform(5, 60)), float(rng.uniform(5, 60))
        bx, by = float(rng.uniform(0, 359 - bw)), float(rng.uniform(-85, 85 - bh))
        out.append(
            dict(
                step=int(rng.integers(0, nsteps)),
                viewport=(x0, x0 + width, y0, y0 + height),
                agg=str(rng.choice(["mean", "min", "max", "std"])),
                start=start,
                end=start + length - 1,
                point=(float(rng.uniform(0, 359.75)), float(rng.uniform(-89, 89))),
                box=(bx, by, bx + bw, by + bh),
            )
        )
    return out


def _label(times: Any, i: int) -> str:
    import pandas as pd

    return pd.Timestamp(times[i]).strftime("%Y-%m-%dT%H")


def _lon180(lon: float) -> float:
    return ((lon + 180) % 360) - 180


def gridscope_section(
    ds: Any, queries: list[dict], which: tuple[str, ...], screen: tuple[int, int]
) -> dict[str, list[float]]:
    from app.compute import regrid_to_screen
    from pipelines import Query
    from pipelines.cache import result_cache
    from pipelines.planner import plan_map, plan_series

    times = ds["time"].values
    out: dict[str, list[float]] = {k: [] for k in which}
    for q in queries:
        result_cache.clear()
        for kind in which:
            if kind == "map_frame":
                query = Query(dataset="b", var="t2m", time=_label(times, q["step"]))
                # the planner's answer regridded to the screen's pixels, as the dashboard does
                run = lambda: regrid_to_screen(  # noqa: E731
                    plan_map(ds, query, viewport=q["viewport"], screen=screen).compute(),  # noqa: B023
                    q["viewport"],  # noqa: B023
                    screen,
                )
            elif kind == "range_map":
                query = Query(
                    dataset="b",
                    var="t2m",
                    start=_label(times, q["start"]),
                    end=_label(times, q["end"]),
                    agg=q["agg"],
                )
                run = lambda: plan_map(ds, query, screen=screen).compute()  # noqa: E731, B023
            elif kind == "point_series":
                query = Query(dataset="b", var="t2m", point=(_lon180(q["point"][0]), q["point"][1]))
                run = lambda: plan_series(ds, query).compute()  # noqa: E731, B023
            else:
                w, s, e, n = q["box"]
                query = Query(dataset="b", var="t2m", bbox=(_lon180(w), s, _lon180(e), n))
                run = lambda: plan_series(ds, query).compute()  # noqa: E731, B023
            t = time.perf_counter()
            run()
            out[kind].append(time.perf_counter() - t)
    return out


def naive_section(
    raw: Any,
    queries: list[dict],
    which: tuple[str, ...],
    screen: tuple[int, int],
    names: tuple[str, str],
) -> dict[str, list[float]]:
    import holoviews as hv
    import hvplot.xarray  # noqa: F401

    hv.extension("bokeh", logo=False)
    lat_name, lon_name = names
    da = raw["t2m"]
    times = da["time"].values
    lon0 = float(da[lon_name].values[0])
    out: dict[str, list[float]] = {k: [] for k in which}
    for q in queries:
        for kind in which:
            t = time.perf_counter()
            if kind == "map_frame":
                x0, x1, y0, y1 = q["viewport"]
                if lon0 >= 0:
                    x0, x1 = x0 + 180, x1 + 180
                plot = da.sel(time=times[q["step"]]).hvplot.image(
                    x=lon_name,
                    y=lat_name,
                    rasterize=True,
                    width=screen[0],
                    height=screen[1],
                    xlim=(x0, x1),
                    ylim=(y0, y1),
                )
                hv.render(plot)
            elif kind == "range_map":
                _ = getattr(da.sel(time=slice(times[q["start"]], times[q["end"]])), q["agg"])(
                    "time"
                ).values
            elif kind == "point_series":
                lon = q["point"][0] if lon0 >= 0 else _lon180(q["point"][0])
                _ = da.sel({lat_name: q["point"][1], lon_name: lon}, method="nearest").values
            else:
                w, s, e, n = q["box"]
                if lon0 < 0:
                    w, e = w - 180, e - 180
                lat_slice = (
                    slice(n, s) if da[lat_name].values[0] > da[lat_name].values[-1] else slice(s, n)
                )
                box = da.sel({lat_name: lat_slice, lon_name: slice(w, e)})
                weights = np.cos(np.deg2rad(box[lat_name]))
                _ = box.weighted(weights).mean((lat_name, lon_name)).values
            out[kind].append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes", default="1GB,10GB", help="two (or more) demo sizes, >= 10x apart"
    )
    parser.add_argument(
        "--virtual-size",
        default="1.4TB",
        help="virtual hourly source for the map-frame query ('' to skip)",
    )
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--resolution", type=float, default=0.25)
    parser.add_argument("--data", default="bench-data")
    parser.add_argument("--out", default="bench-results/latest.json")
    parser.add_argument(
        "--scheduler", default=None, help="dask scheduler for the build ('synchronous' in-process)"
    )
    parser.add_argument("--screen", default="800,400")
    args = parser.parse_args(argv)

    import xarray as xr

    from data_catalog import open_dataset
    from pipelines.build import BuildConfig, build_derived
    from pipelines.synthetic import spec_for_size, virtual_dataset, write_demo_store

    screen = tuple(int(v) for v in args.screen.split(","))
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": {"cpus": __import__("os").cpu_count()}, "sizes": {}}
    datasets = {}
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        spec = spec_for_size(size, resolution=args.resolution)
        path = data / f"demo-{size}-{args.resolution:g}deg.zarr"
        print(f"== {size}: {spec.nsteps} daily steps -> {path}", flush=True)
        t = time.perf_counter()
        write_demo_store(spec, path)
        gen_s = time.perf_counter() - t
        folder = build_derived(
            str(path),
            scheduler=args.scheduler,
            config=BuildConfig(
                variables=("t2m",),
                unit_steps=64 if args.resolution <= 0.5 else 16,
                base_block=8 if args.resolution <= 0.5 else 4,
            ),
        )
        manifest = json.loads((folder / "manifest.json").read_text())
        build = manifest.get("last_build", {})
        ds = open_dataset(str(path))
        datasets[size] = (ds, path, spec)
        results["sizes"][size] = {
            "nbytes": spec.nbytes,
            "nsteps": spec.nsteps,
            "write_s": round(gen_s, 1),
            "build": build,
        }

    # gridscope first (server RSS), naive after
    for size, (ds, _path, spec) in datasets.items():
        queries = _random_queries(
            spec.nsteps, ds["time"].values, args.queries, seed=1, hourly=False
        )
        gridscope_section(ds, queries[:2], QUERIES, screen)  # warm-up (imports, zarr metadata)
        results["sizes"][size]["gridscope"] = {
            k: _percentiles(v) for k, v in gridscope_section(ds, queries, QUERIES, screen).items()
        }
    virtual = None
    if args.virtual_size:
        vspec = spec_for_size(
            args.virtual_size, freq="hourly", resolution=args.resolution, variables=("t2m",)
        )
        virtual = virtual_dataset(vspec)
        vq = _random_queries(
            vspec.nsteps, virtual["time"].values, args.queries, seed=2, hourly=True
        )
        gridscope_section(virtual, vq[:2], ("map_frame",), screen)
        results["virtual"] = {
            "nbytes": vspec.nbytes,
            "nsteps": vspec.nsteps,
            "gridscope": {
                k: _percentiles(v)
                for k, v in gridscope_section(virtual, vq, ("map_frame",), screen).items()
            },
        }
    results["server_peak_rss_mib"] = round(_rss_mib(), 1)

    for size, (ds, path, spec) in datasets.items():
        raw = xr.open_zarr(path)
        queries = _random_queries(
            spec.nsteps, ds["time"].values, args.queries, seed=1, hourly=False
        )
        naive_section(
            raw, queries[:1], ("map_frame",), screen, ("latitude", "longitude")
        )  # warm numba
        results["sizes"][size]["naive"] = {
            k: _percentiles(v)
            for k, v in naive_section(
                raw, queries, QUERIES, screen, ("latitude", "longitude")
            ).items()
        }
    if virtual is not None:
        naive_section(virtual, vq[:1], ("map_frame",), screen, ("lat", "lon"))
        results["virtual"]["naive"] = {
            k: _percentiles(v)
            for k, v in naive_section(virtual, vq, ("map_frame",), screen, ("lat", "lon")).items()
        }

    _print_table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


def _print_table(results: dict[str, Any]) -> None:
    rows = [("dataset", "query", "gridscope p50/p95 ms", "naive p50/p95 ms", "speed-up p95")]
    sections = [(f"{k} ({v['nsteps']} steps)", v) for k, v in results["sizes"].items()]
    if "virtual" in results:
        sections.append(
            (f"virtual {results['virtual']['nbytes'] / 1e12:.2f}TB", results["virtual"])
        )
    for name, sec in sections:
        for q, g in sec.get("gridscope", {}).items():
            n = sec.get("naive", {}).get(q)
            ratio = f"{n['p95_ms'] / max(g['p95_ms'], 1e-3):.0f}x" if n else "-"
            rows.append(
                (
                    name,
                    q,
                    f"{g['p50_ms']:.1f} / {g['p95_ms']:.1f}",
                    f"{n['p50_ms']:.1f} / {n['p95_ms']:.1f}" if n else "-",
                    ratio,
                )
            )
        build = sec.get("build")
        if build:
            rows.append(
                (
                    name,
                    "build throughput (whole build)",
                    f"{build.get('mb_per_s', '-')} MB/s",
                    "-",
                    "-",
                )
            )
            rows.append(
                (
                    name,
                    "build throughput (units only)",
                    f"{build.get('units_mb_per_s', '-')} MB/s",
                    "-",
                    "-",
                )
            )
    rows.append(("all", "server peak RSS", f"{results['server_peak_rss_mib']} MiB", "-", "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    raise SystemExit(main())
