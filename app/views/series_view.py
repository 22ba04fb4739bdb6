"""The time series linked to the map: point or area-weighted box series.

The selected step (or range) is highlighted; a tap on the plot moves the map to the
nearest step. The values are also written out as CSV text (the same text as the
CSV download), so they can be read off the page.
"""

from __future__ import annotations

import html
import numbers
import weakref
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param

from app import labels
from app.exports import series_to_csv
from app.state import ExplorerState
from app.views.bokeh_models import call_alive, glyph_renderer, in_document, set_changed
from app.views.results import ViewResults

__all__ = ["SeriesView", "series_x"]


def series_x(times: np.ndarray, climatology: bool) -> np.ndarray:
    """x values of a series: month numbers for a climatology, datetimes otherwise."""
    if climatology:
        return np.array([int(t.month) for t in times], dtype="int64")
    if np.issubdtype(np.asarray(times).dtype, np.number):
        return np.asarray(times, dtype="float64")  # a numbered step axis: its values
    if np.issubdtype(np.asarray(times).dtype, np.datetime64):
        return np.asarray(times)
    return np.array([pd.Timestamp(t.isoformat()).to_datetime64() for t in times])


#: Colour of the series' curve and points.
_COLOUR = "#1f5fa8"


def _ms(x: Any) -> float:
    """A series x value as Bokeh places it: milliseconds since the epoch for a datetime."""
    if isinstance(x, np.datetime64 | pd.Timestamp):
        return float(np.datetime64(x, "ms").astype("int64"))
    return float(x)


def _padded(lo: float, hi: float, fraction: float) -> tuple[float, float]:
    """``lo..hi`` widened by ``fraction`` of its span each side (a point gets +-0.5)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return (0.0, 1.0)
    if lo == hi:
        return (lo - 0.5, hi + 0.5)
    pad = fraction * (hi - lo)
    return (lo - pad, hi + pad)


class SeriesView(pn.viewable.Viewer):
    """Series plot, highlight of the selected time, tap-to-select, summary and CSV text.

    The plot is a Bokeh figure built here from Bokeh models directly: a new series
    replaces its source's data and the axis ranges in place, a new time step moves the
    highlight (a span, or a band for a range), so an update builds no model. Another
    dataset gets a new figure (Bokeh keeps an axis's type, dates or numbers, for the
    figure's life).
    """

    height = param.Integer(default=260, doc="Height of the series plot in pixels.")

    def __init__(self, state: ExplorerState, results: ViewResults, **params: Any):
        super().__init__(**params)
        self.state = state
        self.results = results
        # the figure is built for the first series (a page whose series is still being
        # computed is sent, and built, without it), again for another dataset's
        self._plot_dataset = state.dataset
        self.figure: Any = None
        self.pane: Any = None
        if results.series is not None:
            self._ensure_figure()
        results.param.watch(self._on_new_series, ["series_version"])
        state.param.watch(self._draw_highlight, ["time_mode", "time", "start", "end"])
        self.summary = pn.pane.HTML(
            self._summary_html, sizing_mode="stretch_width", css_classes=["gs-series-summary"]
        )
        # the figure is put in the page when a series first arrives, the costly-series
        # prompt when it is first needed (see `app.views.page_weight`)
        self._figure_slot = pn.Column(pn.Spacer(height=self.height), sizing_mode="stretch_width")
        self.cost = pn.Column(sizing_mode="stretch_width")
        results.param.watch(self._place_figure, ["series_version"])
        results.param.watch(self._place_cost_prompt, ["series_question", "series_progress"])
        self._place_figure()
        self._place_cost_prompt()

    def _place_figure(self, *_: Any) -> None:
        """The figure in the page for the first series; after the page's first render
        (`pn.state.onload`) when the series came with it (e.g. from the answer cache)."""
        if self.results.series is None or self._figure_slot.objects[0] is self.pane:
            return
        self._ensure_figure()

        def place() -> None:
            if self._figure_slot.objects[0] is not self.pane:
                self._figure_slot.objects = [self.pane]

        pn.state.onload(place)

    def _place_cost_prompt(self, *_: Any) -> None:
        if not self.cost.objects and (self.results.series_question or self.results.series_progress):
            self.cost.objects = self._cost_prompt().objects

    # --- the figure ------------------------------------------------------------------------
    def _new_figure(self) -> Any:
        """The figure of the state's dataset: curve and points over one source, the
        selected step (a span) and range (a band), hover and tap."""
        from bokeh.events import Tap
        from bokeh.models import (
            BoxAnnotation,
            ColumnDataSource,
            FixedTicker,
            HoverTool,
            Range1d,
            Span,
            WheelZoomTool,
        )
        from bokeh.models.glyphs import Line, Scatter
        from bokeh.plotting import figure

        clim = self._climatology()
        x = self._empty_x(clim)
        dates = np.issubdtype(x.dtype, np.datetime64)
        step_units = self.state.sources.info(self.state.dataset).time_units
        xlabel = "month" if clim else labels.time_axis_text(step_units)
        # no box zoom nor save tool (the wheel zooms; "Series CSV" saves)
        fig = figure(
            x_axis_type="datetime" if dates else "linear", x_range=Range1d(0, 1),
            y_range=Range1d(0, 1), height=self.height, sizing_mode="stretch_width",
            title="", tools="pan", x_axis_label=xlabel, min_border_right=10, css_classes=["gs-series"],
        )  # fmt: skip
        fig.toolbar.logo = None
        fig.center = []  # no grid lines (nor their two models)
        if clim:
            fig.xaxis.ticker = FixedTicker(ticks=list(range(1, 13)))
            fig.xaxis.major_label_overrides = {
                i: pd.Timestamp(2000, i, 1).strftime("%b") for i in range(1, 13)
            }
        self._source = ColumnDataSource({"time": x, "value": np.array([], dtype="float64")})
        glyphs = [Line(x="time", y="value", line_color=_COLOUR, line_width=2),
                  Scatter(x="time", y="value", size=5, line_color=_COLOUR, fill_color=_COLOUR)]  # fmt: skip
        renderers = [glyph_renderer(fig, self._source, glyph) for glyph in glyphs]
        x_tip = "@time{%F}" if dates else "@time"
        self._hover = HoverTool(
            renderers=renderers, tooltips=[(xlabel, x_tip), ("value", "@value")],
            formatters={"@time": "datetime"} if dates else {}, mode="mouse",
        )  # fmt: skip
        wheel = WheelZoomTool()
        fig.add_tools(wheel, self._hover, "tap", "reset")
        fig.toolbar.active_scroll = wheel
        self._line = Span(location=None, dimension="height", line_color="orange", line_width=2)
        self._band = BoxAnnotation(fill_color="orange", fill_alpha=0.2, line_alpha=0.0,
                                   visible=False)  # fmt: skip
        fig.add_layout(self._line)
        fig.add_layout(self._band)
        view = weakref.ref(self)  # a closed page is freed with its document
        fig.on_event(Tap, lambda event: call_alive(view, "_on_tap", x=event.x, y=event.y))
        return fig

    def _ensure_figure(self) -> bool:
        """A figure for the state's dataset, drawn; whether a new one was built."""
        if self.figure is not None and self.state.dataset == self._plot_dataset:
            return False
        self._plot_dataset = self.state.dataset
        self.figure = self._new_figure()
        self._draw_series()
        self._draw_highlight()
        if self.pane is None:
            self.pane = pn.pane.Bokeh(self.figure, sizing_mode="stretch_width", height=self.height)
        else:
            self.pane.object = self.figure
        return True

    def _on_new_series(self, event: Any) -> None:
        """A new series patches the figure; one of another dataset gets a new figure."""
        if self.figure is None and self.results.series is None:
            return  # nothing to draw yet
        if not self._ensure_figure():
            self._draw_series()

    def _draw_series(self) -> None:
        """The series (or none yet), its axis ranges, title and y label, in place."""
        series = self.results.series
        clim = self._climatology()
        if series is None or series.size == 0:
            x, y = self._empty_x(clim), np.array([], dtype="float64")
        else:
            x = series_x(series["time"].values, clim)
            y = np.asarray(series.values, dtype="float64")
        words = self._labels()
        # the y label is the quantity when it fits beside a 260-pixel plot, else the
        # units (the title names the quantity): a long name was cut off
        ylabel = (
            words.quantity if len(words.quantity) <= 28 else (words.units or words.variable[:28])
        )
        title = words.series_title() if series is not None else ""
        finite = y[np.isfinite(y)]
        if x.size:
            xs = (_ms(x.min()), _ms(x.max()))
            x_range = xs if xs[0] < xs[1] else _padded(xs[0], xs[1], 0.0)
        else:
            x_range = (0.0, 1.0)
        if finite.size:
            y_range = _padded(float(finite.min()), float(finite.max()), 0.1)
        else:
            y_range = (0.0, 1.0)
        fig = self.figure

        def change() -> None:
            self._source.data = {"time": x, "value": y}
            set_changed(fig.x_range, start=x_range[0], end=x_range[1], reset_start=x_range[0],
                 reset_end=x_range[1])  # fmt: skip
            set_changed(fig.y_range, start=y_range[0], end=y_range[1], reset_start=y_range[0],
                 reset_end=y_range[1])  # fmt: skip
            set_changed(fig.title, text=title)
            set_changed(fig.yaxis[0], axis_label=ylabel)
            tooltips = [self._hover.tooltips[0], (ylabel, "@value")]
            if self._hover.tooltips != tooltips:
                self._hover.tooltips = tooltips

        in_document(fig, change)

    # --- helpers ---------------------------------------------------------------------------
    def _climatology(self) -> bool:
        return self.state.sources.info(self.state.dataset).climatology

    def _x_of_label(self, label: str | None) -> Any:
        if label is None:
            return None
        info = self.state.sources.info(self.state.dataset)
        if label not in info.times:
            return None
        index = info.times.index(label)
        times = self.state.sources.open(self.state.dataset)["time"].values
        return series_x(times[index : index + 1], info.climatology)[0]

    def _empty_x(self, climatology: bool) -> np.ndarray:
        """No x values, of the type the dataset's series has (see `series_x`)."""
        if climatology:
            return np.array([], dtype="int64")
        try:
            times = self.state.sources.open(self.state.dataset)["time"].values
        except Exception:  # noqa: BLE001  (no time axis, or no dataset: a plain number axis)
            return np.array([], dtype="float64")
        if np.issubdtype(times.dtype, np.number):
            return np.array([], dtype="float64")
        return np.array([], dtype="datetime64[ns]")

    def _labels(self) -> Any:
        """Words of the series shown (or, before it arrives, of the one asked for)."""
        query = self.results.series_query or self.state.series_query
        if query is None or query.dataset != self.state.dataset:
            return labels.for_state(self.state)
        return labels.view_labels(query, self.state.sources.info(query.dataset))

    def _draw_highlight(self, *_: Any) -> None:
        """The selected step (a line) or range (a band), moved in place."""
        if self.figure is None:
            return
        line, band = None, (None, None)
        if self.state.time_mode == "range":
            a, b = self._x_of_label(self.state.start), self._x_of_label(self.state.end)
            if a is not None and b is not None:
                band = (_ms(a), _ms(b))
        else:
            t = self._x_of_label(self.state.time)
            if t is not None:
                line = _ms(t)

        def change() -> None:
            set_changed(self._line, location=line, visible=line is not None)
            if band[0] is None:
                set_changed(self._band, visible=False)  # its edges stay where they were
            else:
                set_changed(self._band, left=band[0], right=band[1], visible=True)

        in_document(self.figure, change)

    def _on_tap(self, x: Any = None, y: Any = None, **_: Any) -> None:
        series = self.results.series
        if x is None or series is None or series.size == 0:
            return
        clim = self._climatology()
        xs = series_x(series["time"].values, clim)
        if clim or not np.issubdtype(xs.dtype, np.datetime64):  # month numbers, step values
            index = int(np.argmin(np.abs(xs - float(x))))
        else:
            # bokeh sends datetimes as milliseconds since the epoch
            target = (
                pd.Timestamp(float(x), unit="ms")
                if isinstance(x, numbers.Real)
                else pd.Timestamp(x)
            )
            index = int(np.argmin(np.abs(xs.astype("datetime64[ns]") - target.to_datetime64())))
        info = self.state.sources.info(self.state.dataset)
        full = self.state.sources.open(self.state.dataset).indexes["time"]
        label = info.times[int(full.get_loc(series["time"].values[index]))]
        self.state.param.update(time_mode="step", time=label)

    @param.depends("results.series_version")
    def _summary_html(self) -> str:
        series = self.results.series
        query = self.results.series_query
        if series is None or query is None:
            if not self.state.has_time:
                return "<p class='gs-series-empty'>This variable has no time axis, so it has no time series.</p>"
            return "<p class='gs-series-empty'>Draw a box or click a point on the map for a time series.</p>"
        values = np.asarray(series.values, dtype="float64")
        finite = values[np.isfinite(values)]
        mean = f"{finite.mean():.4g}" if finite.size else "n/a"
        csv = series_to_csv(series, var=query.var)
        if query.point is not None:
            where = f"at point {query.point[0]:g},{query.point[1]:g}"
        else:
            where = "area-weighted mean over bbox " + ",".join(f"{v:g}" for v in query.bbox)
        return (
            f"<p class='gs-series-stats'>{html.escape(query.dataset)} {html.escape(query.var)} "
            f"{where}: {values.size} steps, "
            f"mean {mean}</p>"
            f"<details><summary>Series values (CSV)</summary>"
            f"<pre class='gs-series-csv' style='max-height:10em;overflow:auto'>{html.escape(csv)}</pre></details>"
        )

    def _cost_prompt(self) -> pn.Column:
        """What a costly series would read, "Compute anyway", then progress and "Cancel".

        A series over a huge unbuilt record is not started on its own
        (`ViewResults.series_question`); the user decides, and can stop it again.
        """
        results = self.results
        asked = results.param.series_question.rx().rx.pipe(bool)
        question = pn.pane.HTML(
            results.param.series_question.rx().rx.pipe(
                lambda text: f"<p>{html.escape(text)} Compute it anyway, or build fast-access "
                "stores (the build panel on the left) so that such series take well under a "
                "second.</p>" if text else ""
            ),
            visible=asked, css_classes=["gs-series-question"], sizing_mode="stretch_width",
        )  # fmt: skip
        run = pn.widgets.Button(name="Compute anyway", button_type="warning", visible=asked,
                                css_classes=["gs-series-run"], width=160)  # fmt: skip
        run.on_click(lambda _: results.compute_series_anyway())
        progress = pn.pane.HTML(
            results.param.series_progress.rx().rx.pipe(html.escape),
            visible=results.param.series_busy, css_classes=["gs-series-progress"],
        )  # fmt: skip
        cancel = pn.widgets.Button(name="Cancel", visible=results.param.series_busy,
                                   css_classes=["gs-series-cancel"], width=100)  # fmt: skip
        cancel.on_click(lambda _: results.cancel_series())
        return pn.Column(question, pn.Row(run, progress, cancel), sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.cost, self._figure_slot, self.summary, sizing_mode="stretch_width")
