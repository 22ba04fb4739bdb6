"""Fields on rotated, curvilinear and unstructured grids drawn as regular lat-lon pixels.

Each synthetic grid carries a value that is a known function of the geographic position
of its cells (the latitude, or the cosine of the longitude); a pixel of the raster must
then hold that function at the pixel centre, to within the size of one cell. The grids
are built here from first principles (a rotation formula, a tripolar-like seam, a
triangulated sphere), independently of `app.rasterize`.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from app.rasterize import grid_kind, rasterize_to_screen, wrap_longitudes


def _rotated_to_geographic(
    rlon: np.ndarray, rlat: np.ndarray, pole_lon: float, pole_lat: float
) -> tuple[np.ndarray, np.ndarray]:
    """Geographic lon/lat of rotated-pole coordinates (CF rotated_latitude_longitude).

    The spherical rotation written out (checked once against pyproj's ``CRS.from_cf``
    for the EURO-CORDEX pole: rotated (0, 0) is 18E, 50.75N; (-28, -23) is 9.88W, 22.47N).
    """
    rl, rp, p = np.deg2rad(rlon), np.deg2rad(rlat), np.deg2rad(pole_lat)
    lat = np.arcsin(np.sin(rp) * np.sin(p) + np.cos(rp) * np.cos(rl) * np.cos(p))
    lon = np.arctan2(
        np.cos(rp) * np.sin(rl), np.sin(p) * np.cos(rp) * np.cos(rl) - np.cos(p) * np.sin(rp)
    )
    lon = np.rad2deg(lon) + pole_lon + 180.0
    return ((lon + 180.0) % 360.0) - 180.0, np.rad2deg(lat)


def test_rotation_formula_matches_pyproj_once() -> None:
    pyproj = pytest.importorskip("pyproj")
    crs = pyproj.CRS.from_cf({"grid_mapping_name": "rotated_latitude_longitude",
                              "grid_north_pole_latitude": 39.25,
                              "grid_north_pole_longitude": -162.0})  # fmt: skip
    to_geo = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    rlon, rlat = np.array([0.0, -28.0, 17.0]), np.array([0.0, -23.0, 21.0])
    lon, lat = _rotated_to_geographic(rlon, rlat, -162.0, 39.25)
    expected = to_geo.transform(rlon, rlat)
    assert np.allclose(lon, expected[0]) and np.allclose(lat, expected[1])


def _field_2d(lon: np.ndarray, lat: np.ndarray, values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(values, dims=("y", "x"), name="v", attrs={"units": "K"},
                        coords={"lon": (("y", "x"), lon), "lat": (("y", "x"), lat)})  # fmt: skip


def _rotated_grid() -> xr.DataArray:
    """A EURO-CORDEX-like domain: pole at 39.25N, 162W, 0.5-degree rotated cells."""
    rlon = np.arange(-28.0, 18.0, 0.5)
    rlat = np.arange(-23.0, 22.0, 0.5)
    rl, rp = np.meshgrid(rlon, rlat)
    lon, lat = _rotated_to_geographic(rl, rp, -162.0, 39.25)
    return _field_2d(lon, lat, lat.copy())


def _tripolar_like(nx: int = 180, ny: int = 80) -> xr.DataArray:
    """A global grid whose rows start at 80E and wrap (the seam crosses the antimeridian
    inside every row), with rows bending north towards two poles over land."""
    i, j = np.meshgrid(np.arange(nx) + 0.5, np.arange(ny) + 0.5)
    lon = 80.0 + 360.0 * i / nx
    lat = -78.0 + 156.0 * j / ny
    lat = lat + 4.0 * np.sin(np.deg2rad(2 * lon)) * (lat > 40) * (lat - 40) / 38.0
    lon = ((lon + 180.0) % 360.0) - 180.0
    return _field_2d(lon, lat, np.cos(np.deg2rad(lon)))


def _sphere_mesh(n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Triangles of the convex hull of Fibonacci points: centres and corners (lon, lat)."""
    from scipy.spatial import ConvexHull

    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = np.pi * (1 + 5**0.5) * k
    xyz = np.stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z], 1)
    tris = ConvexHull(xyz).simplices
    centre = xyz[tris].mean(axis=1)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)

    def lonlat(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.rad2deg(np.arctan2(p[..., 1], p[..., 0])), np.rad2deg(np.arcsin(p[..., 2]))

    clon, clat = lonlat(centre)
    vlon, vlat = lonlat(xyz[tris])
    return clon, clat, vlon, vlat


def _pixel_lat(out: xr.DataArray) -> np.ndarray:
    return np.broadcast_to(out["lat"].values[:, None], out.shape)


def test_grid_kind_from_coordinates() -> None:
    regular = xr.DataArray(np.zeros((2, 3)), dims=("lat", "lon"),
                           coords={"lat": [0.0, 1.0], "lon": [0.0, 1.0, 2.0]})  # fmt: skip
    assert grid_kind(regular) == "regular"
    assert grid_kind(_rotated_grid()) == "2d"
    clon, clat, _, _ = _sphere_mesh(50)
    cells = xr.DataArray(clat, dims="cell", coords={"lon": ("cell", clon), "lat": ("cell", clat)})
    assert grid_kind(cells) == "unstructured"


def test_rotated_grid_pixels_hold_the_geographic_latitude() -> None:
    field = _rotated_grid()
    out = rasterize_to_screen(field, (-15.0, 35.0, 30.0, 65.0), (250, 175))
    wide = rasterize_to_screen(field, (-60.0, 60.0, 15.0, 75.0), (400, 200))
    assert out.dims == ("lat", "lon") and out.attrs["gridscope_rasterized"] == "polygons"
    assert out.attrs["units"] == "K" and out.name == "v"
    values, lat = out.values, _pixel_lat(out)
    inside = np.isfinite(values)
    assert inside.mean() > 0.5, "the domain covers most of this view"
    # one rotated cell is 0.5 degree; a pixel 0.2: the value at a pixel is the latitude of
    # a cell touching it
    assert np.abs(values[inside] - lat[inside]).max() <= 0.5 + 0.2
    # the domain is over Europe: a pixel over the mid-Atlantic (40N, 45W) has no cell
    far = wide.sel(lon=-45.0, lat=40.0, method="nearest")
    assert np.isnan(float(far))
    # the Alps (46N, 10E) are inside the domain
    assert abs(float(out.sel(lon=10.0, lat=46.0, method="nearest")) - 46.0) <= 0.7


def test_curvilinear_cells_across_the_antimeridian_do_not_smear() -> None:
    field = _tripolar_like()
    for viewport, centre in (((150.0, 230.0, -60.0, 60.0), 0.0), (None, 180.0), (None, 0.0)):
        out = rasterize_to_screen(field, viewport, (320, 160), centre=centre)
        expected = np.broadcast_to(np.cos(np.deg2rad(out["lon"].values))[None, :], out.shape)
        ok = np.isfinite(out.values)
        mid = np.abs(_pixel_lat(out)) < 70
        assert ok[mid].all(), "every pixel of the ocean band has a cell"
        # cells are 2 degrees wide: cos changes by at most 2 deg * pi/180 across one
        err = np.abs(out.values - expected)[ok]
        assert err.max() <= np.deg2rad(2.0) + np.deg2rad(360 / 320), (viewport, centre)


def test_pacific_frame_runs_past_180() -> None:
    field = _tripolar_like()
    out = rasterize_to_screen(field, None, (360, 90), centre=180.0)
    assert out["lon"].values[0] == pytest.approx(0.5) and out["lon"].values[-1] == pytest.approx(
        359.5
    )
    east = out.sel(lon=200.0, lat=0.0, method="nearest")  # 160W
    assert float(east) == pytest.approx(np.cos(np.deg2rad(200.0)), abs=0.04)


def test_unstructured_polygons_and_points() -> None:
    clon, clat, vlon, vlat = _sphere_mesh()
    cells = xr.DataArray(clat, dims="cell", name="v",
                         coords={"lon": ("cell", clon), "lat": ("cell", clat)})  # fmt: skip
    # a triangle of this mesh is about 4 degrees across
    size = np.rad2deg(np.sqrt(4 * np.pi / (2 * len(clon) / 2))) * 1.5
    for viewport, centre in ((None, 0.0), (None, 180.0), ((140.0, 260.0, -50.0, 50.0), 0.0)):
        out = rasterize_to_screen(field := cells, viewport, (300, 150), centre=centre,
                                  lon_bounds=vlon, lat_bounds=vlat)  # fmt: skip
        assert out.attrs["gridscope_rasterized"] == "polygons"
        lat = _pixel_lat(out)
        band = np.abs(lat) < 75
        assert np.isfinite(out.values[band]).all(), "triangles tile the sphere"
        assert np.abs(out.values[band] - lat[band]).max() <= size, (viewport, centre)
    points = rasterize_to_screen(field, None, (300, 150))
    assert points.attrs["gridscope_rasterized"] == "points"
    ok = np.isfinite(points.values)
    assert ok.mean() > 0.8
    assert np.abs(points.values - _pixel_lat(points))[ok].max() <= size + 180 / points.shape[0]


def test_a_pixel_with_no_cell_is_nan() -> None:
    clon, clat, vlon, vlat = _sphere_mesh(500)
    north = clat > 30  # only the northern cells
    cells = xr.DataArray(clat[north], dims="cell",
                         coords={"lon": ("cell", clon[north]), "lat": ("cell", clat[north])})  # fmt: skip
    out = rasterize_to_screen(
        cells, None, (180, 90), lon_bounds=vlon[north], lat_bounds=vlat[north]
    )
    lat = _pixel_lat(out)
    assert np.isnan(out.values[lat < 0]).all()
    assert np.isfinite(out.values[(lat > 45) & (lat < 75)]).all()


def test_wrap_longitudes_repeats_a_global_field() -> None:
    lon = np.arange(-179.0, 180.0, 2.0)
    field = xr.DataArray(np.broadcast_to(lon, (3, lon.size)).copy(), dims=("lat", "lon"),
                         coords={"lat": [0.0, 1.0, 2.0], "lon": lon})  # fmt: skip
    out = wrap_longitudes(field, 0.0, 360.0)
    assert out["lon"].values[0] <= 0.0 and out["lon"].values[-1] >= 360.0
    assert np.allclose(np.diff(out["lon"].values), 2.0)
    # the value of a cell is its own longitude, wrapped: the copy at x holds wrap(x)
    wrapped = ((out["lon"].values + 180.0) % 360.0) - 180.0
    assert np.array_equal(out.values[0], wrapped)
    regional = field.isel(lon=slice(0, 10))  # 179W..161W
    moved = wrap_longitudes(regional, 0.0, 360.0)
    assert np.allclose(moved["lon"].values, regional["lon"].values + 360.0)


def test_cells_smaller_than_pixels_are_averaged_per_pixel() -> None:
    """A fine grid seen whole: each pixel is the mean of the centres in it (no triangles)."""
    field = _tripolar_like(nx=720, ny=320)  # 0.5-degree cells
    out = rasterize_to_screen(field, None, (180, 90))  # 2-degree pixels
    expected = np.broadcast_to(np.cos(np.deg2rad(out["lon"].values))[None, :], out.shape)
    band = np.abs(_pixel_lat(out)) < 70
    assert np.isfinite(out.values[band]).all()
    assert np.abs(out.values - expected)[band].max() <= np.deg2rad(2.0)
    # zoomed in, the same grid is drawn as cells again, across the seam at 180
    zoom = rasterize_to_screen(field, (175.0, 185.0, -5.0, 5.0), (200, 100))
    expected = np.broadcast_to(np.cos(np.deg2rad(zoom["lon"].values))[None, :], zoom.shape)
    assert np.isfinite(zoom.values).all()
    assert np.abs(zoom.values - expected).max() <= np.deg2rad(0.5)
