"""Opening the bundled NOAA samples and synthetic files: the normalised-dataset contract.

Expected values are computed by brute force from the raw file (opened by xarray with
``decode_times=False``) with numpy, independently of data_catalog's own index logic.
"""

import cftime
import dask.array
import numpy as np
import pytest
import xarray as xr

from data_catalog import (
    EARTH_RADIUS_M,
    DatasetOpenError,
    list_variables,
    load_catalog,
    normalise_dataset,
    open_dataset,
)

CATALOG = load_catalog()
SPHERE_AREA = 4 * np.pi * EARTH_RADIUS_M**2

# id -> (x name, y name, time name or None, data variables, missing value)
SAMPLES = {
    "coads": (
        "COADSX",
        "COADSY",
        "TIME",
        ["SST", "AIRT", "SPEH", "WSPD", "UWND", "VWND", "SLP"],
        -1e34,
    ),
    "navy-winds": ("FNOCX", "FNOCY", "TIME", ["UWND", "VWND"], -99.9),
    "etopo20": ("ETOPO20X1_1081", "ETOPO20Y", None, ["ROSE"], -1e34),
}


def brute_force_index(raw_lon, raw_lat, lon, lat):
    """Original (x, y) index of every normalised column/row, by exhaustive search."""
    x_index = []
    for value in lon:
        distance = np.abs((raw_lon - value + 180.0) % 360.0 - 180.0)
        matches = np.flatnonzero(distance < 1e-4)
        assert matches.size >= 1, value
        x_index.append(matches[0])  # the file's first copy of a repeated column
    y_index = [int(np.argmin(np.abs(raw_lat - value))) for value in lat]
    return np.array(x_index), np.array(y_index)


def check_contract(ds):
    assert ds["lon"].dims == ("lon",) and ds["lat"].dims == ("lat",)
    lon, lat = ds["lon"].values, ds["lat"].values
    assert np.all(np.diff(lon) > 0) and lon[0] >= -180 and lon[-1] < 180
    assert np.all(np.diff(lat) > 0) and lat[0] >= -90 and lat[-1] <= 90
    assert ds["lon"].attrs["units"] == "degrees_east"
    assert ds["lat"].attrs["units"] == "degrees_north"
    assert ds["cell_area"].dims == ("lat", "lon") and ds["cell_area"].dtype == np.float64
    for name, var in ds.data_vars.items():
        assert {"lat", "lon"} <= set(var.dims), name
        assert np.issubdtype(var.dtype, np.floating), name
    assert isinstance(ds.attrs["gridscope_source"], str)
    assert isinstance(ds.attrs["gridscope_climatology"], bool)


@pytest.fixture(scope="module", params=sorted(SAMPLES))
def sample(request):
    dataset_id = request.param
    path = CATALOG.get(dataset_id).urlpath
    raw = xr.open_dataset(path, decode_times=False, mask_and_scale=True)
    raw_unmasked = xr.open_dataset(path, decode_times=False, mask_and_scale=False)
    return dataset_id, path, raw, raw_unmasked


@pytest.mark.parametrize("by", ["id", "path"])
def test_sample_matches_raw_file(sample, by):
    dataset_id, path, raw, raw_unmasked = sample
    x_name, y_name, t_name, variables, missing = SAMPLES[dataset_id]
    ds = open_dataset(dataset_id if by == "id" else path)
    check_contract(ds)
    assert ds.attrs["gridscope_source"] == (dataset_id if by == "id" else path)
    assert sorted(ds.data_vars) == sorted(variables)
    assert ds["lon"].attrs["original_name"] == x_name
    assert ds["lat"].attrs["original_name"] == y_name
    for name in variables:
        assert isinstance(ds[name].data, dask.array.Array), name  # still lazy
        assert ds[name].dtype == np.float32
        assert ds[name].attrs["units"] == raw[name].attrs["units"]
        assert ds[name].attrs["long_name"] == raw[name].attrs["long_name"]

    x_index, y_index = brute_force_index(
        raw[x_name].values, raw[y_name].values, ds["lon"].values, ds["lat"].values
    )
    np.testing.assert_allclose(ds["lat"].values, raw[y_name].values[y_index])
    for name in variables[:2]:
        got = ds[name].transpose(..., "lat", "lon").values
        expected = raw[name].values[..., y_index, :][..., x_index]
        np.testing.assert_array_equal(got, expected)
        fill = raw_unmasked[name].values[..., y_index, :][..., x_index]
        if dataset_id == "coads":  # land is missing; navy-winds and etopo20 are complete
            assert np.any(np.isclose(fill, missing, rtol=1e-6))
        np.testing.assert_array_equal(np.isnan(got), np.isclose(fill, missing, rtol=1e-6))
    # a few cells by hand: the first cell east of the antimeridian and one at Greenwich
    for lon_value in (ds["lon"].values[0], ds["lon"].values[np.argmin(np.abs(ds["lon"].values))]):
        raw_x = int(
            np.flatnonzero(np.isclose(raw[x_name].values % 360, lon_value % 360, atol=1e-4))[0]
        )
        j = len(ds["lat"]) // 3
        raw_y = int(np.flatnonzero(np.isclose(raw[y_name].values, ds["lat"].values[j]))[0])
        first = variables[0]
        got = ds[first].sel(lon=lon_value).isel(lat=j).values
        np.testing.assert_array_equal(got, raw[first].values[..., raw_y, raw_x])


def test_sample_cell_area_covers_the_sphere(sample):
    dataset_id = sample[0]
    ds = open_dataset(dataset_id)
    assert ds["cell_area"].sum().item() == pytest.approx(SPHERE_AREA, rel=1e-6)
    assert np.all(ds["cell_area"].values > 0)


def test_coads_time_is_a_climatology_in_year_zero():
    ds = open_dataset("coads")
    assert ds.sizes["time"] == 12
    times = ds["time"].values
    assert all(isinstance(t, cftime.datetime) for t in times)
    assert [t.year for t in times] == [0] * 12
    assert [t.month for t in times] == list(range(1, 13))
    assert ds.attrs["gridscope_climatology"] is True
    assert ds["time"].attrs["original_name"] == "TIME"


def test_navy_winds_time_is_monthly_1982_to_1992():
    ds = open_dataset("navy-winds")
    assert ds["time"].dtype.kind == "M"
    months = ds["time"].values.astype("datetime64[M]")
    expected = np.arange(np.datetime64("1982-01"), np.datetime64("1993-01"))
    np.testing.assert_array_equal(months, expected)
    assert ds.attrs["gridscope_climatology"] is False


def test_etopo20_drops_the_repeated_wraparound_column():
    ds = open_dataset("etopo20")
    assert ds.sizes["lon"] == 1080
    assert len(np.unique(np.round(ds["lon"].values, 3))) == 1080
    assert "time" not in ds.dims


@pytest.mark.parametrize(("dataset_id", "zarr_format"), [("coads", 3), ("navy-winds", 2)])
def test_normalised_sample_round_trips_through_zarr(tmp_path, dataset_id, zarr_format):
    # The batch builders write derived stores from normalised datasets; reopening one
    # (zarr format 2 or 3, detected from its metadata) must give back the same dataset.
    ds = open_dataset(dataset_id)
    store = tmp_path / "copy.zarr"
    ds.to_zarr(store, zarr_format=zarr_format, consolidated=zarr_format == 2)
    back = open_dataset(str(store))
    check_contract(back)
    np.testing.assert_array_equal(back["time"].values, ds["time"].values)
    np.testing.assert_array_equal(back["lon"].values, ds["lon"].values)
    np.testing.assert_allclose(back["cell_area"].values, ds["cell_area"].values, rtol=1e-12)
    first = next(iter(ds.data_vars))
    xr.testing.assert_identical(
        back[first].reset_coords(drop=True).compute().drop_attrs(),
        ds[first].reset_coords(drop=True).compute().drop_attrs(),
    )
    assert back.attrs["gridscope_climatology"] is ds.attrs["gridscope_climatology"]


def test_list_variables():
    info = {v.name: v for v in list_variables(open_dataset("navy-winds"))}
    assert set(info) == {"UWND", "VWND"}
    assert info["UWND"].long_name == "ZONAL WIND"
    assert info["UWND"].units == "M/S"
    assert info["UWND"].dims == ("time", "lat", "lon")


# --- synthetic files -------------------------------------------------------------------


def make_raw(seed=0, calendar="noleap", with_bounds=True):
    """Small seeded dataset: lon 0..360, descending lat with bounds, depth, noleap time."""
    rng = np.random.default_rng(seed)
    lon = np.arange(0.0, 360.0, 30.0)  # 12 columns
    lat_bounds = np.array([[90.0, 50.0], [50.0, 0.0], [0.0, -40.0], [-40.0, -90.0]])
    lat = np.array([70.0, 30.0, -20.0, -60.0])  # not at the midpoints of the bounds
    depth = np.array([5.0, 50.0])
    time = np.array([0.0, 31.0, 59.0])
    shape = (time.size, depth.size, lat.size, lon.size)
    temp = rng.normal(size=shape).astype(np.float32)
    temp[0, 0, 0, 0] = -999.0
    ds = xr.Dataset(
        {
            "temp": (
                ("t", "depth", "y", "x"),
                temp,
                {"units": "K", "long_name": "temperature", "_FillValue": np.float32(-999.0)},
            ),
            "station_count": (("t",), np.arange(3, dtype=np.int32)),
            "mask": (("y", "x"), rng.integers(0, 2, size=(lat.size, lon.size)).astype(np.int8)),
        },
        coords={
            "x": ("x", lon, {"units": "degrees_east"}),
            "y": ("y", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "depth": ("depth", depth, {"units": "m", "positive": "down"}),
            "t": ("t", time, {"units": "days since 2000-01-01", "calendar": calendar}),
        },
    )
    if with_bounds:
        ds["y_bnds"] = (("y", "nv"), lat_bounds)
        ds["y"].attrs["bounds"] = "y_bnds"
        ds["x_bnds"] = (("x", "nv"), np.stack([lon - 15.0, lon + 15.0], axis=1))
        ds["x"].attrs["bounds"] = "x_bnds"
    return ds


def write_raw(ds, tmp_path, kind):
    if kind == "netcdf":
        path = tmp_path / "synthetic.nc"
        ds.to_netcdf(path)
    else:
        path = tmp_path / "synthetic.zarr"
        ds.to_zarr(path, zarr_format=3, consolidated=False)
    return str(path)


@pytest.mark.parametrize("kind", ["netcdf", "zarr"])
@pytest.mark.parametrize("calendar", ["noleap", "360_day"])
def test_synthetic_file_normalises_to_contract(tmp_path, kind, calendar):
    raw = make_raw(calendar=calendar)
    path = write_raw(raw, tmp_path, kind)
    ds = open_dataset(path)
    check_contract(ds)
    assert set(ds.dims) == {"time", "level", "lat", "lon"}  # bounds (and "nv") dropped
    assert ds["temp"].dims == ("time", "level", "lat", "lon")
    assert isinstance(ds["temp"].data, dask.array.Array)
    assert sorted(ds.data_vars) == ["mask", "temp"]  # station_count is not on the grid
    assert ds["mask"].dtype.kind == "f"
    np.testing.assert_array_equal(ds["lon"].values, np.arange(-180.0, 180.0, 30.0))
    np.testing.assert_array_equal(ds["lat"].values, [-60.0, -20.0, 30.0, 70.0])
    assert ds["level"].attrs["positive"] == "down"
    assert ds["level"].attrs["units"] == "m"
    assert ds["level"].attrs["original_name"] == "depth"
    assert ds["time"].attrs["original_name"] == "t"
    times = ds["time"].values
    assert all(isinstance(t, cftime.datetime) and t.calendar == calendar for t in times)
    assert (times[1].year, times[1].month, times[1].day) == (
        (2000, 2, 1) if calendar == "noleap" else (2000, 2, 2)
    )
    assert ds.attrs["gridscope_climatology"] is False

    # values: lon -180 is raw x=180 (index 6), lat -60 is raw index 3
    got = ds["temp"].values
    expected = raw["temp"].values[:, :, ::-1, :][..., np.r_[6:12, 0:6]]
    expected = np.where(expected == -999.0, np.nan, expected)
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[0, 0, 3, 6])

    # cell_area from the bounds, not from midpoints between centres
    sin_extent = np.abs(
        np.diff(np.sin(np.radians([[-90, -40], [-40, 0], [0, 50], [50, 90]])), axis=1)
    )[:, 0]
    expected_area = EARTH_RADIUS_M**2 * np.radians(30.0) * sin_extent[:, None] * np.ones((1, 12))
    np.testing.assert_allclose(ds["cell_area"].values, expected_area, rtol=1e-12)
    assert ds["cell_area"].sum().item() == pytest.approx(SPHERE_AREA, rel=1e-12)


def test_area_from_spacing_clips_at_the_poles():
    lat = np.array([90.0, 45.0, 0.0, -45.0, -90.0])
    ds = xr.Dataset(
        {"v": (("lat", "lon"), np.zeros((5, 4)))},
        coords={"lat": lat, "lon": [0.0, 90.0, 180.0, 270.0]},
    )
    out = normalise_dataset(ds, "mem")
    assert out["cell_area"].sum().item() == pytest.approx(SPHERE_AREA, rel=1e-12)
    # the polar row spans 90 -> 67.5 degrees
    polar = EARTH_RADIUS_M**2 * np.pi / 2 * (1 - np.sin(np.radians(67.5)))
    assert out["cell_area"].values[-1, 0] == pytest.approx(polar, rel=1e-12)


def test_already_normalised_grid_is_unchanged():
    lon = np.arange(-180.0, 180.0, 45.0)
    lat = np.array([-45.0, 0.0, 45.0])
    data = np.arange(lat.size * lon.size, dtype=np.float64).reshape(lat.size, lon.size)
    ds = xr.Dataset(
        {"v": (("latitude", "longitude"), data)}, coords={"latitude": lat, "longitude": lon}
    )
    out = normalise_dataset(ds.chunk(), "mem")
    np.testing.assert_array_equal(out["lon"].values, lon)
    np.testing.assert_array_equal(out["v"].values, data)


def test_standard_calendar_decodes_to_datetime64():
    ds = make_raw(calendar="standard", with_bounds=False)
    out = normalise_dataset(ds, "mem")
    np.testing.assert_array_equal(
        out["time"].values,
        np.array(["2000-01-01", "2000-02-01", "2000-02-29"], dtype="datetime64[ns]"),
    )


def test_glob_of_netcdf_files_is_combined(tmp_path):
    raw = make_raw(calendar="noleap")
    raw.isel(t=slice(0, 2)).to_netcdf(tmp_path / "part1.nc")
    raw.isel(t=slice(2, 3)).to_netcdf(tmp_path / "part2.nc")
    ds = open_dataset(str(tmp_path / "part*.nc"))
    assert ds.sizes["time"] == 3
    np.testing.assert_array_equal(
        ds["temp"].isel(time=2).values, normalise_dataset(raw, "x")["temp"].isel(time=2).values
    )


# --- errors ----------------------------------------------------------------------------


def test_missing_file_names_it(tmp_path):
    missing = str(tmp_path / "nothing-here.nc")
    with pytest.raises(DatasetOpenError, match="file not found") as info:
        open_dataset(missing)
    assert missing in str(info.value)


def test_garbage_file_names_it(tmp_path):
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"this is not a netCDF file at all" * 10)
    with pytest.raises(DatasetOpenError) as info:
        open_dataset(str(garbage))
    assert str(garbage) in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_netcdf_names_it(tmp_path):
    raw = make_raw()
    good = tmp_path / "good.nc"
    raw.to_netcdf(good, format="NETCDF3_64BIT")
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(good.read_bytes()[:64])
    with pytest.raises(DatasetOpenError) as info:
        open_dataset(str(truncated))
    assert str(truncated) in str(info.value)


def test_netcdf_without_lon_lat_names_file_and_what_was_found(tmp_path):
    path = tmp_path / "station.nc"
    xr.Dataset(
        {"temp": (("station", "t"), np.zeros((3, 4), dtype=np.float32))},
        coords={
            "station": [1, 2, 3],
            "t": ("t", np.arange(4.0), {"units": "days since 2000-01-01"}),
        },
    ).to_netcdf(path)
    with pytest.raises(DatasetOpenError) as info:
        open_dataset(str(path))
    message = str(info.value)
    assert str(path) in message
    assert "longitude" in message and "station" in message


def test_unknown_id_lists_known_ids():
    with pytest.raises(DatasetOpenError) as info:
        open_dataset("no-such-dataset", CATALOG)
    for known in CATALOG.ids:
        assert known in str(info.value)


def test_folder_that_is_not_zarr(tmp_path):
    with pytest.raises(DatasetOpenError, match="not a zarr store") as info:
        open_dataset(str(tmp_path))
    assert str(tmp_path) in str(info.value)
