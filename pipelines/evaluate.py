"""Turn a `Query` into the lazy map or time series it describes (the brute-force plan).

These are the reference answers: the planner may find cheaper exact plans using
derived stores, but must return the same numbers as `compute_map` and
`compute_series` on the raw data.

They work on every grid kind of `data_catalog.grid`: a map of a non-regular grid keeps
its native cells (``(y, x)`` masked to the box, or the cells of the box).
"""

from __future__ import annotations

import xarray as xr

from pipelines.query import Query, QueryError
from pipelines.reductions import (
    anomaly,
    area_weighted_mean,
    cell_series,
    monthly_climatology,
    time_aggregate,
)
from pipelines.selection import (
    check_variable,
    nearest_cell_index,
    select_bbox,
    select_level,
    select_time_range,
    step_index,
)

__all__ = ["compute_map", "compute_series", "field_for"]


def field_for(ds: xr.Dataset, query: Query) -> xr.DataArray:
    """The query's variable at its level, with dataset-level attributes it needs."""
    da = check_variable(ds, query.var)
    da = select_level(da, query.level)
    if ds.attrs.get("gridscope_climatology"):
        da.attrs["gridscope_climatology"] = 1  # int: netCDF attributes cannot be bool
    return da


def _with_anomaly(da: xr.DataArray, full: xr.DataArray, query: Query) -> xr.DataArray:
    if not query.is_anomaly:
        return da
    if "time" not in full.dims:
        raise QueryError("baseline_start", "this dataset has no time axis for a baseline")
    baseline = select_time_range(full, query.baseline_start, query.baseline_end, "baseline_start")
    return anomaly(da, monthly_climatology(baseline))


def compute_map(ds: xr.Dataset, query: Query) -> xr.DataArray:
    """The 2-D (lat, lon) field a query describes, lazily (native cells on other grids).

    A single ``time`` gives that step; otherwise ``agg`` over ``start..end`` (the
    whole record when both are empty). With a baseline, values are anomalies
    against the baseline's monthly climatology. ``bbox`` crops the map; ``point``
    does not affect a map.
    """
    full = field_for(ds, query)
    if query.bbox is not None:
        full = select_bbox(full, query.bbox)
    if query.time is not None:
        chosen = full.isel(time=[step_index(full, query.time)])
        out = _with_anomaly(chosen, full, query).isel(time=0)
    else:
        selected = select_time_range(full, query.start, query.end)
        out = time_aggregate(_with_anomaly(selected, full, query), query.agg)
    out.name = query.var
    return out


def compute_series(ds: xr.Dataset, query: Query) -> xr.DataArray:
    """The time series a query describes, lazily.

    ``point`` gives the nearest cell's series; ``bbox`` the area-weighted mean over
    the box's cells (missing cells excluded from the weights). ``start``/``end``
    limit the record; with a baseline, values are anomalies.
    """
    full = field_for(ds, query)
    if "time" not in full.dims:
        raise QueryError("var", f"{query.var!r} has no time axis, so it has no time series")
    if query.point is not None:
        # the dataset, not the field: it carries the cells' polygons (lon_bounds), which
        # say how far a cell reaches (a thin cell touching a pole reaches the pole)
        region = cell_series(full, nearest_cell_index(ds, query.point))
    elif query.bbox is not None:
        region = area_weighted_mean(select_bbox(full, query.bbox))
    else:
        raise QueryError("point", "a time series needs a point (lon,lat) or a bbox (W,S,E,N)")
    if query.time is not None:
        raise QueryError("time", "a time series takes start/end, not a single time")
    selected = select_time_range(region, query.start, query.end)
    out = _with_anomaly(selected, region, query)
    out.name = query.var
    return out
