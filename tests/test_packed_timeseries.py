"""A CF-packed source's time-series copy stores its packed integers, exactly.

int16 with ``scale_factor`` / ``add_offset`` / ``_FillValue`` (NaNs that move in time),
decoded by xarray to float32 (float32 attributes, netCDF) or float64 (float64
attributes, and a zarr store's JSON floats): the copy holds int16 codes, and its point
series equal xarray's decoded values bit for bit, its region series the float64
brute force within 1e-5 (`pipelines.build._choose_packing`,
`pipelines.timeseries_store.packing_of`). A packing whose decoded values do not
re-encode to themselves keeps the float32 copy, answers still exact.
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from data_catalog import open_dataset
from pipelines import Query
from pipelines.build import BuildConfig, build_derived
from pipelines.derived import MANIFEST
from pipelines.planner import plan_series
from pipelines.timeseries_store import decode_table, decode_values, pack_values, packing_of

NT = 40
CONFIG = BuildConfig(max_level=2, ts_max_level=4, base_block=2, unit_steps=8)
FILL = np.int16(-32767)
#: boxes whose edges cut level blocks: the series reads level-0 strips of the copy
BOXES = [(-61.0, -31.0, 47.0, 53.0), (13.0, 3.0, 21.0, 9.0)]
POINTS = [(0.5, 0.5), (-120.2, 44.9), (179.0, -89.0)]


def _field(nt: int, ny: int, nx: int, seed: int) -> np.ndarray:
    """~280 K, a trend and noise, 10% NaN at random per step and a moving NaN band."""
    rng = np.random.default_rng(seed)
    t = np.arange(nt)[:, None, None]
    x = 270.0 + 20.0 * t / nt + rng.normal(0.0, 5.0, (nt, ny, nx))
    x[rng.random(x.shape) < 0.1] = np.nan
    for k in range(nt):
        x[k, :, (3 * k) % nx : (3 * k) % nx + 4] = np.nan
    return x


def _packed(scale: float | np.floating, offset: float | np.floating) -> dict:
    return {"dtype": "int16", "scale_factor": scale, "add_offset": offset, "_FillValue": FILL}


def _source(folder, suffix: str) -> str:
    lat = np.arange(-89.0, 90.0, 2.0)[::-1]  # descending: the opener flips it
    lon = np.arange(-179.0, 180.0, 2.0)
    shape = (NT, lat.size, lon.size)
    names = ("f32", "f64", "fine")
    ds = xr.Dataset(
        {
            name: (("time", "lat", "lon"), _field(*shape, seed=k), {"units": "K"})
            for k, name in enumerate(names)
        },
        coords={
            "time": pd.date_range("2001-01-01", periods=NT, freq="D"),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    # fine: steps of 1e-5 near 300, finer than float32 there (3e-5): neighbouring codes
    # decode to one float32 value, some of which re-encode to a code decoding to another
    # one; the layout check keeps a float32 copy (netCDF; zarr decodes to float64)
    ds["fine"] = 300.0 + (ds["fine"] - 280.0) * 0.005
    # cells above 285 K are missing (data_catalog masks outside CF valid_max, given in
    # packed units): NaNs the source has no fill value for, stored as the fill value
    ds["f32"].attrs["valid_max"] = np.int16(2500)
    encoding = {
        "f32": _packed(np.float32(0.002), np.float32(280.0)),
        "f64": _packed(np.float64(0.002), np.float64(280.0)),
        "fine": _packed(np.float32(1e-5), np.float32(300.0)),
    }
    path = folder / f"packed.{suffix}"
    if suffix == "nc":
        ds.to_netcdf(path, encoding=encoding)
    else:
        ds.to_zarr(path, encoding=encoding, mode="w")
    return str(path)


@pytest.fixture(scope="module", params=["nc", "zarr"])
def built(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"packed-{request.param}")
    path = _source(root, request.param)
    folder = build_derived(path, out=root, scheduler="synchronous", config=CONFIG, progress=False)
    manifest = json.loads((folder / MANIFEST).read_text())
    return open_dataset(path), folder / manifest["data"], manifest, request.param


def _brute_box_mean(ds: xr.Dataset, var: str, box) -> np.ndarray:
    west, south, east, north = box
    lat, lon = ds["lat"].values, ds["lon"].values
    rows = (lat >= south) & (lat <= north)
    cols = (lon >= west) & (lon <= east)
    x = ds[var].values[:, rows][:, :, cols].astype("float64")
    w = ds["cell_area"].values[rows][:, cols]
    valid = ~np.isnan(x)
    return np.nansum(x * w, axis=(1, 2)) / np.where(valid, w, 0).sum(axis=(1, 2))


def test_copy_holds_the_packed_integers(built) -> None:
    import zarr

    ds, data, manifest, kind = built
    expected = {"f32": "float32" if kind == "nc" else "float64", "f64": "float64"}
    if kind == "zarr":  # JSON attributes decode to float64: 1e-5 steps are exact there
        expected["fine"] = "float64"
    assert np.nanmax(ds["f32"].values) <= 285.001  # valid_max applied (half a step slack)
    for var, decoded in expected.items():
        assert ds[var].dtype == decoded
        arr = zarr.open_array(data / "timeseries.zarr", path=f"{var}/values", mode="r")
        assert arr.dtype == np.int16
        packing = manifest["variables"][var]["ts_packing"]
        assert packing["dtype"] == "int16" and packing["_FillValue"] == int(FILL)
        assert packing["decoded"] == decoded
        # every stored value decodes to the opened dataset's value, bit for bit
        got = decode_values(arr[...], packing)
        assert got.dtype == ds[var].dtype
        assert np.array_equal(got, ds[var].values, equal_nan=True)
        assert np.isnan(got).any() and (arr[...] == FILL).sum() == np.isnan(got).sum()
    if kind == "zarr":
        return
    # the packing that does not round-trip in float32: float32 copy, no record
    arr = zarr.open_array(data / "timeseries.zarr", path="fine/values", mode="r")
    assert arr.dtype == np.float32
    assert "ts_packing" not in manifest["variables"]["fine"]


@pytest.mark.parametrize("var", ["f32", "f64", "fine"])
def test_point_series_equal_xarray_exactly(built, var) -> None:
    ds = built[0]
    for lon, lat in POINTS:
        plan = plan_series(ds, Query(dataset="p", var=var, point=(lon, lat)))
        assert plan.description.startswith("time-series copy")
        got = plan.compute()
        i = int(np.argmin(np.abs(ds["lat"].values - lat)))
        j = int(np.argmin(np.abs(ds["lon"].values - lon)))
        ref = ds[var].values[:, i, j]
        assert got.dtype == ref.dtype
        assert np.array_equal(got.values, ref, equal_nan=True)


@pytest.mark.parametrize("var", ["f32", "f64", "fine"])
@pytest.mark.parametrize("box", BOXES)
def test_region_series_equal_brute_force(built, var, box) -> None:
    ds = built[0]
    plan = plan_series(ds, Query(dataset="p", var=var, bbox=box))
    levels = re.search(r"levels \[([\d, ]+)\]", plan.description)
    assert levels is not None and 0 in [int(v) for v in levels.group(1).split(",")]
    got = plan.compute().values
    ref = _brute_box_mean(ds, var, box)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=0)


def test_packing_round_trip_checks() -> None:
    """`packing_of` refuses what it cannot store exactly; `pack_values` finds the first
    value that is no decoded code."""
    da = xr.DataArray(np.zeros(3, "float32"), dims="x")
    da.encoding = _packed(np.float32(0.002), np.float32(280.0)) | {"dtype": np.dtype("int16")}
    packing, why = packing_of(da)
    assert packing is not None, why
    table = decode_table(packing)
    x = table[[0, 5, 40000, 65535]].copy()
    x[0] = np.nan  # code 0 of the table is -32768, not the fill; NaN encodes to the fill
    codes, bad = pack_values(x, packing)
    assert bad == -1 and codes[0] == FILL
    assert np.array_equal(decode_values(codes, packing), x, equal_nan=True)
    x[2] = np.nextafter(x[2], np.float32(np.inf))  # between two codes' values
    assert pack_values(x, packing)[1] == 2
    packing, why = packing_of(da, x[None])  # the sample holds it: float32 copy
    assert packing is None and "not a decoded code" in why
    da.encoding["dtype"] = np.dtype("int32")
    assert packing_of(da)[0] is None
    del da.encoding["_FillValue"]
    da.encoding["dtype"] = np.dtype("int16")
    assert "_FillValue" in packing_of(da)[1]


def test_packed_append_equals_a_fresh_build(tmp_path) -> None:
    """Appending steps to a packed zarr source keeps the int16 copy, byte for byte a
    fresh build's, and its series exact."""
    import hashlib

    import zarr

    from pipelines.derived import DerivedStores

    path = _source(tmp_path, "zarr")
    full = xr.open_zarr(path, decode_times=False)  # still packed on write: same encoding
    grow, same = tmp_path / "grow.zarr", tmp_path / "same.zarr"
    full.isel(time=slice(0, 20)).to_zarr(grow)
    cfg = dataclasses.replace(CONFIG, variables=("f32",))
    build_derived(
        str(grow), out=tmp_path / "a", scheduler="synchronous", config=cfg, progress=False
    )
    full.isel(time=slice(20, NT)).to_zarr(grow, append_dim="time")
    appended = build_derived(
        str(grow), out=tmp_path / "a", scheduler="synchronous", config=cfg, progress=False
    )
    full.to_zarr(same)
    fresh = build_derived(
        str(same), out=tmp_path / "b", scheduler="synchronous", config=cfg, progress=False
    )

    def files(folder):
        data = DerivedStores(folder).data_folder / "timeseries.zarr" / "f32" / "values"
        return {
            str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data.rglob("*"))
            if p.is_file()
        }

    assert json.loads((appended / MANIFEST).read_text())["last_build"]["appended_from"] == 20
    assert len(files(appended)) > 1 and files(appended) == files(fresh)
    arr = zarr.open_array(
        DerivedStores(appended).data_folder / "timeseries.zarr", path="f32/values"
    )
    assert arr.dtype == np.int16 and arr.shape[0] == NT
    ds = open_dataset(str(grow))
    got = plan_series(ds, Query(dataset="p", var="f32", point=POINTS[1])).compute()
    i = int(np.argmin(np.abs(ds["lat"].values - POINTS[1][1])))
    j = int(np.argmin(np.abs(ds["lon"].values - POINTS[1][0])))
    assert np.array_equal(got.values, ds["f32"].values[:, i, j], equal_nan=True)
