"""The map: the field at screen resolution, offline coastlines, region tools.

The image is a `hv.DynamicMap` redrawn only when a new map arrives (``map_version``) or
a colour setting changes: one image update per widget change. ``RangeXY`` and
``PlotSize`` streams linked to the plot (not driving it) tell `ViewResults` what is on
screen; for a large grid it asks the planner for that viewport at screen resolution
(`app.map_views.start_map_view`) and the new frame arrives through ``map_version``; a
small grid (the sample files) is held whole and Bokeh zooms it without a round trip.
The title and the line under the map say which resolution is shown (the hover value
is the value of that level). Box select sets a custom box region, a tap sets a point
region. Errors also appear as notifications when the page has them.

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

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend for .opts)
import numpy as np
import panel as pn
import param

from app import labels, map_views
from app.coastlines import coastline_paths
from app.rasterize import wrap_longitudes
from app.regions import CUSTOM_BOX, POINT
from app.runtime import current
from app.state import MAP_CENTRES, ExplorerState
from app.views.page_weight import drop_glyph_variants, without_tooltips
from app.views.results import ViewResults

__all__ = ["MapView", "box_from_drag", "colour_range"]


# Canvas, not WebGL: measured in headless Chromium without a GPU, a map update with the
# coastlines took ~1.4 s with WebGL and ~0.4 s with canvas; GRIDSCOPE_WEBGL=1 opts back in.
hv.renderer("bokeh").webgl = current().settings.webgl

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


#: Options of the region's marks: no tools of their own (an overlay's toolbar has every
#: layer's tools) and no glyph variants (`app.views.page_weight`).
_REGION_OPTS: dict[str, Any] = {"default_tools": [], "hooks": [drop_glyph_variants]}

#: Longitudes the coastlines are drawn over: three turns of the globe, so that a map
#: centred anywhere from 180W to 180E shows them however far it is panned (half a turn).
_COAST_TURNS = (-360.0, 0.0, 360.0)


@functools.cache
def _coastline_xy() -> np.ndarray:
    """All coastlines as one NaN-separated (n, 2) lon/lat array: one glyph per plot.

    Repeated at each of `_COAST_TURNS` (a line never crosses the antimeridian, so each
    copy is drawn as it is): continuous across 180 on any centred map.
    """
    pieces = []
    for shift in _COAST_TURNS:
        for line in coastline_paths():
            pieces.append(line + np.array([shift, 0.0]))
            pieces.append(np.full((1, 2), np.nan))
    return np.concatenate(pieces)


def _coastlines() -> hv.Curve:
    """A new coastline element over the shared array.

    One element per plot, not one for the process: HoloViews appends an operation to
    an element's pipeline each time it is overlaid and displayed, so a shared element
    grew with every session the server ever had (a leak found by the load test).
    """
    # a plain array (not a DataFrame): range and dtype checks on every frame are cheap
    return hv.Curve(_coastline_xy(), kdims=["lon"], vdims=["lat"], datatype=["array"]).opts(
        color="black", line_width=0.8, tools=[], default_tools=[], hooks=[drop_glyph_variants]
    )


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
    """The rasterized map with coastlines, region outline, box select and tap."""

    height = param.Integer(default=460, doc="Height of the map in pixels.")
    redraws = param.Integer(default=0, doc="Incremented to redraw the image (a new window).")

    def __init__(self, state: ExplorerState, results: ViewResults, **params: Any):
        super().__init__(**params)
        self.state = state
        self.results = results
        self._formatters = _lon_formatters()
        x0, x1 = state.x_range
        self._whole_window = self._window_around(x0, x1)  # see _drawn_field
        y0, y1 = state.y_range
        data_stream = hv.streams.Params(results, ["map_version"])
        view_stream = hv.streams.Params(state, ["cmap", "clim_mode", "clim", "anomaly", "centre"])
        redraw_stream = hv.streams.Params(self, ["redraws"])
        self.image = hv.DynamicMap(self._image, streams=[data_stream, view_stream, redraw_stream])
        # linked to the plot, not driving it: a pan/zoom asks ViewResults for new data
        # (when the grid is large), and the new frame comes back through map_version
        self.range_stream = hv.streams.RangeXY(
            source=self.image, x_range=(x0, x1), y_range=(y0, y1)
        )
        self.size_stream = hv.streams.PlotSize(source=self.image)
        self.size_stream.add_subscriber(self._on_size)
        if results.screen is None:
            results.set_view(screen=(700, self.height - 110))  # until the browser says
        if (x0, x1, y0, y1) != (-180.0, 180.0, -90.0, 90.0):
            results.set_view(viewport=(x0, x1, y0, y1))
        self.bounds_stream = hv.streams.BoundsXY(source=self.image, bounds=None)
        self.tap_stream = hv.streams.Tap(source=self.image, x=None, y=None)
        self.bounds_stream.add_subscriber(self._on_box)
        self.tap_stream.add_subscriber(self._on_tap)
        self.range_stream.add_subscriber(self._on_range)
        region = hv.DynamicMap(
            self._region,
            streams=[hv.streams.Params(state, ["region", "bbox", "point", "centre"])],
        )
        # no .opts() on the overlay: it would clone the coastlines every frame and
        # re-send them to the browser (measured: +0.7 s per update); plot options
        # live on the image instead
        self._xlim, self._ylim = (x0, x1), (y0, y1)
        overlay = self.image * _coastlines() * region
        self.pane = pn.pane.HoloViews(overlay, sizing_mode="stretch_width", min_height=320,
                                      height=self.height, css_classes=["gs-map"])  # fmt: skip
        self.info = pn.pane.HTML(self._info_html, css_classes=["gs-map-info"], margin=(0, 10),
                                 sizing_mode="stretch_width")  # fmt: skip
        self.centre = pn.widgets.RadioButtonGroup.from_param(
            state.param.centre, name="Map centre", options=MAP_CENTRES, css_classes=["gs-centre"],
            button_type="light", margin=(0, 10),
        )  # fmt: skip
        without_tooltips(self.centre)
        self._applied_centre = state.centre  # the centre the plot's x range was last set for
        state.param.watch(self._on_centre, ["centre"])
        results.param.watch(self._notify, ["error"])

    # --- drawing ---------------------------------------------------------------------
    def _image(self, map_version: int = 0, **_: Any) -> hv.Image:
        field = self._drawn_field()
        words = labels.for_state(self.state)  # the same words as the exports' titles
        label, units = words.variable, words.units
        vdim = hv.Dimension("value", label=label, unit=units or None)
        title = ""
        if field is None:
            empty = np.full((2, 2), np.nan, dtype="float32")
            image = hv.Image((np.array([-179.0, 179.0]), np.array([-89.0, 89.0]), empty),
                             kdims=["lon", "lat"], vdims=[vdim])  # fmt: skip
            clim = (0.0, 1.0)
        else:
            # float32 data stays float32 (half the bytes of float64 on the wire); the
            # values drawn (and hovered) are the data's own
            dtype = (
                "float32" if field.dtype.kind == "f" and field.dtype.itemsize <= 4 else "float64"
            )
            values = np.asarray(field.transpose("lat", "lon").values, dtype=dtype)
            image = hv.Image((field["lon"].values, field["lat"].values, values),
                             kdims=["lon", "lat"], vdims=[vdim])  # fmt: skip
            clim = colour_range(values, self.state)
            title = words.title()  # the resolution is said in the line under the map
        clabel = f"{label} ({units})" if units else label

        def set_colourbar_title(plot: Any, element: Any, text: str = clabel) -> None:
            # HoloViews sets the colour bar's title only when the plot is created
            colorbar = plot.handles.get("colorbar")
            if colorbar is not None and colorbar.title != text:
                colorbar.title = text

        # the hook holds this view weakly: HoloViews keeps an element's options (hooks
        # included) in a process-wide tree for as long as the element lives, and the
        # last image lives in this view's plot, so `self` here kept every closed page
        view = weakref.ref(self)

        def follow_centre(plot: Any, element: Any) -> None:
            # a new centre moves the x axis (HoloViews applies xlim only at creation)
            map_view, x_range = view(), plot.handles.get("x_range")
            if map_view is None or x_range is None:
                return
            centre = float(map_view.state.centre)
            if map_view._applied_centre != centre:
                map_view._applied_centre = centre
                x_range.update(start=centre - 180.0, end=centre + 180.0)

        return image.opts(title=title, hooks=[set_colourbar_title, follow_centre, drop_glyph_variants],
            cmap=self.state.cmap, clim=clim, colorbar=True, clabel=clabel,
            tools=["hover", "box_select", "tap"], active_tools=["box_select", "wheel_zoom"],
            # no box zoom beside box select (the same drag; a region is what the box is for)
            # and no save tool beside "Map PNG": 5 Bokeh models fewer per page
            default_tools=["pan", "wheel_zoom", "reset"],
            xlabel="longitude", ylabel="latitude (°N)", xformatter=self._formatters[0],
            hover_tooltips=[("lon", "$x{custom}"), ("lat", "$y{0.00}°N"), (label, "@image")],
            hover_formatters={"$x": self._formatters[1]}, clipping_colors={"NaN": "#d9d9d9"},
            responsive=True, min_height=300, height=self.height, xlim=self._xlim, ylim=self._ylim,
        )  # fmt: skip

    def _region(self, region: str, bbox: Any, point: Any, centre: float = 0.0) -> hv.Overlay:
        if region == POINT and point is not None:
            x = _into_frame(point[0], centre)
            marks = [(x + shift, point[1]) for shift in (-360.0, 0.0, 360.0)]
            return hv.Points(marks, kdims=["lon", "lat"]).opts(
                color="magenta", size=10, marker="x", line_width=3, **_REGION_OPTS
            ) * hv.Rectangles([], kdims=["x0", "y0", "x1", "y1"]).opts(**_REGION_OPTS)
        boxes = (
            _region_boxes(tuple(bbox), centre) if bbox is not None and region != "Global" else []
        )
        return hv.Points([], kdims=["lon", "lat"]).opts(**_REGION_OPTS) * hv.Rectangles(
            boxes, kdims=["x0", "y0", "x1", "y1"]
        ).opts(fill_alpha=0.0, line_color="magenta", line_width=2.5, **_REGION_OPTS)

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
                self._redraw_soon()

    def _redraw_soon(self) -> None:
        """Redraw the image after the current callback (a stream's own callback cannot)."""
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            doc.add_next_tick_callback(lambda: setattr(self, "redraws", self.redraws + 1))
        else:
            self.redraws += 1

    def _on_centre(self, event: Any) -> None:
        """A new centre: the x axis goes to its home (the hook on the image moves it)."""
        centre = float(event.new)
        self._xlim = (centre - 180.0, centre + 180.0)
        self._whole_window = self._window_around(*self._xlim)
        self.state.x_range = self._xlim
        self.results.set_view(viewport=(*self._xlim, *self.state.y_range))

    def _on_size(self, width: Any = None, height: Any = None, **_: Any) -> None:
        if width and height:
            self.results.set_view(screen=(int(width), int(height)))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            self.pane, pn.Row(self.centre, self.info, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )  # fmt: skip
