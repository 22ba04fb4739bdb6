"""Scientists' files of every family, checked against numpy on the raw file.

Each test writes a small realistic file (odd dtypes, time axes or grids), opens it with
gridscope and compares the answer with a brute-force computation that does not use
gridscope. They guard against silent wrong answers that tests on one family hid.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from data_catalog import open_dataset
from data_catalog.grid import grid_of
from pipelines import compute_map, compute_series
from pipelines.query import Query

R = 6371008.8
LAT = np.arange(-87.5, 90.0, 5.0)
LON = np.arange(-177.5, 180.0, 5.0)


def _regular(path, values, time, time_attrs, dims=("time", "lat", "lon")) -> None:
    xr.Dataset(
        {"t": (dims, values, {"units": "K"})},
        coords={
            "time": ("time", np.asarray(time, dtype="f8"), time_attrs),
            "lat": ("lat", LAT, {"units": "degrees_north"}),
            "lon": ("lon", LON, {"units": "degrees_east"}),
        },
    ).to_zarr(path, mode="w")


def _band_area(lat: np.ndarray) -> np.ndarray:
    """Areas of 5x5-degree cells centred at ``lat`` (exact lat-lon rectangles)."""
    s, n = np.radians(lat - 2.5), np.radians(np.minimum(lat + 2.5, 90.0))
    return R**2 * np.radians(5.0) * (np.sin(n) - np.sin(s))


def test_float16_mean_over_many_steps_is_not_inf(tmp_path):
    # 400 daily steps near 280 K: a float16 sum overflows (65504) and the mean was inf
    rng = np.random.default_rng(0)
    values = (280 + rng.normal(0, 1, (400, LAT.size, LON.size))).astype("f2")
    _regular(tmp_path / "f16.zarr", values, np.arange(400), {"units": "days since 2000-01-01"})
    ds = open_dataset(str(tmp_path / "f16.zarr"))
    for agg, reduce in (("mean", np.mean), ("std", np.std)):
        got = compute_map(ds, Query(dataset="x", var="t", agg=agg)).values
        want = reduce(values.astype("f8"), axis=0)
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_descending_time_axis_ranges_select_the_named_steps(tmp_path):
    # a file written newest first: a range from 2000-01-05 averaged the whole record
    rng = np.random.default_rng(1)
    values = rng.normal(280, 10, (20, LAT.size, LON.size)).astype("f4")
    days = np.arange(20.0)[::-1]
    _regular(tmp_path / "desc.zarr", values, days, {"units": "days since 2000-01-01"})
    ds = open_dataset(str(tmp_path / "desc.zarr"))
    got = compute_map(ds, Query(dataset="x", var="t", start="2000-01-05")).values
    np.testing.assert_allclose(got, values[days >= 4].mean(axis=0), rtol=1e-5)
    series = compute_series(
        ds, Query(dataset="x", var="t", point=(2.5, 2.5), start="2000-01-03", end="2000-01-07")
    )
    want = values[:, LAT == 2.5, LON == 2.5][:, 0]
    keep = (days >= 2) & (days <= 6)
    np.testing.assert_allclose(series.values, want[keep][np.argsort(days[keep])], rtol=1e-6)


def _point_cloud(tmp_path, radians: bool):
    """The centres of a 5-degree lat-lon grid as a point cloud (CAM-SE / MPAS-like)."""
    lon, lat = np.meshgrid(LON % 360, LAT)
    rng = np.random.default_rng(2)
    values = rng.normal(280, 10, (3, lat.size)).astype("f4")
    conv = np.radians if radians else (lambda v: v)
    units = "radians" if radians else None
    xr.Dataset(
        {
            "TS": (("time", "ncol"), values, {"units": "K"}),
            "lonCell" if radians else "lon": (
                "ncol",
                conv(lon.ravel()),
                {"units": units or "degrees_east"},
            ),
            "latCell" if radians else "lat": (
                "ncol",
                conv(lat.ravel()),
                {"units": units or "degrees_north"},
            ),
        },
        coords={"time": ("time", np.arange(3.0), {"units": "days since 2000-01-01"})},
    ).to_netcdf(tmp_path / "cloud.nc")
    return open_dataset(str(tmp_path / "cloud.nc")), values, lon.ravel(), lat.ravel()


@pytest.mark.parametrize("radians", [False, True])
def test_global_point_cloud_polar_box_mean_and_pole_point(tmp_path, radians):
    # the Voronoi cells of a latitude row near a pole are thin: they were capped at 3
    # hexagons of the neighbour spacing (55% too small), and a point at 89N was refused
    ds, values, lon, lat = _point_cloud(tmp_path, radians)
    area = _band_area(lat)  # a global cloud on a lat-lon lattice: Voronoi = the rectangles
    np.testing.assert_allclose(grid_of(ds).area.sum(), 4 * np.pi * R**2, rtol=1e-6)
    inside = lat >= 65
    got = compute_series(ds, Query(dataset="x", var="TS", bbox=(-180, 65, 180, 90))).values
    want = (values[:, inside] * area[inside]).sum(1) / area[inside].sum()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got = compute_series(ds, Query(dataset="x", var="TS", point=(1.0, 89.9))).values
    k = np.flatnonzero((lat == 87.5) & (lon % 360 == 2.5))[0]
    np.testing.assert_allclose(got, values[:, k])


def test_mesh_point_near_pole_is_inside_the_cell_touching_it(tmp_path):
    # quads of a lat-lon grid as a SCRIP file, the polar row's quads meet at the pole:
    # a point at 89.9N is inside them (it was refused as "outside this grid's cells"
    # when only the square root of the cell's area was taken as its size)
    lone = np.arange(-180.0, 180.1, 5.0)
    late = np.array([80.0, 85.0, 90.0])
    cl, ca, cx, cy = [], [], [], []
    for j in range(late.size - 1):
        for i in range(lone.size - 1):
            cl.append([lone[i], lone[i + 1], lone[i + 1], lone[i]])
            ca.append([late[j], late[j], late[j + 1], late[j + 1]])
            cx.append(lone[i] + 2.5)
            cy.append(late[j] + 2.5)
    n = len(cx)
    values = np.arange(2 * n, dtype="f4").reshape(2, n)
    xr.Dataset(
        {
            "v": (("time", "grid_size"), values, {"units": "K"}),
            "grid_center_lon": ("grid_size", np.array(cx), {"units": "degrees"}),
            "grid_center_lat": ("grid_size", np.array(cy), {"units": "degrees"}),
            "grid_corner_lon": (("grid_size", "grid_corners"), np.array(cl), {"units": "degrees"}),
            "grid_corner_lat": (("grid_size", "grid_corners"), np.array(ca), {"units": "degrees"}),
            "grid_imask": ("grid_size", np.ones(n, "i4")),
        },
        coords={"time": ("time", np.arange(2.0), {"units": "days since 2000-01-01"})},
    ).to_netcdf(tmp_path / "cap.nc")
    ds = open_dataset(str(tmp_path / "cap.nc"))
    assert list(ds.data_vars) == ["v"]  # SCRIP's grid_imask describes the grid
    got = compute_series(ds, Query(dataset="x", var="v", point=(11.0, 89.9))).values
    k = int(np.argmin(np.abs(np.array(cx) - 12.5) + np.abs(np.array(cy) - 87.5)))
    np.testing.assert_allclose(got, values[:, k])
    with pytest.raises(Exception, match="outside"):
        compute_series(ds, Query(dataset="x", var="v", point=(10.0, 20.0)))


def _snippet_field(tmp_path, query) -> np.ndarray:
    """Run the dashboard's "show code" snippet in a fresh Python and return its field."""
    import subprocess
    import sys

    from app.exports import code_snippet

    out = tmp_path / "field.npy"
    code = "import matplotlib\nmatplotlib.use('Agg')\n" + code_snippet(query)
    code += f"import numpy\nnumpy.save({str(out)!r}, field.values)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(out)


def test_show_code_snippet_runs_on_an_unstructured_grid(tmp_path):
    # the snippet called field.plot(cmap=...) which fails on a (cell,) field (a line plot)
    ds, values, lon, lat = _point_cloud(tmp_path, radians=False)
    del ds
    query = Query(dataset=str(tmp_path / "cloud.nc"), var="TS", agg="max")
    got = _snippet_field(tmp_path, query)
    np.testing.assert_allclose(np.sort(got), np.sort(values.max(axis=0)))


def test_show_code_snippet_on_a_numbered_step_axis(tmp_path):
    # a 'timestep' axis without units: the snippet's --time 3 is the step valued 3
    rng = np.random.default_rng(3)
    values = rng.normal(280, 10, (6, LAT.size, LON.size)).astype("f4")
    _regular(tmp_path / "steps.zarr", values, np.arange(1.0, 7.0), {"long_name": "timestep"})
    got = _snippet_field(tmp_path, Query(dataset=str(tmp_path / "steps.zarr"), var="t", time="3"))
    np.testing.assert_allclose(got, values[2])


def _rotated_file(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A CF rotated-pole file (pole at 32.7N 151.3W); returns values, lon, lat, area."""
    plat, plon = 32.7, -151.3
    rlon, rlat = np.arange(-20.0, 20.1, 2.0), np.arange(-15.0, 15.1, 2.0)
    rng = np.random.default_rng(4)
    values = rng.normal(280, 10, (3, rlat.size, rlon.size)).astype("f4")
    xr.Dataset(
        {
            "tas": (("time", "rlat", "rlon"), values, {"units": "K", "grid_mapping": "rp"}),
            "rp": ((), np.int32(0), {
                "grid_mapping_name": "rotated_latitude_longitude",
                "grid_north_pole_latitude": plat, "grid_north_pole_longitude": plon,
            }),
        },
        coords={
            "time": ("time", np.arange(3.0), {"units": "days since 2000-01-01"}),
            "rlat": ("rlat", rlat, {"standard_name": "grid_latitude", "units": "degrees"}),
            "rlon": ("rlon", rlon, {"standard_name": "grid_longitude", "units": "degrees"}),
        },
    ).to_netcdf(path)  # fmt: skip
    x, y = np.meshgrid(np.radians(rlon), np.radians(rlat))
    pl, po = np.radians(plat), np.radians(plon)
    lat = np.degrees(np.arcsin(np.sin(y) * np.sin(pl) + np.cos(y) * np.cos(x) * np.cos(pl)))
    lon = (
        np.degrees(
            np.arctan2(
                np.cos(y) * np.sin(x), np.sin(pl) * np.cos(y) * np.cos(x) - np.cos(pl) * np.sin(y)
            )
            + po
        )
        - 180.0
    )
    lon = (lon + 180.0) % 360.0 - 180.0
    s, n = np.radians(rlat - 1.0), np.radians(rlat + 1.0)
    area = np.broadcast_to((R**2 * np.radians(2.0) * (np.sin(n) - np.sin(s)))[:, None], lon.shape)
    return values, lon, lat, area


def test_api_map_nc_on_a_rotated_grid_keeps_its_grid_mapping_and_bounds(tmp_path):
    # map.nc wrote grid_mapping="rp" with no "rp" variable and no cell bounds (the CLI's
    # export has both): a CF reader could not place the cells
    import asyncio

    from app.answer_cache import AnswerCache
    from app.api import answers
    from app.api.params import parse_params
    from app.sources import DatasetSources

    values, lon, lat, area = _rotated_file(tmp_path / "rot.nc")
    ds = open_dataset(str(tmp_path / "rot.nc"))
    box = (0.0, 45.0, 30.0, 60.0)
    inside = (lon >= 0) & (lon <= 30) & (lat >= 45) & (lat <= 60)
    got = compute_series(ds, Query(dataset="x", var="tas", bbox=box)).values
    want = (values[:, inside] * area[inside]).sum(1) / area[inside].sum()
    np.testing.assert_allclose(got, want, rtol=1e-5)

    ctx = answers.ApiContext(
        sources=DatasetSources.from_datasets({"g": ds}), cache=AnswerCache(2**22)
    )
    query = Query(dataset="g", var="tas", agg="max", bbox=box)
    body = asyncio.run(answers.map_answer(ctx, "nc", parse_params(query.to_query_string())))
    (tmp_path / "map.nc").write_bytes(body)
    with xr.open_dataset(tmp_path / "map.nc") as out:
        assert out["tas"].attrs["grid_mapping"] in out.variables
        mapping = out[out["tas"].attrs["grid_mapping"]].attrs
        assert mapping["grid_mapping_name"] == "rotated_latitude_longitude"
        assert {"lon_bounds", "lat_bounds"} <= set(out.variables)
        got_lon, got_lat, got = (out[n].values.ravel() for n in ("lon", "lat", "tas"))
    # every cell of the box, once, with numpy's maximum; cells outside it masked
    key = {
        (round(a, 6), round(b, 6)): k
        for k, (a, b) in enumerate(zip(lon.ravel(), lat.ravel(), strict=True))
    }
    index = np.array(
        [key[(round(a, 6), round(b, 6))] for a, b in zip(got_lon, got_lat, strict=True)]
    )
    want = np.where(inside.ravel()[index], values.max(0).ravel()[index], np.nan)
    np.testing.assert_allclose(got, want)
    assert set(index[inside.ravel()[index]]) == set(np.flatnonzero(inside))


@pytest.mark.parametrize("packed", [False, True])
def test_values_outside_the_cf_valid_range_are_missing(tmp_path, packed):
    # a -9999 (or a packed 30000) outside the declared valid range entered every mean
    rng = np.random.default_rng(6)
    raw = rng.integers(-10000, 10000, (4, LAT.size, LON.size)).astype("i2")
    raw[:, 5:9, 10:30] = 30000  # beyond valid_max
    raw[1, 20:22, :] = -20000  # below valid_min
    if packed:
        var = xr.Variable(("time", "lat", "lon"), raw, {"scale_factor": 0.01, "add_offset": 280.0,
                          "valid_range": np.array([-10000, 10000], "i2")})  # fmt: skip
        values = raw * 0.01 + 280.0
        bad = (raw < -10000) | (raw > 10000)
    else:
        values = np.where(raw == 30000, -9999.0, raw * 0.01 + 280.0).astype("f4")
        var = xr.Variable(("time", "lat", "lon"), values, {"valid_min": np.float32(100.0),
                          "valid_max": np.float32(400.0)})  # fmt: skip
        bad = (values < 100) | (values > 400)
    xr.Dataset(
        {"t": var},
        coords={
            "time": ("time", np.arange(4.0), {"units": "days since 2000-01-01"}),
            "lat": ("lat", LAT, {"units": "degrees_north"}),
            "lon": ("lon", LON, {"units": "degrees_east"}),
        },
    ).to_netcdf(tmp_path / "vr.nc")
    ds = open_dataset(str(tmp_path / "vr.nc"))
    got = compute_map(ds, Query(dataset="x", var="t", agg="mean")).values
    want = np.nanmean(np.where(bad, np.nan, values), axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    box = (-180.0, -90.0, 180.0, 90.0)
    series = compute_series(ds, Query(dataset="x", var="t", bbox=box)).values
    area = np.broadcast_to(_band_area(LAT)[:, None], values.shape[1:])
    ok = ~bad
    want = (np.where(ok, values, 0) * area).sum((1, 2)) / (ok * area).sum((1, 2))
    np.testing.assert_allclose(series, want, rtol=1e-5)


def test_ugrid_mixed_triangles_and_quads_without_face_coordinates(tmp_path):
    # triangles padded with _FillValue in face_node_connectivity, no face_coordinates:
    # the padded node was counted twice in the face centre (1.7 degrees off), so box
    # membership and nearest cells answered other faces
    lone, late = np.arange(-180.0, 180.1, 10.0), np.arange(-80.0, 80.1, 10.0)
    rng = np.random.default_rng(8)
    nodes: dict[tuple[float, float], int] = {}
    faces = []
    for j in range(late.size - 1):
        for i in range(lone.size - 1):
            west, east = lone[i], (lone[i + 1] if lone[i + 1] < 180 else -180.0)
            ids = [nodes.setdefault(p, len(nodes)) for p in
                   ((west, late[j]), (east, late[j]), (east, late[j + 1]), (west, late[j + 1]))]  # fmt: skip
            if rng.random() < 0.5:
                faces.append(ids)
            else:
                faces += [[ids[0], ids[1], ids[2], -1], [ids[0], ids[2], ids[3], -1]]
    conn, xy = np.array(faces), np.array(list(nodes))
    values = rng.normal(280, 10, (2, len(faces))).astype("f4")
    xr.Dataset(
        {
            "v": (("time", "nFaces"), values, {"mesh": "mesh", "location": "face"}),
            "mesh": ((), np.int32(0), {"cf_role": "mesh_topology", "topology_dimension": 2,
                     "node_coordinates": "nx ny", "face_node_connectivity": "fnc"}),
            "fnc": (("nFaces", "nMax"), np.where(conn < 0, -999, conn + 1).astype("i4"),
                    {"cf_role": "face_node_connectivity", "start_index": 1, "_FillValue": np.int32(-999)}),
        },
        coords={
            "time": ("time", [0.0, 1.0], {"units": "days since 2000-01-01"}),
            "nx": ("nNodes", xy[:, 0], {"standard_name": "longitude", "units": "degrees_east"}),
            "ny": ("nNodes", xy[:, 1], {"standard_name": "latitude", "units": "degrees_north"}),
        },
    ).to_netcdf(tmp_path / "mixed.nc")  # fmt: skip
    ds = open_dataset(str(tmp_path / "mixed.nc"))
    # each face's centre: the normalised mean of its own nodes' unit vectors
    centre = np.zeros((len(faces), 3))
    for k, face in enumerate(faces):
        lo, la = np.radians(xy[[n for n in face if n >= 0]].T)
        centre[k] = np.stack(
            [np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], -1
        ).mean(0)
    lat = np.degrees(np.arcsin(centre[:, 2] / np.linalg.norm(centre, axis=1)))
    lon = np.degrees(np.arctan2(centre[:, 1], centre[:, 0]))
    grid = grid_of(ds)
    np.testing.assert_allclose(grid.lat, lat, atol=1e-9)
    np.testing.assert_allclose(np.cos(np.radians(grid.lon - lon)), 1.0, atol=1e-12)
    # a point near a triangle's centre answers that triangle
    k = len(faces) // 2 + 1
    got = compute_series(ds, Query(dataset="x", var="v", point=(lon[k], lat[k]))).values
    np.testing.assert_allclose(got, values[:, k])


def test_time_dimension_without_a_coordinate_mpas_and_wrf(tmp_path):
    # MPAS: Time has no coordinate (dates in xtime characters); WRF: the dates are XTIME
    # on Time. Both were "no time axis": no series, and a map kept every step
    rng = np.random.default_rng(10)
    lon, lat = np.meshgrid(LON % 360, LAT)
    values = rng.normal(280, 10, (3, lon.size)).astype("f4")
    xr.Dataset(
        {
            "temperature": (("Time", "nCells"), values, {"units": "K"}),
            "lonCell": ("nCells", np.radians(lon.ravel()), {"units": "radians"}),
            "latCell": ("nCells", np.radians(lat.ravel()), {"units": "radians"}),
            "xtime": (("Time", "StrLen"), np.array([list(f"2000-01-0{d}_00:00:00") for d in (1, 2, 3)], "S1")),
        }
    ).to_netcdf(tmp_path / "mpas.nc")  # fmt: skip
    ds = open_dataset(str(tmp_path / "mpas.nc"))
    k = np.flatnonzero((lon.ravel() == 12.5) & (lat.ravel() == 12.5))[0]
    got = compute_series(ds, Query(dataset="x", var="temperature", point=(12.5, 12.5))).values
    np.testing.assert_allclose(got, values[:, k])
    field = compute_map(ds, Query(dataset="x", var="temperature", time="1"))
    assert field.dims == ("cell",)
    np.testing.assert_allclose(np.sort(field.values), np.sort(values[1]))

    x, y = np.meshgrid(np.arange(12.0), np.arange(10.0))
    wlon, wlat = -100.0 + x * 0.5 + y * 0.1, 40.0 + y * 0.5 - x * 0.05  # a skewed 2-D grid
    t2 = rng.normal(280, 10, (3, *x.shape)).astype("f4")
    xr.Dataset(
        {
            "T2": (("Time", "south_north", "west_east"), t2, {"units": "K", "coordinates": "XLONG XLAT"}),
            "XLAT": (("Time", "south_north", "west_east"), np.broadcast_to(wlat, t2.shape), {"units": "degree_north"}),
            "XLONG": (("Time", "south_north", "west_east"), np.broadcast_to(wlon, t2.shape), {"units": "degree_east"}),
            "XTIME": ("Time", [0.0, 60.0, 120.0], {"units": "minutes since 2000-01-01 00:00:00"}),
        }
    ).to_netcdf(tmp_path / "wrf.nc")  # fmt: skip
    ds = open_dataset(str(tmp_path / "wrf.nc"))
    field = compute_map(ds, Query(dataset="x", var="T2", time="2000-01-01T01"))
    np.testing.assert_allclose(field.values, t2[1])
    got = compute_series(ds, Query(dataset="x", var="T2", point=(wlon[4, 5], wlat[4, 5]))).values
    np.testing.assert_allclose(got, t2[:, 4, 5])


def test_std_of_a_field_without_time_is_refused_not_the_field(tmp_path):
    # ETOPO-like relief (no time axis): agg=std returned the relief itself, labelled std
    from pipelines.query import QueryError

    relief = np.random.default_rng(11).normal(-2000, 3000, (LAT.size, LON.size)).astype("f4")
    xr.Dataset(
        {"z": (("lat", "lon"), relief, {"units": "m"})},
        coords={"lat": ("lat", LAT, {"units": "degrees_north"}), "lon": ("lon", LON, {"units": "degrees_east"})},
    ).to_netcdf(tmp_path / "relief.nc")  # fmt: skip
    ds = open_dataset(str(tmp_path / "relief.nc"))
    with pytest.raises(QueryError, match="no time axis"):
        compute_map(ds, Query(dataset="x", var="z", agg="std"))
    for agg in ("mean", "min", "max"):
        np.testing.assert_array_equal(
            compute_map(ds, Query(dataset="x", var="z", agg=agg)).values, relief
        )


def test_a_time_axis_with_a_missing_value_is_refused_by_name(tmp_path):
    # the missing step decoded as the reference date: two steps called 2000-01-01
    from data_catalog.errors import DatasetOpenError

    values = np.zeros((3, LAT.size, LON.size), "f4")
    _regular(tmp_path / "gap.zarr", values, [0.0, np.nan, 2.0], {"units": "days since 2000-01-01"})
    with pytest.raises(
        DatasetOpenError, match=r"gap.zarr: cannot decode time axis.*no value at step\(s\) 1 of 3"
    ):
        open_dataset(str(tmp_path / "gap.zarr"))


@pytest.mark.parametrize(
    "lon,lat,message",
    [
        (np.linspace(0.0, 500.0, 10), np.linspace(-80.0, 80.0, 8), "more than one turn"),
        (np.linspace(0.0, 90.0, 10), np.linspace(-95.0, 95.0, 8), "outside -90..90"),
    ],
)
def test_regular_axes_beyond_the_sphere_are_refused(tmp_path, lon, lat, message):
    # 0..500 lost 4 distinct columns as "duplicates" of others; -95..95 opened as it was
    from data_catalog.errors import DatasetOpenError

    xr.Dataset(
        {"v": (("lat", "lon"), np.zeros((lat.size, lon.size), "f4"))},
        coords={"lon": ("lon", lon, {"units": "degrees_east"}), "lat": ("lat", lat, {"units": "degrees_north"})},
    ).to_netcdf(tmp_path / "odd.nc")  # fmt: skip
    with pytest.raises(DatasetOpenError, match=f"odd.nc: .*{message}"):
        open_dataset(str(tmp_path / "odd.nc"))


def test_curvilinear_longitudes_with_an_undeclared_fill_value_are_refused(tmp_path):
    # 9.97e36 at land cells (no _FillValue attribute) wrapped to a made-up longitude
    from data_catalog.errors import DatasetOpenError

    lon = np.tile(np.linspace(0.0, 50.0, 10), (8, 1))
    lat = np.linspace(0.0, 30.0, 8)[:, None] + lon * 0.1
    lon[2:4, 3:5] = 9.96921e36
    xr.Dataset(
        {"v": (("j", "i"), np.zeros(lon.shape, "f4"), {"coordinates": "lon lat"})},
        coords={"lon": (("j", "i"), lon, {"units": "degrees_east"}), "lat": (("j", "i"), lat, {"units": "degrees_north"})},
    ).to_netcdf(tmp_path / "fill.nc")  # fmt: skip
    with pytest.raises(
        DatasetOpenError, match="fill.nc: longitudes lon hold values such as 9.96921e"
    ):
        open_dataset(str(tmp_path / "fill.nc"))
