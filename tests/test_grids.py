"""Every horizontal grid kind on real files, against computations made here.

The expected numbers come from the raw files read with netCDF4 (no xarray, no
gridscope), a rotated-pole -> geographic rotation and a spherical-triangle area written
in this file, each cross-checked once against pyproj.
"""

from __future__ import annotations

import netCDF4
import numpy as np
import pyproj
import pytest
import xarray as xr

from data_catalog import DatasetOpenError, normalise_dataset, open_dataset
from data_catalog.grid import EARTH_RADIUS_M, find_grid, grid_of
from tests.conftest import SAMPLES_DIR

GRIDS = SAMPLES_DIR / "grids"
R = EARTH_RADIUS_M
SPHERE = 4 * np.pi * R**2


# --- independent geometry ----------------------------------------------------------------


def rotated_to_geographic(rlon, rlat, pole_lon: float, pole_lat: float):
    """CF rotated pole (north_pole_grid_longitude 0): rotate about y by the pole's
    colatitude, then about z by ``pole_lon + 180``."""
    lam, phi = np.radians(rlon), np.radians(rlat)
    x, y, z = np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)
    theta = np.radians(90.0 - pole_lat)
    x1 = np.cos(theta) * x - np.sin(theta) * z
    z1 = np.sin(theta) * x + np.cos(theta) * z
    lon = np.degrees(np.arctan2(y, x1)) + pole_lon + 180.0
    lat = np.degrees(np.arcsin(np.clip(z1, -1, 1)))
    return (lon + 180.0) % 360.0 - 180.0, lat


def _xyz(lon, lat):
    lam, phi = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)


def polygon_area(lon_b, lat_b, radius: float = R):
    """Spherical polygon area: a fan of triangles from vertex 0, each by L'Huilier's
    theorem from its great-circle side lengths (convex polygons)."""
    v = _xyz(np.asarray(lon_b, "f8"), np.asarray(lat_b, "f8"))
    total = np.zeros(v.shape[:-2])
    for k in range(1, v.shape[-2] - 1):
        a, b, c = v[..., 0, :], v[..., k, :], v[..., k + 1, :]

        def side(p, q):
            return 2 * np.arcsin(np.clip(np.linalg.norm(p - q, axis=-1) / 2, 0, 1))

        sa, sb, sc = side(b, c), side(a, c), side(a, b)
        s = (sa + sb + sc) / 2
        t = np.tan(s / 2) * np.tan((s - sa) / 2) * np.tan((s - sb) / 2) * np.tan((s - sc) / 2)
        total += 4 * np.arctan(np.sqrt(np.clip(t, 0, None)))
    return total * radius**2


def test_own_geometry_agrees_with_pyproj() -> None:
    rlon = np.array([-28.375, 0.0, 18.155, 5.0])
    rlat = np.array([-23.375, 0.0, 21.835, -3.0])
    lon, lat = rotated_to_geographic(rlon, rlat, -162.0, 39.25)
    crs = pyproj.CRS.from_cf(
        {
            "grid_mapping_name": "rotated_latitude_longitude",
            "grid_north_pole_latitude": 39.25,
            "grid_north_pole_longitude": -162.0,
        }
    )
    plon, plat = pyproj.Transformer.from_crs(crs, crs.source_crs, always_xy=True).transform(
        rlon, rlat
    )
    np.testing.assert_allclose(lon, plon, atol=1e-9)
    np.testing.assert_allclose(lat, plat, atol=1e-9)
    geod = pyproj.Geod(a=R, b=R)
    quads = [([0, 1, 1, 0], [0, 0, 1, 1]), ([170, -170, -170, 170], [60, 60, 70, 70])]
    for lons, lats in quads:
        expected = abs(geod.polygon_area_perimeter(lons, lats)[0])
        assert polygon_area(np.array([lons]), np.array([lats]))[0] == pytest.approx(expected, 1e-9)


# --- raw files ---------------------------------------------------------------------------


def _nc(name: str):
    return netCDF4.Dataset(GRIDS / name)


def test_curvilinear_bipolar_ocean_grid() -> None:
    with _nc("tos_ocean_bipolar_grid.nc") as nc:
        lon = np.array(nc["lon"][:], "f8")
        lat = np.array(nc["lat"][:], "f8")
        lon_b = np.array(nc["lon_bnds"][:], "f8")
        lat_b = np.array(nc["lat_bnds"][:], "f8")
    ds = open_dataset(GRIDS / "tos_ocean_bipolar_grid.nc")
    grid = grid_of(ds)
    assert grid.kind == "curvilinear" and ds.attrs["gridscope_grid"] == "curvilinear"
    assert ds["tos"].dims == ("time", "y", "x") and ds["tos"].attrs["gridscope_grid"]
    np.testing.assert_allclose(grid.lon, (lon + 180) % 360 - 180, atol=1e-9)
    np.testing.assert_allclose(grid.lat, lat)
    assert grid.lon.min() >= -180 and grid.lon.max() < 180
    expected = polygon_area(lon_b, lat_b)
    np.testing.assert_allclose(grid.area, expected, rtol=1e-6)
    # the cells cover the sphere but for the cap south of the grid's southern edge
    cap = 2 * np.pi * R**2 * (1 - np.sin(np.radians(-lat_b.min())))
    assert grid.area.sum() == pytest.approx(SPHERE - cap, rel=2e-3)
    np.testing.assert_allclose(ds["lon_bounds"].values, (lon_b + 180) % 360 - 180, atol=1e-9)


def test_rotated_pole_eur11() -> None:
    with _nc("tas_rotated_grid_EUR11.nc") as nc:
        rlon = np.array(nc["rlon"][:], "f8")
        rlat = np.array(nc["rlat"][:], "f8")
        tas = np.array(nc["tas"][0, 0], "f8")
    ds = open_dataset(GRIDS / "tas_rotated_grid_EUR11.nc")
    grid = grid_of(ds)
    assert grid.kind == "rotated"
    assert grid.grid_mapping["grid_north_pole_latitude"] == 39.25
    np.testing.assert_array_equal(ds["x"].values, rlon)
    np.testing.assert_array_equal(ds["y"].values, rlat)
    rr, pp = np.meshgrid(rlon, rlat)
    lon, lat = rotated_to_geographic(rr, pp, -162.0, 39.25)
    np.testing.assert_allclose(grid.lon, lon, atol=1e-8)
    np.testing.assert_allclose(grid.lat, lat, atol=1e-8)

    # areas: the rotated spacing (a rotation keeps areas), and the transformed corners
    def edges(c):  # midpoints; the outer edges half a step out
        return np.concatenate(
            [[1.5 * c[0] - 0.5 * c[1]], (c[1:] + c[:-1]) / 2, [1.5 * c[-1] - 0.5 * c[-2]]]
        )

    xe, ye = edges(rlon), edges(rlat)
    sines = np.diff(np.sin(np.radians(ye)))
    np.testing.assert_allclose(grid.area, R**2 * np.outer(sines, np.radians(np.diff(xe))), 1e-9)
    corners_lon, corners_lat = rotated_to_geographic(
        rr[..., None] + np.array([-1, 1, 1, -1]) * 0.055,
        pp[..., None] + np.array([-1, -1, 1, 1]) * 0.055,
        -162.0,
        39.25,
    )
    np.testing.assert_allclose(grid.area, polygon_area(corners_lon, corners_lat), rtol=1e-4)
    np.testing.assert_allclose(ds["tas"].isel(time=0, level=0).values, tas)
    # the Alps are in the domain, in the right place
    alps = (lon > 5) & (lon < 12) & (lat > 45) & (lat < 48)
    assert 1000 < alps.sum() < 5000


def test_unstructured_icon_triangles() -> None:
    with _nc("triangular_grid_ICON.nc") as nc:
        clon = np.degrees(np.array(nc["clon"][:], "f8"))
        clat = np.degrees(np.array(nc["clat"][:], "f8"))
        vlon = np.degrees(np.array(nc["clon_vertices"][:], "f8"))
        vlat = np.degrees(np.array(nc["clat_vertices"][:], "f8"))
    raw = xr.open_dataset(GRIDS / "triangular_grid_ICON.nc", decode_times=False)
    grid = find_grid(raw, "icon")
    assert grid.kind == "unstructured" and grid.dims == ("ncells",)
    np.testing.assert_allclose(grid.lon, (clon + 180) % 360 - 180, atol=1e-9)
    np.testing.assert_allclose(grid.lat, clat, atol=1e-12)
    expected = polygon_area(vlon, vlat)
    np.testing.assert_allclose(grid.area, expected, rtol=1e-6)
    assert expected.sum() == pytest.approx(SPHERE, rel=1e-9)  # the mesh covers the sphere


def test_lat_lon_variables_on_other_dims_are_a_regular_grid() -> None:
    with _nc("sstdata_netcdf.nc") as nc:
        lon = np.array(nc["lon"][:], "f8")
        lat = np.array(nc["lat"][:], "f8")
    raw = xr.open_dataset(GRIDS / "sstdata_netcdf.nc", decode_times=False)
    ds = normalise_dataset(raw.drop_vars("time"), "sst")
    assert ds.attrs["gridscope_grid"] == "regular" and ds["sst"].dims[-2:] == ("lat", "lon")
    np.testing.assert_allclose(np.sort(ds["lat"].values), np.sort(lat))
    # 0..360 inclusive: the repeated column is one column
    np.testing.assert_allclose(ds["lon"].values, np.unique((lon + 180) % 360 - 180))


# --- synthetic files of the other families ------------------------------------------------


def _rotated(pole_lat: float, pole_lon: float) -> xr.Dataset:
    rlon = np.arange(-10.0, 10.0, 1.0)
    rlat = np.arange(-5.0, 5.0, 1.0)
    return xr.Dataset(
        {
            "t": (("rlat", "rlon"), np.ones((rlat.size, rlon.size)), {"grid_mapping": "rp"}),
            "rp": (
                (),
                0,
                {
                    "grid_mapping_name": "rotated_latitude_longitude",
                    "grid_north_pole_latitude": pole_lat,
                    "grid_north_pole_longitude": pole_lon,
                },
            ),
        },  # fmt: skip
        coords={
            "rlon": ("rlon", rlon, {"standard_name": "grid_longitude", "units": "degrees"}),
            "rlat": ("rlat", rlat, {"standard_name": "grid_latitude", "units": "degrees"}),
        },
    )


def test_a_pole_at_90n_is_a_regular_grid() -> None:
    ds = normalise_dataset(_rotated(90.0, 180.0), "rot90")
    assert ds.attrs["gridscope_grid"] == "regular"
    np.testing.assert_allclose(ds["lat"].values, np.arange(-5.0, 5.0, 1.0), atol=1e-9)
    np.testing.assert_allclose(ds["lon"].values, np.arange(-10.0, 10.0, 1.0), atol=1e-9)
    # pole longitude 0: the grid sits on the antimeridian (rotated lon 0 is 180E)
    across = normalise_dataset(_rotated(90.0, 0.0), "rot90-180")
    assert across.attrs["gridscope_grid"] == "regular" and across.sizes["lon"] == 20
    sines = np.diff(np.sin(np.radians(np.arange(-5.5, 5.0, 1.0))))
    np.testing.assert_allclose(
        across["cell_area"].values, R**2 * np.radians(1.0) * sines[:, None] * np.ones(20)
    )
    tilted = normalise_dataset(_rotated(40.0, -170.0), "rot40")
    assert tilted.attrs["gridscope_grid"] == "rotated"


def test_projected_lambert_conformal() -> None:
    attrs = {
        "grid_mapping_name": "lambert_conformal_conic",
        "standard_parallel": [30.0, 60.0],
        "longitude_of_central_meridian": 10.0,
        "latitude_of_projection_origin": 50.0,
        "earth_radius": R,
    }
    x = np.arange(-500.0, 500.0, 50.0)  # km
    y = np.arange(-300.0, 300.0, 50.0)
    raw = xr.Dataset(
        {
            "t": (("y", "x"), np.ones((y.size, x.size)), {"grid_mapping": "lcc"}),
            "lcc": ((), 0, attrs),
        },
        coords={
            "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "km"}),
            "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "km"}),
        },
    )
    ds = normalise_dataset(raw, "lcc")
    grid = grid_of(ds)
    assert grid.kind == "projected" and grid.grid_mapping["standard_parallel"] == [30.0, 60.0]
    crs = pyproj.CRS.from_cf(attrs)
    xx, yy = np.meshgrid(x * 1e3, y * 1e3)
    lon, lat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(xx, yy)
    np.testing.assert_allclose(grid.lon, lon, atol=1e-9)
    np.testing.assert_allclose(grid.lat, lat, atol=1e-9)
    # 50 km squares, slightly scaled by the conformal projection away from the parallels
    assert np.all(np.abs(grid.area / 2.5e9 - 1) < 0.1)


def test_pop_like_2d_lat_lon_found_by_units() -> None:
    ny, nx = 6, 8
    lon = np.linspace(0, 350, nx)[None, :] + np.linspace(0, 5, ny)[:, None]
    lat = np.linspace(-60, 60, ny)[:, None] + np.zeros(nx)[None, :]
    raw = xr.Dataset(
        {
            "TEMP": (("nlat", "nlon"), np.ones((ny, nx))),
            # the corner (U) points come first in POP files; the centres are TLONG/TLAT
            "ULONG": (("nlat", "nlon"), lon + 1.0, {"units": "degrees_east"}),
            "ULAT": (("nlat", "nlon"), lat + 1.0, {"units": "degrees_north"}),
            "TLONG": (("nlat", "nlon"), lon, {"units": "degrees_east"}),
            "TLAT": (("nlat", "nlon"), lat, {"units": "degrees_north"}),
        }
    )
    ds = normalise_dataset(raw, "pop")
    grid = grid_of(ds)
    assert grid.kind == "curvilinear" and ds["TEMP"].dims == ("y", "x")
    np.testing.assert_allclose(grid.lon, (lon + 180) % 360 - 180)
    np.testing.assert_allclose(grid.lat, lat)
    assert np.all(grid.area > 0)


def test_wrf_like_time_dependent_2d_lon_lat() -> None:
    ny, nx = 5, 7
    lon = np.linspace(-10, 10, nx)[None, :] + np.linspace(0, 2, ny)[:, None]
    lat = np.linspace(40, 50, ny)[:, None] + np.zeros(nx)[None, :]
    dims = ("Time", "south_north", "west_east")
    raw = xr.Dataset(
        {
            "T2": (dims, np.ones((2, ny, nx))),
            "XLONG": (dims, np.stack([lon, lon]), {"units": "degree_east"}),
            "XLAT": (dims, np.stack([lat, lat]), {"units": "degree_north"}),
        }
    )
    ds = normalise_dataset(raw, "wrf")
    # the bare Time dimension is the time axis (step numbers: no XTIME here)
    assert ds.attrs["gridscope_grid"] == "curvilinear" and ds["T2"].dims == ("time", "y", "x")
    np.testing.assert_allclose(grid_of(ds).lon, lon)


def test_scrip_hexagons_and_a_point_cloud() -> None:
    # SCRIP: squares in radians, padded to 5 corners by repeating the last one
    lon = np.radians(np.array([0.5, 1.5, 2.5]))
    lat = np.radians(np.array([0.5, 0.5, 0.5]))
    west = np.degrees(lon) - 0.5
    corner_lon = np.radians(np.stack([west, west + 1, west + 1, west, west], -1))
    corner_lat = np.radians(np.tile([0.0, 0.0, 1.0, 1.0, 1.0], (3, 1)))
    raw = xr.Dataset(
        {
            "v": (("grid_size",), np.arange(3.0)),
            "grid_center_lon": ("grid_size", lon, {"units": "radians"}),
            "grid_center_lat": ("grid_size", lat, {"units": "radians"}),
            "grid_corner_lon": (("grid_size", "grid_corners"), corner_lon, {"units": "radians"}),
            "grid_corner_lat": (("grid_size", "grid_corners"), corner_lat, {"units": "radians"}),
        }
    )
    ds = normalise_dataset(raw, "scrip")
    grid = grid_of(ds)
    assert grid.kind == "unstructured" and ds["v"].dims == ("cell",)
    np.testing.assert_allclose(grid.lon, [0.5, 1.5, 2.5])
    expected = polygon_area(np.degrees(corner_lon[:, :4]), np.degrees(corner_lat[:, :4]))
    np.testing.assert_allclose(grid.area, expected, rtol=1e-9)
    # a CAM-SE-like global point cloud: Voronoi areas cover the sphere
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(500, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    plon, plat = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])), np.degrees(np.arcsin(xyz[:, 2]))
    cloud = xr.Dataset(
        {"v": (("ncol",), np.ones(500))},
        coords={
            "lon": ("ncol", plon, {"units": "degrees_east"}),
            "lat": ("ncol", plat, {"units": "degrees_north"}),
        },
    )
    grid = grid_of(normalise_dataset(cloud, "camse"))
    assert grid.kind == "unstructured"
    assert grid.area.sum() == pytest.approx(SPHERE, rel=0.05)


def test_ugrid_faces() -> None:
    node_lon = np.array([0.0, 1.0, 1.0, 0.0, 2.0])
    node_lat = np.array([0.0, 0.0, 1.0, 1.0, 0.0])
    faces = np.array([[1, 2, 3, 4], [2, 5, 3, -1]])  # 1-based, second face a triangle
    raw = xr.Dataset(
        {
            "mesh": (
                (),
                0,
                {
                    "cf_role": "mesh_topology",
                    "topology_dimension": 2,
                    "node_coordinates": "node_x node_y",
                    "face_node_connectivity": "faces",
                },
            ),
            "faces": (("nFaces", "nMax"), faces, {"start_index": 1, "_FillValue": -1}),
            "node_x": ("nNodes", node_lon, {"standard_name": "longitude"}),
            "node_y": ("nNodes", node_lat, {"standard_name": "latitude"}),
            "depth": ("nFaces", np.array([5.0, 7.0]), {"mesh": "mesh", "location": "face"}),
        }  # fmt: skip
    )
    grid = grid_of(normalise_dataset(raw, "ugrid"))
    assert grid.kind == "unstructured" and grid.shape == (2,)
    expected = polygon_area(
        np.array([[0, 1, 1, 0], [1, 2, 1, 1]]), np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    )
    np.testing.assert_allclose(grid.area, expected, rtol=1e-9)
    # data on the nodes: the nodes are the cells (a point cloud), the data is kept
    on_nodes = raw.drop_vars("depth").assign(eta=("nNodes", np.arange(5.0), {"location": "node"}))
    ds = normalise_dataset(on_nodes, "ugrid-nodes")
    assert list(ds.data_vars) == ["eta"] and ds["eta"].dims == ("cell",)
    np.testing.assert_allclose(grid_of(ds).lon, node_lon)


def test_an_unknown_grid_gets_one_message_naming_the_file() -> None:
    raw = xr.Dataset({"v": (("a", "b"), np.ones((2, 3)))})
    with pytest.raises(DatasetOpenError) as exc:
        normalise_dataset(raw, "mystery.nc")
    text = str(exc.value)
    assert text.startswith("mystery.nc: no longitude and latitude found")
    assert "2-D longitude/latitude" in text and "\n" not in text


# --- box means, point series and maps on the real files, against brute force ---------------


def _in_box(lon, lat, box):
    w, s, e, n = box
    width = (e - w) % 360 or (360.0 if e != w else 0.0)
    return (((lon - w) % 360) <= width + 1e-9) & (lat >= s - 1e-9) & (lat <= n + 1e-9)


def _brute_box_mean(values, area, mask):
    """values[t, cells...]: area-weighted mean over the box's cells with a value."""
    v = values.reshape(values.shape[0], -1)
    w = np.where(mask.ravel(), area.ravel(), 0.0)
    valid = np.isfinite(v)
    return np.where(valid, v, 0) @ w / (valid @ w)


def _great_circle_nearest(lon, lat, point):
    p_lon, p_lat = np.radians(point)
    lam, phi = np.radians(lon), np.radians(lat)
    hav = (
        np.sin((phi - p_lat) / 2) ** 2
        + np.cos(phi) * np.cos(p_lat) * np.sin((lam - p_lon) / 2) ** 2
    )
    return np.unravel_index(np.argmin(hav), lon.shape)


def _raw_values(name, var):
    with _nc(name) as nc:
        v = nc[var]
        v.set_auto_maskandscale(False)
        values = np.array(v[:], "f8")
        fill = v.getncattr("_FillValue") if "_FillValue" in v.ncattrs() else None
    if fill is not None:
        values[values == np.float32(fill)] = np.nan
    return values


@pytest.fixture(scope="module")
def tos():
    with _nc("tos_ocean_bipolar_grid.nc") as nc:
        lon = np.array(nc["lon"][:], "f8")
        lat = np.array(nc["lat"][:], "f8")
        area = polygon_area(np.array(nc["lon_bnds"][:], "f8"), np.array(nc["lat_bnds"][:], "f8"))
    values = _raw_values("tos_ocean_bipolar_grid.nc", "tos")
    return open_dataset(GRIDS / "tos_ocean_bipolar_grid.nc"), values, lon, lat, area


@pytest.fixture(scope="module")
def eur11():
    with _nc("tas_rotated_grid_EUR11.nc") as nc:
        rr, pp = np.meshgrid(np.array(nc["rlon"][:], "f8"), np.array(nc["rlat"][:], "f8"))
    lon, lat = rotated_to_geographic(rr, pp, -162.0, 39.25)
    values = _raw_values("tas_rotated_grid_EUR11.nc", "tas")[:, 0]
    area = R**2 * np.cos(np.radians(pp)) * np.radians(0.11) ** 2  # nearly exact at 0.11 deg
    return open_dataset(GRIDS / "tas_rotated_grid_EUR11.nc"), values, lon, lat, area


@pytest.fixture(scope="module")
def icon():
    with _nc("triangular_grid_ICON.nc") as nc:
        lon = np.degrees(np.array(nc["clon"][:], "f8"))
        lat = np.degrees(np.array(nc["clat"][:], "f8"))
        vlon = np.degrees(np.array(nc["clon_vertices"][:], "f8"))
        vlat = np.degrees(np.array(nc["clat_vertices"][:], "f8"))
    values = _raw_values("triangular_grid_ICON.nc", "S")[:, 1]  # the second depth
    return (
        open_dataset(GRIDS / "triangular_grid_ICON.nc"),
        values,
        lon,
        lat,
        polygon_area(vlon, vlat),
    )


def _series(ds, var, **kw):
    from pipelines import Query
    from pipelines.planner import plan_series

    return plan_series(ds, Query(dataset="f", var=var, **kw)).compute()


@pytest.mark.parametrize(
    ("box", "ncells_min"),
    [((170, -10, -170, 10), 50), ((-180, 60, 180, 90), 500), ((-70, 20, -10, 60), 100)],
)
def test_bipolar_box_means_incl_antimeridian_and_pole(tos, box, ncells_min) -> None:
    ds, values, lon, lat, area = tos
    mask = _in_box(lon, lat, box)
    assert (mask & np.isfinite(values[0])).sum() >= ncells_min
    got = _series(ds, "tos", bbox=box)
    np.testing.assert_allclose(got.values, _brute_box_mean(values, area, mask), rtol=1e-6)


def test_eur11_alps_box_mean_and_point_series(eur11) -> None:
    ds, values, lon, lat, area = eur11
    box = (5, 45, 12, 48)
    got = _series(ds, "tas", bbox=box)
    expected = _brute_box_mean(values, area, _in_box(lon, lat, box))
    np.testing.assert_allclose(got.values, expected, rtol=1e-6)
    assert 260 < expected[0] < 290  # Alpine near-surface temperature in K, not West Africa's
    for point in [(8.0, 46.5), (-10.0, 35.0), (30.0, 60.0)]:
        i, j = _great_circle_nearest(lon, lat, point)
        got = _series(ds, "tas", point=point)
        np.testing.assert_allclose(got.values, values[:, i, j], rtol=1e-6)


@pytest.mark.parametrize("point", [(-100.0, 40.0), (8.0, 80.0), (120.0, -30.0)])
def test_a_point_outside_the_eur11_domain_is_an_error(eur11, point) -> None:
    from pipelines import QueryError

    with pytest.raises(QueryError, match="outside this grid's cells"):
        _series(eur11[0], "tas", point=point)


@pytest.mark.parametrize("box", [(-40, -10, -20, 10), (160, -60, -160, -40), (-180, -90, 180, -70)])
def test_icon_box_means_and_points(icon, box) -> None:
    ds, values, lon, lat, area = icon
    got = _series(ds, "S", bbox=box, level=float(ds["level"][1]))
    np.testing.assert_allclose(
        got.values, _brute_box_mean(values, area, _in_box(lon, lat, box)), 1e-6
    )
    for point in [(-30.0, 0.0), (179.9, -45.0)]:
        (k,) = _great_circle_nearest(lon, lat, point)
        got = _series(ds, "S", point=point, level=float(ds["level"][1]))
        np.testing.assert_allclose(got.values, values[:, k], rtol=1e-6)


def test_bipolar_point_series(tos) -> None:
    ds, values, lon, lat, _ = tos
    for point in [(-150.0, 0.0), (179.0, -60.0), (0.0, 89.0)]:
        i, j = _great_circle_nearest(lon, lat, point)
        np.testing.assert_allclose(_series(ds, "tos", point=point).values, values[:, i, j], 1e-6)


def test_sstdata_box_mean(tmp_path) -> None:
    with _nc("sstdata_netcdf.nc") as nc:
        lon = np.array(nc["lon"][:-1], "f8")  # 360 repeats 0
        lat = np.array(nc["lat"][:], "f8")
        v = nc["sst"]
        v.set_auto_maskandscale(False)
        values = np.array(v[:], "f8")[..., :-1]
    edges = np.clip(np.concatenate([[lat[0] - 1], lat + 1]), -90, 90)
    area = np.outer(np.diff(np.sin(np.radians(edges))), np.full(lon.size, np.radians(2.0))) * R**2
    box = (-30, -10, 10, 10)
    lon2, lat2 = np.meshgrid(lon, lat)
    ds = open_dataset(GRIDS / "sstdata_netcdf.nc")
    got = _series(ds, "sst", bbox=box)
    expected = _brute_box_mean(values, area, _in_box(lon2, lat2, box))
    np.testing.assert_allclose(got.values, expected, rtol=1e-6)


def test_native_map_is_masked_to_the_box(tos) -> None:
    from pipelines import Query
    from pipelines.planner import plan_map

    ds, values, lon, lat, _ = tos
    box = (170, -10, -170, 10)
    m = plan_map(ds, Query(dataset="f", var="tos", bbox=box)).compute()
    assert m.dims == ("y", "x") and {"lon", "lat"} <= set(m.coords)
    inside = _in_box(m["lon"].values, m["lat"].values, box)
    assert np.all(np.isnan(m.values[~inside]))
    mask = _in_box(lon, lat, box)
    np.testing.assert_allclose(np.sort(m.values[inside & np.isfinite(m.values)]),
                               np.sort(values[0][mask & np.isfinite(values[0])]))  # fmt: skip


def test_icon_absolute_time_axis_day_as_ymd() -> None:
    with _nc("triangular_grid_ICON.nc") as nc:
        raw = float(nc["time"][0])
    ds = open_dataset(GRIDS / "triangular_grid_ICON.nc")
    whole = int(raw)
    expected = np.datetime64(f"{whole // 10000:04d}-{whole // 100 % 100:02d}-{whole % 100:02d}")
    expected = expected + np.timedelta64(round((raw - whole) * 86400), "s")
    assert ds["time"].values[0] == expected
    stamped = xr.Dataset(
        coords={"time": ("time", [20000229.5], {"units": "day as %Y%m%d.%f"})},
    )
    assert normalise_time(stamped)[0] == np.datetime64("2000-02-29T12:00")


def normalise_time(ds: xr.Dataset) -> np.ndarray:
    from data_catalog.time_axis import decode_time_axis

    return decode_time_axis(ds, "t")[0]["time"].values


# --- exports keep native cells -------------------------------------------------------------


def test_cli_exports_native_map_netcdf_and_alps_series(tmp_path, eur11, tos) -> None:
    from app.cli import main

    ds, values, lon, lat, area = eur11
    out = tmp_path / "alps.csv"
    path = str(GRIDS / "tas_rotated_grid_EUR11.nc")
    assert (
        main(["export", "series", path, "--var", "tas", "--bbox", "5,45,12,48", "-o", str(out)])
        == 0
    )
    rows = out.read_text().splitlines()
    expected = _brute_box_mean(values, area, _in_box(lon, lat, (5, 45, 12, 48)))
    assert rows[0] == "time,tas" and float(rows[1].split(",")[1]) == pytest.approx(
        expected[0], 1e-6
    )

    box = (5, 45, 12, 48)
    nc_out = tmp_path / "alps.nc"
    assert (
        main(["export", "map", path, "--var", "tas", "--bbox", "5,45,12,48", "-o", str(nc_out)])
        == 0
    )
    with netCDF4.Dataset(nc_out) as nc:
        got = np.ma.filled(nc["tas"][:], np.nan).astype("f8")
        glon, glat = np.array(nc["lon"][:]), np.array(nc["lat"][:])
        assert nc["tas"].grid_mapping == "rotated_pole"
        assert nc["rotated_pole"].grid_north_pole_latitude == 39.25
        assert nc["lon_bounds"].shape == (*got.shape, 4)
        x, y = np.array(nc["x"][:]), np.array(nc["y"][:])
    with _nc("tas_rotated_grid_EUR11.nc") as raw:
        i0 = int(np.flatnonzero(np.array(raw["rlat"][:]) == y[0])[0])
        j0 = int(np.flatnonzero(np.array(raw["rlon"][:]) == x[0])[0])
    window = (slice(i0, i0 + got.shape[0]), slice(j0, j0 + got.shape[1]))
    inside = _in_box(lon[window], lat[window], box)
    np.testing.assert_allclose(glon, lon[window], atol=1e-8)
    np.testing.assert_array_equal(np.isnan(got), ~inside)  # outside the box: masked
    np.testing.assert_allclose(got[inside], values[0][window][inside], rtol=1e-6)
    assert inside.sum() == _in_box(lon, lat, box).sum()  # every cell of the box is there

    ds, values, lon, lat, _ = tos
    nc_out = tmp_path / "tos.nc"
    path = str(GRIDS / "tos_ocean_bipolar_grid.nc")
    assert (
        main(
            ["export", "map", path, "--var", "tos", "--bbox", "170,-10,-170,10", "-o", str(nc_out)]
        )
        == 0
    )
    with netCDF4.Dataset(nc_out) as nc:
        got = np.ma.filled(nc["tos"][:], np.nan).astype("f8")
        glon, glat = np.array(nc["lon"][:], "f8"), np.array(nc["lat"][:], "f8")
    assert np.all(_in_box(glon, glat, (170, -10, -170, 10)) | np.isnan(got))
    mask = _in_box(lon, lat, (170, -10, -170, 10))
    assert np.isfinite(got).sum() == (mask & np.isfinite(values[0])).sum()
    np.testing.assert_allclose(
        np.sort(got[np.isfinite(got)]), np.sort(values[0][mask & np.isfinite(values[0])])
    )


def test_cordex_file_with_2d_lon_lat_beside_the_rotated_axes() -> None:
    raw = _rotated(39.25, -162.0)
    rr, pp = np.meshgrid(raw["rlon"].values, raw["rlat"].values)
    lon, lat = rotated_to_geographic(rr, pp, -162.0, 39.25)
    raw = raw.assign_coords(
        lon=(("rlat", "rlon"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        lat=(("rlat", "rlon"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
    )
    raw["t"].attrs["coordinates"] = "lon lat"
    ds = normalise_dataset(raw, "cordex")
    assert ds.attrs["gridscope_grid"] == "rotated"
    assert not {"lon_original", "lat_original"} & set(ds.variables)
    np.testing.assert_allclose(ds["lon"].values, lon, atol=1e-9)
    np.testing.assert_allclose(ds["lat"].values, lat, atol=1e-9)


def test_areas_from_neighbouring_centres() -> None:
    # a curvilinear file that is a 1-degree lat-lon grid: corners midway between centres
    lon1, lat1 = np.arange(0.5, 40, 1.0), np.arange(-59.5, 60, 1.0)
    lon, lat = np.meshgrid(lon1, lat1)
    lon = lon + 1e-4 * np.sin(np.radians(lat))  # not quite separable: stays curvilinear
    raw = xr.Dataset(
        {"v": (("j", "i"), np.ones(lon.shape), {"coordinates": "glon glat"})},
        coords={
            "glon": (("j", "i"), lon, {"units": "degrees_east"}),
            "glat": (("j", "i"), lat, {"units": "degrees_north"}),
        },
    )
    grid = grid_of(normalise_dataset(raw, "curv"))
    exact = R**2 * np.radians(1.0) * np.diff(np.sin(np.radians(np.arange(-60.0, 60.5, 1.0))))
    np.testing.assert_allclose(grid.area, np.broadcast_to(exact[:, None], lon.shape), rtol=2e-4)
    # a regional point cloud: the outer cells' areas stay local (no half-sphere Voronoi cells)
    rng = np.random.default_rng(1)
    plon, plat = rng.uniform(0, 10, 300), rng.uniform(40, 50, 300)
    cloud = xr.Dataset(
        {"v": (("ncol",), np.ones(300))},
        coords={
            "lon": ("ncol", plon, {"units": "degrees_east"}),
            "lat": ("ncol", plat, {"units": "degrees_north"}),
        },
    )
    area = grid_of(normalise_dataset(cloud, "regional")).area
    patch = R**2 * np.radians(10) * (np.sin(np.radians(50)) - np.sin(np.radians(40)))
    assert area.max() < 0.25 * patch and 0.5 * patch < area.sum() < 3 * patch


def test_a_point_outside_a_regional_regular_grid_is_an_error() -> None:
    from pipelines import Query, QueryError, compute_series

    lon, lat = np.arange(0.5, 20, 1.0), np.arange(40.5, 60, 1.0)
    raw = xr.Dataset(
        {"v": (("time", "lat", "lon"), np.arange(2.0 * lat.size * lon.size).reshape(2, 20, 20))},
        coords={
            "time": ("time", [0.0, 1.0], {"units": "days since 2000-01-01"}),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    ds = normalise_dataset(raw, "regional")
    inside = compute_series(ds, Query("r", "v", point=(20.9, 60.9))).values
    np.testing.assert_array_equal(inside, raw["v"].values[:, -1, -1])
    for point in [(-100.0, 50.0), (10.0, 10.0), (22.5, 50.0)]:
        with pytest.raises(QueryError, match="outside this grid's cells"):
            compute_series(ds, Query("r", "v", point=point))


def test_large_point_clouds_get_areas_from_their_spacing(monkeypatch) -> None:
    import data_catalog.grid as grid_module

    k = np.arange(3000) + 0.5  # a quasi-uniform (Fibonacci) global cloud
    lat = np.degrees(np.arcsin(1 - 2 * k / k.size))
    lon = (np.degrees(np.pi * (3 - np.sqrt(5)) * k) + 180) % 360 - 180
    exact = grid_module._point_cloud_areas(lon, lat)  # Voronoi
    assert exact.sum() == pytest.approx(SPHERE, rel=1e-6)
    monkeypatch.setattr(grid_module, "_VORONOI_MAX", 1000)
    estimate = grid_module._point_cloud_areas(lon, lat)
    assert estimate.sum() == pytest.approx(SPHERE, rel=1e-9)
    assert np.median(np.abs(estimate / exact - 1)) < 0.05
    regional = grid_module._point_cloud_areas(lon[lat > 30], lat[lat > 30])
    # the cap north of 30N is a quarter of the sphere: outer cells stay local
    assert 0.25 * SPHERE < regional.sum() < 1.5 * 0.25 * SPHERE


def test_a_viewport_wider_than_a_turn_shows_every_longitude(tos) -> None:
    from pipelines import Query
    from pipelines.planner import plan_map

    coads = open_dataset(SAMPLES_DIR / "coads_climatology.cdf")
    for ds, var, time in [(coads, "SST", "Jan"), (tos[0], "tos", None)]:
        query = Query(dataset="d", var=var, time=time)
        wide = plan_map(ds, query, viewport=(-270.0, 270.0, -90.0, 90.0)).compute()
        whole = plan_map(ds, query, viewport=(-180.0, 180.0, -90.0, 90.0)).compute()
        assert wide.sizes == whole.sizes
        np.testing.assert_array_equal(wide.values, whole.values)


def test_a_separable_2d_lat_lon_grid_is_regular() -> None:
    lon1, lat1 = np.arange(0.0, 360, 10.0), np.arange(-85.0, 90, 10.0)
    lon, lat = np.meshgrid(lon1, lat1)
    raw = xr.Dataset(
        {"v": (("j", "i"), np.ones(lon.shape), {"coordinates": "glon glat"})},
        coords={
            "glon": (("j", "i"), lon, {"units": "degrees_east"}),
            "glat": (("j", "i"), lat, {"units": "degrees_north"}),
        },
    )
    ds = normalise_dataset(raw, "separable")
    assert ds.attrs["gridscope_grid"] == "regular" and ds["v"].dims == ("lat", "lon")
    np.testing.assert_allclose(ds["lon"].values, np.sort((lon1 + 180) % 360 - 180))
    assert float(ds["cell_area"].sum()) == pytest.approx(SPHERE, rel=1e-9)


def test_the_app_answers_series_on_every_grid(tos, eur11, icon) -> None:
    """The dashboard's series path (chunk-aware cost, then the planner) on native cells."""
    from app.answers import series_for
    from pipelines import Query

    for (ds, values, lon, lat, area), var, box, level in [
        (tos, "tos", (170, -10, -170, 10), None),
        (eur11, "tas", (5, 45, 12, 48), None),
        (icon, "S", (-40, -10, -20, 10), float(icon[0]["level"][1])),
    ]:
        got = series_for(ds, Query(dataset="f", var=var, bbox=box, level=level)).values
        np.testing.assert_allclose(got, _brute_box_mean(values, area, _in_box(lon, lat, box)), 1e-6)
        (i,) = np.flatnonzero(_in_box(lon, lat, box).ravel() & np.isfinite(values[0]).ravel())[:1]
        point = (float(lon.ravel()[i]), float(lat.ravel()[i]))
        got = series_for(ds, Query(dataset="f", var=var, point=point, level=level)).values
        np.testing.assert_allclose(got, values.reshape(values.shape[0], -1)[:, i], rtol=1e-6)
