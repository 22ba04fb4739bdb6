"""Selecting what a Query names from a normalised dataset, lazily.

Works on datasets that follow the `data_catalog` contract: dims ``lon`` (ascending,
[-180, 180)), ``lat`` (ascending), optional ``time`` and ``level``, and a
``cell_area(lat, lon)`` coordinate. Nothing here loads data variables; only the
small 1-D coordinates are read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from pipelines.query import QueryError, parse_time_label

__all__ = [
    "bbox_lon_mask",
    "check_variable",
    "nearest_cell",
    "nearest_step",
    "select_bbox",
    "select_level",
    "select_time_range",
    "select_time_step",
]

_EPS = 1e-9


def check_variable(ds: xr.Dataset, var: str) -> xr.DataArray:
    """The data variable ``var``, or a `QueryError` listing the variables there are."""
    if var not in ds.data_vars:
        known = ", ".join(sorted(str(v) for v in ds.data_vars))
        raise QueryError("var", f"{var!r} is not in this dataset; available: {known}")
    return ds[var]


def bbox_lon_mask(lon: np.ndarray, west: float, east: float) -> np.ndarray:
    """Which longitudes lie in ``[west, east]`` going east, edges included.

    ``west > east`` crosses the antimeridian. ``-180..180`` (or any span of 360)
    is the whole circle; ``west == east`` selects centres exactly on that meridian.
    """
    width = (east - west) % 360.0
    if width == 0 and east != west:
        width = 360.0
    offset = (np.asarray(lon, dtype="float64") - west) % 360.0
    # a centre exactly on the west edge may come back as ~360 through rounding
    offset = np.where(offset > 360.0 - _EPS, 0.0, offset)
    return offset <= width + _EPS


def select_bbox(da: xr.DataArray, bbox: tuple[float, float, float, float]) -> xr.DataArray:
    """Cells whose centres lie in the box, edges included.

    For a box crossing the antimeridian the two pieces are joined east of ``W`` and
    the longitudes continue past 180 (e.g. 170..190), so the result stays a
    contiguous ascending grid.

    Raises
    ------
    QueryError
        When no cell centre lies in the box.
    """
    west, south, east, north = bbox
    lon = da["lon"].values
    lat = da["lat"].values
    lon_idx = np.flatnonzero(bbox_lon_mask(lon, west, east))
    lat_idx = np.flatnonzero((lat >= south - _EPS) & (lat <= north + _EPS))
    if lon_idx.size == 0 or lat_idx.size == 0:
        raise QueryError(
            "bbox",
            f"no grid cell centre lies in {west:g},{south:g},{east:g},{north:g}; use a larger box",
        )
    # order east of W: put the cells with lon < W (wrapped part) after the others
    lon_sel = lon[lon_idx]
    wrapped = ((lon_sel - west) % 360.0) + west
    order = np.argsort(wrapped, kind="stable")
    lon_idx = lon_idx[order]
    out = da.isel(lon=lon_idx, lat=lat_idx)
    if np.any(np.diff(wrapped[order]) < 0) or np.any(wrapped[order] != lon_sel[order]):
        out = out.assign_coords(lon=("lon", wrapped[order], da["lon"].attrs))
    return out


def nearest_cell(da: xr.DataArray, point: tuple[float, float]) -> tuple[int, int]:
    """Indices ``(lat_index, lon_index)`` of the cell nearest to ``(lon, lat)``.

    Longitude distance is measured around the circle, so 359.5 is next to -180.
    """
    lon, lat = point
    lons = da["lon"].values.astype("float64")
    lats = da["lat"].values.astype("float64")
    dlon = np.abs(((lons - lon) + 180.0) % 360.0 - 180.0)
    return int(np.argmin(np.abs(lats - lat))), int(np.argmin(dlon))


def select_level(da: xr.DataArray, level: float | None) -> xr.DataArray:
    """The nearest vertical level; without ``level`` the first one.

    A level more than one grid step outside the axis is an error, as is a level for
    a variable without a vertical axis.
    """
    if "level" not in da.dims:
        if level is not None:
            raise QueryError("level", "this variable has no vertical axis; leave level empty")
        return da
    levels = da["level"].values.astype("float64")
    if level is None:
        return da.isel(level=0)
    step = float(np.max(np.abs(np.diff(levels)))) if levels.size > 1 else 0.0
    if level < levels.min() - step - _EPS or level > levels.max() + step + _EPS:
        units = da["level"].attrs.get("units", "")
        raise QueryError(
            "level",
            f"{level:g} is not a level of this variable; levels run "
            f"{levels.min():g}..{levels.max():g} {units}".rstrip(),
        )
    return da.isel(level=int(np.argmin(np.abs(levels - level))))


def _label_to_time(field: str, text: str, index: pd.Index, climatology: bool) -> object:
    """A time label as a value comparable with ``index`` (datetime64 or cftime)."""
    parts = parse_time_label(field, text)
    if parts[0] == 0 and len(parts) == 2 and text[:1].isalpha():
        # a month name: the year of the climatology axis
        first = index[0]
        parts = (int(first.year), parts[1])
    fields = parts + (1, 1, 0, 0, 0)[len(parts) - 1 :]
    year, month, day, hour, minute, second = fields[:6]
    if isinstance(index, xr.CFTimeIndex):
        date_type = index.date_type
        has_year_zero = getattr(index[0], "has_year_zero", None)
        kwargs = {"has_year_zero": has_year_zero} if has_year_zero is not None else {}
        try:
            return date_type(year, month, day, hour, minute, second, **kwargs)
        except ValueError as exc:
            raise QueryError(
                field, f"{text!r} is not a valid date in this calendar ({exc})"
            ) from None
    try:
        return pd.Timestamp(
            year=year, month=month, day=day, hour=hour, minute=minute, second=second
        )
    except (ValueError, OverflowError) as exc:
        raise QueryError(field, f"{text!r} is not a valid date ({exc})") from None


def _describe_time(value: object) -> str:
    """A short ISO label for a time value (datetime64 or cftime), date only at midnight."""
    if isinstance(value, np.datetime64 | pd.Timestamp):
        value = pd.Timestamp(value)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text.removesuffix("T00:00:00").removesuffix(" 00:00:00")


def _record_text(da: xr.DataArray) -> str:
    times = da.indexes["time"]
    if da.attrs.get("gridscope_climatology"):
        return "this is a climatology: use a month name (Jan..Dec) or YYYY-MM within its year"
    return f"the record spans {_describe_time(times[0])} to {_describe_time(times[-1])}"


def nearest_step(da: xr.DataArray, label: str, field: str = "time") -> int:
    """Index of the time step nearest to the middle of the period ``label`` names.

    ``1985-03`` (or ``Mar`` on a climatology) picks the step nearest mid-March, so a
    monthly step stamped on the 16th or on the 1st is found either way. A label more
    than one step outside the record is an error.
    """
    if "time" not in da.dims:
        raise QueryError(field, "this dataset has no time axis; leave time empty")
    index = da.indexes["time"]
    climatology = bool(da.attrs.get("gridscope_climatology", False))
    begin = _label_to_time(field, label, index, climatology)
    parts = parse_time_label(field, label)
    target = begin + (_period_end(field, label, parts, index, climatology) - begin) / 2  # type: ignore[operator]
    first, last = index[0], index[-1]
    step = (last - first) / max(len(index) - 1, 1)
    if target < first - step or target > last + step:  # type: ignore[operator]
        raise QueryError(field, f"{label} is outside the record; {_record_text(da)}")
    return int(index.get_indexer([target], method="nearest")[0])


def select_time_step(da: xr.DataArray, label: str, field: str = "time") -> xr.DataArray:
    """The time step nearest to ``label`` (time dimension dropped)."""
    return da.isel(time=nearest_step(da, label, field))


def select_time_range(
    da: xr.DataArray,
    start: str | None,
    end: str | None,
    field: str = "start",
) -> xr.DataArray:
    """Steps from the start of ``start``'s period to the end of ``end``'s, inclusive.

    Raises
    ------
    QueryError
        When the range holds no time step.
    """
    if "time" not in da.dims:
        if start is None and end is None:
            return da
        raise QueryError(field, "this dataset has no time axis; leave start and end empty")
    index = da.indexes["time"]
    climatology = bool(da.attrs.get("gridscope_climatology", False))
    keep = np.ones(len(index), dtype=bool)
    if start is not None:
        lo = _label_to_time(field, start, index, climatology)
        keep &= np.asarray(index >= lo)
    if end is not None:
        end_field = "end" if field == "start" else field.replace("start", "end")
        parts = parse_time_label(end_field, end)
        hi = _period_end(end_field, end, parts, index, climatology)
        keep &= np.asarray(index < hi)
    selected = np.flatnonzero(keep)
    if selected.size == 0:
        raise QueryError(
            field,
            f"no time step between {start or 'the start'} and {end or 'the end'}; "
            f"{_record_text(da)}",
        )
    return da.isel(time=slice(int(selected[0]), int(selected[-1]) + 1))


def _period_end(
    field: str, text: str, parts: tuple[int, ...], index: pd.Index, clim: bool
) -> object:
    """The first instant after the period ``text`` names (exclusive upper bound)."""
    start = _label_to_time(field, text, index, clim)
    n = len(parts) if not text[:1].isalpha() else 2
    if n == 1:
        return _label_to_time(field, f"{parts[0] + 1:04d}", index, clim)
    if n == 2:
        year = start.year + (start.month == 12)  # type: ignore[attr-defined]
        month = start.month % 12 + 1  # type: ignore[attr-defined]
        return _label_to_time(field, f"{year:04d}-{month:02d}", index, clim)
    units = {3: "days", 4: "hours", 5: "minutes", 6: "seconds"}[n]
    return start + pd.Timedelta(**{units: 1})  # type: ignore[operator]
