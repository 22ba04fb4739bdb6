"""gridscope vs the naive xarray/hvplot approach, on two dataset sizes and a virtual TB source.

``python -m tests.bench.run`` (what ``make bench`` calls) writes or reuses synthetic
ERA5-like stores under ``bench-data/``, builds their derived stores, then times p50/p95
over randomised queries for the planner and for what a user would write by hand
(``xr.open_zarr`` + ``hvplot.image(rasterize=True)`` rendered + ``.sel().mean("time")`` +
``.sel(method="nearest")`` + ``.weighted()``). Prints a table, writes
``bench-results/latest.json``. All gridscope queries run before any naive one so the
reported peak RSS is the server's (the naive ones load far more).

``--only page`` (``make bench ARGS='--only page'``) runs `tests.bench.page_cost` instead:
the server CPU, Bokeh models and wall time of new dashboard pages against a real
``gridscope serve``.

``--only grids`` runs only the non-regular grid rows: a synthetic tripolar-like
0.1-degree curvilinear store and an unstructured icosahedral triangle mesh of
>= 2.5 M cells with vertex lon/lat (`pipelines.synthetic_grids`), their derived stores built on native
cells (`pipelines.cell_stores`), timed against the naive approach on the raw store:
hvplot ``quadmesh`` / ``points`` with ``rasterize=True`` rendered (map frame),
``.isel(time=range).<agg>("time")`` (range map), ``.isel`` of the nearest centre over
the whole record (point series) and ``.where(box).weighted(area).mean()`` (area series).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

QUERIES = ("map_frame", "range_map", "point_series", "area_series")


def disk_bytes(path: str | Path) -> int:
    """Bytes on disk (allocated blocks) of every file under ``path``, each file once
    (hard links to one file count once), or of the file ``path`` itself."""
    import os

    root = Path(path)
    if root.is_file():
        return root.stat().st_blocks * 512
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            info = os.stat(os.path.join(folder, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def derived_bytes(folder: str | Path) -> int:
    """Bytes on disk of the version of the derived stores in ``folder`` that readers see:
    the data folder ``manifest.json`` names (older versions, the manifest and a build's
    own state are left out)."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    return disk_bytes(Path(folder) / str(manifest.get("data", "")))


def store_fields(
    raw: Path, derived: Path, build: dict[str, Any], fresh: bool, variables: tuple[str, ...]
) -> dict[str, Any]:
    """The storage and build figures of one bench store.

    ``raw_bytes``: the raw zarr store on disk (every variable); ``raw_bytes_built``:
    its arrays of the built ``variables`` only (what the derived stores are made from);
    ``derived_bytes``: the published version of its derived stores;
    ``build_mb_per_s``: the raw bytes the
    build read, uncompressed (``last_build.bytes_read``, as `tests.bench.build_bounds`
    counts them) per second of the whole build's wall time (``build`` is that record;
    ``fresh``: built in this run, else the recorded build of a reused store);
    ``build_cpu_seconds``: the build process's CPU seconds (``last_build.cpu_seconds``:
    a local build's units run in that process) and ``build_cpu_mb_per_s``: the raw
    bytes per second of that CPU spread over this machine's cores, the rate the build
    would reach with the cores to itself (the wall-time figure counts every other
    process sharing them).
    """
    raw_b, derived_b = disk_bytes(raw), derived_bytes(derived)
    built = sum(disk_bytes(Path(raw) / v) for v in variables)
    seconds = float(build.get("seconds") or 0.0)
    read = int(build.get("bytes_read") or 0)
    cpu = float(build.get("cpu_seconds") or 0.0)
    return {
        "raw_bytes": raw_b,
        "raw_bytes_built": built,
        "derived_bytes": derived_b,
        "derived_to_raw": round(derived_b / max(raw_b, 1), 3),
        "derived_to_raw_built": round(derived_b / max(built, 1), 3),
        "build_bytes_read": read,
        "build_seconds": round(seconds, 2),
        "build_mb_per_s": round(read / 1e6 / seconds, 1) if seconds else None,
        "build_cpu_seconds": round(cpu, 2) if cpu else None,
        "build_cpu_mb_per_s": round(read / 1e6 / cpu * _cores(), 1) if cpu else None,
        "build_fresh": fresh,
    }


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _last_build(folder: Path) -> dict[str, Any]:
    """The ``last_build`` record of the derived stores in ``folder`` ({} when none)."""
    try:
        return dict(json.loads((folder / "manifest.json").read_text()).get("last_build", {}))
    except FileNotFoundError:
        return {}


def _linked_prefix(raw: Path, grow: Path, nsteps: int) -> None:
    """Write ``grow``: the zarr store ``raw`` (time chunks of one step) cut to its first
    ``nsteps`` steps; metadata and coordinates written by xarray, the data chunks hard
    links to ``raw``'s (no bytes copied; copies where links fail)."""
    import os
    import shutil

    import xarray as xr

    source = xr.open_zarr(raw, consolidated=False)
    part = source.isel(time=slice(0, nsteps))
    shutil.rmtree(grow, ignore_errors=True)
    part.to_zarr(grow, mode="w", compute=False, zarr_format=3, consolidated=False)
    for name, var in source.data_vars.items():
        if var.dims[:1] != ("time",):
            raise ValueError(f"{raw}: {name} is not on time first")
        if var.encoding.get("chunks", (0,))[0] != 1:
            raise ValueError(f"{raw}: {name} is not chunked one step at a time")
        for t in range(nsteps):
            src = raw / str(name) / "c" / str(t)
            for folder, _dirs, files in os.walk(src):
                target = grow / str(name) / "c" / str(t) / Path(folder).relative_to(src)
                target.mkdir(parents=True, exist_ok=True)
                for file in files:
                    try:
                        os.link(Path(folder) / file, target / file)
                    except OSError:
                        shutil.copy2(Path(folder) / file, target / file)


def _append_steps(raw: Path, grow: Path, nsteps: int) -> None:
    """Append ``raw``'s steps past ``grow``'s record to ``grow``, up to ``nsteps``."""
    import xarray as xr

    have = xr.open_zarr(grow, consolidated=False).sizes["time"]
    part = xr.open_zarr(raw, consolidated=False).isel(time=slice(have, nsteps))
    part.to_zarr(grow, append_dim="time", consolidated=False)


#: This run's build and append figures, kept beside the stores for a reusing run.
_BENCH_RECORD = "bench-record.json"


def append_section(
    path: Path,
    nsteps: int,
    new: int,
    build: Any,
    reuse: bool,
    variables: tuple[str, ...] = ("t2m",),
) -> tuple[Path, dict[str, Any]]:
    """Build derived stores on the first ``nsteps - new`` steps of the raw store ``path``
    (a copy of hard links, ``<path>.append.zarr``), append ``new`` steps and time that
    build; check the planner answers from the appended stores, equal to xarray.

    ``build(source)`` builds and returns the derived folder. With ``reuse`` an earlier
    run's complete copy is used as it is (its recorded figures).

    Returns
    -------
    (Path, dict)
        The copy (the stores the interactive rows are timed on) and its figures:
        ``store_fields`` of the fresh build of ``nsteps - new`` steps, and
        ``append_seconds`` / ``append_steps`` / ``append_units`` of the append.
    """
    from pipelines.derived import derived_dir_for

    grow = path.with_name(path.stem + ".append.zarr")
    derived = derived_dir_for(str(grow)) if grow.exists() else None
    if reuse and derived is not None and (derived / "manifest.json").exists():
        manifest = json.loads((derived / "manifest.json").read_text())
        record = derived / _BENCH_RECORD
        if manifest.get("fingerprint", {}).get("nsteps") == nsteps and record.exists():
            fields = json.loads(record.read_text())
            fields.update(store_fields(path, derived, fields["build"], False, variables))
            return grow, fields
    import shutil

    if derived is not None:
        shutil.rmtree(derived, ignore_errors=True)
    _linked_prefix(path, grow, nsteps - new)
    t = time.perf_counter()
    derived = build(str(grow))
    manifest_path = derived / "manifest.json"
    first = json.loads(manifest_path.read_text())["last_build"]
    first = dict(first, seconds=round(time.perf_counter() - t, 2))  # whole call's wall time
    _append_steps(path, grow, nsteps)
    t = time.perf_counter()
    build(str(grow))
    append_s = time.perf_counter() - t
    manifest = json.loads(manifest_path.read_text())
    last = manifest["last_build"]
    if last.get("appended_from") != nsteps - new:
        raise RuntimeError(f"{grow}: the second build was not an append ({last})")
    fields = {
        "build": first,
        "append_seconds": round(append_s, 2),
        "append_steps": new,
        "append_from": nsteps - new,
        "append_units": last.get("units"),
        # the build's own record: from before the cluster starts to the publish
        "append_build_seconds": last.get("seconds"),
    }
    fields["append_check"] = _check_append(path, grow, nsteps, new)
    # kept beside the manifest so a reusing run reports this run's figures
    (derived / _BENCH_RECORD).write_text(json.dumps(fields, indent=1))
    fields.update(store_fields(path, derived, first, True, variables))
    return grow, fields


def _check_append(raw: Path, grow: Path, nsteps: int, new: int) -> str:
    """The planner answers the appended steps from the derived stores, as xarray does
    on the raw store: a range map of the new steps (temporal aggregates) and a point
    series over the whole record (time-series copy). Raises when not; returns the
    plans' descriptions."""
    import xarray as xr

    from data_catalog import open_dataset
    from pipelines import Query
    from pipelines.planner import plan_map, plan_series

    ds = open_dataset(str(grow))
    da = xr.open_zarr(raw, consolidated=False)["t2m"].isel(time=slice(0, nsteps))
    times = ds["time"].values
    if times.size != nsteps:
        raise RuntimeError(f"{grow}: {times.size} steps opened, not {nsteps}")
    start, end = _label(times, nsteps - new), _label(times, nsteps - 1)
    query = Query(dataset="b", var="t2m", start=start, end=end, agg="max")
    plan = plan_map(ds, query)
    got = plan.compute()
    want = da.isel(time=slice(nsteps - new, nsteps)).max("time").values
    # the raw store: latitude descending, longitude 0..360; gridscope: ascending, -180..180
    want = xr.DataArray(want, dims=("lat", "lon"), coords={
        "lat": da["latitude"].values, "lon": _lon180_array(da["longitude"].values)
    }).sortby("lon").sel(lat=got["lat"].values, lon=got["lon"].values, method="nearest").values  # fmt: skip
    # a grid cell's centre, so both pick the same cell
    lon, lat = (
        float(ds["lon"].values[ds.sizes["lon"] // 3]),
        float(ds["lat"].values[ds.sizes["lat"] // 3]),
    )
    series = plan_series(ds, Query(dataset="b", var="t2m", point=(lon, lat)))
    got_series = series.compute()
    # the steps around the append (the raw store holds whole-globe chunks: reading the
    # point's whole record would decode every step)
    around = slice(max(0, nsteps - new - 8), nsteps)
    raw_point = da.sel(latitude=lat, longitude=lon % 360, method="nearest")[around].values
    if not plan.description.startswith("temporal aggregates"):
        raise RuntimeError(f"appended steps not answered from the aggregates: {plan.description}")
    if not series.description.startswith("time-series copy"):
        raise RuntimeError(
            f"appended steps not answered from the series copy: {series.description}"
        )
    if not np.array_equal(got.values, want, equal_nan=True):
        raise RuntimeError("the planner's map of the appended steps differs from xarray's")
    if not np.allclose(got_series.values[around], raw_point, rtol=1e-6, equal_nan=True):
        raise RuntimeError("the planner's series over the appended steps differs from xarray's")
    return f"{plan.description}; {series.description}"


def _lon180_array(lon: Any) -> Any:
    return ((np.asarray(lon) + 180) % 360) - 180


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


def _query_for(kind: str, q: dict[str, Any], times: Any, dataset: str, var: str) -> Any:
    """The `Query` of one timed view of ``kind`` (longitudes wrapped to -180..180)."""
    from pipelines import Query

    if kind == "map_frame":
        return Query(dataset=dataset, var=var, time=_label(times, q["step"]))
    if kind == "range_map":
        start, end = _label(times, q["start"]), _label(times, q["end"])
        return Query(dataset=dataset, var=var, start=start, end=end, agg=q["agg"])
    if kind == "point_series":
        return Query(dataset=dataset, var=var, point=(_lon180(q["point"][0]), q["point"][1]))
    w, s, e, n = q["box"]
    return Query(dataset=dataset, var=var, bbox=(_lon180(w), s, _lon180(e), n))


def gridscope_section(
    ds: Any, queries: list[dict], which: tuple[str, ...], screen: tuple[int, int]
) -> dict[str, list[float]]:
    from app.map_views import regrid_to_screen
    from pipelines.planner import plan_map, plan_series

    times = ds["time"].values
    out: dict[str, list[float]] = {k: [] for k in which}
    for q in queries:
        for kind in which:
            query = _query_for(kind, q, times, "b", "t2m")
            if kind == "map_frame":
                # the planner's answer regridded to the screen's pixels, as the dashboard does
                run = lambda: regrid_to_screen(  # noqa: E731
                    plan_map(ds, query, viewport=q["viewport"], screen=screen).compute(),  # noqa: B023
                    q["viewport"],  # noqa: B023
                    screen,
                )
            elif kind == "range_map":
                run = lambda: plan_map(ds, query, screen=screen).compute()  # noqa: E731, B023
            else:
                run = lambda: plan_series(ds, query).compute()  # noqa: E731, B023
            t = time.perf_counter()
            run()
            out[kind].append(time.perf_counter() - t)
    return out


def _naive_frame(
    method: Any, x: str, y: str, screen: tuple[int, int], viewport: tuple, **extra: Any
) -> None:
    """A user's hvplot call with ``rasterize=True`` for the viewport, rendered by Bokeh."""
    import holoviews as hv

    x0, x1, y0, y1 = viewport
    width, height = screen
    plot = method(
        x=x, y=y, rasterize=True, width=width, height=height, xlim=(x0, x1), ylim=(y0, y1), **extra
    )
    hv.render(plot)


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
                step = da.sel(time=times[q["step"]])
                _naive_frame(step.hvplot.image, lon_name, lat_name, screen, (x0, x1, y0, y1))
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


def _grid_queries(nsteps: int, n: int, seed: int) -> list[dict[str, Any]]:
    """Random views like `_random_queries`, with longitudes in -180..180 (boxes may cross
    the antimeridian) and ranges of at least 8 steps."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        width = float(rng.uniform(20, 360))
        height = float(min(rng.uniform(10, 180), 180))
        x0 = float(rng.uniform(-180, 180 - width)) if width < 360 else -180.0
        y0 = float(rng.uniform(-90, 90 - height))
        length = int(rng.integers(min(8, nsteps), nsteps + 1))
        start = int(rng.integers(0, nsteps - length + 1))
        bw, bh = float(rng.uniform(5, 60)), float(rng.uniform(5, 60))
        bx, by = float(rng.uniform(-180, 180)), float(rng.uniform(-70, 70 - bh))
        out.append(
            dict(
                step=int(rng.integers(0, nsteps)),
                viewport=(x0, x0 + width, y0, y0 + height),
                agg=str(rng.choice(["mean", "min", "max", "std"])),
                start=start,
                end=start + length - 1,
                point=(float(rng.uniform(-180, 180)), float(rng.uniform(-65, 65))),
                box=(bx, by, _lon180(bx + bw), by + bh),
            )
        )
    return out


def grid_gridscope_section(
    ds: Any, queries: list[dict], screen: tuple[int, int]
) -> dict[str, list[float]]:
    """The planner on a non-regular grid's derived stores, drawn as the dashboard does:
    a pyramid level (regular) cropped to the screen, native cells rasterized."""
    from app.map_views import regrid_to_screen
    from app.rasterize import rasterize_to_screen
    from pipelines.planner import plan_map, plan_series

    times = ds["time"].values

    paths: list[str] = []

    def frame(query: Any, viewport: tuple) -> Any:
        field = plan_map(ds, query, viewport=viewport, screen=screen).compute()
        paths.append("pyramid" if "lat" in field.dims else "native")
        if "lat" in field.dims:
            return regrid_to_screen(field, viewport, screen)
        # the view's cells' polygons, as the planner hands them for drawing
        bounds = {
            name: field.attrs.pop(f"gridscope_{name}")
            for name in ("lon_bounds", "lat_bounds")
            if f"gridscope_{name}" in field.attrs
        }
        return rasterize_to_screen(field, viewport, screen, **bounds)

    out: dict[str, list[float]] = {k: [] for k in QUERIES}
    for q in queries:
        for kind in QUERIES:
            query = _query_for(kind, q, times, "g", "tos")
            if kind == "map_frame":
                run = lambda: frame(query, q["viewport"])  # noqa: E731, B023
            elif kind == "range_map":
                run = lambda: plan_map(ds, query, screen=screen).compute()  # noqa: E731, B023
            else:
                run = lambda: plan_series(ds, query).compute()  # noqa: E731, B023
            t = time.perf_counter()
            run()
            out[kind].append(time.perf_counter() - t)
    # map frames split by what answered them: a pyramid level (zoomed out) or the native
    # cells of the view drawn by app.rasterize (zoomed in past the finest level)
    for path in ("pyramid", "native"):
        picked = [t for t, p in zip(out["map_frame"], paths, strict=True) if p == path]
        if picked:
            out[f"map_frame ({path})"] = picked
    return out


def _warm_levels(ds: Any) -> None:
    """Make a grid's pyramid-level geometry and tile index once (a server keeps them),
    so the timed views measure reading and drawing, not first loads."""
    from pipelines.cell_stores import cell_grid
    from pipelines.derived import find_derived

    stores = find_derived(ds)
    if stores is None:
        return
    grid = cell_grid(stores.variable("tos").folder)
    grid.cover((-180.0, -90.0, 180.0, 90.0))
    for k in range(1, len(grid.level_rows) + 1):
        grid.level_geometry(k)


def grid_naive_section(
    raw: Any, kind: str, queries: list[dict], screen: tuple[int, int]
) -> dict[str, list[float]]:
    """What a user would write on the raw store (see module docstring)."""
    import holoviews as hv
    import hvplot.pandas  # noqa: F401
    import hvplot.xarray  # noqa: F401

    hv.extension("bokeh", logo=False)
    da = raw["tos"]
    curvilinear = kind == "curvilinear"
    lon_name, lat_name = ("lon", "lat") if curvilinear else ("clon", "clat")
    area_name = "areacello" if curvilinear else "cell_area"
    lon = np.asarray(raw[lon_name].values)
    lat = np.asarray(raw[lat_name].values)
    area = raw[area_name]
    space = da.dims[1:]
    out: dict[str, list[float]] = {k: [] for k in QUERIES}
    for q in queries:
        for query in QUERIES:
            t = time.perf_counter()
            if query == "map_frame":
                x0, x1, y0, y1 = q["viewport"]
                # the raw store's 2-D lon/lat are chunked unlike the field: datashader
                # needs them unified (what a user has to add to get a picture at all)
                step = da.isel(time=q["step"]).unify_chunks()
                if curvilinear:
                    _naive_frame(step.hvplot.quadmesh, lon_name, lat_name, screen, (x0, x1, y0, y1))
                else:
                    frame = step.to_dataframe().reset_index()
                    viewport = (x0, x1, y0, y1)
                    _naive_frame(frame.hvplot.points, lon_name, lat_name, screen, viewport, c="tos")
            elif query == "range_map":
                part = da.isel(time=slice(q["start"], q["end"] + 1))
                _ = getattr(part, q["agg"])("time").values
            elif query == "point_series":
                px, py = q["point"]
                distance = (((lon - px + 180) % 360 - 180) * np.cos(np.radians(py))) ** 2 + (
                    lat - py
                ) ** 2
                index = np.unravel_index(int(np.argmin(distance)), lon.shape)
                _ = da.isel(dict(zip(space, index, strict=True))).values
            else:
                w, s, e, n = q["box"]
                inside_lon = (lon >= w) & (lon <= e) if w <= e else (lon >= w) | (lon <= e)
                inside = raw[lon_name].copy(data=inside_lon & (lat >= s) & (lat <= n))
                _ = da.where(inside).weighted(area.fillna(0)).mean(space).values
            out[query].append(time.perf_counter() - t)
    return out


def run_grids(args: argparse.Namespace, screen: tuple[int, int], results: dict[str, Any]) -> None:
    """Write (or reuse), build and time the non-regular grid stores (`--only grids`)."""
    import xarray as xr

    from data_catalog import open_dataset
    from pipelines.build import BuildConfig, build_derived
    from pipelines.derived import derived_dir_for
    from pipelines.synthetic_grids import write_grid_store

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    ny, nx = (int(v) for v in args.grid_shape.lower().split("x"))
    steps = [int(v) for v in args.grid_steps.split(",")]
    mesh_n = int(args.grid_mesh)
    specs = {
        "curvilinear": ((ny, nx), steps[0], ny * nx),
        "mesh": ((mesh_n,), steps[-1], 20 * mesh_n**2),
    }
    loaded = {}
    for kind, (shape, nsteps, cells) in specs.items():
        name = f"curvilinear {ny}x{nx}" if kind == "curvilinear" else f"unstructured mesh {cells}"
        path = data / f"grid-{kind}-{'x'.join(map(str, shape))}-{nsteps}.zarr"
        print(f"== {name}: {nsteps} daily steps -> {path}", flush=True)
        t = time.perf_counter()
        write_grid_store(kind, path, nsteps, shape=shape)
        gen_s = time.perf_counter() - t
        before = _last_build(derived_dir_for(str(path)))
        t = time.perf_counter()
        folder = build_derived(
            str(path),
            scheduler=args.scheduler,
            config=BuildConfig(
                variables=("tos",),
                unit_steps=16,
                base_block=8,
                ts_max_level=int(args.grid_ts_levels),
            ),
        )
        wall = time.perf_counter() - t
        build = _last_build(folder)
        # a store built in this call is fresh (its wall time is this call's); a reused
        # one had nothing left to do and keeps its recorded build
        fresh = build != before
        if fresh:
            build = dict(build, seconds=round(wall, 2))
        ds = open_dataset(str(path))
        loaded[name] = (kind, ds, path, nsteps)
        results.setdefault("grids", {})[name] = {
            "kind": kind,
            "cells": cells,
            "nbytes": cells * nsteps * 4,
            "nsteps": nsteps,
            "write_s": round(gen_s, 1),
            "build": build,
            **store_fields(path, folder, build, fresh, ("tos",)),
        }
        _print_store(name, results["grids"][name])
    n = args.grid_queries or args.queries
    for name, (_kind, ds, _path, nsteps) in loaded.items():
        queries = _grid_queries(nsteps, n, seed=3)
        grid_gridscope_section(ds, queries[:2], screen)  # warm-up (numba, KD-tree, metadata)
        _warm_levels(ds)  # as a server that has shown each zoom once
        results["grids"][name]["gridscope"] = {
            k: _percentiles(v) for k, v in grid_gridscope_section(ds, queries, screen).items()
        }
    results["server_peak_rss_mib"] = round(_rss_mib(), 1)
    for name, (kind, _ds, path, nsteps) in loaded.items():
        raw = xr.open_zarr(path, consolidated=False)
        queries = _grid_queries(nsteps, n, seed=3)
        grid_naive_section(raw, kind, queries[:1], screen)  # warm numba
        results["grids"][name]["naive"] = {
            k: _percentiles(v) for k, v in grid_naive_section(raw, kind, queries, screen).items()
        }


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
    parser.add_argument(
        "--append-steps",
        type=int,
        default=0,
        help="steps appended for append_seconds (default one build unit)",
    )
    parser.add_argument(
        "--reuse-build",
        action="store_true",
        help="reuse an earlier run's built and appended stores and report their recorded "
        "build figures (default: build and append afresh in this run)",
    )
    parser.add_argument(
        "--only",
        choices=("all", "regular", "grids", "page"),
        default="all",
        help="which rows: regular-grid sizes and the virtual source, the non-regular grids, "
        "what a new dashboard page costs the server (tests/bench/page_cost.py), or all",
    )
    parser.add_argument(
        "--grid-shape", default="1800x3600", help="curvilinear grid rows x columns (0.1 deg)"
    )
    parser.add_argument(
        "--grid-mesh",
        default="354",
        help="unstructured mesh: triangles along an icosahedron edge (20 n^2 cells)",
    )
    parser.add_argument(
        "--grid-steps", default="128,256", help="steps of the curvilinear,unstructured stores"
    )
    parser.add_argument("--grid-ts-levels", default="7", help="time-series block levels (4**l)")
    parser.add_argument(
        "--grid-queries", type=int, default=0, help="queries per grid row (default --queries)"
    )
    args = parser.parse_args(argv)
    if args.only == "page":  # a served page's CPU and models (starts its own server)
        from tests.bench import page_cost

        return page_cost.main(["--out", str(Path(args.out).with_name("page_cost.json"))])

    import xarray as xr

    from data_catalog import open_dataset
    from pipelines.build import BuildConfig, build_derived
    from pipelines.synthetic import spec_for_size, virtual_dataset, write_demo_store

    screen = tuple(int(v) for v in args.screen.split(","))
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": {"cpus": __import__("os").cpu_count()}, "sizes": {}}
    if args.only in ("all", "grids"):
        run_grids(args, screen, results)
    if args.only == "grids":
        _finish(results, args.out)
        return 0
    datasets = {}
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        spec = spec_for_size(size, resolution=args.resolution)
        path = data / f"demo-{size}-{args.resolution:g}deg.zarr"
        print(f"== {size}: {spec.nsteps} daily steps -> {path}", flush=True)
        t = time.perf_counter()
        write_demo_store(spec, path)
        gen_s = time.perf_counter() - t
        config = BuildConfig(
            variables=("t2m",),
            unit_steps=64 if args.resolution <= 0.5 else 16,
            base_block=8 if args.resolution <= 0.5 else 4,
        )
        new = args.append_steps or config.unit_steps
        new = max(1, min(new, spec.nsteps // 2))
        # the stores the rows below are timed on: built on all but the last `new` steps,
        # then appended (byte-identical to a build of all steps, tests/test_build_append.py)
        grow, fields = append_section(
            path,
            spec.nsteps,
            new,
            lambda source, config=config: build_derived(
                source, scheduler=args.scheduler, config=config
            ),
            reuse=args.reuse_build,
        )
        ds = open_dataset(str(grow))
        datasets[size] = (ds, path, spec)
        results["sizes"][size] = {
            "nbytes": spec.nbytes,
            "nsteps": spec.nsteps,
            "write_s": round(gen_s, 1),
            **fields,
        }
        _print_store(size, results["sizes"][size])

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
    results["server_peak_rss_mib"] = max(
        round(_rss_mib(), 1), results.get("server_peak_rss_mib", 0.0)
    )

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

    _finish(results, args.out)
    return 0


def _finish(results: dict[str, Any], path: str) -> None:
    _print_table(results)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.3f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.2f} MB"


def _print_store(name: str, sec: dict[str, Any]) -> None:
    """One store's storage, build and append figures, as one line each."""
    if "raw_bytes" not in sec:
        return
    print(
        f"{name}: raw store {_size(sec['raw_bytes'])} on disk "
        f"({_size(sec['raw_bytes_built'])} of built variables), derived stores "
        f"(published version) {_size(sec['derived_bytes'])} = "
        f"{sec['derived_to_raw']:.2f}x the raw store, {sec['derived_to_raw_built']:.2f}x its "
        "built variables",
        flush=True,
    )
    how = "fresh build in this run" if sec["build_fresh"] else "recorded build (store reused)"
    steps = f" of {sec['append_from']} steps" if "append_from" in sec else ""
    print(
        f"{name}: build {sec['build_mb_per_s']} MB/s = {sec['build_bytes_read'] / 1e6:.1f} MB "
        f"raw input read (uncompressed float32) / {sec['build_seconds']} s whole build{steps} "
        f"({how}); {sec.get('build_cpu_seconds')} CPU s: {sec.get('build_cpu_mb_per_s')} MB/s "
        f"on {_cores()} cores of its own",
        flush=True,
    )
    if "append_seconds" in sec:
        print(
            f"{name}: append {sec['append_steps']} steps to {sec['append_from']}: "
            f"{sec['append_seconds']} s whole build call ({sec.get('append_build_seconds')} s "
            f"recorded by the build, {sec['append_units']} units); planner on the appended "
            f"stores: {sec['append_check']}",
            flush=True,
        )


def _print_table(results: dict[str, Any]) -> None:
    rows = [("dataset", "query", "gridscope p50/p95 ms", "naive p50/p95 ms", "speed-up p95")]
    sections = [(f"{k} ({v['nsteps']} steps)", v) for k, v in results["sizes"].items()]
    for name, sec in results.get("grids", {}).items():
        sections.append((f"{name} ({sec['nsteps']} steps)", sec))
    if "virtual" in results:
        sections.append(
            (f"virtual {results['virtual']['nbytes'] / 1e12:.2f}TB", results["virtual"])
        )
    for name, sec in sections:
        for q, g in sec.get("gridscope", {}).items():
            n = sec.get("naive", {}).get(q)
            speed = n["p95_ms"] / max(g["p95_ms"], 1e-3) if n else 0.0
            ratio = (f"{speed:.0f}x" if speed >= 10 else f"{speed:.1f}x") if n else "-"
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
            how = "" if sec.get("build_fresh", True) else ", recorded"
            whole = sec.get("build_mb_per_s", build.get("mb_per_s", "-"))
            rows.append((name, f"build throughput (whole build{how})", f"{whole} MB/s", "-", "-"))
            units = build.get("units_mb_per_s", "-")
            rows.append((name, f"build throughput (units only{how})", f"{units} MB/s", "-", "-"))
        if "raw_bytes" in sec:
            stored = f"{_size(sec['raw_bytes'])} / {_size(sec['derived_bytes'])}"
            rows.append((name, "raw / derived bytes on disk", stored, "-", "-"))
        if "append_seconds" in sec:
            what = f"append {sec['append_steps']} steps"
            rows.append((name, what, f"{sec['append_seconds']} s", "-", "-"))
    rows.append(("all", "server peak RSS", f"{results['server_peak_rss_mib']} MiB", "-", "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    raise SystemExit(main())
