"""Maps and series of the real NOAA samples against brute force on the raw files.

The expected numbers come straight from the files through netCDF4 (no xarray, no
normalisation): raw longitudes 21..379 / 20..377.5 are wrapped by hand, missing
values masked by hand, times decoded by hand, areas from the latitude spacing.
Both the library (`pipelines`) and the CLI (`gridscope export`) are checked.
"""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys

import netCDF4
import numpy as np
import pytest
import xarray as xr

from data_catalog import open_dataset
from pipelines import Query, compute_map, compute_series
from tests.conftest import SAMPLES_DIR


def _raw(name: str, var: str):
    """(values[t, y, x] with NaN, lon (raw), lat, hours) read by netCDF4."""
    with netCDF4.Dataset(SAMPLES_DIR / name) as nc:
        v = nc.variables[var]
        v.set_auto_maskandscale(False)
        values = np.array(v[:], dtype="float64")
        fill = float(v.getncattr("missing_value"))
        values[values == np.float32(fill)] = np.nan
        dims = v.dimensions
        lon = np.array(nc.variables[dims[-1]][:], dtype="float64")
        lat = np.array(nc.variables[dims[-2]][:], dtype="float64")
        hours = np.array(nc.variables[dims[0]][:], dtype="float64") if len(dims) == 3 else None
    return values, lon, lat, hours


def _box_mask(lon, lat, w, s, e, n):
    wrapped = ((lon + 180.0) % 360.0) - 180.0
    if w <= e:
        lon_ok = (wrapped >= w) & (wrapped <= e)
    else:
        lon_ok = (wrapped >= w) | (wrapped <= e)
    return ((lat >= s) & (lat <= n))[:, None] & lon_ok[None, :]


def _lat_weights(lat):
    step = np.diff(lat).mean()
    south = np.clip(lat - step / 2, -90, 90)
    north = np.clip(lat + step / 2, -90, 90)
    return np.sin(np.deg2rad(north)) - np.sin(np.deg2rad(south))


def _box_mean(values, lon, lat, box):
    mask = _box_mask(lon, lat, *box)
    weights = _lat_weights(lat)[:, None] * np.ones(lon.size)
    out = []
    for frame in values:
        ok = mask & np.isfinite(frame)
        out.append((frame[ok] * weights[ok]).sum() / weights[ok].sum())
    return np.array(out)


def _navy_dates(hours):
    base = dt.datetime(1980, 1, 14, 14)
    return [base + dt.timedelta(hours=float(h)) for h in hours]


@pytest.fixture(scope="module")
def coads():
    return open_dataset("coads")


@pytest.mark.parametrize(
    "box",
    [(-30, -20, 30, 20), (160, -10, -160, 10), (-180, -90, 180, 90), (-80, 0, -10, 60)],
    ids=["crosses-0", "crosses-180", "global", "north-atlantic"],
)
def test_coads_sst_box_means(coads, box):
    values, lon, lat, _ = _raw("coads_climatology.cdf", "SST")
    got = compute_series(coads, Query("coads", "SST", bbox=box)).values
    np.testing.assert_allclose(got, _box_mean(values, lon, lat, box), rtol=1e-5)
    assert got.shape == (12,)


def test_coads_point_series_and_annual_mean_map(coads):
    values, lon, lat, _ = _raw("coads_climatology.cdf", "SST")
    got = compute_series(coads, Query("coads", "SST", point=(-140, 0))).values
    ix = int(np.argmin(np.abs(((lon - (-140)) + 180) % 360 - 180)))
    iy = int(np.argmin(np.abs(lat - 0)))
    np.testing.assert_array_equal(got, values[:, iy, ix].astype("float32"))

    annual = compute_map(coads, Query("coads", "SST"))
    expect = np.nanmean(values, axis=0)
    # raw column of each normalised longitude, found independently
    cols = [int(np.argmin(np.abs(((lon - x) + 180) % 360 - 180))) for x in annual["lon"].values]
    np.testing.assert_allclose(annual.values, expect[:, cols], rtol=1e-5)
    assert np.isnan(annual.values).any() and np.isfinite(annual.values).sum() > 5000  # land is NaN


def test_coads_climatology_time_by_month_name(coads):
    values, lon, lat, _ = _raw("coads_climatology.cdf", "AIRT")
    got = compute_map(coads, Query("coads", "AIRT", time="Mar")).values
    expect = np.nanmean(values[2:3], axis=0)
    cols = [int(np.argmin(np.abs(((lon - x) + 180) % 360 - 180))) for x in coads["lon"].values]
    np.testing.assert_allclose(got, expect[:, cols], rtol=1e-6)
    summer = compute_map(coads, Query("coads", "AIRT", start="Jun", end="Aug", agg="max")).values
    np.testing.assert_allclose(summer, np.nanmax(values[5:8], axis=0)[:, cols], rtol=1e-6)


@pytest.mark.parametrize(("start", "end"), [("1982", "1992"), ("1983-03", "1985-11")])
def test_navy_winds_range_means(start, end):
    values, lon, lat, hours = _raw("monthly_navy_winds.cdf", "UWND")
    dates = _navy_dates(hours)
    lo = dt.datetime(int(start[:4]), int(start[5:7] or 1) if len(start) > 4 else 1, 1)
    end_year, end_month = int(end[:4]), int(end[5:7]) if len(end) > 4 else 12
    hi = dt.datetime(end_year + (end_month == 12), end_month % 12 + 1, 1)
    keep = np.array([lo <= d < hi for d in dates])
    got = compute_map(open_dataset("navy-winds"), Query("navy-winds", "UWND", start=start, end=end))
    expect = np.nanmean(values[keep], axis=0)
    cols = [int(np.argmin(np.abs(((lon - x) + 180) % 360 - 180))) for x in got["lon"].values]
    np.testing.assert_allclose(got.values, expect[:, cols], rtol=1e-5, atol=1e-6)


def test_etopo20_box_mean_has_no_time_and_no_duplicate_column():
    values, lon, lat, _ = _raw("etopo20.cdf", "ROSE")
    ds = open_dataset("etopo20")
    assert ds.sizes["lon"] == 1080
    box = (100, -50, 179.9, 0)
    got = compute_map(ds, Query("etopo20", "ROSE", bbox=box))
    mask = _box_mask(lon[:-1], lat, *box)  # last raw column repeats the first
    assert got.size == mask.sum()
    assert float(got.mean()) == pytest.approx(np.nanmean(values[:, :-1][mask]), rel=1e-6)


def _gridscope(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_cli_exports_match_brute_force(tmp_path, repo_root):
    values, lon, lat, _ = _raw("coads_climatology.cdf", "SST")
    out = tmp_path / "series.csv"
    done = _gridscope(
        "export",
        "series",
        "coads",
        "--var",
        "SST",
        "--bbox",
        "160,-10,-160,10",
        "-o",
        str(out),
        cwd=repo_root,
    )
    assert done.returncode == 0, done.stderr
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time", "SST"]
    got = np.array([float(r[1]) for r in rows[1:]])
    np.testing.assert_allclose(got, _box_mean(values, lon, lat, (160, -10, -160, 10)), rtol=1e-5)

    nc = tmp_path / "map.nc"
    done = _gridscope(
        "export", "map", "navy-winds", "--var", "VWND", "--start", "1984", "--end", "1984", "--agg", "std",
        "--bbox", "-80,0,-10,60", "-o", str(nc), cwd=repo_root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    winds, wlon, wlat, hours = _raw("monthly_navy_winds.cdf", "VWND")
    keep = np.array([d.year == 1984 for d in _navy_dates(hours)])
    mask = _box_mask(wlon, wlat, -80, 0, -10, 60)
    expect = np.nanstd(winds[keep], axis=0)[mask]
    with xr.open_dataset(nc) as written:
        got_map = written["VWND"].values
    assert got_map.size == mask.sum()
    np.testing.assert_allclose(np.sort(got_map.ravel()), np.sort(expect), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["export", "series", "coads", "--var", "SST", "--point", "-140,95", "-o", "x.csv"],
            "point:",
        ),
        (
            ["export", "series", "coads", "--var", "NOPE", "--point", "-140,0", "-o", "x.csv"],
            "available: AIRT",
        ),
        (["export", "map", "coads", "--var", "SST", "--agg", "median", "-o", "x.nc"], "agg:"),
        (
            [
                "export",
                "map",
                "coads",
                "--var",
                "SST",
                "--start",
                "1985",
                "--end",
                "1984",
                "-o",
                "x.nc",
            ],
            "end:",
        ),
        (["export", "map", "coads", "--var", "SST", "-o", "x.txt"], ".nc or .png"),
        (["export", "map", "no-such-dataset", "--var", "SST", "-o", "x.nc"], "no-such-dataset"),
        (["export", "map", "coads", "--var", "SST", "--bbox", "-80,0,-10", "-o", "x.nc"], "bbox:"),
        (["export", "map", "coads", "--var", "SST", "--level", "10", "-o", "x.nc"], "level:"),
        (["export", "series", "coads", "--var", "SST", "-o", "x.csv"], "--point"),
        (["export", "map", "coads", "--var", "SST", "--nonsense", "-o", "x.nc"], "unrecognized"),
    ],
)
def test_cli_bad_input_one_line_message(tmp_path, args, words, repo_root):
    args = [a if not a.startswith("x.") else str(tmp_path / a) for a in args]
    done = _gridscope(*args, cwd=repo_root)
    assert done.returncode == 2
    assert words in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
