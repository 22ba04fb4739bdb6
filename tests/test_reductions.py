"""Maps and series from `pipelines` against independent numpy brute force.

Every reduction runs on numpy- and dask-backed input (the ``backend`` fixture, as
in xarray's own conftest) and must stay lazy on dask.
"""

from __future__ import annotations

import dask.array
import numpy as np
import pytest

from pipelines import Query, QueryError, compute_map, compute_series
from pipelines.reductions import period_difference
from pipelines.selection import select_time_range
from tests.pipelines_data import make_normalised


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    return request.param


@pytest.fixture
def ds(backend):
    data = make_normalised()
    return data.chunk({"time": 12}) if backend == "dask" else data


def _in_box(lon, lat, w, s, e, n):
    """Brute-force membership: loop over centres, unwrap longitudes by hand."""
    lon_ok = np.zeros(lon.size, bool)
    for i, x in enumerate(lon):
        for shift in (-360.0, 0.0, 360.0):
            xx = x + shift
            if w <= e and w <= xx <= e:
                lon_ok[i] = True
            if w > e and (xx >= w or xx <= e) and -180 <= xx < 180:
                lon_ok[i] = True
    lat_ok = (lat >= s) & (lat <= n)
    return lat_ok[:, None] & lon_ok[None, :]


def _weighted_mean(values, area, mask):
    out = []
    for frame in values:
        ok = mask & np.isfinite(frame)
        out.append(np.nan if not ok.any() else (frame[ok] * area[ok]).sum() / area[ok].sum())
    return np.array(out)


def _lazy(result, backend):
    if backend == "dask":
        assert isinstance(result.data, dask.array.Array), "result must stay lazy"
    return result.values


@pytest.mark.parametrize("agg", ["mean", "min", "max", "std"])
def test_range_map_matches_numpy(ds, backend, agg):
    q = Query("s", "sst", start="1991-03", end="1992-02", agg=agg)
    got = _lazy(compute_map(ds, q), backend)
    raw = make_normalised()
    months = raw.indexes["time"]
    keep = (months >= "1991-03-01") & (months < "1992-03-01")
    assert keep.sum() == 12
    expect = getattr(np, f"nan{agg}")(raw["sst"].values[keep], axis=0)
    np.testing.assert_allclose(got, expect, rtol=1e-5)  # float32 input
    assert compute_map(ds, q).attrs["units"] == "degC"


def test_single_step_map_is_nearest_step(ds, backend):
    got = compute_map(ds, Query("s", "sst", time="1990-03-02"))
    raw = make_normalised()["sst"].values
    np.testing.assert_array_equal(_lazy(got, backend), raw[2])  # 1990-03-15 is nearest


@pytest.mark.parametrize(
    "bbox",
    [
        (-80, 0, -10, 60),
        (170, -30, -170, 30),
        (-10, -40, 10, 40),
        (-180, -90, 180, 90),
        (5, 0, 5, 90),
    ],
)
def test_box_series_is_area_weighted_over_valid_cells(ds, backend, bbox):
    raw = make_normalised()
    got = _lazy(compute_series(ds, Query("s", "sst", bbox=bbox)), backend)
    mask = _in_box(raw.lon.values, raw.lat.values, *bbox)
    assert mask.any()
    expect = _weighted_mean(raw["sst"].values, raw["cell_area"].values, mask)
    np.testing.assert_allclose(got, expect, rtol=1e-6)


def test_box_crossing_antimeridian_map_is_contiguous(ds, backend):
    got = compute_map(ds, Query("s", "sst", bbox=(150, -20, -150, 20), time="1990-01"))
    lon = got["lon"].values
    assert lon[0] > 150 and lon[-1] < 210 and np.all(np.diff(lon) > 0)
    raw = make_normalised()
    mask = _in_box(raw.lon.values, raw.lat.values, 150, -20, -150, 20)
    assert got.size == mask.sum()
    assert np.nansum(_lazy(got, backend)) == pytest.approx(
        np.nansum(raw["sst"].values[0][mask]), rel=1e-6
    )


def test_land_only_box_gives_nan_not_error(backend):
    raw = make_normalised(land_fraction=0.0)
    raw["sst"][:, 0:3, 0:3] = np.nan  # an all-"land" corner
    data = raw.chunk({"time": 12}) if backend == "dask" else raw
    box = (float(raw.lon[0]), float(raw.lat[0]), float(raw.lon[2]), float(raw.lat[2]))
    got = _lazy(compute_series(data, Query("s", "sst", bbox=box)), backend)
    assert np.isnan(got).all()


def test_point_series_is_nearest_cell_across_the_dateline(ds, backend):
    raw = make_normalised()
    got = _lazy(compute_series(ds, Query("s", "sst", point=(359.0, 10.0))), backend)
    ilon = int(np.argmin(np.abs(((raw.lon.values - 359.0) + 180) % 360 - 180)))
    ilat = int(np.argmin(np.abs(raw.lat.values - 10.0)))
    np.testing.assert_array_equal(got, raw["sst"].values[:, ilat, ilon])


def test_point_series_time_range(ds, backend):
    got = compute_series(ds, Query("s", "sst", point=(0, 0), start="1991", end="1991"))
    assert got.sizes["time"] == 12
    assert str(got["time"].values[0])[:7] == "1991-01"


def test_anomaly_against_baseline_climatology(ds, backend):
    raw = make_normalised()
    q = Query("s", "sst", point=(20, -30), baseline_start="1990", baseline_end="1991")
    got = _lazy(compute_series(ds, q), backend)
    ilon = int(np.argmin(np.abs(raw.lon.values - 20)))
    ilat = int(np.argmin(np.abs(raw.lat.values + 30)))
    series = raw["sst"].values[:, ilat, ilon].astype("float64")
    months = raw.indexes["time"].month
    years = raw.indexes["time"].year
    clim = {m: np.nanmean(series[(months == m) & (years <= 1991)]) for m in range(1, 13)}
    expect = series - np.array([clim[m] for m in months])
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)


def test_anomaly_map_of_mean(ds, backend):
    raw = make_normalised()
    q = Query("s", "sst", start="1993", end="1993", baseline_start="1990", baseline_end="1992")
    got = _lazy(compute_map(ds, q), backend)
    values = raw["sst"].values.astype("float64")
    years = raw.indexes["time"].year
    months = raw.indexes["time"].month
    clim = np.stack(
        [np.nanmean(values[(years <= 1992) & (months == m)], axis=0) for m in range(1, 13)]
    )
    expect = np.nanmean(values[years == 1993] - clim[months[years == 1993] - 1], axis=0)
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)


def test_period_difference(ds, backend):
    raw = make_normalised()
    field = ds["sst"]
    got = period_difference(
        select_time_range(field, "1992", "1993"), select_time_range(field, "1990", "1991")
    )
    years = raw.indexes["time"].year
    values = raw["sst"].values
    expect = np.nanmean(values[years >= 1992], axis=0) - np.nanmean(values[years <= 1991], axis=0)
    np.testing.assert_allclose(_lazy(got, backend), expect, rtol=1e-5, atol=1e-5)


def test_level_is_exact_and_a_level_not_there_is_an_error(backend):
    raw = make_normalised(levels=3)  # levels 10, 20, 40 m
    data = raw.chunk({"time": 12}) if backend == "dask" else raw
    got = compute_map(data, Query("s", "sst", time="1990-01", level=40))
    np.testing.assert_array_equal(_lazy(got, backend), raw["sst"].values[0, 2])
    for level in (33, 5000):  # between two levels (never the nearest), outside the axis
        with pytest.raises(QueryError, match="its levels are 10, 20, 40 m") as info:
            compute_map(data, Query("s", "sst", time="1990-01", level=level))
        assert info.value.field == "level"


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        (Query("s", "nope", time="1990-01"), "var", "available: sst"),
        (Query("s", "sst", time="2050-01"), "time", "outside the record"),
        (Query("s", "sst", start="2050", end="2051"), "start", "no time step"),
        (Query("s", "sst", level=10), "level", "no vertical axis"),
        (Query("s", "sst", bbox=(1, 1, 1.5, 1.5)), "bbox", "no grid cell"),
    ],
)
def test_dataset_checks_name_the_field(ds, query, field, words):
    with pytest.raises(QueryError) as info:
        compute_map(ds, query)
    assert info.value.field == field and words in str(info.value)


def test_series_needs_a_region(ds):
    with pytest.raises(QueryError, match="needs a point"):
        compute_series(ds, Query("s", "sst"))
