"""Writing a view's numbers to files: map PNG / netCDF, series CSV, and "show code".

Shared by the dashboard's download buttons and ``gridscope export`` so that both
write the same bytes for the same `Query`.

CSV format (`series_to_csv`): header ``time,<var>``; one row per step; time as an
ISO 8601 label (``0000-01-16T06:00:00`` for a climatology, which keeps the year 0 of
its axis), or on a numbered step axis the step's value under ``time (<units>)``; values with ``repr`` precision (round-trips float64 exactly); missing
values as an empty field.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import IO, Any

import numpy as np
import xarray as xr

__all__ = [
    "code_snippet",
    "export_words",
    "map_to_netcdf",
    "map_to_png",
    "native_grid_variables",
    "series_to_csv",
]

PathOrBuffer = str | os.PathLike[str] | IO[Any]


def _label(da: xr.DataArray) -> str:
    name = da.attrs.get("long_name", da.name or "")
    units = da.attrs.get("units", "")
    return f"{name} ({units})" if units else str(name)


def map_to_png(
    da: xr.DataArray,
    path_or_buffer: PathOrBuffer,
    cmap: str = "rainbow4",
    clim: tuple[float, float] | None = None,
    *,
    title: str | None = None,
    label: str | None = None,
    coastlines: bool = True,
    centre: float | None = None,
) -> None:
    """Draw the (lat, lon) map with a colourbar (and coastlines) to a PNG file.

    Parameters
    ----------
    da
        In-memory 2-D map with ``lat`` and ``lon`` coordinates.
    path_or_buffer
        File path or binary buffer.
    cmap
        colorcet colour map name (falls back to matplotlib's names).
    clim
        Colour range; ``None`` uses the data's finite min/max.
    title
        Title above the map (`app.labels.ViewLabels.title`: what the map shows).
    label
        Colour bar label; by default the data's ``long_name (units)``.
    centre
        Central longitude (180: a Pacific-centred map, x from 0 to 360); None keeps the
        field's own longitudes. A field on native cells of a grid that is not regular
        (``lon(y, x)`` or ``lon(cell)``) is drawn in geographic coordinates, rasterized
        (`app.rasterize`) as in the dashboard.
    """
    import colorcet
    from matplotlib.figure import Figure

    from app.rasterize import grid_kind, rasterize_to_screen, wrap_longitudes

    if grid_kind(da) != "regular":
        da = rasterize_to_screen(da, None, (1000, 500), centre or 0.0)
    xlim = None
    if centre is not None:
        da = wrap_longitudes(da, centre - 180.0, centre + 180.0)
        if float(da["lon"].max() - da["lon"].min()) >= 359.0:
            xlim = (centre - 180.0, centre + 180.0)

    values = np.asarray(da.transpose("lat", "lon").values, dtype="float64")
    lon = da["lon"].values
    lat = da["lat"].values
    if clim is None:
        finite = values[np.isfinite(values)]
        clim = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    colormap = colorcet.cm.get(cmap, cmap)
    fig = Figure(figsize=(10, 5.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    mesh = ax.pcolormesh(lon, lat, np.ma.masked_invalid(values), cmap=colormap,
                         vmin=clim[0], vmax=clim[1], shading="nearest")  # fmt: skip
    if coastlines:
        from app.coastlines import coastline_paths

        for line in coastline_paths():
            for shift in (-360.0, 0.0, 360.0) if centre is not None else (0.0,):
                ax.plot(line[:, 0] + shift, line[:, 1], color="black", linewidth=0.5)
        ax.set_xlim(*(xlim or (float(lon.min()) - 0.5, float(lon.max()) + 0.5)))
        ax.set_ylim(float(lat.min()) - 0.5, float(lat.max()) + 0.5)
    fig.colorbar(mesh, ax=ax, label=label or _label(da), shrink=0.85)
    ax.set_xlabel("longitude (degrees east)")
    ax.set_ylabel("latitude (degrees north)")
    if title:
        ax.set_title(title)
    fig.savefig(path_or_buffer, format="png", bbox_inches="tight")


def map_to_netcdf(
    da: xr.DataArray,
    path_or_buffer: PathOrBuffer | None = None,
    *,
    query: Any = None,
    words: Any = None,
    grid: xr.Dataset | None = None,
    ds: xr.Dataset | None = None,
) -> bytes | None:
    """Write the map (or any DataArray) to netCDF; with no path, return the bytes.

    ``query`` (a `pipelines.Query`) is recorded in the ``gridscope_query`` attribute;
    ``words`` (`app.labels.ViewLabels`) become the ``title`` and ``gridscope_*`` global
    attributes that say what the numbers are (dataset, variable, step or period, ...).
    A map on native cells keeps them (2-D ``lon``/``lat`` or a ``cell`` dim); ``grid``
    holds the variables that describe them beyond the map's own coordinates (cell
    bounds, the CF grid-mapping variable), written beside it; given the opened dataset
    ``ds`` instead, they are taken from it (`native_grid_variables`).
    """
    if grid is None and ds is not None and query is not None:
        grid = native_grid_variables(ds, da, query)
    out = da.to_dataset(name=str(da.name or "value"))
    if grid is not None:
        out = out.assign_coords({name: grid[name] for name in grid.variables if name not in out})
    if words is not None:
        out.attrs.update(words.attrs())
    if query is not None:
        out.attrs["gridscope_query"] = query.to_json()
    if path_or_buffer is None or hasattr(path_or_buffer, "write"):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "map.nc")
            out.to_netcdf(path)
            with open(path, "rb") as handle:
                data = handle.read()
        if path_or_buffer is None:
            return data
        path_or_buffer.write(data)  # type: ignore[union-attr]
        return None
    out.to_netcdf(path_or_buffer)
    return None


def native_grid_variables(ds: xr.Dataset, field: xr.DataArray, query: Any) -> xr.Dataset | None:
    """What a map on a non-regular grid needs beside its values to stay that grid.

    The cell bounds of the map's cells (those of ``query``'s box when it has one, as
    the map was cropped) and the CF grid-mapping variable that the map's
    ``grid_mapping`` attribute names; None for a regular grid (its 1-D axes say it all).
    """
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


def export_words(ds: xr.Dataset, query: Any, title: str | None = None) -> Any:
    """`app.labels.ViewLabels` of ``query`` on the opened dataset ``ds`` (for the CLI).

    ``title`` is the dataset's title (the catalog's); by default the dataset's own
    ``title`` attribute or the query's dataset id.
    """
    from app.labels import view_labels
    from app.sources import DatasetSources

    name = title or str(ds.attrs.get("title", query.dataset))
    info = DatasetSources({query.dataset: name}, lambda _: ds).info(query.dataset)
    return view_labels(query, info)


def _time_text(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return np.datetime_as_string(value, unit="s")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def series_to_csv(
    da: xr.DataArray, path_or_buffer: PathOrBuffer | None = None, var: str | None = None
) -> str:
    """Write a 1-D time series as CSV (header ``time,<var>``) and return the text.

    On a numbered step axis (no dates) the header names the steps' units as the series
    plot does (``time (Month)``, ``time (step)`` without units) and each step is its
    value as the dashboard and links write it (``7``, ``0.5``): a bare ``1.0`` said
    neither what the number counts nor that it is not a date.
    """
    from app.labels import time_axis_text
    from pipelines.selection import step_labels, time_axis_is_numeric

    name = var or str(da.name or "value")
    if time_axis_is_numeric(da):
        units = str(da["time"].attrs.get("units", "")).strip() or "step"
        header, times = time_axis_text(units), step_labels(da["time"])
    else:
        header, times = "time", [_time_text(t) for t in da["time"].values]
    lines = [f"{header},{name}"]
    for t, v in zip(times, np.asarray(da.values, dtype="float64"), strict=True):
        lines.append(f"{t},{'' if not np.isfinite(v) else repr(float(v))}")
    text = "\n".join(lines) + "\n"
    if path_or_buffer is not None:
        if hasattr(path_or_buffer, "write"):
            path_or_buffer.write(
                text if isinstance(path_or_buffer, io.TextIOBase) else text.encode()
            )  # type: ignore[union-attr]
        else:
            with open(path_or_buffer, "w", encoding="utf-8") as handle:
                handle.write(text)
    return text


def _source_for_code(dataset: str) -> str:
    """Where the snippet opens ``dataset``: a local file given relative to the server's
    folder becomes absolute (a notebook runs elsewhere); catalog ids and URLs stay."""
    if "://" in dataset or ":" in dataset.split("/")[0] or os.path.isabs(dataset):
        return dataset
    if os.sep in dataset or "/" in dataset or os.path.splitext(dataset)[1]:
        if os.path.exists(dataset):
            return os.path.abspath(dataset)
    return dataset


def code_snippet(query: Any, *, series: Any = None) -> str:
    """Python that reproduces the view in a notebook with the project's API.

    The query keeps the dataset id of the view (the derived stores are found by it);
    a local file named relative to the server's folder is opened by its absolute path.
    """
    lines = [
        "from data_catalog import open_dataset",
        "from pipelines import Query, compute_map, compute_series",
        "",
        f"ds = open_dataset({_source_for_code(query.dataset)!r})",
        f"query = Query.from_query_string({query.to_query_string()!r})",
        "field = compute_map(ds, query.replace(bbox=None, point=None)).compute()",
        "cmap = 'RdBu_r' if query.is_anomaly else 'viridis'",
        "if 'cell' in field.dims:  # an unstructured grid: one dot per cell at its lon/lat",
        "    field.to_dataset().plot.scatter(x='lon', y='lat', hue=query.var, s=4, cmap=cmap)",
        "else:  # geographic lon/lat (2-D on rotated, projected and curvilinear grids)",
        "    field.plot(x='lon', y='lat', cmap=cmap)",
    ]
    if series is not None:
        lines += [
            "",
            f"series_query = Query.from_query_string({series.to_query_string()!r})",
            "series = compute_series(ds, series_query).compute()",
            "series.to_pandas().to_csv('series.csv', header=[series_query.var], index_label='time')",
        ]
    return "\n".join(lines) + "\n"
