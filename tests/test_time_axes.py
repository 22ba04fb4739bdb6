"""Odd time axes open instead of refusing the file (issue 12, point 2).

netCDF files are written here with netCDF4 (time units "months since 1958-1-1" in the
standard calendar, "years since 2000-01-01", "days" and "Month" without an epoch, and a
"timestep" axis without units), opened with `data_catalog.open_dataset`, and every
selection is compared with the raw values read back with netCDF4 directly.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from data_catalog import open_dataset
from data_catalog.time_axis import TIME_KIND_ATTR
from pipelines import Query, QueryError, compute_map, compute_series
from pipelines.selection import step_index, step_labels

_LAT = np.array([-30.0, 0.0, 30.0])
_LON = np.array([-150.0, -60.0, 30.0, 120.0])


def _write(path: Path, values: np.ndarray, attrs: dict[str, str], dim: str = "time") -> np.ndarray:
    """A (time, lat, lon) file with the given time values and attributes; its data."""
    rng = np.random.default_rng(values.size)
    data = rng.normal(10, 3, (values.size, _LAT.size, _LON.size)).astype("float32")
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension(dim, values.size)
        f.createDimension("lat", _LAT.size)
        f.createDimension("lon", _LON.size)
        t = f.createVariable(dim, values.dtype, (dim,))
        t.setncatts(attrs)
        t[:] = values
        f.createVariable("lat", "f8", ("lat",)).setncatts({"units": "degrees_north"})
        f.createVariable("lon", "f8", ("lon",)).setncatts({"units": "degrees_east"})
        f["lat"][:], f["lon"][:] = _LAT, _LON
        v = f.createVariable("v", "f4", (dim, "lat", "lon"))
        v.units = "K"
        v[:] = data
    with netCDF4.Dataset(path) as f:  # the raw values, as netCDF4 reads them
        return np.asarray(f["v"][:], dtype="float32")


def _field(ds: xr.Dataset) -> xr.DataArray:
    da = ds["v"]
    da.attrs["gridscope_climatology"] = int(bool(ds.attrs["gridscope_climatology"]))
    return da


def _map(ds: xr.Dataset, **fields: str) -> np.ndarray:
    return compute_map(ds, Query("x", "v", **fields)).values


def test_months_since_in_the_standard_calendar_are_calendar_months(tmp_path):
    months = np.arange(30, dtype="float64")
    raw = _write(
        tmp_path / "m.nc", months, {"units": "months since 1958-1-1", "calendar": "standard"}
    )
    ds = open_dataset(str(tmp_path / "m.nc"))
    assert ds.attrs[TIME_KIND_ATTR] == "dates"
    expect = [np.datetime64(f"{1958 + k // 12}-{k % 12 + 1:02d}-01") for k in range(30)]
    np.testing.assert_array_equal(ds["time"].values, np.array(expect, "datetime64[ns]"))
    for k in (0, 11, 12, 29):
        label = f"{1958 + k // 12}-{k % 12 + 1:02d}"
        np.testing.assert_array_equal(_map(ds, time=label), raw[k])
    np.testing.assert_allclose(
        _map(ds, start="1958-06", end="1959-02"), raw[5:14].mean(axis=0), rtol=1e-6
    )
    with pytest.raises(QueryError, match="outside the record"):
        _map(ds, time="1961")


def test_fractional_months_are_that_part_of_their_month(tmp_path):
    values = np.array([0.5, 1.5, 2.5, 13.25])
    raw = _write(tmp_path / "f.nc", values, {"units": "months since 1958-01-01 00:00:00"})
    ds = open_dataset(str(tmp_path / "f.nc"))
    start = datetime.datetime(1958, 1, 1)
    expect = [
        start + datetime.timedelta(days=31 * 0.5),  # Jan 16 12:00
        datetime.datetime(1958, 2, 1) + datetime.timedelta(days=28 * 0.5),  # Feb 15
        datetime.datetime(1958, 3, 1) + datetime.timedelta(days=31 * 0.5),
        datetime.datetime(1959, 2, 1) + datetime.timedelta(days=28 * 0.25),
    ]
    np.testing.assert_array_equal(
        ds["time"].values, np.array([np.datetime64(d, "ns") for d in expect])
    )
    np.testing.assert_array_equal(_map(ds, time="1958-02"), raw[1])  # first step in Feb


def test_years_since_are_calendar_years(tmp_path):
    years = np.array([0, 1, 2, 3, 4], dtype="int32")
    raw = _write(tmp_path / "y.nc", years, {"units": "years since 2000-01-01"})
    ds = open_dataset(str(tmp_path / "y.nc"))
    np.testing.assert_array_equal(
        ds["time"].values, np.array([f"{2000 + y}-01-01" for y in years], "datetime64[ns]")
    )
    np.testing.assert_array_equal(_map(ds, time="2003"), raw[3])
    np.testing.assert_allclose(_map(ds, start="2001", end="2003"), raw[1:4].mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "values", "attrs"),
    [
        ("days", np.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5]), {"units": "days"}),
        ("month", np.arange(1.0, 13.0, dtype="float32"), {"units": "Month", "long_name": "Time"}),
        ("no-units", np.arange(0, 8, dtype="int32"), {}),
    ],
)
def test_units_without_an_epoch_keep_a_numeric_step_axis(tmp_path, name, values, attrs):
    dim = "timestep" if name == "no-units" else "time"
    raw = _write(tmp_path / f"{name}.nc", values, attrs, dim=dim)
    ds = open_dataset(str(tmp_path / f"{name}.nc"))
    assert ds.attrs[TIME_KIND_ATTR] == "numeric"
    assert np.issubdtype(ds["time"].dtype, np.number)
    np.testing.assert_array_equal(ds["time"].values, values)
    assert ds["time"].attrs.get("units") == attrs.get("units")
    da = _field(ds)
    labels = step_labels(ds.indexes["time"])
    # every step by its own label, and by its value written in full
    for i, label in enumerate(labels):
        np.testing.assert_array_equal(_map(ds, time=label), raw[i])
        assert step_index(da, repr(float(values[i]))) == i
    # a number between steps: the nearest value, ties as xarray's sel(method="nearest")
    for target in (values[2] + 0.3 * (values[3] - values[2]), (values[2] + values[3]) / 2):
        expect = ds["v"].sel(time=target, method="nearest")
        got = compute_map(ds, Query("x", "v", time=repr(float(target))))
        assert got["time"].values == expect["time"].values
        np.testing.assert_array_equal(got.values, expect.values)
    # a range is inclusive by value; its mean is numpy's over those steps
    lo, hi = float(values[1]), float(values[4])
    keep = (values >= lo) & (values <= hi)
    for agg in ("mean", "max", "std"):
        got = _map(ds, start=repr(lo), end=repr(hi), agg=agg)
        np.testing.assert_allclose(got, getattr(np, agg)(raw[keep], axis=0), rtol=1e-5)
    series = compute_series(ds, Query("x", "v", point=(30, 0), start=repr(lo), end=repr(hi)))
    np.testing.assert_array_equal(series.values, raw[keep, 1, 2])


def test_dates_and_numbers_do_not_mix(tmp_path):
    _write(tmp_path / "d.nc", np.arange(1.0, 13.0), {"units": "Month"})
    numeric = open_dataset(str(tmp_path / "d.nc"))
    with pytest.raises(QueryError, match="numbered steps, not dates") as info:
        _map(numeric, time="1980-01")
    assert "the steps run 1 to 12 Month" in info.value.message
    with pytest.raises(QueryError, match="outside the record"):
        _map(numeric, time="40")
    with pytest.raises(QueryError, match="anomalies need a time axis of dates"):
        _map(numeric, start="1", end="3", baseline_start="1", baseline_end="3")
    _write(tmp_path / "e.nc", np.arange(3.0), {"units": "days since 2000-01-01"})
    dates = open_dataset(str(tmp_path / "e.nc"))
    with pytest.raises(QueryError, match="is a number, but this dataset's time axis holds dates"):
        _map(dates, time="2")


_SST = Path(__file__).parents[1] / "data_catalog" / "samples" / "grids" / "sstdata_netcdf.nc"


@pytest.mark.skipif(not _SST.exists(), reason="sample file not copied into the repository")
def test_real_file_with_time_units_month_opens(tmp_path):
    ds = open_dataset(str(_SST))
    assert ds.attrs[TIME_KIND_ATTR] == "numeric"
    assert ds["time"].attrs["units"] == "Month"
    with netCDF4.Dataset(_SST) as f:
        f.set_auto_mask(False)
        sst, lat, lon = f["sst"][:], f["lat"][:], f["lon"][:]
        months = f["time"][:]
    j, i = int(np.flatnonzero(lat == 0)[0]), int(np.flatnonzero(lon == 220)[0])  # 140W, 0N
    got = compute_map(ds, Query("x", "sst", time="7")).sel(lat=0, lon=-140)
    assert float(got) == pytest.approx(float(sst[int(np.flatnonzero(months == 7)[0]), j, i]))
    got = compute_map(ds, Query("x", "sst", start="6", end="8")).sel(lat=0, lon=-140)
    keep = (months >= 6) & (months <= 8)
    assert float(got) == pytest.approx(float(sst[keep, j, i].mean()), rel=1e-6)


def test_unreadable_since_units_keep_numbers_and_missing_times_are_refused(tmp_path):
    from data_catalog import DatasetOpenError

    raw = _write(tmp_path / "l.nc", np.arange(4.0), {"units": "days since launch"})
    ds = open_dataset(str(tmp_path / "l.nc"))
    assert ds.attrs[TIME_KIND_ATTR] == "numeric"
    assert "not dates" in ds["time"].attrs["gridscope_time_note"]
    np.testing.assert_array_equal(_map(ds, time="2"), raw[2])
    _write(tmp_path / "n.nc", np.array([0.0, np.nan, 2.0]), {"units": "days since nowhere"})
    with pytest.raises(DatasetOpenError, match="n.nc: cannot decode time axis"):
        open_dataset(str(tmp_path / "n.nc"))
