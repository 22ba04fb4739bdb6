"""The map: the field at screen resolution, offline coastlines, region tools.

The map is one Bokeh figure per page, built here from Bokeh models directly (an image
glyph, a line, a scatter and a quad, each over its own ``ColumnDataSource``): a new map
(``map_version``) or colour setting replaces the image source's data and the colour
mapper's palette and range in place, a new region the marks' sources, so an update sends
new numbers and builds no model. The figure's range, size, box-select and tap events tell
`ViewResults` what is on screen; for a large grid it asks the planner for that viewport at
screen resolution (`app.map_views.start_map_view`) and the new frame arrives through
``map_version``; a small grid (the sample files) is held whole and Bokeh zooms it without
a round trip. The title and the line under the map say which resolution is shown (the
hover value is the value of that level). Box select sets a custom box region, a tap sets a
point region. Errors also appear as notifications when the page has them.

Any centre: the x axis runs ``centre-180..centre+180`` (``ExplorerState.centre``; 180
gives the Pacific-centred 0..360) and may be panned past either edge; longitudes are
labelled in degrees east/west of Greenwich on the axis and in the hover. The field is
drawn at every turn of the globe the view shows, the coastlines over three turns
(-540..540), and box select and tap turn the frame's x back into -180..180 (a box
across 180 is W > E). A grid that is not regular is never held whole: each view is its
native cells rasterized at screen resolution (`app.rasterize`, via `app.map_views`).
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import numpy as np
import panel as pn
import param

from app import labels, map_views
from app.coastlines import coastline_paths
from app.rasterize import wrap_longitudes
from app.regions import CUSTOM_BOX, POINT
from app.runtime import current
from app.state import MAP_CENTRES, ExplorerState
from app.views.bokeh_models import call_alive, glyph_renderer, in_document, set_changed
from app.views.page_weight import without_tooltips
from app.views.results import ViewResults

__all__ = ["NAN_COLOUR", "MapView", "box_from_drag", "colour_range"]

#: Colour of missing values (land in an ocean field, cells outside the data).
NAN_COLOUR = "#d9d9d9"

# longitudes in geographic degrees on any centred map: x = 200 on a 0..360 axis is 160°W
_WRAP_JS = "const v = ((x + 180) % 360 + 360) % 360 - 180;"


def _lon_formatters() -> tuple[Any, Any]:
    """(axis tick formatter, hover formatter) that write a frame's x as 160°W / 20°E.

    New models for each plot: a Bokeh model belongs to one document (one session).
    """
    from bokeh.models import CustomJSHover, CustomJSTickFormatter

    ticks = CustomJSTickFormatter(code="const x = tick; " + _WRAP_JS + " return v < 0 ? "
        "`${+(-v).toFixed(2)}°W` : (v > 0 && v < 180) ? `${+v.toFixed(2)}°E` : `${Math.abs(v)}°`;")  # fmt: skip
    hover = CustomJSHover(code="const x = value; " + _WRAP_JS + " return v.toFixed(2) + '°E';")
    return ticks, hover


#: Longitudes the coastlines are drawn over: three turns of the globe, so that a map
#: centred anywhere from 180W to 180E shows them however far it is panned (half a turn).
_COAST_TURNS = (-360.0, 0.0, 360.0)


@functools.cache
def _coastline_xy() -> np.ndarray:
    """All coastlines as one NaN-separated (2, n) lon/lat array: one glyph per plot.

    Repeated at each of `_COAST_TURNS` (a line never crosses the antimeridian, so each
    copy is drawn as it is): continuous across 180 on any centred map. Rows, so that
    each is a contiguous array sent as it is (~40,000 points, 320 kB in float32).
    """
    pieces = []
    for shift in _COAST_TURNS:
        for line in coastline_paths():
            pieces.append(line + np.array([shift, 0.0]))
            pieces.append(np.full((1, 2), np.nan))
    # float32: half the bytes every page sends (1e-5 degrees is well under a pixel)
    return np.ascontiguousarray(np.concatenate(pieces).T, dtype="float32")


@functools.cache
def _palette(cmap: str) -> tuple[str, ...]:
    """The colours of a colour map name, as HoloViews samples them (256 of them)."""
    from holoviews.plotting.util import process_cmap

    return tuple(process_cmap(cmap, None))


def _image_data(field: Any) -> dict[str, list[Any]]:
    """The image source's columns for ``field`` (lat, lon): rows south to north.

    The image spans the cells' edges (a centre plus or minus half a cell, as the grid's
    spacing says); no field is one missing cell over the globe. float32 data stays
    float32 (half the bytes of float64 on the wire); the values drawn and hovered are the
    data's own.
    """
    if field is None:
        empty = np.full((1, 1), np.nan, dtype="float32")
        return {"image": [empty], "x": [-180.0], "y": [-90.0], "dw": [360.0], "dh": [180.0]}
    dtype = "float32" if field.dtype.kind == "f" and field.dtype.itemsize <= 4 else "float64"
    values = np.asarray(field.transpose("lat", "lon").values, dtype=dtype)
    lon = np.asarray(field["lon"].values, dtype="float64")
    lat = np.asarray(field["lat"].values, dtype="float64")
    if lat.size > 1 and lat[0] > lat[-1]:
        values, lat = values[::-1], lat[::-1]
    if lon.size > 1 and lon[0] > lon[-1]:
        values, lon = values[:, ::-1], lon[::-1]
    dx = (lon[-1] - lon[0]) / (lon.size - 1) if lon.size > 1 else 1.0
    dy = (lat[-1] - lat[0]) / (lat.size - 1) if lat.size > 1 else 1.0
    return {"image": [np.ascontiguousarray(values)], "x": [lon[0] - dx / 2],
            "y": [lat[0] - dy / 2], "dw": [dx * lon.size], "dh": [dy * lat.size]}  # fmt: skip


def colour_range(values: np.ndarray, state: ExplorerState) -> tuple[float, float]:
    """The colour range of the map: fixed, or the data's (symmetric when diverging)."""
    if state.clim_mode == "fixed":
        return tuple(state.clim)  # type: ignore[return-value]
    finite = np.asarray(values)[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if state.is_diverging:
        bound = max(abs(lo), abs(hi)) or 1.0
        return (-bound, bound)
    if lo == hi:
        return (lo - 0.5, hi + 0.5)
    return (lo, hi)


def _into_frame(lon: float, centre: float) -> float:
    """``lon`` moved by a multiple of 360 into the map's frame [centre-180, centre+180)."""
    west = centre - 180.0
    return ((float(lon) - west) % 360.0) + west


def _region_boxes(
    bbox: tuple[float, float, float, float], centre: float = 0.0
) -> list[tuple[float, float, float, float]]:
    """A (W,S,E,N) box as rectangles on a map centred on ``centre``.

    W > E crosses the antimeridian. The box is one rectangle starting inside the frame
    (on a 0..360 map a 160E..120W box is 160..240), repeated one turn either side, so a
    box across the frame's edge shows both its parts, and so does a map panned past it.
    """
    w, s, e, n = (float(v) for v in bbox)
    width = e - w if e >= w else e + 360.0 - w
    if width >= 360.0:
        return [(centre - 540.0, s, centre + 540.0, n)]
    x0 = _into_frame(w, centre)
    return [(x0 + shift, s, x0 + shift + width, n) for shift in (-360.0, 0.0, 360.0)]


def box_from_drag(x0: float, x1: float) -> tuple[float, float]:
    """(W, E) in -180..180 of a box dragged from ``x0`` to ``x1`` on any centred map.

    W > E when the box crosses the antimeridian (160..240 on a 0..360 map is 160, -120);
    a box as wide as the globe is -180, 180.
    """
    if x1 - x0 >= 360.0:
        return (-180.0, 180.0)
    west = _into_frame(x0, 0.0)
    east = _into_frame(x1, 0.0)
    if east == -180.0 and x1 > x0:
        east = 180.0
    return (round(west, 2), round(east, 2))


class MapView(pn.viewable.Viewer):
    """The map figure with coastlines, region outline, box select and tap.

    One Bokeh figure per page, drawn with Bokeh models directly: a new map, colour map or
    region patches the data sources and the colour mapper in place, so an update sends
    only the new numbers and builds no model (a HoloViews plot per update cost ~130 ms
    of server CPU; issue 13 "light pages").
    """

    height = param.Integer(default=460, doc="Height of the map in pixels.")

    def __init__(self, state: ExplorerState, results: ViewResults, **params: Any):
        super().__init__(**params)
        self.state = state
        self.results = results
        x0, x1 = state.x_range
        self._whole_window = self._window_around(x0, x1)  # see _drawn_field
        y0, y1 = state.y_range
        if results.screen is None:
            results.set_view(screen=(700, self.height - 110))  # until the browser says
        if (x0, x1, y0, y1) != (-180.0, 180.0, -90.0, 90.0):
            results.set_view(viewport=(x0, x1, y0, y1))
        self.figure = self._new_figure((x0, x1), (y0, y1))
        self._draw_image()
        self._draw_region()
        self.pane = pn.pane.Bokeh(self.figure, sizing_mode="stretch_width", min_height=320,
                                  height=self.height)  # fmt: skip
        self.info = pn.pane.HTML(self._info_html, css_classes=["gs-map-info"], margin=(0, 10),
                                 sizing_mode="stretch_width")  # fmt: skip
        self.centre = pn.widgets.RadioButtonGroup.from_param(
            state.param.centre, name="Map centre", options=MAP_CENTRES, css_classes=["gs-centre"],
            button_type="light", margin=(0, 10),
        )  # fmt: skip
        without_tooltips(self.centre)
        results.param.watch(self._draw_image, ["map_version"])
        state.param.watch(self._draw_image, ["cmap", "clim_mode", "clim", "anomaly"])
        state.param.watch(self._on_centre, ["centre"])
        state.param.watch(self._draw_region, ["region", "bbox", "point", "centre"])
        results.param.watch(self._notify, ["error"])

    # --- the figure ------------------------------------------------------------------
    def _new_figure(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> Any:
        """The figure and its glyphs, each drawn from a data source updated in place."""
        from bokeh.events import RangesUpdate, SelectionGeometry, Tap
        from bokeh.models import (
            BoxSelectTool,
            ColorBar,
            ColumnDataSource,
            HoverTool,
            LinearColorMapper,
            Range1d,
            ResetTool,
            TapTool,
            WheelZoomTool,
        )
        from bokeh.models.glyphs import Image, Line, Quad, Scatter
        from bokeh.plotting import figure

        ticks, hover_lon = _lon_formatters()
        fig = figure(
            x_range=Range1d(*x_range), y_range=Range1d(*y_range), title="", tools="pan",
            x_axis_label="longitude", y_axis_label="latitude (°N)", height=self.height,
            min_height=300, sizing_mode="stretch_width", min_border_right=10, css_classes=["gs-map"],
            output_backend="webgl" if current().settings.webgl else "canvas",
        )  # fmt: skip
        fig.xaxis.formatter = ticks
        fig.center = []  # no grid lines (nor their two models)
        fig.toolbar.logo = None
        self._mapper = LinearColorMapper(palette=_palette(self.state.cmap), low=0.0, high=1.0,
                                         nan_color=NAN_COLOUR)  # fmt: skip
        self._image_source = ColumnDataSource(_image_data(None))
        image = glyph_renderer(fig, self._image_source, Image(image="image", x="x", y="y", dw="dw",
                                                         dh="dh", color_mapper=self._mapper))  # fmt: skip
        coast = _coastline_xy()
        glyph_renderer(fig, ColumnDataSource({"x": coast[0], "y": coast[1]}),
                  Line(x="x", y="y", line_color="black", line_width=0.8))  # fmt: skip
        self._points_source = ColumnDataSource({"x": [], "y": []})
        glyph_renderer(fig, self._points_source, Scatter(x="x", y="y", marker="x", size=10,
                  line_color="magenta", fill_color="magenta", line_width=3))  # fmt: skip
        self._boxes_source = ColumnDataSource({"left": [], "right": [], "bottom": [], "top": []})
        glyph_renderer(fig, self._boxes_source, Quad(left="left", right="right", bottom="bottom",
                  top="top", fill_alpha=0.0, line_color="magenta", line_width=2.5))  # fmt: skip
        self._hover = HoverTool(renderers=[image], formatters={"$x": hover_lon})
        box = BoxSelectTool(renderers=[image])
        wheel = WheelZoomTool()
        # no box zoom beside box select (the same drag; a region is what the box is for)
        # and no save tool beside "Map PNG"
        fig.add_tools(wheel, box, TapTool(renderers=[image]), self._hover, ResetTool())
        fig.toolbar.active_drag, fig.toolbar.active_scroll = box, wheel
        self._colourbar = ColorBar(color_mapper=self._mapper, location=(0, 0), label_standoff=8,
                                   bar_line_color="black", major_tick_line_color="black")  # fmt: skip
        fig.add_layout(self._colourbar, "right")
        # the view's callbacks hold it weakly: a closed page's figure never keeps it alive
        view = weakref.ref(self)
        fig.on_event(SelectionGeometry, lambda e: call_alive(view, "_on_selection", e))
        fig.on_event(Tap, lambda e: call_alive(view, "_on_tap", x=e.x, y=e.y))
        fig.on_event(RangesUpdate, lambda e: call_alive(view, "_on_range", x_range=(e.x0, e.x1),
                                                   y_range=(e.y0, e.y1)))  # fmt: skip

        def on_size(attr: str, old: Any, new: Any) -> None:
            from bokeh.core.property.descriptors import UnsetValueError

            try:  # the browser sends the width, then the height
                width, height = fig.inner_width, fig.inner_height
            except UnsetValueError:
                return
            call_alive(view, "_on_size", width=width, height=height)

        fig.on_change("inner_width", on_size)
        fig.on_change("inner_height", on_size)
        return fig

    def _draw_image(self, *_: Any) -> None:
        """The current field, colours, title, colour bar and hover: patched in place."""
        field = self._drawn_field()
        words = labels.for_state(self.state)  # the same words as the exports' titles
        label, units = words.variable, words.units
        data = _image_data(field)
        values = data["image"][0]
        clim = (0.0, 1.0) if field is None else colour_range(values, self.state)
        clabel = f"{label} ({units})" if units else label
        title = "" if field is None else words.title()  # the resolution: the line under the map
        palette = _palette(self.state.cmap)
        tooltips = [("lon", "$x{custom}"), ("lat", "$y{0.00}°N"), (label, "@image")]

        def change() -> None:
            self._image_source.data = data
            set_changed(self._mapper, palette=palette, low=clim[0], high=clim[1])
            set_changed(self._colourbar, title=clabel)
            set_changed(self.figure.title, text=title)
            if self._hover.tooltips != tooltips:
                self._hover.tooltips = tooltips

        in_document(self.figure, change)

    def _draw_region(self, *_: Any) -> None:
        """The region's marks: a cross at a point, an outline around a box (each turn)."""
        state, centre = self.state, float(self.state.centre)
        points: dict[str, list[float]] = {"x": [], "y": []}
        boxes: dict[str, list[float]] = {"left": [], "right": [], "bottom": [], "top": []}
        if state.region == POINT and state.point is not None:
            x = _into_frame(state.point[0], centre)
            points = {"x": [x - 360.0, x, x + 360.0], "y": [float(state.point[1])] * 3}
        elif state.bbox is not None and state.region != "Global":
            for box in _region_boxes(tuple(state.bbox), centre):
                for key, v in zip(("left", "bottom", "right", "top"), box, strict=True):
                    boxes[key].append(v)

        def change() -> None:
            if dict(self._points_source.data) != points:
                self._points_source.data = points
            if dict(self._boxes_source.data) != boxes:
                self._boxes_source.data = boxes

        in_document(self.figure, change)

    def _drawn_field(self) -> Any:
        """What the image shows: the view's field in the map's frame.

        A field held whole is coarsened to the plot and drawn over one and a half turns
        of the globe around the middle of the view (`_whole_window`: panning a quarter
        turn past either edge shows data at once, and a pan further re-draws it around
        the new middle); a view's answer covering the whole globe is repeated over its
        viewport and margin; a view's crop is already where the plot shows it.
        """
        field = self.results.field
        if field is None or "lon" not in field.dims:
            return field
        whole = self.results.whole_map
        if whole:
            window = self._whole_window
        else:
            centre = float(self.state.centre)
            vx0, vx1 = (self.results.viewport or (centre - 180.0, centre + 180.0))[:2]
            margin = 0.1 * (vx1 - vx0)  # the planner's answer has a 5 % margin
            window = (vx0 - margin, vx1 + margin)
        key = (id(field), self.results.screen, whole, window)
        if getattr(self, "_drawn_key", None) != key:
            drawn = map_views.regrid_to_screen(field, None, self.results.screen) if whole else field
            self._drawn_key = key
            self._drawn = wrap_longitudes(drawn, *window)
        return self._drawn

    @staticmethod
    def _window_around(x0: float, x1: float) -> tuple[float, float]:
        """Longitudes a whole field is drawn over for a view x0..x1: 270 either side of
        its middle (snapped to 90 degrees, so small pans keep the same window)."""
        middle = 90.0 * round(0.5 * (x0 + x1) / 90.0)
        return (middle - 270.0, middle + 270.0)

    @param.depends("results.map_version", "results.progress", "results.map_busy")
    def _info_html(self) -> str:
        import html

        if self.results.progress:
            return f"<span class='gs-progress'>{html.escape(self.results.progress)}</span>"
        field = self._drawn_field()
        if field is None:
            return ""
        shape = "x".join(str(n) for n in field.shape)
        text = f"Showing {map_views.resolution_text(field)}, {shape} cells"
        if field.attrs.get("gridscope_rasterized"):  # a grid that is not regular
            plan = str(field.attrs.get("gridscope_plan", "the native cells"))
            return f"<span class='gs-resolution'>{html.escape(f'Showing {plan}')}.</span>"
        plan = labels.plan_text(str(field.attrs.get("gridscope_plan", "")))  # in words
        if plan:
            text += f", {plan}"
        return f"<span class='gs-resolution'>{html.escape(text)}.</span>"

    def _notify(self, event: Any) -> None:
        """Errors also as a notification (the alert above the map stays)."""
        notifications = getattr(pn.state, "notifications", None)
        if event.new and notifications is not None:
            try:
                notifications.error(event.new, duration=8000)
            except Exception:  # noqa: BLE001  (no notification area on this page)
                pass

    # --- interaction -------------------------------------------------------------------
    def _on_box(self, bounds: Any = None, **_: Any) -> None:
        if bounds is None:
            return
        x0, y0, x1, y1 = (round(float(v), 2) for v in bounds)
        y0, y1 = max(y0, -90.0), min(y1, 90.0)
        if x1 - x0 < 1e-6 or y1 - y0 < 1e-6:
            return
        west, east = box_from_drag(x0, x1)  # in -180..180; W > E across the antimeridian
        self.state.param.update(region=CUSTOM_BOX, bbox=(west, y0, east, y1), point=None)

    def _on_tap(self, x: Any = None, y: Any = None, **_: Any) -> None:
        if x is None or y is None:
            return
        lon = ((float(x) + 180.0) % 360.0) - 180.0
        lat = min(max(float(y), -90.0), 90.0)
        point = self.state.cell_centre((lon, lat)) or (round(lon, 2), round(lat, 2))
        self.state.param.update(region=POINT, point=point)  # its series cell's centre

    def _on_range(self, x_range: Any = None, y_range: Any = None, **_: Any) -> None:
        if x_range is None or y_range is None:
            return
        xr_ = (round(float(x_range[0]), 3), round(float(x_range[1]), 3))
        yr_ = (round(float(y_range[0]), 3), round(float(y_range[1]), 3))
        if xr_[0] < xr_[1] and yr_[0] < yr_[1]:
            self.state.param.update(x_range=xr_, y_range=yr_)
            self.results.set_view(viewport=(xr_[0], xr_[1], yr_[0], yr_[1]))
            w0, w1 = self._whole_window
            if self.results.whole_map and (xr_[0] < w0 or xr_[1] > w1):
                # panned past the longitudes drawn: draw the field around the new view
                self._whole_window = self._window_around(*xr_)
                self._draw_image()

    def _on_selection(self, event: Any) -> None:
        """A box drawn with box select (its final geometry) becomes the custom box."""
        geometry = getattr(event, "geometry", None) or {}
        if geometry.get("type") == "rect" and getattr(event, "final", True):
            self._on_box(bounds=tuple(geometry[k] for k in ("x0", "y0", "x1", "y1")))

    def _on_centre(self, event: Any) -> None:
        """A new centre: the x axis goes to its home and the field is drawn around it."""
        centre = float(event.new)
        home = (centre - 180.0, centre + 180.0)
        self._whole_window = self._window_around(*home)
        self.state.x_range = home
        self.results.set_view(viewport=(*home, *self.state.y_range))
        x_range = self.figure.x_range
        in_document(self.figure, lambda: set_changed(x_range, start=home[0], end=home[1]))
        self._draw_image()

    def _on_size(self, width: Any = None, height: Any = None, **_: Any) -> None:
        """The plot's size once the browser has drawn it, and the view it shows (the
        browser sends ranges only when they change): a large grid's next frame is
        planned for that view at screen resolution."""
        if width and height:
            viewport = None
            if self.results.viewport is None:
                x, y = self.figure.x_range, self.figure.y_range
                viewport = (x.start, x.end, y.start, y.end)
            self.results.set_view(viewport=viewport, screen=(int(width), int(height)))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            self.pane, pn.Row(self.centre, self.info, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )  # fmt: skip
