"""Property tests: random boxes and time ranges on raw layouts match brute force.

The raw grids use the layouts real files have (longitudes 0..360 or 20..380,
latitudes descending); they go through `data_catalog.normalise_dataset` and
`pipelines`, and are compared with a brute force computed on the raw layout.
"""

from __future__ import annotations

import cftime
import numpy as np
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from data_catalog import normalise_dataset
from pipelines import Query, compute_map, compute_series

NLAT, NLON, NTIME = 12, 24, 30


def _raw_dataset(lon0: float, descending: bool, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    lon = lon0 + 7.5 + 15.0 * np.arange(NLON)
    lat = -82.5 + 15.0 * np.arange(NLAT)
    if descending:
        lat = lat[::-1]
    values = rng.normal(10, 3, (NTIME, NLAT, NLON)).astype("float32")
    values[:, rng.random((NLAT, NLON)) < 0.25] = np.nan
    ds = xr.Dataset(
        {"t": (("time", "latitude", "longitude"), values, {"units": "K"})},
        coords={
            "time": (
                "time",
                np.arange(NTIME) * 30.0,
                {"units": "days since 2000-01-01", "calendar": "noleap"},
            ),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
    )
    return ds


def _brute_mask(lon, lat, w, s, e, n):
    out = np.zeros((lat.size, lon.size), bool)
    for j, y in enumerate(lat):
        for i, x in enumerate(lon):
            x180 = ((x + 180.0) % 360.0) - 180.0
            inside_lon = (w <= x180 <= e) if w <= e else (x180 >= w or x180 <= e)
            out[j, i] = inside_lon and s <= y <= n
    return out


_boxes = st.tuples(
    st.floats(-180, 179, allow_nan=False),
    st.floats(-90, 90, allow_nan=False),
    st.floats(-180, 180, allow_nan=False),
    st.floats(-90, 90, allow_nan=False),
).filter(lambda b: b[3] - b[1] >= 16 and ((b[2] - b[0]) % 360) >= 16)


@settings(max_examples=40, deadline=None)
@given(
    box=_boxes,
    lon0=st.sampled_from([0.0, 20.0, -180.0]),
    descending=st.booleans(),
    first=st.integers(0, NTIME - 1),
    length=st.integers(1, NTIME),
    agg=st.sampled_from(["mean", "min", "max", "std"]),
)
def test_box_and_range_match_brute_force(box, lon0, descending, first, length, agg):
    raw = _raw_dataset(lon0, descending, seed=first)
    ds = normalise_dataset(raw.chunk({"time": 7}), "synthetic")
    last = min(first + length, NTIME) - 1
    times = ds.indexes["time"]
    start, end = times[first].strftime("%Y-%m-%d"), times[last].strftime("%Y-%m-%d")
    lon, lat = raw["longitude"].values, raw["latitude"].values
    mask = _brute_mask(lon, lat, *box)
    values = raw["t"].values[first : last + 1]

    got_series = compute_series(ds, Query("s", "t", bbox=box, start=start, end=end)).values
    weights = (np.sin(np.deg2rad(lat + 7.5)) - np.sin(np.deg2rad(lat - 7.5)))[:, None] * np.ones(
        lon.size
    )
    expect_series = []
    for frame in values:
        ok = mask & np.isfinite(frame)
        expect_series.append(
            (frame[ok] * weights[ok]).sum() / weights[ok].sum() if ok.any() else np.nan
        )
    np.testing.assert_allclose(got_series, expect_series, rtol=1e-5)

    got_map = compute_map(ds, Query("s", "t", bbox=box, start=start, end=end, agg=agg))
    expect_map = getattr(np, f"nan{agg}")(values, axis=0)
    # match cells by their coordinates, independent of the normalised ordering
    expect_by_cell = {
        (round(((x + 180) % 360) - 180, 6), round(y, 6)): expect_map[j, i]
        for j, y in enumerate(lat)
        for i, x in enumerate(lon)
        if mask[j, i]
    }
    got_by_cell = {
        (round(((x + 180) % 360) - 180, 6), round(y, 6)): v
        for (y, x), v in np.ndenumerate(got_map.values)
        for y, x in [(got_map["lat"].values[y], got_map["lon"].values[x])]
    }
    assert got_by_cell.keys() == expect_by_cell.keys()
    for key, value in expect_by_cell.items():
        np.testing.assert_allclose(got_by_cell[key], value, rtol=1e-5, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    lon=st.floats(-180, 360, allow_nan=False),
    lat=st.floats(-90, 90, allow_nan=False),
    lon0=st.sampled_from([0.0, 20.0]),
)
def test_point_is_nearest_cell_on_the_sphere_grid(lon, lat, lon0):
    raw = _raw_dataset(lon0, descending=True, seed=1)
    ds = normalise_dataset(raw, "synthetic")
    got = compute_series(ds, Query("s", "t", point=(lon, lat))).values
    xs, ys = raw["longitude"].values, raw["latitude"].values
    dist = np.abs(((xs - lon) + 180) % 360 - 180)
    candidates = np.flatnonzero(dist <= dist.min() + 1e-9)
    jy = np.flatnonzero(np.abs(ys - lat) <= np.abs(ys - lat).min() + 1e-9)
    options = [raw["t"].values[:, j, i] for j in jy for i in candidates]  # ties: either cell
    assert any(np.array_equal(got, o, equal_nan=True) for o in options)


def test_time_labels_are_parsed_in_non_standard_calendars():
    raw = _raw_dataset(0.0, False, seed=3)
    ds = normalise_dataset(raw, "synthetic")
    assert isinstance(ds.indexes["time"], xr.CFTimeIndex)
    got = compute_series(ds, Query("s", "t", point=(7.5, 7.5), start="2000-02", end="2000-03"))
    # noleap: day 60 is 2000-03-02 (no Feb 29), day 90 is 2000-04-01
    dates = cftime.num2date(np.arange(NTIME) * 30.0, "days since 2000-01-01", "noleap")
    expect = [i for i, d in enumerate(dates) if d.month in (2, 3) and d.year == 2000]
    assert expect == [2]
    assert got.sizes["time"] == len(expect)
    np.testing.assert_array_equal(got.values, raw["t"].values[expect, 6, 0])
