"""Map frames on non-regular grids: `app.rasterize` vs hvplot ``rasterize=True``, same run.

``python -m tests.bench.grid_frames`` draws one step of each grid at screen size
(800x500) seen whole, zoomed 10x and zoomed 100x (random centres on cells with data),
with gridscope's renderer (`app.rasterize.rasterize_to_screen`, what the dashboard calls
for a grid's native cells) and with what a user would write by hand: hvplot
``quadmesh(x="lon", y="lat", rasterize=True)`` for 2-D grids (regular ones included),
``points(rasterize=True)`` on a DataFrame of the cell centres for unstructured ones,
rendered to Bokeh (``hv.render``). Both get the same values already in memory, so the
times are the drawing alone (reading a step is the planner's part, timed by
``tests/bench/run.py``).

Grids: the synthetic tripolar-like 0.1-degree curvilinear grid (1800x3600 = 6.5 M cells,
with corner bounds), icosahedral triangle mesh (2.5 M triangles with vertices) and
Fibonacci point cloud (2.6 M centres, no polygons) of `pipelines.synthetic_grids` (the
shapes ``make bench`` uses), and the four real samples of
``data_catalog/samples/grids/``. Each row reports p50/p95 over ``--frames`` frames
(``--naive-frames`` for hvplot, which takes seconds on the large grids), after one
warm-up frame each; ``first_ms`` / ``index_ms`` are gridscope's first two frames of
that grid (the first visits every cell, the second builds the grid's bin index).
Prints a table and writes ``bench-results/grid_frames.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

SCREEN = (800, 500)
ZOOMS = (1, 10, 100)
SAMPLES = Path(__file__).resolve().parents[2] / "data_catalog" / "samples" / "grids"


def _percentiles(times: list[tuple[float, float]]) -> dict[str, float]:
    """p50/p95 of wall and CPU (this thread) times: on a shared machine the wall time
    includes waiting for a core, the CPU time does not."""
    wall, cpu = (np.asarray(t) * 1000 for t in zip(*times, strict=True))
    return {
        "p50_ms": round(float(np.percentile(wall, 50)), 1),
        "p95_ms": round(float(np.percentile(wall, 95)), 1),
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 1),
        "cpu_p95_ms": round(float(np.percentile(cpu, 95)), 1),
        "n": len(times),
    }


def _timed(run: Any) -> tuple[float, float]:
    t, c = time.perf_counter(), time.thread_time()
    run()
    return time.perf_counter() - t, time.thread_time() - c


def _synthetic(kind: str, shape: tuple[int, ...]) -> tuple[xr.DataArray, dict[str, np.ndarray]]:
    from pipelines.synthetic_grids import (
        GridField,
        fibonacci_cells,
        icosahedral_cells,
        tripolar_like_grid,
    )

    if kind == "curvilinear":
        ny, nx = shape
        lon, lat, blon, blat, _area = tripolar_like_grid(nx, ny)
        coords = {"lon": (("y", "x"), lon), "lat": (("y", "x"), lat)}
        field = xr.DataArray(GridField(lon, lat)(0), dims=("y", "x"), coords=coords, name="tos")
        return field, {"lon_bounds": blon, "lat_bounds": blat}
    bounds = {}
    if kind == "mesh":
        lon, lat, vlon, vlat, _area = icosahedral_cells(int(shape[0]))
        bounds = {"lon_bounds": vlon, "lat_bounds": vlat}
    else:
        lon, lat, _area = fibonacci_cells(int(shape[0]))
    coords = {"lon": ("cell", lon), "lat": ("cell", lat)}
    return xr.DataArray(GridField(lon, lat)(0), dims="cell", coords=coords, name="tos"), bounds


def _sample(name: str) -> tuple[xr.DataArray, dict[str, np.ndarray]]:
    """The first data variable of a sample file, its first step/level, as the dashboard
    opens it (`data_catalog.open_dataset`), and its cell bounds when it has them."""
    from data_catalog import open_dataset

    ds = open_dataset(str(SAMPLES / name))
    var = next(iter(ds.data_vars))
    da = ds[var]
    spatial = set(ds["lon"].dims) | set(ds["lat"].dims)
    da = da.isel({d: 0 for d in da.dims if d not in spatial}).load()
    bounds = {n: np.asarray(ds[n].values) for n in ("lon_bounds", "lat_bounds") if n in ds}
    return da, bounds


def _views(field: xr.DataArray, zoom: int, n: int, seed: int) -> list[tuple[float, ...]]:
    """``n`` viewports of 1/zoom of the grid's extent, centred on random cells with data."""
    rng = np.random.default_rng(seed)
    lon = np.asarray(field["lon"].values, dtype="float64").ravel()
    lat = np.asarray(field["lat"].values, dtype="float64").ravel()
    lon = np.broadcast_to(lon, lat.shape) if lon.size < lat.size else lon
    lat = np.broadcast_to(lat[:, None], field.shape).ravel() if lat.size < lon.size else lat
    lon = np.broadcast_to(lon[None, :], field.shape).ravel() if lon.size < lat.size else lon
    lon = ((lon + 180.0) % 360.0) - 180.0
    if float(lon.max() - lon.min()) > 300.0:  # global: the whole globe
        x0, x1, y0, y1 = -180.0, 180.0, -90.0, 90.0
    else:
        x0, x1 = float(lon.min()), float(lon.max())
        y0, y1 = float(lat.min()), float(lat.max())
    w, h = (x1 - x0) / zoom, (y1 - y0) / zoom
    valid = np.flatnonzero(np.isfinite(np.asarray(field.values).ravel()))
    out = []
    for _ in range(n):
        if zoom == 1:  # small pans of the whole view
            cx, cy = 0.5 * (x0 + x1) + rng.uniform(-0.02, 0.02) * w, 0.5 * (y0 + y1)
        else:
            cell = int(rng.choice(valid))
            cx, cy = float(lon[cell]), float(np.clip(lat[cell], -90 + h / 2, 90 - h / 2))
        out.append((cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2))
    return out


def _gridscope(field: xr.DataArray, bounds: dict, views: list) -> list[tuple[float, float]]:
    from app.rasterize import rasterize_to_screen

    return [_timed(lambda vp=vp: rasterize_to_screen(field, vp, SCREEN, **bounds)) for vp in views]


def _naive(field: xr.DataArray, views: list) -> list[tuple[float, float]]:
    import holoviews as hv
    import hvplot.pandas  # noqa: F401
    import hvplot.xarray  # noqa: F401

    hv.extension("bokeh", logo=False)
    unstructured = field["lon"].ndim == 1 and field["lon"].dims == field.dims
    frame = None
    if unstructured:
        frame = field.reset_coords().to_dataframe().reset_index()

    def draw(x0: float, x1: float, y0: float, y1: float) -> None:
        opts = dict(rasterize=True, width=SCREEN[0], height=SCREEN[1], xlim=(x0, x1), ylim=(y0, y1))
        if unstructured:
            plot = frame.hvplot.points(x="lon", y="lat", c=field.name, **opts)
        else:
            plot = field.hvplot.quadmesh(x="lon", y="lat", **opts)
        hv.render(plot)

    return [_timed(lambda vp=vp: draw(*vp)) for vp in views]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.grid_frames", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--frames", type=int, default=20, help="gridscope frames per row")
    parser.add_argument("--naive-frames", type=int, default=5, help="hvplot frames per row")
    parser.add_argument("--curvilinear", default="1800x3600", help="rows x columns ('' skips)")
    parser.add_argument(
        "--mesh", default="354", help="icosahedral triangles per edge, 20 n^2 cells ('' skips)"
    )
    parser.add_argument("--unstructured", default="2621440", help="point-cloud cells ('' skips)")
    parser.add_argument("--no-samples", action="store_true", help="skip the four sample files")
    parser.add_argument("--no-naive", action="store_true", help="skip hvplot")
    parser.add_argument("--out", default="bench-results/grid_frames.json")
    args = parser.parse_args(argv)

    from app.rasterize import warm_up

    t = time.perf_counter()
    warm_up()
    results: dict[str, Any] = {"warm_up_s": round(time.perf_counter() - t, 2), "grids": {}}
    grids: list[tuple[str, Any]] = []
    if args.curvilinear:
        shape = tuple(int(v) for v in args.curvilinear.lower().split("x"))
        grids.append(
            (f"curvilinear {args.curvilinear}", lambda s=shape: _synthetic("curvilinear", s))
        )
    if args.mesh:
        m = int(args.mesh)
        grids.append((f"triangle mesh {20 * m * m}", lambda m=m: _synthetic("mesh", (m,))))
    if args.unstructured:
        n = int(args.unstructured)
        grids.append((f"point cloud {n}", lambda n=n: _synthetic("unstructured", (n,))))
    if not args.no_samples:
        for name in sorted(p.name for p in SAMPLES.glob("*.nc")):
            grids.append((name, lambda name=name: _sample(name)))
    for name, make in grids:
        field, bounds = make()
        row: dict[str, Any] = {"cells": int(field.size)}
        # the first frame visits every cell; the second builds the grid's index
        first = _views(field, 1, 1, seed=0)
        row["first_ms"] = round(_gridscope(field, bounds, first)[0][0] * 1000, 1)
        row["index_ms"] = round(_gridscope(field, bounds, first)[0][0] * 1000, 1)
        for zoom in ZOOMS:
            views = _views(field, zoom, args.frames, seed=zoom)
            row[f"gridscope x{zoom}"] = _percentiles(_gridscope(field, bounds, views))
            if not args.no_naive:
                nv = _views(field, zoom, args.naive_frames + 1, seed=zoom)
                row[f"naive x{zoom}"] = _percentiles(_naive(field, nv)[1:])
            print(name, zoom, row[f"gridscope x{zoom}"], row.get(f"naive x{zoom}"), flush=True)
        results["grids"][name] = row
    results["load_avg"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(_table(results))
    return 0


def _table(results: dict[str, Any]) -> str:
    rows = [("grid", "cells", "view", "gridscope p50/p95 ms", "(cpu p95)", "naive p50/p95 ms",
             "(cpu p95)", "p95 ratio")]  # fmt: skip
    for name, row in results["grids"].items():
        for zoom in ZOOMS:
            g, n = row[f"gridscope x{zoom}"], row.get(f"naive x{zoom}")
            ratio = f"{n['p95_ms'] / max(g['p95_ms'], 1e-3):.0f}x" if n else "-"
            rows.append((
                name, f"{row['cells']:,}", "whole" if zoom == 1 else f"{zoom}x",
                f"{g['p50_ms']:.1f} / {g['p95_ms']:.1f}", f"{g['cpu_p95_ms']:.1f}",
                f"{n['p50_ms']:.0f} / {n['p95_ms']:.0f}" if n else "-",
                f"{n['cpu_p95_ms']:.0f}" if n else "-", ratio,
            ))  # fmt: skip
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    extra = f"warm-up {results['warm_up_s']} s; load avg {results['load_avg']}"
    return "\n".join(lines) + "\n" + extra


if __name__ == "__main__":
    raise SystemExit(main())
