"""The app's callbacks produce the pipelines' numbers (checked against numpy brute force)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import xarray as xr

from app import answers, exports, map_views
from app.sources import DatasetSources
from app.state import ExplorerState
from pipelines import compute_map, compute_series
from tests.app_data import make_clim_ds, make_ds


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return make_ds()


@pytest.fixture(scope="module")
def sources(ds: xr.Dataset) -> DatasetSources:
    return DatasetSources.from_datasets({"synth": ds, "clim": make_clim_ds()})


@pytest.fixture
def state(sources: DatasetSources) -> ExplorerState:
    return ExplorerState(sources)


@pytest.fixture
def results(state: ExplorerState):
    from app.views.results import ViewResults

    out = ViewResults(state)
    out.refresh()
    return out


def _box_mean(
    values: np.ndarray, area: np.ndarray, lat: np.ndarray, lon: np.ndarray, bbox
) -> np.ndarray:
    """Area-weighted mean over cells whose centres are in bbox, NaN cells excluded (numpy)."""
    w, s, e, n = bbox
    in_lon = ((lon - w) % 360) <= ((e - w) % 360 or 360)
    in_lat = (lat >= s) & (lat <= n)
    mask = in_lat[:, None] & in_lon[None, :]
    out = []
    for frame in values:
        ok = mask & np.isfinite(frame)
        out.append(np.sum(frame[ok] * area[ok]) / np.sum(area[ok]))
    return np.array(out)


def test_step_map_matches_pipelines_and_numpy(ds, state, results) -> None:
    state.time = "2001-05-15"
    raw = ds["tas"].values
    expected = raw[16]
    np.testing.assert_array_equal(results.field.values, expected)
    np.testing.assert_array_equal(results.field.values, compute_map(ds, state.map_query).values)


@pytest.mark.parametrize("agg", ["mean", "min", "max", "std"])
def test_range_map_matches_numpy(ds, state, results, agg) -> None:
    state.param.update(time_mode="range", start="2000-06-15", end="2001-08-15", agg=agg)
    block = ds["tas"].values[5:20]
    expected = {"mean": np.nanmean, "min": np.nanmin, "max": np.nanmax, "std": np.nanstd}[agg](
        block, axis=0
    )
    np.testing.assert_allclose(results.field.values, expected, rtol=1e-12, equal_nan=True)


def test_level_map(ds, state, results) -> None:
    state.var = "ua"
    state.level = 500.0
    np.testing.assert_array_equal(results.field.values, ds["ua"].values[0, 2])


@pytest.mark.parametrize("region", ["Global", "Niño 3.4", "North Pacific", "Bering Sea"])
def test_box_series_matches_numpy(ds, state, results, region) -> None:
    state.region = region
    area = ds["cell_area"].values
    expected = _box_mean(ds["tas"].values, area, ds["lat"].values, ds["lon"].values, state.bbox)
    np.testing.assert_allclose(results.series.values, expected, rtol=1e-10)
    xr.testing.assert_allclose(results.series, compute_series(ds, state.series_query).compute())


def test_point_series_and_range_limits(ds, state, results) -> None:
    state.param.update(region="Point", point=(-141.0, 4.0))
    np.testing.assert_array_equal(
        results.series.values, ds["tas"].values[:, 9, 3]
    )  # lat 5, lon -145
    state.param.update(time_mode="range", start="2001-01-15", end="2001-12-15")
    np.testing.assert_array_equal(results.series.values, ds["tas"].values[12:24, 9, 3])


def test_anomaly_map_matches_pipelines(ds, state, results) -> None:
    state.param.update(time_mode="range", start="2002-01-15", end="2002-12-15", anomaly=True,
                       baseline_start="2000-01-15", baseline_end="2001-12-15")  # fmt: skip
    raw = ds["tas"].values
    clim = np.stack([np.nanmean(raw[[m, m + 12]], axis=0) for m in range(12)])
    expected = np.nanmean(raw[24:36] - clim, axis=0)
    np.testing.assert_allclose(results.field.values, expected, rtol=1e-10, equal_nan=True)


def test_error_is_a_message_not_an_exception(state, results) -> None:
    state.param.update(region="Custom box", bbox=(1.0, 1.0, 1.5, 1.5))  # no cell centre inside
    assert "no grid cell" in results.error
    assert results.series is None


def test_map_and_series_errors_are_kept_apart(state, results) -> None:
    """A series error stays while the map updates, and goes once the series works again."""
    state.param.update(region="Custom box", bbox=(1.0, 1.0, 1.5, 1.5))  # no cell centre inside
    assert results.series_error and not results.map_error
    before = results.map_version
    state.param.update(time=state.param.time.objects[1])  # a new map; the series still fails
    assert results.map_version == before + 1
    assert "Could not compute the series" in results.error and "no grid cell" in results.error
    state.param.update(bbox=(-60.0, -20.0, 20.0, 40.0))
    assert results.series is not None and results.error == ""


def test_regrid_to_screen_crops_and_coarsens() -> None:
    lat = np.arange(-89.5, 90, 1.0)
    lon = np.arange(-179.5, 180, 1.0)
    field = xr.DataArray(
        np.add.outer(lat, lon), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    view = map_views.regrid_to_screen(field, (-10.0, 10.0, 0.0, 20.0), (400, 300))
    assert view["lon"].values[0] <= -10 <= 10 <= view["lon"].values[-1]
    assert view.sizes["lon"] < 30 and view.sizes["lat"] < 30
    small = map_views.regrid_to_screen(field, None, (50, 25))
    assert small.sizes["lon"] == 360 // 3 and small.sizes["lat"] == 180 // 3
    np.testing.assert_allclose(small.values[0, 0], field.values[:3, :3].mean())


def test_map_view_draws_the_field_and_tools_set_the_region(state, results) -> None:
    from app.views.map_view import MapView
    from app.views.series_view import SeriesView

    view = MapView(state, results)
    data = view._image_source.data  # the image glyph's source, as the browser draws it
    drawn = data["image"][0]
    # the field is drawn at every turn of the globe the view may pan to: -180..180 is it
    step = data["dw"][0] / drawn.shape[1]
    lon = data["x"][0] + step * (np.arange(drawn.shape[1]) + 0.5)
    lat = data["y"][0] + data["dh"][0] / drawn.shape[0] * (np.arange(drawn.shape[0]) + 0.5)
    inside = (lon > -180) & (lon < 180)
    np.testing.assert_allclose(lon[inside], results.field["lon"].values)
    np.testing.assert_allclose(lat, results.field["lat"].values)
    np.testing.assert_array_equal(drawn[:, inside], results.field.values)
    np.testing.assert_array_equal(drawn[:, lon > 180][:, :3], results.field.values[:, :3])
    assert "degC" in view._colourbar.title and ("air temperature", "@image") in [
        tuple(t) for t in view._hover.tooltips
    ]
    view._on_box(bounds=(-30.0, -10.0, 20.0, 15.0))
    assert (state.region, state.bbox) == ("Custom box", (-30.0, -10.0, 20.0, 15.0))
    assert results.series is not None and state.series_query.bbox == (-30.0, -10.0, 20.0, 15.0)
    view._on_tap(x=200.0, y=12.0)  # 200E is -160
    # the point moves to the centre of the cell its series is taken from (hover = series)
    from pipelines.selection import nearest_cell

    ds = state.sources.open(state.dataset)
    i, j = nearest_cell(ds, (-160.0, 12.0))
    assert state.region == "Point" and state.point == (ds["lon"].values[j], ds["lat"].values[i])
    series = SeriesView(state, results)
    x = series._source.data["time"][7]
    series._on_tap(x=x.astype("datetime64[ms]").astype("int64"), y=0.0)
    assert (state.time_mode, state.time) == ("step", "2000-08-15")


def test_explorer_query_and_data(sources) -> None:
    from app import Explorer

    ex = Explorer("dataset=synth&var=tas&time=2001-02", sources=sources, region="Tropics")
    assert ex.query.time == "2001-02-15" and ex.query.bbox == (-180.0, -23.5, 180.0, 23.5)
    field, series = ex.data()
    np.testing.assert_array_equal(
        field.values, compute_map(ex.state.sources.open("synth"), ex.state.map_query).values
    )
    assert series.sizes["time"] == 36
    assert ex.__panel__() is not None


def test_exports(ds, state, results, tmp_path) -> None:
    state.region = "Niño 3.4"
    text = exports.series_to_csv(results.series, tmp_path / "s.csv", var="tas")
    lines = text.splitlines()
    assert lines[0] == "time,tas" and len(lines) == 37
    assert lines[1].startswith("2000-01-15T00:00:00,")
    np.testing.assert_array_equal(
        [float(line.split(",")[1]) for line in lines[1:]], results.series.values
    )
    assert (tmp_path / "s.csv").read_text() == text
    data = exports.map_to_netcdf(results.field, query=state.query)
    (tmp_path / "m.nc").write_bytes(data)
    back = xr.open_dataset(tmp_path / "m.nc")
    np.testing.assert_array_equal(back["tas"].values, results.field.values)
    buffer = io.BytesIO()
    exports.map_to_png(results.field, buffer, cmap="fire", coastlines=True)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_code_reproduces_the_view(monkeypatch) -> None:
    import data_catalog

    real = make_ds(chunked=False)
    monkeypatch.setattr(data_catalog, "open_dataset", lambda source, **_: real)
    state = ExplorerState(DatasetSources.from_datasets({"synth": real}))
    state.param.update(time="2001-03-15", region="North Atlantic")
    code = exports.code_snippet(state.query, series=state.series_query)
    code = "\n".join(line for line in code.splitlines() if not line.startswith("field.plot"))
    namespace: dict = {}
    monkeypatch.chdir(__import__("tempfile").mkdtemp())
    exec(compile(code, "snippet", "exec"), namespace)
    np.testing.assert_array_equal(
        namespace["field"].values, answers.full_map(real, state.map_query).values
    )
    np.testing.assert_allclose(
        namespace["series"].values, answers.series_for(real, state.series_query).values
    )


def test_import_app_is_light() -> None:
    import subprocess

    code = "import sys, app, app.cli; print(any(m in sys.modules for m in ('panel', 'holoviews', 'bokeh')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_climatology_series_over_month_names_is_costed_and_computed() -> None:
    """The series cost reads the variable's time axis with its attrs: on a climatology a
    range 'Mar'..'Sep' is months, not an error (it said 'month names are for climatologies')."""
    from app import answers
    from data_catalog import open_dataset
    from pipelines import Query, compute_series

    ds = open_dataset("coads")
    query = Query(dataset="coads", var="SST", start="Mar", end="Sep", agg="std",
                  bbox=(120.0, 20.0, -100.0, 60.0))  # fmt: skip
    got = answers.start_series(ds, query).result()
    want = compute_series(ds, query).compute(scheduler="sync")
    np.testing.assert_allclose(got.values, want.values, rtol=1e-12)
