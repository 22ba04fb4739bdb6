"""``gridscope export map|series``: write the numbers behind a view to a file.

The flags are the `Query` fields (``--baseline-start`` is ``baseline_start``), so an
export and the dashboard showing the same query compute the same numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines.query import AGGREGATIONS, Query, QueryError

__all__ = ["add_parser", "native_grid_variables", "query_from_args", "run"]

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
        p.add_argument("--level", help="vertical level (nearest)")
        p.add_argument("--catalog", help="catalog YAML (default: the bundled catalog)")
        p.add_argument("-o", "--output", required=True, help=f"output file ({', '.join(suffixes)})")
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
    from pipelines import compute_map, compute_series

    output = Path(args.output)
    if output.suffix.lower() not in args.suffixes:
        raise QueryError("output", f"{output.name!r} must end in {' or '.join(args.suffixes)}")
    if not output.parent.exists():
        raise QueryError("output", f"folder {str(output.parent)!r} does not exist")
    query = query_from_args(args)
    catalog = load_catalog(args.catalog) if args.catalog else None
    ds = open_dataset(query.dataset, catalog)

    from app import exports

    if args.kind == "map":
        field = compute_map(ds, query).compute()
        entry = _catalog_entry(query.dataset, catalog)
        words = exports.export_words(ds, query, entry.title if entry is not None else None)
        if output.suffix.lower() == ".png":
            exports.map_to_png(field, output, cmap=args.cmap, title=words.title(region=True),
                               label=words.quantity)  # fmt: skip
        else:
            grid = native_grid_variables(ds, field, query)
            exports.map_to_netcdf(field, output, query=query, words=words, grid=grid)
    else:
        exports.series_to_csv(compute_series(ds, query).compute(), output)
    print(f"wrote {output}")
    return 0


def native_grid_variables(ds: Any, field: Any, query: Query) -> Any:
    """What a map on a non-regular grid needs beside its values to stay that grid:
    the cell bounds of its cells and the CF grid-mapping variable (None when regular)."""
    import numpy as np
    import xarray as xr

    from pipelines.selection import is_regular, native_bbox_indexer

    if is_regular(ds):
        return None
    out = xr.Dataset()
    if "lon_bounds" in ds.coords and "lat_bounds" in ds.coords:
        bounds = ds[["lon_bounds", "lat_bounds"]].reset_coords()[["lon_bounds", "lat_bounds"]]
        bounds = bounds.drop_vars([n for n in bounds.coords if n not in bounds.dims])
        if query.bbox is not None:
            bounds = bounds.isel(native_bbox_indexer(ds, query.bbox)[0])
        out = out.assign(lon_bounds=bounds["lon_bounds"], lat_bounds=bounds["lat_bounds"])
    mapping = ds.attrs.get("gridscope_grid_mapping")
    name = field.attrs.get("grid_mapping")
    if isinstance(mapping, dict) and isinstance(name, str):
        out[name] = xr.DataArray(np.int32(0), attrs=dict(mapping))
    return out


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
