"""An update patches the dashboard's plots in place (issue 13: "light pages").

A new time step, variable, colour map, point or box changes the data sources and a few
properties of the map and series figures; it builds no Bokeh model (each one would be
built, serialised and sent again, and built again by the browser). What the figures
then draw is checked against the dataset itself: the image is the new field, the
highlight is at the new step, the series is the cell's values or the box's area-weighted
mean computed here with numpy, the region's marks are where the region is.
"""

from __future__ import annotations

import numpy as np
import pytest

pn = pytest.importorskip("panel")

from app.sources import DatasetSources  # noqa: E402
from app.state import ExplorerState  # noqa: E402
from app.views.dashboard import Dashboard  # noqa: E402
from app.views.results import ViewResults  # noqa: E402
from tests.app_data import make_ds  # noqa: E402


@pytest.fixture
def page():
    """(state, dataset, document) of a dashboard built into a Bokeh document."""
    from bokeh.document import Document

    ds = make_ds(0, chunked=False)
    state = ExplorerState(DatasetSources.from_datasets({"synth": ds}))
    results = ViewResults(state)
    results.refresh()
    doc = Document()
    doc.add_root(pn.Column(Dashboard(state, results=results)).get_root(doc))
    return state, ds, doc


def _renderers(doc, glyph: str) -> list:
    from bokeh.models import GlyphRenderer

    return [
        m for m in doc.models if isinstance(m, GlyphRenderer) and type(m.glyph).__name__ == glyph
    ]


def _drawn_map(doc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lon centres, lat centres, values) of the map's image as the browser draws it."""
    (renderer,) = _renderers(doc, "Image")
    data = renderer.data_source.data
    image = np.asarray(data["image"][0])
    ny, nx = image.shape
    lon = data["x"][0] + data["dw"][0] / nx * (np.arange(nx) + 0.5)
    lat = data["y"][0] + data["dh"][0] / ny * (np.arange(ny) + 0.5)
    return lon, lat, image


def _series(doc) -> tuple[np.ndarray, np.ndarray]:
    """(x, values) of the series' curve (the map's coastline is a line of x, y)."""
    (renderer,) = [r for r in _renderers(doc, "Line") if "value" in r.data_source.data]
    data = renderer.data_source.data
    return np.asarray(data["time"]), np.asarray(data["value"], dtype="float64")


def _ms(t) -> float:
    return float(np.datetime64(t, "ms").astype("int64"))


def _update_adds_no_models(doc, update) -> None:
    before = {m.id for m in doc.models}
    update()
    new = [type(m).__name__ for m in doc.models if m.id not in before]
    assert new == [], f"the update built new Bokeh models: {new}"


def test_time_and_variable_patch_the_map_in_place(page) -> None:
    state, ds, doc = page
    info = state.sources.info("synth")
    _update_adds_no_models(doc, lambda: setattr(state, "time", info.times[5]))
    lon, lat, image = _drawn_map(doc)
    inside = (lon > -180) & (lon < 180)
    np.testing.assert_allclose(lon[inside], ds["lon"].values)
    np.testing.assert_allclose(lat, ds["lat"].values)
    np.testing.assert_array_equal(image[:, inside], ds["tas"].isel(time=5).values)
    # the series' highlight (a vertical line) is at the new step
    from bokeh.models import ColorBar, Span

    (line,) = [m for m in doc.models if isinstance(m, Span) and m.dimension == "height"]
    assert line.visible and line.location == _ms(ds["time"].values[5])

    _update_adds_no_models(doc, lambda: setattr(state, "var", "ua"))
    level = float(state.level)
    expected = ds["ua"].isel(time=5).sel(level=level).values
    lon, _, image = _drawn_map(doc)
    np.testing.assert_allclose(image[:, (lon > -180) & (lon < 180)], expected, rtol=1e-6)
    (colourbar,) = [m for m in doc.models if isinstance(m, ColorBar)]
    assert "m s-1" in colourbar.title and "eastward wind" in colourbar.title
    mapper = colourbar.color_mapper
    assert (mapper.low, mapper.high) == pytest.approx(
        (float(np.nanmin(expected)), float(np.nanmax(expected))), rel=1e-6
    ) or state.is_diverging  # a diverging colour map is symmetric about 0

    palette = tuple(mapper.palette)
    other = next(c for c in state.param.cmap.objects if c != state.cmap)
    _update_adds_no_models(doc, lambda: setattr(state, "cmap", other))
    assert tuple(mapper.palette) != palette


def test_point_and_box_patch_the_marks_and_the_series_in_place(page) -> None:
    state, ds, doc = page
    _update_adds_no_models(doc, lambda: state.param.update(region="Point", point=(5.0, 15.0)))
    # the map's cross (its source has x, y; the series' points have time, value)
    (cross,) = [r for r in _renderers(doc, "Scatter") if "x" in r.data_source.data]
    assert 5.0 in list(cross.data_source.data["x"]) and 15.0 in list(cross.data_source.data["y"])
    times, values = _series(doc)
    cell = ds["tas"].sel(lon=5.0, lat=15.0).values
    np.testing.assert_allclose(values, cell)
    assert [_ms(t) for t in times] == [_ms(t) for t in ds["time"].values]

    box = (-32.0, -12.0, 22.0, 12.0)
    _update_adds_no_models(
        doc, lambda: state.param.update(region="Custom box", bbox=box, point=None)
    )
    (quad,) = _renderers(doc, "Quad")
    data = quad.data_source.data
    assert (-32.0, -12.0, 22.0, 12.0) in set(
        zip(data["left"], data["bottom"], data["right"], data["top"], strict=True)
    )
    assert list(cross.data_source.data["x"]) == []  # no point any more
    # area-weighted mean over the box's cells, ignoring missing values, by hand
    lon, lat = ds["lon"].values, ds["lat"].values
    rows = (lat > box[1]) & (lat < box[3])
    cols = (lon > box[0]) & (lon < box[2])
    v = ds["tas"].values[:, rows][:, :, cols]
    w = np.broadcast_to(ds["cell_area"].values[rows][:, cols], v.shape)
    finite = np.isfinite(v)
    expected = np.where(finite, v * w, 0).sum(axis=(1, 2)) / np.where(finite, w, 0).sum(axis=(1, 2))
    _, values = _series(doc)
    np.testing.assert_allclose(values, expected, rtol=1e-6)
