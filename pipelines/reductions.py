"""Lazy reductions of gridded fields: over time, over areas, against baselines.

Every function takes and returns `xarray.DataArray` objects and stays lazy on
dask-backed input; numpy-backed input works the same. Area weights are the true
cell areas on the sphere (the ``cell_area`` coordinate of a normalised dataset),
and cells with no value (land in an SST field) carry no weight.
"""

from __future__ import annotations

import xarray as xr

from pipelines.query import AGGREGATIONS, QueryError

__all__ = [
    "anomaly",
    "area_weighted_mean",
    "cell_series",
    "monthly_climatology",
    "period_difference",
    "point_series",
    "spatial_dims",
    "time_aggregate",
]


def time_aggregate(da: xr.DataArray, agg: str) -> xr.DataArray:
    """Reduce over ``time`` with mean, min, max or std (population, ddof=0).

    Missing values are skipped; a cell with no value in the range stays NaN.
    Without a time axis mean, min and max are the field itself and std is refused.
    """
    if agg not in AGGREGATIONS:
        raise QueryError("agg", f"{agg!r} is not one of {', '.join(AGGREGATIONS)}")
    if "time" not in da.dims:
        if agg == "std":  # the field itself would be a wrong answer labelled std
            raise QueryError(
                "agg",
                "this variable has no time axis, so no standard deviation over time; "
                "use mean, min or max (the field itself)",
            )
        return da
    reduce = getattr(da, agg)
    out = reduce("time", skipna=True, keep_attrs=True)
    if agg == "std":
        out.attrs["cell_methods"] = "time: standard_deviation"
    else:
        out.attrs["cell_methods"] = f"time: {'mean' if agg == 'mean' else agg + 'imum'}"
    return out


def area_weighted_mean(da: xr.DataArray) -> xr.DataArray:
    """Mean over the horizontal cells weighted by ``cell_area``, NaN cells excluded.

    The cells are the spatial dims of any grid kind: ``(lat, lon)``, ``(y, x)`` or
    ``(cell,)`` (`data_catalog.grid`). The weights of missing cells are dropped per time
    step, so a coastline box on an SST field averages ocean cells only. All-missing steps
    give NaN.
    """
    if "cell_area" not in da.coords:
        raise ValueError("area_weighted_mean needs a 'cell_area' coordinate (normalised dataset)")
    dims = spatial_dims(da)
    weights = da["cell_area"].fillna(0.0)
    out = da.weighted(weights).mean(dims, skipna=True, keep_attrs=True)
    return out.drop_vars("cell_area", errors="ignore")


def spatial_dims(da: xr.DataArray | xr.Dataset) -> tuple[str, ...]:
    """The horizontal dims of a normalised field: ``(lat, lon)``, ``(y, x)`` or ``(cell,)``."""
    for dims in (("lat", "lon"), ("y", "x"), ("cell",)):
        if set(dims) <= set(da.dims):
            return dims
    raise ValueError(f"no horizontal dims (lat, lon), (y, x) or (cell) in {tuple(da.dims)}")


def cell_series(da: xr.DataArray, index: dict[str, int]) -> xr.DataArray:
    """The values of one cell (an ``isel`` indexer over the spatial dims) along the rest."""
    return da.isel(index)


def point_series(da: xr.DataArray, lat_index: int, lon_index: int) -> xr.DataArray:
    """The values of one cell (given by index) along the remaining dims."""
    return da.isel(lat=lat_index, lon=lon_index)


def monthly_climatology(baseline: xr.DataArray) -> xr.DataArray:
    """Mean of each calendar month over the baseline period (dim ``month``)."""
    return baseline.groupby("time.month").mean("time", skipna=True)


def anomaly(da: xr.DataArray, climatology: xr.DataArray) -> xr.DataArray:
    """Departure of each step from the climatology of its calendar month."""
    out = da.groupby("time.month") - climatology
    out.attrs = dict(da.attrs)
    out.attrs["long_name"] = f"{da.attrs.get('long_name', da.name)} anomaly"
    return out.drop_vars("month", errors="ignore")


def period_difference(
    later: xr.DataArray, earlier: xr.DataArray, agg: str = "mean"
) -> xr.DataArray:
    """``agg`` over the later period minus ``agg`` over the earlier one."""
    out = time_aggregate(later, agg) - time_aggregate(earlier, agg)
    out.attrs = dict(later.attrs)
    out.attrs["long_name"] = f"{later.attrs.get('long_name', later.name)} difference"
    return out
