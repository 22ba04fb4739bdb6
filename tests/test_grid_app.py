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

from app import cluster_health, exports, limits
from app.limits import Limits
from app.sources import DatasetSources
from app.state import ExplorerState
from data_catalog import open_dataset
from pipelines import Query
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
    """``field`` (a native map) as raw cells, its centres checked against the raw ones."""
    if raw.regular:
        lon, lat = np.meshgrid(field["lon"].values, field["lat"].values)
        values = field.transpose("lat", "lon").values
    else:
        lon, lat, values = field["lon"].values, field["lat"].values, field.values
    np.testing.assert_allclose(_wrap(lon).ravel(), raw.lon, atol=1e-6)
    np.testing.assert_allclose(np.ravel(lat), raw.lat, atol=1e-6)
    return np.asarray(values, "f8").ravel()


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
        state.param.update(x_range=(-30.0, 40.0), y_range=(20.0, 70.0))
        params = state.to_url_params()
        fresh = ExplorerState(sources)
        assert fresh.from_url(params) == [], fresh.message
        assert fresh.query == state.query and fresh.to_url_params() == params
        assert (fresh.x_range, fresh.y_range) == ((-30.0, 40.0), (20.0, 70.0))
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
