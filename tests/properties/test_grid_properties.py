"""Property tests: random boxes on rotated, curvilinear and unstructured grids.

Synthetic raw files of each kind (random rotated poles, a warped curvilinear grid, a
random point set with its own triangle-fan polygons) go through
`data_catalog.normalise_dataset` and `pipelines`; the expected answers are computed here
from the raw arrays: centres from this file's own rotation formula, "in the box" by
centre, area-weighted means with numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_catalog import normalise_dataset
from data_catalog.grid import EARTH_RADIUS_M, grid_of
from pipelines import Query, QueryError, compute_map, compute_series

NTIME = 4


def _rotate(rlon, rlat, pole_lon, pole_lat):
    lam, phi = np.radians(rlon), np.radians(rlat)
    x, y, z = np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)
    theta = np.radians(90.0 - pole_lat)
    x1 = np.cos(theta) * x - np.sin(theta) * z
    z1 = np.sin(theta) * x + np.cos(theta) * z
    lon = np.degrees(np.arctan2(y, x1)) + pole_lon + 180.0
    return (lon + 180.0) % 360.0 - 180.0, np.degrees(np.arcsin(np.clip(z1, -1, 1)))


def _values(rng, shape):
    values = rng.normal(280, 5, (NTIME, *shape)).astype("float32")
    values[:, rng.random(shape) < 0.2] = np.nan
    return values


def _time():
    return ("time", np.arange(NTIME) * 1.0, {"units": "days since 2000-01-01"})


def _rotated(pole_lon, pole_lat, seed):
    rng = np.random.default_rng(seed)
    rlon = np.arange(-30.0, 30.0, 2.0) + 1.0
    rlat = np.arange(-20.0, 20.0, 2.0) + 1.0
    raw = xr.Dataset(
        {
            "t": (("time", "rlat", "rlon"), _values(rng, (rlat.size, rlon.size)),
                  {"grid_mapping": "rp"}),
            "rp": ((), 0, {"grid_mapping_name": "rotated_latitude_longitude",
                           "grid_north_pole_latitude": pole_lat,
                           "grid_north_pole_longitude": pole_lon}),
        },
        coords={
            "time": _time(),
            "rlon": ("rlon", rlon, {"standard_name": "grid_longitude", "units": "degrees"}),
            "rlat": ("rlat", rlat, {"standard_name": "grid_latitude", "units": "degrees"}),
        },
    )  # fmt: skip
    rr, pp = np.meshgrid(rlon, rlat)
    lon, lat = _rotate(rr, pp, pole_lon, pole_lat)
    d = np.radians(2.0)
    area = EARTH_RADIUS_M**2 * d * (np.sin(np.radians(pp + 1)) - np.sin(np.radians(pp - 1)))
    return raw, raw["t"].values, lon, lat, area


def _curvilinear(seed):
    rng = np.random.default_rng(seed)
    ny, nx = 18, 36
    x = (np.arange(nx) + 0.5) * 10.0
    y = -85.0 + (np.arange(ny) + 0.5) * 170.0 / ny
    lon = x[None, :] + 3.0 * np.sin(np.radians(y))[:, None]  # sheared columns, 0..360
    lat = y[:, None] + 2.0 * np.cos(np.radians(x))[None, :]
    areas = rng.uniform(1e10, 2e10, (ny, nx))
    raw = xr.Dataset(
        {
            "t": (("time", "j", "i"), _values(rng, (ny, nx)),
                  {"coordinates": "nav_lon nav_lat", "cell_measures": "area: areacello"}),
            "nav_lon": (("j", "i"), lon, {"standard_name": "longitude"}),
            "nav_lat": (("j", "i"), lat, {"standard_name": "latitude"}),
            "areacello": (("j", "i"), areas, {"units": "m2"}),
        },
        coords={"time": _time()},
    )  # fmt: skip
    return raw, raw["t"].values, (lon + 180) % 360 - 180, lat, areas


def _unstructured(seed):
    rng = np.random.default_rng(seed)
    n = 400
    xyz = rng.normal(size=(n, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    lon = np.arctan2(xyz[:, 1], xyz[:, 0])
    lat = np.arcsin(xyz[:, 2])
    areas = rng.uniform(1e11, 2e11, n)
    raw = xr.Dataset(
        {
            "t": (("time", "ncells"), _values(rng, (n,)), {"cell_measures": "area: cell_area"}),
            "clon": ("ncells", lon, {"standard_name": "longitude", "units": "radian"}),
            "clat": ("ncells", lat, {"standard_name": "latitude", "units": "radian"}),
            "cell_area": ("ncells", areas / EARTH_RADIUS_M**2, {"units": "sr"}),
        },
        coords={"time": _time()},
    )
    return raw, raw["t"].values, np.degrees(lon), np.degrees(lat), areas


def _in_box(lon, lat, box):
    w, s, e, n = box
    width = (e - w) % 360 or (360.0 if e != w else 0.0)
    return (((lon - w) % 360) <= width + 1e-9) & (lat >= s - 1e-9) & (lat <= n + 1e-9)


boxes = st.tuples(
    st.floats(-180, 180),
    st.floats(-90, 90),
    st.floats(-180, 180),
    st.floats(-90, 90),
).map(lambda b: (b[0], min(b[1], b[3]), b[2], max(b[1], b[3])))
polar_or_antimeridian = st.one_of(
    boxes,
    st.tuples(st.floats(120, 179), st.floats(-60, 0), st.floats(-179, -120), st.floats(1, 60)),
    st.tuples(st.just(-180.0), st.floats(50, 85), st.just(180.0), st.just(90.0)),
    st.tuples(st.floats(-180, 180), st.just(-90.0), st.floats(-180, 180), st.floats(-85, -50)),
)
grids = st.one_of(
    st.tuples(st.just("rotated"), st.floats(-180, 180), st.floats(-80, 89), st.integers(0, 99)),
    st.tuples(st.just("curvilinear"), st.just(0.0), st.just(0.0), st.integers(0, 99)),
    st.tuples(st.just("unstructured"), st.just(0.0), st.just(0.0), st.integers(0, 99)),
)


def _make(spec):
    kind, pole_lon, pole_lat, seed = spec
    if kind == "rotated":
        return _rotated(pole_lon, pole_lat, seed)
    return {"curvilinear": _curvilinear, "unstructured": _unstructured}[kind](seed)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=grids, box=polar_or_antimeridian)
def test_box_cells_and_area_mean_match_brute_force(spec, box) -> None:
    raw, values, lon, lat, area = _make(spec)
    ds = normalise_dataset(raw, "synthetic")
    grid = grid_of(ds)
    assert grid.kind == spec[0]
    np.testing.assert_allclose(grid.area, area, rtol=1e-9)
    mask = _in_box(lon, lat, box)
    query = Query(dataset="s", var="t", bbox=box)
    if not mask.any():
        with pytest.raises(QueryError, match="no grid cell centre"):
            compute_series(ds, query)
        return
    # the map keeps exactly the cells whose centre is in the box, with their values
    m = compute_map(ds, query.replace(time="2000-01-02")).values
    mean_map = compute_map(ds, query).values
    expected_cells = np.sort(values[1][mask & np.isfinite(values[1])])
    np.testing.assert_array_equal(np.sort(m[np.isfinite(m)]), expected_cells)
    assert np.isfinite(mean_map).sum() == (mask & np.isfinite(values).any(axis=0)).sum()
    # the area-weighted mean of the box's cells, NaN cells left out
    v = values.reshape(NTIME, -1).astype("f8")
    w = np.where(mask.ravel(), area.ravel(), 0.0)
    ok = np.isfinite(v)
    with np.errstate(invalid="ignore"):
        expected = np.where(ok, v, 0) @ w / (ok @ w)
    got = compute_series(ds, query).values
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(spec=grids, lon=st.floats(-180, 180), lat=st.floats(-90, 90))
def test_point_is_the_nearest_centre_on_the_sphere(spec, lon, lat) -> None:
    raw, values, glon, glat, area = _make(spec)
    ds = normalise_dataset(raw, "synthetic")
    p_lon, p_lat = np.radians(lon), np.radians(lat)
    lam, phi = np.radians(glon), np.radians(glat)
    cos_d = np.sin(phi) * np.sin(p_lat) + np.cos(phi) * np.cos(p_lat) * np.cos(lam - p_lon)
    flat = int(np.argmax(cos_d))
    distance = np.arccos(np.clip(cos_d.flat[flat], -1, 1)) * EARTH_RADIUS_M
    query = Query(dataset="s", var="t", point=(lon, lat))
    # A cell reaches at least the side of a square of its area and at most (its corners
    # lie midway between centres) the distance to its farthest of 8 nearest neighbours.
    c_lon, c_lat = lam.flat[flat], phi.flat[flat]
    to_centre = np.sin(phi) * np.sin(c_lat) + np.cos(phi) * np.cos(c_lat) * np.cos(lam - c_lon)
    neighbours = np.arccos(np.clip(np.sort(to_centre.ravel())[-9:-1], -1, 1)) * EARTH_RADIUS_M
    reach_lo = np.sqrt(area.flat[flat])
    reach_hi = max(reach_lo, float(neighbours.max()))
    if distance > 1.5 * reach_hi:
        with pytest.raises(QueryError, match="outside"):
            compute_series(ds, query)
        return
    if distance > 1.5 * reach_lo:
        return  # near the grid's edge: inside or outside depends on the cell's true shape
    if np.sort(cos_d.ravel())[-2] > cos_d.flat[flat] - 1e-12:
        return  # two centres equally near: either is right
    got = compute_series(ds, query).values
    expected = values.reshape(NTIME, -1)[:, flat]
    np.testing.assert_array_equal(got, expected)
