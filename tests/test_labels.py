"""What a view says it shows (app.labels), and the map netCDF download holds the map shown.

The labels are checked piece by piece against the Query and the dataset's own
attributes; the netCDF download against a brute-force xarray selection on the raw
COADS sample file (its own longitudes 21..379, no gridscope code in between).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from app.labels import level_text, region_text, source_text, view_labels
from app.sources import DatasetSources
from app.state import ExplorerState, check_colour_range
from pipelines import Query, QueryError
from tests.app_data import make_clim_ds, make_ds

SAMPLES = Path(__file__).resolve().parents[1] / "data_catalog" / "samples"


@pytest.fixture(scope="module")
def sources() -> DatasetSources:
    return DatasetSources.from_datasets({"synth": make_ds(), "clim": make_clim_ds()})


def test_a_std_over_a_period_at_a_level_is_titled_as_such(sources: DatasetSources) -> None:
    info = sources.info("synth")
    query = Query(dataset="synth", var="ua", start="2000-03-15", end="2001-12-15", agg="std",
                  level=500.0, bbox=(120.0, 20.0, -100.0, 60.0))  # fmt: skip
    words = view_labels(query, info)
    ds = make_ds()
    assert words.dataset == ds.attrs["title"]
    assert words.variable == ds["ua"].attrs["long_name"] and words.units == ds["ua"].attrs["units"]
    assert words.when == "std 2000-03..2001-12"  # a monthly record: months, not mid-month days
    assert words.level == "500 hPa" and ds["level"].attrs["units"] == "hPa"
    assert words.region == "box 120°E..100°W, 20°N..60°N"
    title = words.title()
    for piece in ("Synthetic monthly", "eastward wind (m s-1)", "std 2000-03..2001-12", "500 hPa"):
        assert piece in title
    assert "box" not in title and "box 120°E" in words.title(region=True)


def test_a_single_step_an_anomaly_and_a_point(sources: DatasetSources) -> None:
    info = sources.info("clim")
    step = view_labels(Query(dataset="clim", var="tas", time="Jul"), info)
    assert step.title() == "Synthetic climatology · air temperature (degC) · Jul"
    anomaly = view_labels(
        Query(dataset="clim", var="tas", time="Jul", baseline_start="Jan", baseline_end="Dec",
              point=(-150.0, 0.0)),
        info,
    )  # fmt: skip
    assert anomaly.variable == "air temperature anomaly" and anomaly.units == "degC"
    assert anomaly.baseline == "anomaly vs Jan..Dec monthly climatology"
    assert anomaly.series_title(dataset=False) == (
        "air temperature anomaly (degC) · anomaly vs Jan..Dec monthly climatology · "
        "at point 150°W, 0°"
    )
    global_series = view_labels(Query(dataset="clim", var="tas", bbox=(-180, -90, 180, 90)), info)
    assert global_series.region == "" and global_series.series_title().endswith(
        "area-weighted global mean"
    )


def test_a_variable_without_a_time_axis_has_no_time_words() -> None:
    ds = make_ds().isel(time=0, drop=True)[["tas"]]
    info = DatasetSources.from_datasets({"still": ds}).info("still")
    words = view_labels(Query(dataset="still", var="tas"), info)
    assert words.when == "" and words.baseline == "" and words.level == ""


def test_small_pieces_in_words() -> None:
    assert level_text(1000.0, "hPa") == "1000 hPa" and level_text(3, "") == "level 3"
    assert level_text(None, "m") == ""
    assert region_text(point=(200.0, -5.5)) == "point 160°W, 5.5°S"
    assert region_text(bbox=(-180.0, -90.0, 180.0, 90.0)) == ""
    assert "cache" not in source_text("cache") and "planner" not in source_text("cluster")
    assert source_text(
        "in-process", "brute force on the raw data (level 0, 9x12 cells, 1 steps)"
    ) == ("computed from the full data on this server")
    assert source_text("cluster", "temporal aggregates level 2 (3x4 cells): blocks [...]") == (
        "from the fast-access stores on the Dask cluster"
    )


@pytest.mark.parametrize("text", ["3000, -6000", "5, 5", "1", "a, b", "nan, 1"])
def test_bad_fixed_colour_ranges_are_refused_in_words(text: str) -> None:
    with pytest.raises(QueryError) as info:
        check_colour_range(text)
    assert info.value.field == "clim" and info.value.message


def test_a_reversed_colour_range_leaves_the_state_as_it_was(sources: DatasetSources) -> None:
    state = ExplorerState(sources)
    state.param.update(clim_mode="fixed", clim=(-6000.0, 3000.0))
    state.clim = (3000.0, -6000.0)
    assert tuple(state.clim) == (-6000.0, 3000.0) and "below high" in state.message


def test_dataset_change_keeps_what_fits_and_resets_the_rest_quietly(
    sources: DatasetSources,
) -> None:
    state = ExplorerState(sources)
    state.param.update(dataset="clim", time="Jul")
    state.dataset = "synth"
    assert state.time == "2000-01-15" and state.message == ""  # Jul is not a step of synth
    other = make_ds(2).assign_coords(level=("level", [1000.0, 850.0, 500.0], {"units": "m"}))
    more = DatasetSources.from_datasets({"synth": make_ds(), "depth": other})
    state = ExplorerState(more)
    state.var = "ua"  # its levels are offered once it is chosen
    state.param.update(level=500.0, time_mode="range", start="2000-03-15", end="2001-02-15",
                       agg="max")  # fmt: skip
    state.dataset = "depth"
    assert state.level == 1000.0  # 500 hPa is not 500 m: the new axis's first level
    assert (state.time_mode, state.start, state.end, state.agg) == (
        "range", "2000-03-15", "2001-02-15", "max",
    )  # fmt: skip
    assert state.param.level.names == {"1000 m": 1000.0, "850 m": 850.0, "500 m": 500.0}
    assert state.message == ""


def test_range_and_anomaly_need_a_time_axis() -> None:
    ds = make_ds().isel(time=0, drop=True)[["tas"]]
    state = ExplorerState(DatasetSources.from_datasets({"still": ds}))
    state.anomaly = True
    state.time_mode = "range"
    assert state.anomaly is False and state.time_mode == "step" and not state.query.is_anomaly


def test_a_clicked_point_moves_to_the_centre_of_its_series_cell(sources: DatasetSources) -> None:
    from pipelines.selection import nearest_cell

    state = ExplorerState(sources)
    state.param.update(region="Point", point=(-150.0, 0.0))  # a corner of four 10° cells
    ds = make_ds()
    i, j = nearest_cell(ds, (-150.0, 0.0))
    assert state.point == (float(ds["lon"][j]), float(ds["lat"][i]))


# --- the map netCDF download ---------------------------------------------------------------------
def _raw_coads_sst(month_index: int) -> xr.DataArray:
    """Brute force: the raw file's SST at one step, longitudes folded to [-180, 180), sorted."""
    with xr.open_dataset(SAMPLES / "coads_climatology.cdf", decode_times=False) as raw:
        sst = raw["SST"].isel(TIME=month_index).load()
    lon = ((sst["COADSX"].values + 180.0) % 360.0) - 180.0
    sst = sst.assign_coords(COADSX=lon).sortby("COADSX")
    return sst.rename(COADSX="lon", COADSY="lat")


def test_map_netcdf_is_the_map_shown_or_only_the_region() -> None:
    from app.views.dashboard import Dashboard

    sources = DatasetSources.from_catalog()
    state = ExplorerState(sources)
    state.param.update(dataset="coads", var="SST", time="Jul", region="Custom box",
                       bbox=(-160.0, -10.0, -120.0, 10.0))  # fmt: skip
    dash = Dashboard(state)
    want = _raw_coads_sst(6)

    with xr.open_dataset(asyncio.run(dash._netcdf()).getvalue()) as shown:
        got = shown["SST"].load()
        attrs = dict(shown.attrs)
    assert got.shape == want.shape == (90, 180)  # the globe, as on screen; not the 21x5 box
    np.testing.assert_allclose(got.values, want.values, rtol=1e-6, equal_nan=True)
    assert "SEA SURFACE TEMPERATURE (Deg C)" in attrs["title"] and "Jul" in attrs["title"]
    assert attrs["gridscope_when"] == "Jul" and attrs["gridscope_units"] == "Deg C"
    assert Query.from_json(attrs["gridscope_query"]).bbox is None

    dash.region_only.value = list(dash.region_only.options)
    with xr.open_dataset(asyncio.run(dash._netcdf()).getvalue()) as region:
        got = region["SST"].load()
        attrs = dict(region.attrs)
    box = want.where(
        (want.lon >= -160) & (want.lon <= -120) & (want.lat >= -10) & (want.lat <= 10), drop=True
    )
    assert got.shape == box.shape == (10, 20)
    np.testing.assert_allclose(got.values, box.values, rtol=1e-6, equal_nan=True)
    assert attrs["gridscope_region"] == "box 160°W..120°W, 10°S..10°N"


# --- remote catalog entries ----------------------------------------------------------------------
def test_remote_entries_are_listed_and_an_unreachable_one_says_so_in_words() -> None:
    from app.limits import user_message
    from app.sources import _check_reachable
    from data_catalog import load_catalog

    sources = DatasetSources.from_catalog()
    remote = [e.id for e in load_catalog().entries if "://" in e.urlpath]
    assert remote and set(remote) <= set(sources.ids) == set(sources.entries)
    assert all(sources.title(i).endswith("(remote)") for i in remote)
    assert sources.ids[0] == "coads"  # the local samples come first
    started = time.monotonic()
    with pytest.raises(ValueError) as info:  # a closed local port: refused at once, no network
        _check_reachable("https://127.0.0.1:9/store.zarr", timeout=2.0)
    text = user_message(info.value, "era5-arco")
    assert "remote dataset" in text and "cannot reach 127.0.0.1" in text and "network" in text
    assert time.monotonic() - started < 5


def test_the_colour_range_box_explains_a_reversed_range_and_keeps_the_map(
    sources: DatasetSources,
) -> None:
    from app.views.sidebar import Sidebar

    state = ExplorerState(sources)
    sidebar = Sidebar(state)
    state.clim_mode = "fixed"
    sidebar.clim.value = "-6000, 3000"
    assert tuple(state.clim) == (-6000.0, 3000.0) and sidebar.clim_error.object == ""
    sidebar.clim.value = "3000, -6000"
    assert tuple(state.clim) == (-6000.0, 3000.0)  # the reversed range never reaches the view
    assert "must be below high" in sidebar.clim_error.object
    assert "clim=-6000,3000" in "&".join(f"{k}={v}" for k, v in state.to_url_params().items())
