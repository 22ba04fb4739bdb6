"""Builds of variables with a vertical level: stores per level, used for that level only."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipelines import Query, QueryError
from pipelines.build import BuildConfig, build_derived
from pipelines.derived import DerivedStores
from pipelines.evaluate import compute_map, compute_series
from pipelines.planner import plan_map, plan_series

CONFIG = BuildConfig(max_level=2, ts_max_level=2, base_block=4, unit_steps=16)
SAMPLE = Path(__file__).parents[1] / "data_catalog" / "samples" / "grids"


def _source(path: Path, levels: dict[str, list[float]]) -> Path:
    """A regular 6-degree grid, 32 daily steps: ``sst`` without a level, and ``tas`` on
    a size-1 2 m ``height`` level or ``ta`` on pressure levels (``levels``: axis values)."""
    rng = np.random.default_rng(3)
    time = pd.date_range("2000-01-01", periods=32, freq="D")
    lat = np.arange(-87.0, 90.0, 6.0)
    lon = np.arange(0.0, 360.0, 6.0)
    shape = (time.size, lat.size, lon.size)
    (var, axis), values = next(iter(levels.items())), next(iter(levels.values()))
    var, axis = var.split(":")
    units = {"height": "m", "plev": "Pa"}[axis]
    ds = xr.Dataset(
        {
            var: (
                ("time", axis, "lat", "lon"),
                rng.normal(280, 10, (time.size, len(values), lat.size, lon.size)),
            ),
            "sst": (("time", "lat", "lon"), rng.normal(290, 5, shape)),
        },
        coords={
            "time": time,
            axis: (axis, values, {"units": units, "axis": "Z"}),
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
    )
    for name in (var, "sst"):
        ds[name] = ds[name].astype("float32")
    ds.to_zarr(path, mode="w")
    return path


def _built(root: Path, levels: dict[str, list[float]]):
    from data_catalog import open_dataset

    source = _source(root / "src.zarr", levels)
    folder = build_derived(
        str(source), root / "derived", scheduler="synchronous", config=CONFIG, progress=False
    )
    ds = open_dataset(str(source))
    ds.attrs["gridscope_derived"] = str(folder)
    return ds, folder


@pytest.fixture(scope="module")
def height(tmp_path_factory):
    return _built(tmp_path_factory.mktemp("height"), {"tas:height": [2.0]})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return _built(tmp_path_factory.mktemp("plev"), {"ta:plev": [85000.0, 50000.0, 25000.0]})


def _range(var: str, level: float | None = None, agg: str = "mean") -> Query:
    return Query(dataset="x", var=var, start="2000-01-03", end="2000-01-30", agg=agg, level=level)


def test_every_level_is_built_and_named(height, built) -> None:
    ds, folder = height
    assert ds["tas"].sizes["level"] == 1
    names = set(DerivedStores(folder).manifest()["variables"])
    assert names == {"sst", f"tas@level={float(ds['tas']['level'][0])!r}"}
    ds, folder = built
    levels = ds["ta"]["level"].values
    assert levels.size == 3
    names = set(DerivedStores(folder).manifest()["variables"])
    assert names == {"sst"} | {f"ta@level={float(v)!r}" for v in levels}


@pytest.mark.parametrize("agg", ["mean", "max", "std"])
def test_size1_level_maps_and_series_from_stores_equal_brute_force(height, agg) -> None:
    ds, _ = height
    height = float(ds["tas"]["level"][0])
    for level in (None, height):  # no level: the first (only) one
        query = _range("tas", level, agg)
        plan = plan_map(ds, query)
        assert plan.description.startswith("temporal aggregates"), plan.description
        np.testing.assert_allclose(
            plan.compute().values, compute_map(ds, query).values, rtol=1e-5, atol=1e-4
        )
        step = query.replace(start=None, end=None, agg="mean", time="2000-01-07")
        plan = plan_map(ds, step, screen=(30, 15))
        assert plan.description.startswith("pyramid level 1"), plan.description
        # level 1: area-weighted means of 2 x 2 cells (equal areas along a row)
        full = compute_map(ds, step)
        w = full["cell_area"]
        want = (full * w).coarsen(lat=2, lon=2).sum() / w.coarsen(lat=2, lon=2).sum()
        np.testing.assert_allclose(plan.compute().values, want.values, rtol=1e-5)
    series = query.replace(agg="mean", bbox=(10, -30, 120, 40))
    plan = plan_series(ds, series)
    assert plan.description.startswith("time-series copy"), plan.description
    np.testing.assert_allclose(plan.compute().values, compute_series(ds, series).values, rtol=1e-6)


def test_each_level_answers_from_its_own_stores(built) -> None:
    ds, _ = built
    answers = []
    for level in ds["ta"]["level"].values:
        query = _range("ta", float(level), "max")
        plan = plan_map(ds, query)
        assert plan.description.startswith("temporal aggregates"), plan.description
        got = plan.compute().values
        np.testing.assert_array_equal(got, compute_map(ds, query).values)
        answers.append(got)
    assert not np.array_equal(answers[0], answers[1])  # levels not mixed up
    with pytest.raises(QueryError, match="level"):
        plan_map(ds, _range("ta", 60000.0))
    with pytest.raises(QueryError, match="level"):
        plan_map(ds, _range("sst", 2.0))


def test_a_level_the_stores_do_not_hold_is_answered_from_the_raw_data(built) -> None:
    ds, _ = built
    moved = ds.assign_coords(level=ds["level"] * 1.5)  # same grid, other level values
    query = _range("ta", float(moved["level"][1]), "mean")
    plan = plan_map(moved, query)
    assert plan.description.startswith("brute force"), plan.description
    np.testing.assert_array_equal(plan.compute().values, compute_map(moved, query).values)


def test_stores_are_read_not_the_raw_data(built, tmp_path) -> None:
    """With the raw chunks of ``ta`` gone, its built level still answers from stores."""
    from data_catalog import open_dataset

    ds, folder = built
    # steps 4..27: whole aggregate blocks, no raw steps at the ends
    query = _range("ta", float(ds["ta"]["level"][2]), "min").replace(
        start="2000-01-05", end="2000-01-28"
    )
    want = compute_map(ds, query).values
    copy = tmp_path / "src.zarr"
    shutil.copytree(ds.encoding.get("source") or ds.attrs["gridscope_source"], copy)
    broken = open_dataset(str(copy))
    broken.attrs["gridscope_derived"] = str(folder)
    chunks = [
        p for p in (copy / "ta").rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr"))
    ]
    assert chunks
    for chunk in chunks:
        chunk.unlink()
    assert np.isnan(compute_map(broken, query).values).all()  # the raw data is gone
    np.testing.assert_array_equal(plan_map(broken, query).compute().values, want)


def _built_sample(name: str, tmp_path) -> tuple[xr.Dataset, object]:
    """A copy of the bundled sample ``name``, built with small blocks: (dataset, folder)."""
    from data_catalog import open_dataset

    source = tmp_path / name
    shutil.copy(SAMPLE / name, source)
    config = BuildConfig(max_level=2, ts_max_level=2, base_block=1, unit_steps=1)
    folder = build_derived(
        str(source), tmp_path / "d", scheduler="synchronous", config=config, progress=False
    )
    ds = open_dataset(str(source))
    ds.attrs["gridscope_derived"] = str(folder)
    return ds, folder


def test_euro_cordex_tas_on_its_2m_height_is_built_and_used(tmp_path) -> None:
    """The EURO-CORDEX sample: rotated grid, ``tas(time, height=2 m, rlat, rlon)``."""
    ds, folder = _built_sample("tas_rotated_grid_EUR11.nc", tmp_path)
    assert list(DerivedStores(folder).manifest()["variables"]) == ["tas@level=2.0"]
    query = Query(dataset="x", var="tas", start="2006-01-01", end="2006-01-31", agg="mean")
    for level in (None, 2.0):
        plan = plan_map(ds, query.replace(level=level))
        assert plan.description.startswith("temporal aggregates of the native cells")
        np.testing.assert_array_equal(plan.compute().values, compute_map(ds, query).values)
    series = query.replace(bbox=(0, 40, 20, 55))
    plan = plan_series(ds, series)
    assert not plan.description.startswith("brute force"), plan.description
    np.testing.assert_allclose(plan.compute().values, compute_series(ds, series).values, rtol=1e-6)
    with pytest.raises(QueryError, match="level"):
        plan_map(ds, query.replace(level=10.0))


def test_the_app_does_not_report_a_built_level_variable_as_left_out(height) -> None:
    from app.builds import _variables_built

    ds, folder = height
    built, left_out = _variables_built(str(ds.attrs["gridscope_source"]), folder)
    assert sorted(built) == ["sst", "tas@level=2.0"] and left_out == ""


def test_build_command_says_what_it_built_and_what_it_left(tmp_path, capsys) -> None:
    from app.cli import main

    source = _source(tmp_path / "src.zarr", {"tas:height": [2.0]})
    ds = xr.open_zarr(source)
    member = ds["sst"].expand_dims(member=2).transpose("time", "member", "lat", "lon")
    xr.Dataset({"sst_ens": member}).to_zarr(source, mode="a")
    args = ["build", str(source), "--out", str(tmp_path / "d"), "--scheduler", "synchronous"]
    assert main([*args, "--levels", "1", "--ts-levels", "1", "--unit-steps", "32"]) == 0
    out = capsys.readouterr().out
    assert "variables: sst, tas@level=2.0 " in out or "variables: tas@level=2.0, sst " in out
    assert "not built (maps and series read the raw data): sst_ens (it has dimension member)" in out


def test_appending_steps_to_a_levelled_variable(tmp_path) -> None:
    """A source that gained steps: the levels' stores grow (an append) and still equal
    brute force over the whole record."""
    from data_catalog import open_dataset

    full = xr.open_zarr(_source(tmp_path / "full.zarr", {"ta:plev": [85000.0, 50000.0]}))
    grow = tmp_path / "grow.zarr"
    full.isel(time=slice(0, 20)).to_zarr(grow)
    out = tmp_path / "d"
    build_derived(str(grow), out, scheduler="synchronous", config=CONFIG, progress=False)
    full.isel(time=slice(20, None)).to_zarr(grow, append_dim="time")
    folder = build_derived(str(grow), out, scheduler="synchronous", config=CONFIG, progress=False)
    manifest = DerivedStores(folder).manifest()
    assert manifest["last_build"]["appended_from"] == 20
    ds = open_dataset(str(grow))
    ds.attrs["gridscope_derived"] = str(folder)
    assert ds.sizes["time"] == 32
    for level in ds["level"].values:
        query = _range("ta", float(level), "max").replace(end="2000-02-01")
        plan = plan_map(ds, query)
        assert plan.description.startswith("temporal aggregates"), plan.description
        np.testing.assert_array_equal(plan.compute().values, compute_map(ds, query).values)


def test_build_panel_names_a_damaged_level(built, tmp_path) -> None:
    """A deleted chunk of one level's stores is shown in the build panel of its variable."""
    from app.sources import DatasetSources
    from app.state import ExplorerState
    from app.views.build_view import BuildView

    ds, pristine = built

    def panel_for(ds: xr.Dataset) -> BuildView:
        state = ExplorerState(DatasetSources.from_datasets({"demo": ds}))
        state.var = "ta"
        return BuildView(state)

    assert not panel_for(ds).damage.visible
    folder = tmp_path / pristine.name
    shutil.copytree(pristine, folder)
    name = f"ta@level={float(ds['level'][1])!r}"
    chunk = next((DerivedStores(folder).data_folder / "aggregates.zarr" / name).rglob("c/*/*/*"))
    chunk.unlink()
    shown = panel_for(ds.assign_attrs(gridscope_derived=str(folder))).damage
    assert shown.visible and name in shown.object, shown.object


def test_icon_salinity_on_depth_levels_is_built_per_level(tmp_path) -> None:
    """The ICON sample: triangles, ``S(time, depth, cell)`` on three depth levels."""
    ds, folder = _built_sample("triangular_grid_ICON.nc", tmp_path)
    levels = [float(v) for v in ds["S"]["level"].values]
    assert len(levels) == 3
    names = set(DerivedStores(folder).manifest()["variables"])
    assert names == {f"S@level={v!r}" for v in levels}
    t = str(ds["time"].values[0])[:10]
    answers = []
    for level in levels:
        query = Query(dataset="x", var="S", start=t, end=t, agg="mean", level=level)
        plan = plan_map(ds, query)
        assert plan.description.startswith("temporal aggregates of the native cells")
        got = plan.compute().values
        np.testing.assert_array_equal(got, compute_map(ds, query).values)
        answers.append(got)
    assert not np.array_equal(answers[0], answers[2], equal_nan=True)
