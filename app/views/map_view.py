"""The map: the field at screen resolution, offline coastlines, region tools.

A `hv.DynamicMap` redraws the image on every pan/zoom (``RangeXY`` and ``PlotSize``
streams) from the full-resolution field held by `ViewResults`, cropped and
coarsened to the viewport in-process (`app.compute.map_for_view`): a frame of the
in-memory field costs about a millisecond, much less than a trip to the cluster.
Box select sets a custom box region, a tap sets a point region.
"""

from __future__ import annotations

import os
from typing import Any

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend for .opts)
import numpy as np
import panel as pn
import param

from app import compute
from app.coastlines import coastline_paths
from app.regions import CUSTOM_BOX, POINT
from app.state import ExplorerState
from app.views.results import ViewResults

__all__ = ["MapView", "colour_range"]

_COASTLINES: Any = None

# Canvas, not WebGL: measured in headless Chromium without a GPU, a map update with the
# coastlines took ~1.4 s with WebGL and ~0.4 s with canvas; GRIDSCOPE_WEBGL=1 opts back in.
hv.renderer("bokeh").webgl = os.environ.get("GRIDSCOPE_WEBGL", "") == "1"


def _coastlines() -> hv.Curve:
    """All coastlines as one NaN-separated line: one glyph, sent once per plot."""
    global _COASTLINES
    if _COASTLINES is None:
        pieces = []
        for line in coastline_paths():
            pieces.append(line)
            pieces.append(np.full((1, 2), np.nan))
        xy = np.concatenate(pieces)
        _COASTLINES = hv.Curve((xy[:, 0], xy[:, 1]), kdims=["lon"], vdims=["lat"]).opts(
            color="black", line_width=0.8, tools=[], default_tools=[]
        )
    return _COASTLINES


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


def _region_boxes(bbox: tuple[float, float, float, float]) -> list[tuple[float, float, float, float]]:
    """A (W,S,E,N) box as one or two rectangles on a -180..180 map."""
    w, s, e, n = bbox
    w = ((w + 180.0) % 360.0) - 180.0 if w >= 180.0 else w
    e = ((e + 180.0) % 360.0) - 180.0 if e > 180.0 else e
    if w <= e:
        return [(w, s, e, n)]
    return [(w, s, 180.0, n), (-180.0, s, e, n)]


class MapView(pn.viewable.Viewer):
    """The rasterized map with coastlines, region outline, box select and tap."""

    height = param.Integer(default=460, doc="Height of the map in pixels.")

    def __init__(self, state: ExplorerState, results: ViewResults, **params: Any):
        super().__init__(**params)
        self.state = state
        self.results = results
        x0, x1 = state.x_range
        y0, y1 = state.y_range
        self.range_stream = hv.streams.RangeXY(x_range=(x0, x1), y_range=(y0, y1))
        self.size_stream = hv.streams.PlotSize()
        data_stream = hv.streams.Params(results, ["map_version"])
        view_stream = hv.streams.Params(state, ["cmap", "clim_mode", "clim", "anomaly"])
        self.image = hv.DynamicMap(
            self._image, streams=[data_stream, view_stream, self.range_stream, self.size_stream]
        )
        self.bounds_stream = hv.streams.BoundsXY(source=self.image, bounds=None)
        self.tap_stream = hv.streams.Tap(source=self.image, x=None, y=None)
        self.bounds_stream.add_subscriber(self._on_box)
        self.tap_stream.add_subscriber(self._on_tap)
        self.range_stream.add_subscriber(self._on_range)
        region = hv.DynamicMap(self._region, streams=[hv.streams.Params(state, ["region", "bbox", "point"])])
        # no .opts() on the overlay: it would clone the coastlines every frame and
        # re-send them to the browser (measured: +0.7 s per update); plot options
        # live on the image instead
        self._xlim, self._ylim = (x0, x1), (y0, y1)
        overlay = self.image * _coastlines() * region
        self.pane = pn.pane.HoloViews(overlay, sizing_mode="stretch_width", min_height=320,
                                      height=self.height, css_classes=["gs-map"])  # fmt: skip

    # --- drawing ---------------------------------------------------------------------
    def _image(self, map_version: int = 0, x_range: Any = None, y_range: Any = None,
               width: Any = None, height: Any = None, **_: Any) -> hv.Image:  # fmt: skip
        field = self.results.field
        viewport = None
        if x_range is not None and y_range is not None:
            viewport = (x_range[0], x_range[1], y_range[0], y_range[1])
        screen = (width, height) if width and height else None
        info = self.state.sources.info(self.state.dataset)
        variable = info.variables.get(self.state.var)
        label = variable.long_name if variable else str(self.state.var)
        units = variable.units if variable else ""
        if self.state.anomaly:
            label = f"{label} anomaly"
        vdim = hv.Dimension("value", label=label, unit=units or None)
        if field is None:
            empty = np.full((2, 2), np.nan)
            image = hv.Image((np.array([-179.0, 179.0]), np.array([-89.0, 89.0]), empty),
                             kdims=["lon", "lat"], vdims=[vdim])  # fmt: skip
            clim = (0.0, 1.0)
        else:
            view = compute.regrid_to_screen(field, viewport, screen)
            values = np.asarray(view.transpose("lat", "lon").values, dtype="float64")
            image = hv.Image((view["lon"].values, view["lat"].values, values),
                             kdims=["lon", "lat"], vdims=[vdim])  # fmt: skip
            clim = colour_range(np.asarray(field.values), self.state)
        clabel = f"{label} ({units})" if units else label
        return image.opts(
            cmap=self.state.cmap, clim=clim, colorbar=True, clabel=clabel,
            tools=["hover", "box_select", "tap"], active_tools=["box_select", "wheel_zoom"],
            xlabel="longitude (°E)", ylabel="latitude (°N)", clipping_colors={"NaN": "#d9d9d9"},
            responsive=True, min_height=300, height=self.height, xlim=self._xlim, ylim=self._ylim,
        )  # fmt: skip

    def _region(self, region: str, bbox: Any, point: Any) -> hv.Overlay:
        if region == POINT and point is not None:
            return hv.Points([tuple(point)], kdims=["lon", "lat"]).opts(
                color="magenta", size=10, marker="x", line_width=3
            ) * hv.Rectangles([], kdims=["x0", "y0", "x1", "y1"])
        boxes = _region_boxes(tuple(bbox)) if bbox is not None and region != "Global" else []
        return hv.Points([], kdims=["lon", "lat"]) * hv.Rectangles(boxes, kdims=["x0", "y0", "x1", "y1"]).opts(
            fill_alpha=0.0, line_color="magenta", line_width=2.5
        )

    # --- interaction -------------------------------------------------------------------
    def _on_box(self, bounds: Any = None, **_: Any) -> None:
        if bounds is None:
            return
        x0, y0, x1, y1 = (round(float(v), 2) for v in bounds)
        x0, x1 = max(x0, -180.0), min(x1, 180.0)
        y0, y1 = max(y0, -90.0), min(y1, 90.0)
        if x1 - x0 < 1e-6 or y1 - y0 < 1e-6:
            return
        self.state.param.update(region=CUSTOM_BOX, bbox=(x0, y0, x1, y1), point=None)

    def _on_tap(self, x: Any = None, y: Any = None, **_: Any) -> None:
        if x is None or y is None:
            return
        lon = ((float(x) + 180.0) % 360.0) - 180.0
        lat = min(max(float(y), -90.0), 90.0)
        self.state.param.update(region=POINT, point=(round(lon, 2), round(lat, 2)))

    def _on_range(self, x_range: Any = None, y_range: Any = None, **_: Any) -> None:
        if x_range is None or y_range is None:
            return
        xr_ = (round(float(x_range[0]), 3), round(float(x_range[1]), 3))
        yr_ = (round(float(y_range[0]), 3), round(float(y_range[1]), 3))
        if xr_[0] < xr_[1] and yr_[0] < yr_[1]:
            self.state.param.update(x_range=xr_, y_range=yr_)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.pane
