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


# ---------------------------------------------------------------------------------------
# the fast path against brute force: every pixel, on grids large enough for the bin index


def _xyz(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.deg2rad(lon), np.deg2rad(lat)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _pixel_centres(out: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    px, py = np.meshgrid(out["lon"].values, out["lat"].values)
    return px.ravel(), py.ravel()


def _brute_polygons(
    values: np.ndarray,
    clon: np.ndarray,
    clat: np.ndarray,
    vlon: np.ndarray,
    vlat: np.ndarray,
    out: xr.DataArray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of ``out``: the mean value of the cells whose polygon contains the pixel's
    centre, and whether that centre lies within 1e-7 degree of a polygon edge.

    A cell's polygon is its corners moved to within 180 degrees of its centre and then by
    the multiple of 360 nearest the pixel; the containing cell is among the centres
    nearest the pixel on the sphere (a k-d tree), so each pixel tests 8 polygons with the
    even-odd rule (ray to the east).
    """
    from scipy.spatial import cKDTree

    px, py = _pixel_centres(out)
    _, cand = cKDTree(_xyz(clon, clat)).query(_xyz(px, py), k=8)
    centre = clon[cand][..., None]
    x = centre + ((vlon[cand] - centre + 180.0) % 360.0) - 180.0
    x = x + 360.0 * np.round((px[:, None] - clon[cand]) / 360.0)[..., None]
    y = vlat[cand]
    xa, ya = x, y
    xb, yb = np.roll(x, -1, axis=-1), np.roll(y, -1, axis=-1)
    X, Y = px[:, None, None], py[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        crosses = (ya <= Y) != (yb <= Y)
        xint = xa + (Y - ya) * (xb - xa) / (yb - ya)
        inside = (crosses & (X < xint)).sum(axis=-1) % 2 == 1
        # distance of the pixel centre to each edge segment
        t = np.clip(((X - xa) * (xb - xa) + (Y - ya) * (yb - ya))
                    / ((xb - xa) ** 2 + (yb - ya) ** 2), 0.0, 1.0)  # fmt: skip
        dist = np.hypot(xa + t * (xb - xa) - X, ya + t * (yb - ya) - Y)
    near_edge = (dist < 1e-7).any(axis=(1, 2))
    v = values[cand]
    use = inside & np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(use.any(1), np.where(use, v, 0.0).sum(1) / use.sum(1), np.nan)
    return mean.reshape(out.shape), near_edge.reshape(out.shape)


def _brute_centres(
    values: np.ndarray, lon: np.ndarray, lat: np.ndarray, out: xr.DataArray
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of ``out``: the mean of the finite values whose centre falls in it (a
    longitude in -180..180 as it is, others wrapped, then at every multiple of 360; the
    frame's east and north edges in its last pixels), and the count of centres."""
    h, w = out.shape
    dx = float(out["lon"][1] - out["lon"][0]) if w > 1 else 360.0
    dy = float(out["lat"][1] - out["lat"][0]) if h > 1 else 180.0
    x0, y0 = float(out["lon"][0]) - dx / 2, float(out["lat"][0]) - dy / 2
    x1, y1 = float(out["lon"][-1]) + dx / 2, float(out["lat"][-1]) + dy / 2
    base = np.where((lon >= -180) & (lon < 180), lon, ((lon + 180.0) % 360.0) - 180.0)
    sums, counts = np.zeros(h * w), np.zeros(h * w)
    ok = np.isfinite(values) & (lat >= y0) & (lat <= y1)
    for k in range(-3, 4):
        x = base + 360.0 * k
        sel = ok & (x >= x0) & (x <= x1)
        i = np.minimum(np.floor((x[sel] - x0) * (w / (x1 - x0))).astype(int), w - 1)
        j = np.minimum(np.floor((lat[sel] - y0) * (h / (y1 - y0))).astype(int), h - 1)
        sums += np.bincount(j * w + i, weights=values[sel], minlength=h * w)
        counts += np.bincount(j * w + i, minlength=h * w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).reshape(h, w), counts.reshape(h, w)


def _curvilinear_with_bounds(nx: int, ny: int) -> tuple[xr.DataArray, np.ndarray, np.ndarray]:
    """A global grid whose rows start at 80E (the antimeridian inside every row), rows
    bent north of 40N; corners from the same mapping at half indices."""

    def place(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lon = 80.0 + 360.0 * i / nx
        lat = -78.0 + 156.0 * j / ny
        lat = lat + 4.0 * np.sin(np.deg2rad(2 * lon)) * (lat > 40) * (lat - 40) / 38.0
        return ((lon + 180.0) % 360.0) - 180.0, lat

    j, i = np.meshgrid(np.arange(ny) + 0.5, np.arange(nx) + 0.5, indexing="ij")
    lon, lat = place(i, j)
    cj, ci = np.meshgrid(np.arange(ny + 1.0), np.arange(nx + 1.0), indexing="ij")
    clon, clat = place(ci, cj)

    def quad(e: np.ndarray) -> np.ndarray:
        return np.stack([e[:-1, :-1], e[:-1, 1:], e[1:, 1:], e[1:, :-1]], axis=-1)

    rng = np.random.default_rng(0)
    values = rng.normal(size=lon.shape)  # every cell its own value: a wrong cell shows
    values[rng.random(lon.shape) < 0.05] = np.nan
    return _field_2d(lon, lat, values), quad(clon), quad(clat)


# (frames a little off the grid's own spacing, so few pixel centres sit on cell edges)
VIEWS = [
    ((150.13, 230.37, -40.21, 40.08), (200, 150)),  # across the antimeridian, past 180
    ((-185.07, -160.3, 35.11, 60.2), (160, 160)),  # the bent rows, west of -180
    ((500.03, 530.17, 10.09, 30.3), (120, 90)),  # a turn of the globe further
    ((-20.11, 20.3, -78.53, -60.07), (150, 80)),  # the southern edge of the grid
    ((0.07, 360.07, -90.0, 90.0), (400, 250)),  # whole: cells as large as pixels
]


@pytest.mark.parametrize(("viewport", "screen"), VIEWS)
def test_polygons_equal_brute_force_point_in_cell(viewport, screen) -> None:
    field, blon, blat = _curvilinear_with_bounds(240, 110)  # 26k cells: the bin index
    # a grid's first frame visits every cell, the next ones only those its index finds
    first = rasterize_to_screen(field, viewport, screen, lon_bounds=blon, lat_bounds=blat)
    out = rasterize_to_screen(field, viewport, screen, lon_bounds=blon, lat_bounds=blat)
    assert out.attrs["gridscope_rasterized"] == "polygons"
    np.testing.assert_array_equal(first.values, out.values)
    expected, near_edge = _brute_polygons(field.values.ravel(), field["lon"].values.ravel(),
                                          field["lat"].values.ravel(), blon.reshape(-1, 4),
                                          blat.reshape(-1, 4), out)  # fmt: skip
    assert near_edge.mean() < 0.01
    got = out.values
    same = (np.isnan(got) & np.isnan(expected)) | np.isclose(got, expected, rtol=0, atol=1e-12)
    assert same[~near_edge].all(), f"{(~same & ~near_edge).sum()} pixels differ"
    assert np.isfinite(expected).mean() > 0.5  # the test sees cells


def test_unstructured_triangles_equal_brute_force_point_in_cell() -> None:
    clon, clat, vlon, vlat = _sphere_mesh(12000)  # 24k triangles: the bin index
    values = np.random.default_rng(1).normal(size=clon.size)
    cells = xr.DataArray(values, dims="cell", coords={"lon": ("cell", clon), "lat": ("cell", clat)})
    rasterize_to_screen(cells, None, (10, 5), lon_bounds=vlon, lat_bounds=vlat)  # indexed after
    for viewport, screen in VIEWS[:4]:
        out = rasterize_to_screen(cells, viewport, screen, lon_bounds=vlon, lat_bounds=vlat)
        assert out.attrs["gridscope_rasterized"] == "polygons"
        expected, near_edge = _brute_polygons(values, clon, clat, vlon, vlat, out)
        assert near_edge.mean() < 0.01
        got = out.values
        same = np.isclose(got, expected, rtol=0, atol=1e-12) | (np.isnan(got) & np.isnan(expected))
        assert same[~near_edge].all(), (viewport, (~same & ~near_edge).sum())


def test_cells_smaller_than_pixels_equal_brute_force_centre_means() -> None:
    field, blon, blat = _curvilinear_with_bounds(720, 330)  # 0.5-degree cells
    lon, lat = field["lon"].values.ravel(), field["lat"].values.ravel()
    for viewport, screen in (((0.0, 360.0, -90.0, 90.0), (300, 140)),
                             ((100.0, 250.0, -30.0, 50.0), (120, 60))):  # fmt: skip
        out = rasterize_to_screen(field, viewport, screen, lon_bounds=blon, lat_bounds=blat)
        assert out.shape == screen[::-1]
        expected, counts = _brute_centres(field.values.ravel(), lon, lat, out)
        held = counts > 0
        assert held.mean() > 0.8
        np.testing.assert_allclose(out.values[held], expected[held], rtol=1e-12)


def test_point_cloud_equals_brute_force_centre_means_and_fills_one_pixel_gaps() -> None:
    clon, clat, _, _ = _sphere_mesh(20000)
    values = np.random.default_rng(2).normal(size=clon.size)
    cells = xr.DataArray(values, dims="cell", coords={"lon": ("cell", clon), "lat": ("cell", clat)})
    for viewport in ((170.0, 260.0, -40.0, 40.0), None):
        out = rasterize_to_screen(cells, viewport, (400, 300))
        assert out.attrs["gridscope_rasterized"] == "points"
        expected, counts = _brute_centres(values, clon, clat, out)
        # a canvas of about two centres per pixel
        assert 1.0 <= counts.sum() / counts.size <= 3.0
        held = counts > 0
        np.testing.assert_allclose(out.values[held], expected[held], rtol=1e-12)
        # an empty pixel: the mean of its valid 3x3 neighbours when there are 3 or more
        h, w = expected.shape
        for j, i in zip(*np.nonzero(~held), strict=True):
            block = expected[max(j - 1, 0) : j + 2, max(i - 1, 0) : i + 2]
            ok = np.isfinite(block)
            want = block[ok].mean() if ok.sum() >= 3 else np.nan
            assert np.isclose(out.values[j, i], want, rtol=1e-12, equal_nan=True)


def test_a_cell_over_the_pole_is_drawn_as_the_cap_to_the_pole() -> None:
    clon, clat, vlon, vlat = _sphere_mesh(3000)
    # the triangle containing the north pole (on the sphere: the pole is on the inner
    # side of its three great-circle edges)
    corners = _xyz(vlon, vlat)
    pole = np.array([0.0, 0.0, 1.0])
    sides = [np.einsum("ij,j->i", np.cross(corners[:, k], corners[:, (k + 1) % 3]), pole)
             for k in range(3)]  # fmt: skip
    polar = np.flatnonzero((np.sign(sides) == np.sign(sides[0])).all(axis=0) & (clat > 0))
    assert polar.size == 1
    values = np.arange(clon.size, dtype="float64")
    cells = xr.DataArray(values, dims="cell", coords={"lon": ("cell", clon), "lat": ("cell", clat)})
    out = rasterize_to_screen(cells, (-180.0, 180.0, 80.0, 90.0), (360, 100),
                              lon_bounds=vlon, lat_bounds=vlat)  # fmt: skip
    above = _pixel_lat(out) > vlat[polar].max()
    assert np.all(out.values[above] == values[polar[0]]), "the cap above its corners"
    below = _pixel_lat(out) < vlat[polar].min()
    assert not np.any(out.values[below] == values[polar[0]])


def test_same_shape_other_coordinates_is_another_grid() -> None:
    """What is kept per grid never leaks into another grid of the same shape."""
    field, blon, blat = _curvilinear_with_bounds(240, 110)
    view = (-60.0, 60.0, -30.0, 30.0)
    first = rasterize_to_screen(field, view, (150, 80), lon_bounds=blon, lat_bounds=blat)
    moved = field.assign_coords(lon=field["lon"] + 7.5)  # new arrays, same shape
    out = rasterize_to_screen(moved, view, (150, 80), lon_bounds=blon + 7.5, lat_bounds=blat)
    expected, near_edge = _brute_polygons(field.values.ravel(), moved["lon"].values.ravel(),
                                          field["lat"].values.ravel(),
                                          (blon + 7.5).reshape(-1, 4), blat.reshape(-1, 4), out)  # fmt: skip
    same = np.isclose(out.values, expected, atol=1e-12) | (
        np.isnan(out.values) & np.isnan(expected)
    )
    assert same[~near_edge].all()
    assert not np.allclose(first.values, out.values, equal_nan=True)


def test_grid_frames_bench_runs_on_tiny_grids(tmp_path) -> None:
    """`tests.bench.grid_frames` once on tiny grids so it cannot rot (without hvplot,
    whose import alone takes seconds)."""
    import json

    from tests.bench.grid_frames import main

    out = tmp_path / "frames.json"
    assert main(["--curvilinear", "30x60", "--mesh", "6", "--unstructured", "800", "--no-samples",
                 "--frames", "2", "--no-naive", "--out", str(out)]) == 0  # fmt: skip
    grids = json.loads(out.read_text())["grids"]
    assert set(grids) == {"curvilinear 30x60", "triangle mesh 720", "point cloud 800"}
    for row in grids.values():
        assert row["gridscope x100"]["n"] == 2 and "naive x1" not in row


def test_rotated_grid_random_views_equal_brute_force() -> None:
    """A EURO-CORDEX-like rotated grid with corners from the rotation itself, random views
    (some reaching past 180 or beyond the domain) on the bin index: every pixel as the
    brute-force point-in-cell answer."""
    rlon, rlat = np.arange(-28.0, 18.0, 0.25), np.arange(-23.0, 22.0, 0.25)  # 33k cells
    rl, rp = np.meshgrid(rlon, rlat)
    lon, lat = _rotated_to_geographic(rl, rp, -162.0, 39.25)
    corners = [(-0.125, -0.125), (0.125, -0.125), (0.125, 0.125), (-0.125, 0.125)]
    geo = [_rotated_to_geographic(rl + a, rp + b, -162.0, 39.25) for a, b in corners]
    blon, blat = np.stack([g[0] for g in geo], -1), np.stack([g[1] for g in geo], -1)
    values = np.random.default_rng(3).normal(size=lon.shape)
    field = _field_2d(lon, lat, values)
    rng = np.random.default_rng(4)
    rasterize_to_screen(field, None, (10, 5), lon_bounds=blon, lat_bounds=blat)  # indexed after
    seen = 0
    for _ in range(6):
        w, h = rng.uniform(2.0, 12.0), rng.uniform(2.0, 8.0)
        x0 = rng.uniform(-30.0, 50.0) + 360.0 * rng.integers(-1, 2)
        y0 = rng.uniform(20.0, 75.0 - h)
        screen = (int(w / rng.uniform(0.04, 0.08)), int(h / rng.uniform(0.04, 0.08)))
        out = rasterize_to_screen(field, (x0, x0 + w, y0, y0 + h), screen,
                                  lon_bounds=blon, lat_bounds=blat)  # fmt: skip
        assert out.attrs["gridscope_rasterized"] == "polygons"  # pixels smaller than cells
        expected, near_edge = _brute_polygons(values.ravel(), lon.ravel(), lat.ravel(),
                                              blon.reshape(-1, 4), blat.reshape(-1, 4), out)  # fmt: skip
        got = out.values
        same = np.isclose(got, expected, atol=1e-12) | (np.isnan(got) & np.isnan(expected))
        assert same[~near_edge].all(), ((x0, w, y0, h), (~same & ~near_edge).sum())
        seen += int(np.isfinite(expected).sum())
    assert seen > 10_000  # the views show the domain
