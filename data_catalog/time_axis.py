"""Decoding a file's time axis so that no time axis makes a file unusable.

:func:`decode_time_axis` turns the raw numeric ``time`` coordinate of a dataset opened
with ``decode_times=False`` into one of two kinds, recorded in
``ds.attrs["gridscope_time_kind"]``:

``"dates"``
    ``<unit> since <date>`` in any CF calendar: ``datetime64[ns]`` for the standard
    calendars within its range, else ``cftime`` objects. A climatological year 0 (as in
    COADS) opens in the proleptic Gregorian calendar with year zero. ``months since`` and
    ``years since``, which xarray and cftime refuse outside the 360_day calendar, are
    decoded as **calendar** months and years: value ``v`` is the reference date moved by
    ``floor(v)`` whole months (years), the day of month kept (clipped to the month's
    length), plus the fraction ``v - floor(v)`` of that month's (year's) length. So
    ``0.5 months since 1958-1-1`` is 1958-01-16T12:00, the middle of January, which is
    how monthly means are commonly stamped; whole values land on the reference day.

``"numeric"``
    Units without an epoch (``"days"``, ``"Month"``), ``since`` units that cannot be
    read as dates (``"days since launch"``), or no units at all (a "timestep" axis):
    the coordinate keeps its numbers (and its ``units`` attribute), and every time
    label on it is a number (see `pipelines.selection.step_index`). Nothing is guessed:
    a date made up from a count with no epoch would be a silent wrong answer.
"""

from __future__ import annotations

import datetime
import math
import re

import cftime
import numpy as np
import xarray as xr

from data_catalog.errors import DatasetOpenError

__all__ = ["TIME_KIND_ATTR", "decode_time_axis"]

#: Dataset attribute naming the kind of time axis: ``"dates"`` or ``"numeric"``.
TIME_KIND_ATTR = "gridscope_time_kind"

_STANDARD_CALENDARS = {"standard", "gregorian", "proleptic_gregorian"}
_SINCE = re.compile(r"^\s*([A-Za-z_]+)\s+since\s+(.+?)\s*$", re.IGNORECASE)
_REFERENCE = re.compile(
    r"^(?P<year>[+-]?\d{1,4})-(?P<month>\d{1,2})(?:-(?P<day>\d{1,2}))?"
    r"(?:[T\s]+(?P<hour>\d{1,2}):(?P<minute>\d{1,2})(?::(?P<second>\d{1,2}(?:\.\d*)?))?)?"
)
#: CDO's absolute time axis: the value is the date itself, e.g. 20981118.5 (noon).
_DAY_AS = re.compile(r"^\s*days?\s+as\s+%Y%m%d(\.%f)?\s*$", re.IGNORECASE)
_MONTH_UNITS = {"month", "months", "mon", "mons"}
_YEAR_UNITS = {"year", "years", "yr", "yrs", "common_year", "common_years"}


def _ascending(ds: xr.Dataset) -> xr.Dataset:
    """The dataset with its steps in time order (lazily re-indexed): a file written with
    time descending (or unsorted) would otherwise make every range, series and step rule,
    which look steps up by position, answer other steps."""
    values = np.asarray(ds["time"].values)
    if values.size < 2 or values.dtype.kind not in "iufMO":
        return ds
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        return ds  # refused by the caller, which names the file's own steps
    try:
        order = np.argsort(values, kind="stable")
    except TypeError:  # objects that do not compare: left as they are
        return ds
    if np.array_equal(order, np.arange(values.size)):
        return ds
    return ds.isel(time=order)


def decode_time_axis(ds: xr.Dataset, source: str) -> tuple[xr.Dataset, bool]:
    """Decode ``ds["time"]`` (raw numbers) into dates, or keep it as a numeric step axis.

    Parameters
    ----------
    ds
        Dataset with a 1-D ``time`` dimension coordinate, opened with ``decode_times=False``.
    source
        Where the dataset came from, for error messages.

    Returns
    -------
    (xarray.Dataset, bool)
        The dataset in time order with its decoded ``time`` and ``attrs["gridscope_time_kind"]`` set, and
        whether the axis is climatological (reference year 0 or a ``climatology``
        attribute).

    Raises
    ------
    DatasetOpenError
        When the axis holds missing values and cannot be dates, or is not numeric (the
        message names the file, units and calendar). An axis whose ``since`` units
        cannot be read as dates (an unreadable reference date, a value beyond the
        calendar) is kept as a numeric step axis, with ``attrs["gridscope_time_note"]``
        saying why.
    """
    ds = _ascending(ds)
    time = ds["time"]
    attrs = dict(time.attrs)
    units = attrs.get("units")
    if np.issubdtype(time.dtype, np.datetime64) or time.dtype == object:
        ds = ds.assign_attrs({TIME_KIND_ATTR: "dates"})
        return ds, bool("climatology" in attrs)  # already decoded upstream
    match = _SINCE.match(units) if isinstance(units, str) else None
    absolute = isinstance(units, str) and _DAY_AS.match(units) is not None
    if match is None and not absolute:
        return _numeric_axis(ds, attrs, source), False
    calendar = str(attrs.get("calendar", "standard")).strip().lower() or "standard"
    unit, reference = (match.group(1).lower(), match.group(2)) if match else ("day", "")
    values = np.asarray(time.values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        # decoded, a missing step came back as the reference date (a second 2000-01-01)
        missing = np.flatnonzero(~np.isfinite(values))
        raise DatasetOpenError(
            f"{source}: cannot decode time axis with units {units!r}: no value at step(s) "
            f"{', '.join(map(str, missing[:5].tolist()))}{' ...' if missing.size > 5 else ''} "
            f"of {values.size}; gridscope needs a date for every step"
        )
    year_zero = match is not None and _reference_year(reference) == 0
    try:
        if absolute:
            decoded, encoding_units = _absolute_days(values, calendar)
        elif unit in _MONTH_UNITS or unit in _YEAR_UNITS:
            decoded = _calendar_steps(values, unit in _YEAR_UNITS, reference, calendar, year_zero)
            encoding_units = f"days since {_iso(reference, calendar, year_zero)}"
        else:
            decoded = _decode_dates(values, str(units), calendar, year_zero)
            encoding_units = str(units)
    except (ValueError, TypeError, OverflowError) as exc:
        if not np.all(np.isfinite(values)):
            raise DatasetOpenError(
                f"{source}: cannot decode time axis with units {units!r} and calendar "
                f"{calendar!r} ({exc})"
            ) from None
        # e.g. an unreadable reference date: the numbers stay usable as steps, and the
        # units shown beside them say what they count
        note = f"kept as numbers: not dates in calendar {calendar!r} ({exc})"
        return _numeric_axis(ds, {**attrs, "gridscope_time_note": note}, source), False
    climatology = year_zero or "climatology" in attrs
    new_attrs = {k: v for k, v in attrs.items() if k not in ("units", "calendar", "modulo")}
    new_attrs.setdefault("standard_name", "time")
    new_attrs.setdefault("axis", "T")
    new_time = xr.Variable("time", decoded, new_attrs)
    # Re-encode as the file did (same units and float dtype) when derived stores are
    # written, so fractional steps like "hour since ... 14:00" round-trip without warning;
    # calendar months and years, which xarray cannot encode, are written as days.
    new_time.encoding = {
        "units": encoding_units,
        "calendar": "proleptic_gregorian" if year_zero else calendar,
        "dtype": np.dtype(time.dtype) if np.issubdtype(time.dtype, np.floating) else np.float64,
    }
    ds = ds.assign_coords(time=new_time).assign_attrs({TIME_KIND_ATTR: "dates"})
    return ds, climatology


def _numeric_axis(ds: xr.Dataset, attrs: dict, source: str) -> xr.Dataset:
    """Keep the time values as numbers; the units (if any) stay to label them."""
    if not np.issubdtype(ds["time"].dtype, np.number):
        raise DatasetOpenError(
            f"{source}: time axis of dtype {ds['time'].dtype} is neither dates nor numbers"
        )
    new_attrs = dict(attrs)
    new_attrs.setdefault("axis", "T")
    new_attrs[TIME_KIND_ATTR] = "numeric"
    ds = ds.assign_coords(time=xr.Variable("time", ds["time"].values, new_attrs))
    return ds.assign_attrs({TIME_KIND_ATTR: "numeric"})


def _reference_year(reference: str) -> int | None:
    match = re.match(r"\s*[+-]?\d+", reference)
    return int(match.group()) if match else None


def _parse_reference(reference: str) -> tuple[int, int, int, int, int, float]:
    match = _REFERENCE.match(reference.strip())
    if match is None:
        raise ValueError(f"reference date {reference!r} is not of the form YYYY-MM-DD [hh:mm:ss]")
    g = match.groupdict()
    return (
        int(g["year"]),
        int(g["month"]),
        int(g["day"] or 1),
        int(g["hour"] or 0),
        int(g["minute"] or 0),
        float(g["second"] or 0.0),
    )


def _date(calendar: str, year_zero: bool, *fields: float) -> cftime.datetime:
    year, month, day, hour, minute, second = fields
    whole = int(second)
    micro = int(round((second - whole) * 1e6))
    kwargs = {"has_year_zero": True} if year_zero else {}
    cal = "proleptic_gregorian" if year_zero else calendar
    return cftime.datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        whole,
        micro,
        calendar=cal,
        **kwargs,
    )


def _days_in_month(year: int, month: int, calendar: str, year_zero: bool) -> int:
    first = _date(calendar, year_zero, year, month, 1, 0, 0, 0)
    following = _date(calendar, year_zero, year + month // 12, month % 12 + 1, 1, 0, 0, 0)
    return (following - first).days


def _calendar_steps(
    values: np.ndarray, years: bool, reference: str, calendar: str, year_zero: bool
) -> np.ndarray:
    """Reference date moved by whole calendar months (years), plus the fraction of one."""
    year0, month0, day0, hour0, minute0, second0 = _parse_reference(reference)
    per_step = 12 if years else 1

    def moved(months: int) -> cftime.datetime:
        index = (month0 - 1) + months
        year, month = year0 + index // 12, index % 12 + 1
        day = min(day0, _days_in_month(year, month, calendar, year_zero))
        return _date(calendar, year_zero, year, month, day, hour0, minute0, second0)

    out = []
    for value in values:
        if not math.isfinite(value):
            raise ValueError("the time axis holds a missing or infinite value")
        whole = math.floor(value)
        date = moved(whole * per_step)
        if value != whole:
            length = (moved((whole + 1) * per_step) - date).total_seconds()
            date = date + datetime.timedelta(seconds=round(length * (value - whole), 3))
        out.append(date)
    return _calendar_dates(out, calendar, year_zero)


def _absolute_days(values: np.ndarray, calendar: str) -> tuple[np.ndarray, str]:
    """Dates of a ``day as %Y%m%d.%f`` axis (fraction = part of the day), and the
    ``days since`` units to re-encode them with."""
    dates = []
    for value in values:
        whole = math.floor(value)
        year, month, day = whole // 10000, (whole // 100) % 100, whole % 100
        date = _date(calendar, False, year, month, day, 0, 0, 0.0)
        dates.append(date + datetime.timedelta(seconds=round((value - whole) * 86400.0, 3)))
    first = dates[0] if dates else _date(calendar, False, 2000, 1, 1, 0, 0, 0.0)
    units = f"days since {first.replace(hour=0, minute=0, second=0).isoformat(sep=' ')}"
    return _calendar_dates(dates, calendar, False), units


def _calendar_dates(dates: list, calendar: str, year_zero: bool) -> np.ndarray:
    """``datetime64[ns]`` for standard calendars where they fit, else the calendar's
    own cftime type (what xarray's decoder gives, so labels parse the same way)."""
    if calendar in _STANDARD_CALENDARS and not year_zero:
        try:
            return np.asarray([np.datetime64(d.isoformat(), "ns") for d in dates])
        except (ValueError, OverflowError):
            pass  # outside datetime64[ns]
    cal = "proleptic_gregorian" if year_zero else calendar
    units = "seconds since 2000-01-01"
    kwargs = {"has_year_zero": True} if year_zero else {}
    numbers = cftime.date2num(dates, units, calendar=cal, **kwargs)
    return np.asarray(cftime.num2date(numbers, units, calendar=cal, **kwargs))


def _iso(reference: str, calendar: str, year_zero: bool) -> str:
    """The reference date as ISO text, for re-encoding calendar months as days."""
    return _date(calendar, year_zero, *_parse_reference(reference)).isoformat(sep=" ")


def _decode_dates(values: np.ndarray, units: str, calendar: str, year_zero: bool) -> np.ndarray:
    if calendar in _STANDARD_CALENDARS and year_zero:
        # A climatological year 0 only exists in the proleptic Gregorian calendar with
        # year zero (ISO 8601); xarray's decoder rejects it, cftime does not.
        return np.asarray(
            cftime.num2date(values, units, calendar="proleptic_gregorian", has_year_zero=True)
        )
    if calendar in _STANDARD_CALENDARS:
        try:
            dates = cftime.num2date(
                values,
                units,
                calendar=calendar,
                only_use_cftime_datetimes=False,
                only_use_python_datetimes=True,
            )
            return np.asarray(dates, dtype="datetime64[ns]")
        except (ValueError, OverflowError):
            pass  # outside datetime64[ns] range or before the Gregorian switch: cftime
    return np.asarray(cftime.num2date(values, units, calendar=calendar))
