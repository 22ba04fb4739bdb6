"""Grids that survive an xarray append, and grids that cannot be understood say so.

``ds.to_zarr(path, append_dim="time")`` with a dataset that lacks the store's non-data
coordinates rewrites the root ``coordinates`` attribute without them: a mesh's
``(ncells, vertices)`` bounds then open as data variables. They were read as a 2-D
lon/lat grid (y = cells, x = vertices), every variable was lost and a build published
an empty manifest. Expected values here come from the datasets written, with numpy.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from data_catalog import DatasetOpenError, open_dataset
from pipelines import Query
from pipelines.build import BuildConfig, build_derived
from pipelines.planner import plan_series
from pipelines.synthetic_grids import mesh_dataset
from tests.conftest import SAMPLES_DIR

GRIDS = SAMPLES_DIR / "grids"


def _to_zarr(ds: xr.Dataset, path, **kw) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr 3: consolidated metadata not in the spec
        ds.to_zarr(path, **kw)


def _append_data_only(ds: xr.Dataset, path, var: str, first: int) -> None:
    """Write the first ``first`` steps, then append the rest of ``var`` alone (what a
    script that appends new model output does)."""
    _to_zarr(ds.isel(time=slice(0, first)), path, mode="w")
    rest = ds[[var]].isel(time=slice(first, None)).reset_coords(drop=True)
    _to_zarr(rest, path, append_dim="time")


@pytest.fixture(scope="module")
def appended_mesh(tmp_path_factory):
    raw = mesh_dataset(4, 5)  # 320 triangles
    path = tmp_path_factory.mktemp("mesh") / "mesh.zarr"
    _append_data_only(raw, path, "tos", 2)
    return raw, path


def test_the_append_drops_the_root_coordinates_attribute(appended_mesh) -> None:
    # the situation the fix is for (if xarray changes, the other tests still hold)
    raw, path = appended_mesh
    assert "coordinates" not in zarr.open_group(str(path), mode="r").attrs
    assert {"clon_vertices", "clat_vertices"} <= set(xr.open_zarr(path).data_vars)


def test_an_appended_mesh_opens_as_the_mesh(appended_mesh) -> None:
    raw, path = appended_mesh
    ds = open_dataset(path)
    assert ds.attrs["gridscope_grid"] == "unstructured"
    assert ds.sizes["cell"] == raw.sizes["ncells"]
    assert list(ds.data_vars) == ["tos"]
    assert ds.sizes["time"] == raw.sizes["time"]
    np.testing.assert_array_equal(ds["tos"].values, raw["tos"].values)
    np.testing.assert_allclose(ds["lon_bounds"].values % 360, raw["clon_vertices"].values % 360)
    np.testing.assert_allclose(ds["cell_area"].values, raw["cell_area"].values)


@pytest.mark.parametrize("box", [(-60.0, -30.0, 40.0, 30.0), (150.0, 20.0, -150.0, 80.0)])
def test_planner_answers_on_the_appended_mesh_equal_brute_force(appended_mesh, box) -> None:
    raw, path = appended_mesh
    ds = open_dataset(path)
    lon, lat = raw["clon"].values, raw["clat"].values
    values, area = raw["tos"].values.astype("f8"), raw["cell_area"].values
    w, s, e, n = box
    east = (lon - w) % 360 <= (e - w) % 360
    mask = east & (lat >= s) & (lat <= n)
    assert mask.sum() >= 5
    got = plan_series(ds, Query(dataset="m", var="tos", bbox=box)).compute()
    weights = area * mask
    ok = np.isfinite(values)
    expected = (np.where(ok, values, 0) * weights).sum(1) / (ok * weights).sum(1)
    np.testing.assert_allclose(got.values, expected, rtol=1e-6)
    # a point: the cell whose centre is nearest on the sphere
    point = (w + 1.0, s + 1.0)
    cos = np.sin(np.radians(lat)) * np.sin(np.radians(point[1])) + np.cos(np.radians(lat)) * np.cos(
        np.radians(point[1])
    ) * np.cos(np.radians(lon - point[0]))
    got = plan_series(ds, Query(dataset="m", var="tos", point=point)).compute()
    np.testing.assert_allclose(got.values, values[:, np.argmax(cos)], rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "var"),
    [
        ("tos_ocean_bipolar_grid.nc", "tos"),  # curvilinear
        ("tas_rotated_grid_EUR11.nc", "tas"),  # rotated pole
        ("triangular_grid_ICON.nc", "S"),  # ICON triangles, vertices in radians
    ],
)
def test_real_grids_survive_an_append(tmp_path, name, var) -> None:
    ref = open_dataset(GRIDS / name)
    raw = xr.open_dataset(GRIDS / name, decode_times=False)
    later = raw.assign_coords(time=raw["time"] + 1.0)
    path = tmp_path / "a.zarr"
    _to_zarr(raw, path, mode="w")
    timed = [n for n in later.data_vars if "time" in later[n].dims]  # tas, time_bnds
    _to_zarr(later[timed].reset_coords(drop=True), path, append_dim="time")
    ds = open_dataset(path)
    assert ds.attrs["gridscope_grid"] == ref.attrs["gridscope_grid"]
    assert {d: ds.sizes[d] for d in ref[var].dims if d != "time"} == {
        d: ref.sizes[d] for d in ref[var].dims if d != "time"
    }
    assert ds.sizes["time"] == 2
    for coord in ("lon", "lat", "cell_area", "lon_bounds", "lat_bounds"):
        np.testing.assert_allclose(ds[coord].values, ref[coord].values, rtol=1e-12)
    for step in (0, 1):
        np.testing.assert_array_equal(ds[var].isel(time=step).values, ref[var].isel(time=0).values)


def test_data_off_the_grid_found_is_refused_with_what_was_found() -> None:
    # 1-D lon/lat axes (a regular grid) beside data on a mesh dimension with no positions:
    # the grid found holds none of the data; an empty dataset would be a silent wrong answer
    raw = xr.Dataset(
        {"tos": (("time", "ncells"), np.ones((2, 5), "f4"))},
        coords={
            "time": ("time", [0.0, 1.0], {"units": "days since 2000-01-01"}),
            "lon": ("lon", np.arange(4.0), {"units": "degrees_east"}),
            "lat": ("lat", np.arange(3.0), {"units": "degrees_north"}),
        },
    )
    with pytest.raises(DatasetOpenError) as err:
        from data_catalog import normalise_dataset

        normalise_dataset(raw, "odd.nc")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("odd.nc: no variable lies on the horizontal grid found")
    assert "tos('time', 'ncells')" in message and "regular" in message
    assert "ICON, SCRIP, UGRID" in message  # what is supported


def test_a_build_with_nothing_to_build_says_which_variables_and_why(tmp_path) -> None:
    raw = mesh_dataset(2, 3)
    raw["depth"] = (("ncells",), np.full(raw.sizes["ncells"], 100.0, "f4"))  # no time
    raw["station"] = (("time", "sensor"), np.ones((3, 4), "f4"))  # on no grid
    raw = raw.drop_vars(["tos", "cell_area"])
    path = tmp_path / "nothing.zarr"
    _to_zarr(raw, path, mode="w")
    assert list(open_dataset(path).data_vars) == ["depth"]  # opens; nothing on time
    with pytest.raises(ValueError) as err:
        build_derived(
            str(path),
            tmp_path / "d",
            scheduler="synchronous",
            config=BuildConfig(max_level=1, ts_max_level=1, base_block=2, unit_steps=2),
            progress=False,
        )
    message = str(err.value)
    assert "\n" not in message and "nothing to build" in message
    assert "depth('cell',)" in message and "time, cell" in message
    assert not any((tmp_path / "d").rglob("manifest.json"))
