"""The rest of the app on every grid kind: permalinks, "show code", the notebook `Explorer`,
exports, public-mode budgets, builds from the dashboard and the message for a grid that
cannot be understood.

The four real NCL sample files (rotated pole EUR-11, MPI-OM bipolar curvilinear with
bounds, ICON triangles, ``sstdata`` with ``lat(latitude)`` / ``lon(longitude)`` and a
"Month" step axis) are read here with netCDF4 and computed on by hand: geographic
centres from this file's own rotation (`tests.test_grids.rotated_to_geographic`, checked
against pyproj there), areas from spherical polygons (`tests.test_grids.polygon_area`),
the rotated grid's area from its regular rotated spacing, box means as area-weighted
means of the cells whose centre is inside, points as the great-circle nearest centre.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import subprocess
import sys
from urllib.parse import urlencode

import netCDF4
import numpy as np
import pytest
import xarray as xr

from app import builds, cluster_health, exports, labels, limits, runtime
from app.limits import Limits
from app.sources import DatasetSources
from app.state import ExplorerState
from data_catalog import DatasetOpenError, open_dataset
from pipelines import Query, compute_map
from tests.conftest import REPO_ROOT
from tests.test_grids import polygon_area, rotated_to_geographic

GRIDS = REPO_ROOT / "data_catalog" / "samples" / "grids"


# --- brute force on the raw files ---------------------------------------------------------
@dataclasses.dataclass
class Raw:
    """One sample variable as cells: ``values[step, cell]`` (NaN missing), centres, areas."""

    path: str  # as a user types it from the repository root (the app's dataset id)
    var: str
    values: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    area: np.ndarray
    shape: tuple[int, ...]  # the native map's shape
    level: float | None
    time: str | None  # a step of the record to view
    box: tuple[float, float, float, float]
    point: tuple[float, float]
    regular: bool = False


def _masked(var: netCDF4.Variable) -> np.ndarray:
    var.set_auto_maskandscale(False)
    values = np.array(var[:], dtype="float64")
    for name in ("_FillValue", "missing_value"):
        if name in var.ncattrs():
            values[values == np.float64(np.float32(var.getncattr(name)))] = np.nan
    if "valid_range" in var.ncattrs():
        lo, hi = (float(v) for v in var.getncattr("valid_range"))
        values[(values < np.float32(lo)) | (values > np.float32(hi))] = np.nan
    return values


def _wrap(lon: np.ndarray) -> np.ndarray:
    return (np.asarray(lon, "f8") + 180.0) % 360.0 - 180.0


def _raw(kind: str) -> Raw:
    if kind == "rotated":
        with netCDF4.Dataset(GRIDS / "tas_rotated_grid_EUR11.nc") as nc:
            values = _masked(nc["tas"])[:, 0]  # (time, rlat, rlon): the one 2 m height
            rlon, rlat = np.array(nc["rlon"][:]), np.array(nc["rlat"][:])
        rr, pp = np.meshgrid(rlon, rlat)
        lon, lat = rotated_to_geographic(rr, pp, -162.0, 39.25)
        area = np.cos(np.radians(pp))  # a rotation keeps areas: the rotated spacing's
        return Raw("data_catalog/samples/grids/tas_rotated_grid_EUR11.nc", "tas",
                   values.reshape(len(values), -1), lon.ravel(), lat.ravel(), area.ravel(),
                   rr.shape, 2.0, None, (5.0, 44.0, 15.0, 50.0), (10.0, 47.0))  # fmt: skip
    if kind == "curvilinear":
        with netCDF4.Dataset(GRIDS / "tos_ocean_bipolar_grid.nc") as nc:
            values = _masked(nc["tos"])
            lon, lat = np.array(nc["lon"][:], "f8"), np.array(nc["lat"][:], "f8")
            area = polygon_area(np.array(nc["lon_bnds"][:]), np.array(nc["lat_bnds"][:]))
        return Raw("data_catalog/samples/grids/tos_ocean_bipolar_grid.nc", "tos",
                   values.reshape(len(values), -1), _wrap(lon).ravel(), lat.ravel(),
                   area.ravel(), lon.shape, None, None, (160.0, -30.0, -150.0, 10.0),
                   (-30.0, 0.0))  # fmt: skip
    if kind == "unstructured":
        with netCDF4.Dataset(GRIDS / "triangular_grid_ICON.nc") as nc:
            values = _masked(nc["S"])[:, 1]  # depth 30 m
            lon, lat = np.degrees(nc["clon"][:]), np.degrees(nc["clat"][:])
            area = polygon_area(np.degrees(nc["clon_vertices"][:]),
                                np.degrees(nc["clat_vertices"][:]))  # fmt: skip
        return Raw("data_catalog/samples/grids/triangular_grid_ICON.nc", "S", values,
                   _wrap(lon), np.asarray(lat, "f8"), area, lon.shape, 30.0, None,
                   (-40.0, -20.0, 20.0, 30.0), (-30.0, 0.0))  # fmt: skip
    with netCDF4.Dataset(GRIDS / "sstdata_netcdf.nc") as nc:
        values = _masked(nc["sst"])
        lon1, lat1 = np.array(nc["lon"][:], "f8"), np.array(nc["lat"][:], "f8")
    # lon 0..360 repeats its first column at 360: each place counted once
    _, first = np.unique(_wrap(lon1), return_index=True)
    values, lon1 = values[:, :, np.sort(first)], lon1[np.sort(first)]
    step = np.diff(lat1).mean()
    band = np.sin(np.radians(np.clip(lat1 + step / 2, -90, 90))) - np.sin(
        np.radians(np.clip(lat1 - step / 2, -90, 90))
    )
    lon, lat = np.meshgrid(_wrap(lon1), lat1)
    area = band[:, None] * np.ones(lon1.size)
    return Raw("data_catalog/samples/grids/sstdata_netcdf.nc", "sst",
               values.reshape(len(values), -1), lon.ravel(), lat.ravel(), area.ravel(),
               lon.shape, None, "3", (-40.0, -20.0, 20.0, 30.0), (-30.0, 0.0),
               regular=True)  # fmt: skip


KINDS = ["rotated", "curvilinear", "unstructured", "regular-lat(latitude)"]


def _step(raw: Raw) -> int:
    return int(raw.time) - 1 if raw.time is not None else 0


def _in_box(lon: np.ndarray, lat: np.ndarray, box) -> np.ndarray:
    w, s, e, n = box
    lon_ok = (lon >= w) & (lon <= e) if w <= e else (lon >= w) | (lon <= e)
    return lon_ok & (lat >= s) & (lat <= n)


def box_series(raw: Raw, box=None) -> np.ndarray:
    inside = _in_box(raw.lon, raw.lat, box or raw.box)
    out = []
    for frame in raw.values:
        ok = inside & np.isfinite(frame)
        out.append((frame[ok] * raw.area[ok]).sum() / raw.area[ok].sum())
    return np.array(out)


def nearest_cell(raw: Raw, point) -> int:
    def xyz(lon, lat):
        lam, phi = np.radians(lon), np.radians(lat)
        return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)

    return int(np.argmax(xyz(raw.lon, raw.lat) @ xyz(*point)))


def native_values(field: xr.DataArray, raw: Raw) -> np.ndarray:
    """``field`` (a native map) in the raw file's cell order: a non-regular grid keeps the
    file's order (its centres checked); a regular one's cells are found by their centres."""
    if not raw.regular:
        np.testing.assert_allclose(_wrap(field["lon"].values).ravel(), raw.lon, atol=1e-6)
        np.testing.assert_allclose(np.ravel(field["lat"].values), raw.lat, atol=1e-6)
        return np.asarray(field.values, "f8").ravel()
    lon, lat = np.meshgrid(field["lon"].values, field["lat"].values)
    index = _raw_index(raw, lon, lat)
    np.testing.assert_array_equal(np.sort(index), np.arange(raw.lon.size))  # each cell once
    out = np.empty(raw.lon.size)
    out[index] = np.ravel(field.transpose("lat", "lon").values)
    return out


def _raw_index(raw: Raw, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The raw cell at each of these centres (they must be cell centres of the file; the
    bipolar grid repeats two columns, whose cells hold the same values)."""
    from scipy.spatial import cKDTree

    def xyz(lo, la):
        lam, phi = np.radians(np.ravel(lo)), np.radians(np.ravel(la))
        return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)

    distance, index = cKDTree(xyz(raw.lon, raw.lat)).query(xyz(lon, lat))
    assert distance.max() < 1e-7, "a cell that is not a centre of the file"
    return index


@pytest.fixture(scope="module", params=KINDS)
def raw(request) -> Raw:
    return _raw(request.param.split("-")[0])


@pytest.fixture(scope="module")
def sources() -> DatasetSources:
    """The four samples under the ids a user gets from ``gridscope serve <path>``."""
    names = ["tas_rotated_grid_EUR11.nc", "tos_ocean_bipolar_grid.nc",
             "triangular_grid_ICON.nc", "sstdata_netcdf.nc"]  # fmt: skip
    opened = {f"data_catalog/samples/grids/{n}": open_dataset(GRIDS / n) for n in names}
    return DatasetSources.from_datasets(opened)


@pytest.fixture(autouse=True)
def _in_process(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    limits.configure(Limits())
    cluster_health.use_client(None)
    yield
    limits.configure(Limits())


def _view(state: ExplorerState, raw: Raw, **region) -> None:
    state.dataset = raw.path
    state.var = raw.var
    if raw.level is not None:
        state.level = raw.level
    if raw.time is not None:
        state.time = raw.time
    state.param.update(**region)


# --- permalinks ---------------------------------------------------------------------------
def test_permalink_reopens_the_same_view(sources, raw) -> None:
    from app.views.results import ViewResults

    for region in (
        {"region": "Custom box", "bbox": raw.box},
        {"region": "Point", "point": raw.point},
    ):
        state = ExplorerState(sources)
        _view(state, raw, **region)
        zoom = {"centre": 180.0, "x_range": (100.0, 250.0), "y_range": (20.0, 70.0)}
        state.param.update(**zoom)  # a Pacific-centred map, zoomed
        params = state.to_url_params()
        fresh = ExplorerState(sources)
        assert fresh.from_url(params) == [], fresh.message
        assert fresh.query == state.query and fresh.to_url_params() == params
        assert {k: getattr(fresh, k) for k in zoom} == zoom
        assert (fresh.level, fresh.time) == (raw.level, state.time)
        results = ViewResults(fresh)
        results.refresh()
        assert results.error == ""
        if "bbox" in region:
            expected = box_series(raw)
        else:
            expected = raw.values[:, nearest_cell(raw, raw.point)]
        np.testing.assert_allclose(results.series.values, expected, rtol=1e-5)


# --- "show code" ----------------------------------------------------------------------------
def test_show_code_reproduces_the_numbers_in_a_fresh_process(sources, tmp_path) -> None:
    """Each grid's snippet, run where a notebook would run it (another folder), gives the
    native map and the box series of the raw file."""
    raws = [_raw(kind.split("-")[0]) for kind in KINDS]
    script = ["import numpy as np"]
    for k, raw in enumerate(raws):
        state = ExplorerState(sources)
        _view(state, raw, region="Custom box", bbox=raw.box)
        script += [exports.code_snippet(state.query, series=state.series_query),
                   f"np.save('map{k}.npy', field.values)", f"np.save('series{k}.npy', series.values)",
                   f"np.save('lon{k}.npy', field['lon'].values)"]  # fmt: skip
    env = {"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", "\n".join(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for k, raw in enumerate(raws):
        field = np.load(tmp_path / f"map{k}.npy")
        lon = np.load(tmp_path / f"lon{k}.npy")
        if raw.regular:  # the map's own longitudes, matched to the raw columns here
            lat1 = raw.lat.reshape(raw.shape)[:, 0]
            cols = [int(np.argmin(np.abs(_wrap(raw.lon.reshape(raw.shape)[0] - x)))) for x in lon]
            expected = raw.values[_step(raw)].reshape(raw.shape)[:, cols]
            assert field.shape == (lat1.size, len(cols))
        else:
            expected = raw.values[_step(raw)].reshape(raw.shape)
            np.testing.assert_allclose(_wrap(lon).ravel(), raw.lon, atol=1e-6)
        np.testing.assert_allclose(field, expected, rtol=1e-6)
        np.testing.assert_allclose(np.load(tmp_path / f"series{k}.npy"), box_series(raw), rtol=1e-5)


# --- the notebook Explorer ------------------------------------------------------------------
def test_explorer_shows_the_map_and_the_box_series(raw) -> None:
    from app.explorer import Explorer

    state = {"var": raw.var, "region": "Custom box", "bbox": raw.box}
    state |= {"level": raw.level} if raw.level is not None else {}
    state |= {"time": raw.time} if raw.time is not None else {}
    ex = Explorer(raw.path, **state)
    assert ex.messages == [] and ex.results.error == ""
    field, series = ex.data()
    np.testing.assert_allclose(native_values(field, raw), raw.values[_step(raw)], rtol=1e-6)
    np.testing.assert_allclose(series.values, box_series(raw), rtol=1e-5)
    np.testing.assert_allclose(ex.results.series.values, box_series(raw), rtol=1e-5)
    # the map it shows: geographic lon/lat; at the point, a value of the cells around it
    shown = ex.results.field
    assert shown is not None and {"lat", "lon"} <= set(shown.dims)
    x, y = raw.point
    lon, lat = shown["lon"].values, shown["lat"].values
    pixel = float(shown.sel(lon=x, lat=y, method="nearest"))
    reach = 2 * max(np.abs(np.diff(lon)).max(), np.abs(np.diff(lat)).max())
    near = (np.abs(_wrap(raw.lon - x)) <= reach) & (np.abs(raw.lat - y) <= reach)
    around = raw.values[_step(raw)][near]
    assert np.nanmin(around) - 1e-4 <= pixel <= np.nanmax(around) + 1e-4
    assert ex.__panel__() is not None


# --- exports ----------------------------------------------------------------------------------
def test_dashboard_exports_keep_native_cells(sources, raw, monkeypatch) -> None:
    """Map netCDF (region only) on the file's own cells with bounds and grid mapping;
    series CSV as brute force; the PNG drawn in geographic longitudes and latitudes."""
    from matplotlib.axes import Axes

    from app.views.dashboard import Dashboard

    state = ExplorerState(sources)
    _view(state, raw, region="Custom box", bbox=raw.box)
    dash = Dashboard(state)
    dash.region_only.value = list(dash.region_only.options)
    with xr.open_dataset(asyncio.run(dash._netcdf()).getvalue()) as nc:
        nc.load()
    da = nc[raw.var]
    if raw.regular:
        lon, lat = np.meshgrid(nc["lon"].values, nc["lat"].values)
        da = da.transpose("lat", "lon")
    else:
        lon, lat = nc["lon"].values, nc["lat"].values
        assert nc["lon_bounds"].shape == lon.shape + (nc["lon_bounds"].shape[-1],)
        corners = nc["lat_bounds"].values  # each kept cell's own corners around it
        assert (corners.min(-1) <= lat + 1e-9).all() and (corners.max(-1) >= lat - 1e-9).all()
    index = _raw_index(raw, lon, lat)
    inside = _in_box(raw.lon[index], raw.lat[index], raw.box)
    expected = np.where(inside, raw.values[_step(raw)][index], np.nan)
    np.testing.assert_allclose(np.ravel(da.values), expected, rtol=1e-6)
    assert inside.sum() == _in_box(raw.lon, raw.lat, raw.box).sum()  # every box cell kept
    if raw.path.endswith("EUR11.nc"):
        mapping = nc[da.attrs["grid_mapping"]].attrs
        assert mapping["grid_mapping_name"] == "rotated_latitude_longitude"
        assert (mapping["grid_north_pole_latitude"], mapping["grid_north_pole_longitude"]) == (
            39.25,
            -162.0,
        )
    csv = dash._csv().getvalue().decode().splitlines()
    # sstdata's time axis counts months with no epoch: its steps' units head the column
    assert csv[0] == f"{'time (Month)' if raw.regular else 'time'},{raw.var}"
    values = [float(line.split(",")[1]) for line in csv[1:]]
    np.testing.assert_allclose(values, box_series(raw), rtol=1e-5)

    drawn: list = []
    real = Axes.pcolormesh

    def spy(self, *args, **kwargs):
        if np.ndim(args[0]) == 1:  # the map (the colour bar's mesh has 2-D corners)
            drawn.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "pcolormesh", spy)
    png = asyncio.run(dash._png()).getvalue()  # the map shown
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    native = compute_map(sources.open(raw.path), state.map_query).compute()
    exports.map_to_png(native, io.BytesIO())  # the native map (gridscope export, the API)
    valid = np.isfinite(raw.values[_step(raw)])
    for x, y, values in drawn:
        finite = np.isfinite(np.ma.filled(values, np.nan))
        xx, yy = np.meshgrid(x, y)
        # the data drawn where the file's cells are on the Earth (a rotated grid's own
        # coordinates span -28..18 / -23..22, its cells 45W..65E / 21N..73N; a global
        # map repeats a column or two past +-180)
        for drawn_at, cells in ((xx[finite], raw.lon[valid]), (yy[finite], raw.lat[valid])):
            assert abs(drawn_at.min() - cells.min()) < 5.0, (drawn_at.min(), cells.min())
            assert abs(drawn_at.max() - cells.max()) < 5.0, (drawn_at.max(), cells.max())
    assert len(drawn) == 2


# --- public mode ------------------------------------------------------------------------------
def _rotated_store(path, nsteps: int = 24) -> xr.Dataset:
    """A raw rotated-pole dataset (pole at 30N 10W: the domain is centred on 170E 60N and
    lies across the antimeridian), with NaN "land" in a corner."""
    rng = np.random.default_rng(3)
    rlon, rlat = np.arange(-20.0, 20.0, 1.0), np.arange(-12.0, 12.0, 1.0)
    data = rng.normal(280.0, 5.0, (nsteps, rlat.size, rlon.size)).astype("f4")
    data[:, :4, :6] = np.nan
    ds = xr.Dataset(
        {"tos": (("time", "rlat", "rlon"), data,
                 {"grid_mapping": "rotated_pole", "units": "K", "long_name": "temperature"}),
         "rotated_pole": ((), 0, {"grid_mapping_name": "rotated_latitude_longitude",
                                  "grid_north_pole_latitude": 30.0,
                                  "grid_north_pole_longitude": -10.0})},
        coords={"time": ("time", np.arange(nsteps, dtype="f8"),
                         {"units": "days since 2000-01-01", "calendar": "standard"}),
                "rlon": ("rlon", rlon, {"standard_name": "grid_longitude", "units": "degrees"}),
                "rlat": ("rlat", rlat, {"standard_name": "grid_latitude", "units": "degrees"})},
    )  # fmt: skip
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return ds


def _synthetic_sources(tmp_path) -> tuple[DatasetSources, dict[str, Raw]]:
    """A rotated-pole, a curvilinear (tripolar-like) and an unstructured store of 24
    daily steps, and each as raw cells (their own lon/lat, or this file's rotation)."""
    from pipelines.synthetic_grids import write_grid_store

    paths = {
        "curvilinear": write_grid_store("curvilinear", tmp_path / "c.zarr", 24, shape=(30, 40),
                                        progress=False),
        "unstructured": write_grid_store("unstructured", tmp_path / "u.zarr", 24,
                                         shape=(3000,), progress=False),
        "rotated": tmp_path / "r.zarr",
    }  # fmt: skip
    rotated = _rotated_store(paths["rotated"])
    sources = DatasetSources.from_catalog(extra=[str(p) for p in paths.values()])
    raws = {kind: _raw_store(xr.open_zarr(path, decode_coords=False, consolidated=False), str(path))
            for kind, path in paths.items()
            if kind != "rotated"}  # fmt: skip
    rr, pp = np.meshgrid(rotated["rlon"].values, rotated["rlat"].values)
    lon, lat = rotated_to_geographic(rr, pp, -10.0, 30.0)
    values = rotated["tos"].values.astype("f8")
    raws["rotated"] = Raw(str(paths["rotated"]), "tos", values.reshape(len(values), -1),
                          lon.ravel(), lat.ravel(), np.cos(np.radians(pp)).ravel(), rr.shape,
                          None, None, (165.0, 55.0, -175.0, 65.0), (-178.0, 62.0))  # fmt: skip
    return sources, raws


def _raw_store(raw_ds: xr.Dataset, path: str) -> Raw:
    """A synthetic store as raw cells: its own lon/lat and CF cell_measures areas."""
    area_name = raw_ds["tos"].attrs["cell_measures"].split(":")[1].strip()
    lon_name, lat_name = raw_ds["tos"].attrs["coordinates"].split()
    values = raw_ds["tos"].values.astype("f8")
    return Raw(path, "tos", values.reshape(len(values), -1),
               _wrap(raw_ds[lon_name].values).ravel(), raw_ds[lat_name].values.ravel(),
               raw_ds[area_name].values.ravel(), raw_ds[lon_name].shape, None, None,
               (150.0, -40.0, -140.0, 20.0), (-30.0, 0.0))  # fmt: skip


def _api(ctx, paths: list[str]) -> list:
    """GET each path from a Tornado server of the API (as tests/test_api.py does)."""
    import tornado.httpclient
    import tornado.httpserver
    import tornado.testing
    import tornado.web

    from app.api.handlers import api_patterns

    async def run() -> list:
        sock, port = tornado.testing.bind_unused_port()
        server = tornado.httpserver.HTTPServer(tornado.web.Application(api_patterns(ctx)))
        server.add_sockets([sock])
        client = tornado.httpclient.AsyncHTTPClient()
        try:
            return [await client.fetch(f"http://127.0.0.1:{port}/api/v1/{p}", raise_error=False,
                                       request_timeout=60) for p in paths]  # fmt: skip
        finally:
            server.stop()

    return asyncio.run(run())


def test_public_budgets_count_native_cells(tmp_path) -> None:
    """A range map reads every native cell of every step of the range (itemsize bytes
    each): a budget one byte short refuses it in JSON before anything runs, one at the
    size answers the numbers of brute force; a box series costs the box's cells only."""
    from app.answer_cache import AnswerCache
    from app.api.answers import ApiContext

    sources, raws = _synthetic_sources(tmp_path)
    for raw in raws.values():
        path = raw.path
        full = raw.values.size * 4  # 24 float32 steps x native cells
        ctx = ApiContext(sources=sources, cache=AnswerCache(2**22), public=True)
        query = Query(path, "tos", start="2000-01-03", end="2000-01-20", agg="mean")
        steps = 18
        cost = steps * raw.lon.size * 4
        assert cost < full
        series = Query(path, "tos", bbox=raw.box).to_query_string()
        for budget, code in ((cost - 1, 413), (cost, 200)):
            limits.configure(Limits(public=True, max_request_bytes=budget))
            runtime.current().cache.clear()
            (got,) = _api(ctx, [f"map.json?{query.to_query_string()}"])
            assert got.code == code, got.body[:300]
            if code == 413:
                body = json.loads(got.body)
                assert body["field"] == "query" and "allowed per request" in body["message"]
                # the two sizes, one byte apart, are told apart
                assert f"read {cost:,} bytes" in body["message"], body["message"]
                continue
            values = np.array(json.loads(got.body)["values"], dtype=float)
            expected = np.nanmean(raw.values[2:20], axis=0)
            np.testing.assert_allclose(values.ravel(), expected, rtol=1e-5)
        # a brute-force box series reads whole chunks: one step of every cell per chunk
        for budget, code in ((full - 1, 413), (full, 200)):
            limits.configure(Limits(public=True, max_request_bytes=budget))
            (csv,) = _api(ctx, [f"series.csv?{series}"])
            assert csv.code == code, csv.body[:300]
        lines = csv.body.decode().splitlines()[1:]
        np.testing.assert_allclose([float(line.split(",")[1]) for line in lines],
                                   box_series(raw), rtol=1e-5)  # fmt: skip


def test_public_api_on_a_regional_grid_answers_or_says_why(sources) -> None:
    """EUR-11 in public mode: a point in the domain answers the file's nearest cell; a
    point outside it, or a box with no cell centre, is a 400 naming the field."""
    from app.answer_cache import AnswerCache
    from app.api.answers import ApiContext

    raw = _raw("rotated")
    limits.configure(Limits.from_options(public=True, environ={}))
    ctx = ApiContext(sources=sources, cache=AnswerCache(2**22), public=True)
    base = {"dataset": raw.path, "var": "tas", "level": "2"}
    ok, outside, empty = _api(ctx, [
        "series.csv?" + urlencode(base | {"point": "10,47"}),
        "series.csv?" + urlencode(base | {"point": "-30,0"}),
        "map.json?" + urlencode(base | {"bbox": "-30,-10,-20,0"}),
    ])  # fmt: skip
    assert ok.code == 200, ok.body[:300]
    value = float(ok.body.decode().splitlines()[1].split(",")[1])
    assert value == pytest.approx(raw.values[0, nearest_cell(raw, (10.0, 47.0))], rel=1e-6)
    for answer, field, words in ((outside, "point", "outside"), (empty, "bbox", "no grid cell")):
        body = json.loads(answer.body)
        assert answer.code == 400 and body["field"] == field and words in body["message"], body


# --- builds from the dashboard -----------------------------------------------------------------
def _wait(progress, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while progress.state == "running" and time.monotonic() < deadline:
        time.sleep(0.1)


def test_build_from_the_dashboard_then_answers_from_native_cell_stores(tmp_path, monkeypatch):
    from app.views.build_view import BuildView
    from app.views.results import ViewResults
    from pipelines.planner import plan_map, plan_series

    monkeypatch.setenv("GRIDSCOPE_DERIVED_DIR", str(tmp_path / "derived"))
    monkeypatch.setattr(runtime.current(), "builds", builds.BuildJobs())
    sources, raws = _synthetic_sources(tmp_path)
    for raw in raws.values():
        path = raw.path
        ds = sources.open(path)
        state = ExplorerState(sources)
        assert state.from_url({"dataset": path, "var": "tos"}) == []
        span = Query(path, "tos", start="2000-01-02", end="2000-01-23", agg="max")
        assert plan_map(ds, span).description.startswith("brute force")
        pre = ViewResults(state)
        pre.set_view((-180.0, 180.0, -90.0, 90.0), (600, 300))
        state.param.update(time_mode="range", start=span.start, end=span.end, agg="max")
        pre.refresh()  # the status line: computed (no stores yet)
        assert labels.plan_text(pre.field.attrs.get("gridscope_plan", "")) == ""
        state.time_mode = "step"
        view = BuildView(state)
        progress = view.start()
        _wait(progress)
        assert progress.state == "done", progress.message
        plan = plan_map(ds, span)
        assert not plan.description.startswith("brute force"), plan.description
        got = np.asarray(plan.compute().values, "f8").ravel()
        np.testing.assert_allclose(got, np.nanmax(raw.values[1:23], axis=0), rtol=1e-6)
        # the dashboard's map of that range, for its whole view, comes from the stores
        state.param.update(time_mode="range", start=span.start, end=span.end, agg="max")
        shown = ViewResults(state)
        shown.set_view((-180.0, 180.0, -90.0, 90.0), (600, 300))
        shown.refresh()
        where = labels.plan_text(shown.field.attrs.get("gridscope_plan", ""))
        assert shown.map_error == "" and where == "from the fast-access stores", where
        if path.endswith("r.zarr"):  # the regional grid panned away from its domain
            away = ViewResults(state)
            away.set_view((-20.0, 40.0, 30.0, 60.0), (600, 300))
            away.refresh()
            assert away.map_error == "" and not np.isfinite(away.field.values).any()
        state.time_mode = "step"  # the series of the whole record
        for region in ({"region": "Custom box", "bbox": raw.box},
                       {"region": "Point", "point": raw.point}):  # fmt: skip
            state.param.update(**region)
            assert "time-series copy" in plan_series(ds, state.series_query).description
            results = ViewResults(state)
            results.refresh()
            expected = (box_series(raw) if "bbox" in region
                        else raw.values[:, nearest_cell(raw, raw.point)])  # fmt: skip
            np.testing.assert_allclose(results.series.values, expected, rtol=1e-5)


def test_a_build_of_a_levelled_grid_variable_builds_it(tmp_path, monkeypatch) -> None:
    """EUR-11's tas has a (2 m) height level: the dashboard's build makes its stores for
    that level and says it built them, leaving nothing out."""
    monkeypatch.setenv("GRIDSCOPE_DERIVED_DIR", str(tmp_path))
    progress = builds.BuildJobs().start(_raw("rotated").path)
    _wait(progress)
    text = progress.describe()
    assert "built" in text and "left out" not in text and "not built" not in text, text
    assert "Traceback" not in text and "/" not in progress.message
    manifests = [json.loads(p.read_text()) for p in tmp_path.rglob("manifest.json")]
    assert any("tas@level=" in json.dumps(m) for m in manifests), manifests


# --- a grid that cannot be understood ---------------------------------------------------------
def _not_understood(tmp_path) -> dict[str, tuple]:
    rng = np.random.default_rng(0)
    time = ("time", [0.0, 1.0], {"units": "days since 2000-01-01"})
    curvilinear = xr.Dataset(  # 2-D positions under names and units nothing says are lon/lat
        {"tos": (("time", "j", "i"), rng.normal(size=(2, 5, 6)).astype("f4"), {"units": "K"}),
         "nav_x": (("j", "i"), rng.uniform(0, 10, (5, 6))),
         "nav_y": (("j", "i"), rng.uniform(0, 10, (5, 6)))},
        coords={"time": time},
    )  # fmt: skip
    cells = xr.Dataset(  # cells along one dimension, no lon/lat anywhere
        {"S": (("time", "ncells"), rng.normal(size=(2, 50)).astype("f4"), {"units": "psu"})},
        coords={"time": time},
    )
    out = {}
    for name, ds in (("ocean_curvilinear.nc", curvilinear), ("mesh_cells.nc", cells)):
        ds.to_netcdf(tmp_path / name)
        out[name] = (tmp_path / name, next(iter(ds.data_vars)))
    return out


def test_a_grid_that_cannot_be_understood_gets_one_message(tmp_path, capsys, caplog) -> None:
    import logging

    from app.cli import main
    from app.explorer import Explorer
    from app.server import warm_up
    from app.views.dashboard import Dashboard

    files = _not_understood(tmp_path)
    catalog = tmp_path / "catalog.yaml"
    entries = [("good", GRIDS / "sstdata_netcdf.nc")]
    entries += [(f"bad{k}", path) for k, (path, _var) in enumerate(files.values())]
    catalog.write_text("entries:\n" + "".join(
        f"  - id: {key}\n    title: {key}\n    urlpath: {path}\n    format: netcdf\n"
        "    license: CC0\n" for key, path in entries))  # fmt: skip
    for k, (name, (path, var)) in enumerate(files.items()):
        assert main(["export", "map", str(path), "--var", var, "-o", str(tmp_path / "x.nc")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and name in err[0] and "looked for" in err[0], err
        assert "Traceback" not in err[0]
        # the dashboard, the file named by a catalog id: its name in the one message
        state = ExplorerState(DatasetSources.from_catalog(str(catalog)))
        messages = state.from_url({"dataset": f"bad{k}"})
        assert len(messages) == 1, messages
        assert name in messages[0] and "looked for" in messages[0], messages
        assert "dimensions: time, " in messages[0], messages  # what it found, too
        assert state.dataset == "good"
        # the notebook: Explorer of that file raises the same one line (it shows no
        # other dataset in its place)
        with pytest.raises(DatasetOpenError) as info:
            Explorer(str(path))
        assert name in str(info.value) and "looked for" in str(info.value)
    # gridscope serve: the files it cannot show are named once in its log, with why
    with caplog.at_level(logging.INFO, logger="gridscope.server"):
        warm_up(DatasetSources.from_catalog(str(catalog)))
    said = [r.getMessage() for r in caplog.records if r.name == "gridscope.server"]
    for name in files:
        (line,) = [text for text in said if name in text]
        assert "looked for" in line and "Traceback" not in line, said
    dash = Dashboard(state)
    shown = str(dash.message.object)
    assert name in shown and "looked for" in shown and "Traceback" not in shown
    assert not dash.error.visible or not str(dash.error.object).strip()


def test_public_dashboard_map_costs_one_frame_of_native_cells(sources, raw) -> None:
    """The dashboard's map of a step reads one step of every native cell (itemsize 4):
    refused in words one byte below that, drawn at it."""
    from app.views.results import ViewResults

    frame = raw.lon.size * 4
    for budget, ok in ((frame - 1, False), (frame, True)):
        limits.configure(Limits(public=True, max_request_bytes=budget))
        runtime.current().cache.clear()  # (an answer already cached costs nothing)
        state = ExplorerState(sources)
        _view(state, raw)
        results = ViewResults(state)
        results.set_view((-180.0, 180.0, -90.0, 90.0), (600, 300))
        results.refresh()
        if ok:
            assert results.map_error == "" and results.field is not None
        else:
            assert "allowed per request" in results.map_error and results.field is None


def test_api_map_of_a_box_drawn_for_a_view(sources, raw) -> None:
    """map.json with a box, a viewport and a screen size: the box's native cells drawn in
    the view (a non-regular grid's cell polygons cropped like its cells: it was a 500),
    data only where the box is."""
    from app.answer_cache import AnswerCache
    from app.api.answers import ApiContext

    w, s, e, n = raw.box
    east = e + 360.0 if e < w else e
    view = {"x_range": f"{w - 10:g},{east + 10:g}", "y_range": f"{s - 10:g},{n + 10:g}",
            "width": "300", "height": "200"}  # fmt: skip
    fields = {"dataset": raw.path, "var": raw.var, "bbox": ",".join(f"{v:g}" for v in raw.box)}
    fields |= {"level": f"{raw.level:g}"} if raw.level is not None else {}
    fields |= {"time": raw.time} if raw.time is not None else {}
    ctx = ApiContext(sources=sources, cache=AnswerCache(2**22))
    (got,) = _api(ctx, ["map.json?" + urlencode(fields | view)])
    assert got.code == 200, got.body[:300]
    doc = json.loads(got.body)
    values = np.array(doc["values"], dtype=float)
    lon, lat = np.meshgrid(np.array(doc["lon"], float), np.array(doc["lat"], float))
    finite = np.isfinite(values)
    assert finite.sum() > 20
    # drawn only over the box (its cells reach at most a cell beyond their centres)
    assert _in_box(_wrap(lon[finite]), lat[finite], (w - 2.5, s - 2.5, e + 2.5, n + 2.5)).all()
    inside = raw.values[_step(raw)][_in_box(raw.lon, raw.lat, raw.box)]
    assert np.nanmin(inside) - 1e-3 <= values[finite].min()
    assert values[finite].max() <= np.nanmax(inside) + 1e-3
