"""The time series linked to the map: point or area-weighted box series.

The selected step (or range) is highlighted; a tap on the plot moves the map to the
nearest step. The values are also written out as CSV text (the same text as the
CSV download), so they can be read off the page.
"""

from __future__ import annotations

import functools
import html
import numbers
import weakref
from typing import Any

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend for .opts)
import numpy as np
import pandas as pd
import panel as pn
import param

from app import labels
from app.exports import series_to_csv
from app.state import ExplorerState
from app.views.page_weight import drop_glyph_variants
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


def _series_figure_hook(view: weakref.ref, title: str, plot: Any, element: Any) -> None:
    """HoloViews hook: `SeriesView._figure_hook` of a view that is still alive."""
    series_view = view()
    if series_view is not None:
        series_view._figure_hook(plot, element, title=title)


def _tap(view: weakref.ref, event: Any) -> None:
    series_view = view()
    if series_view is not None:
        series_view._on_tap(x=event.x, y=event.y)


class SeriesView(pn.viewable.Viewer):
    """Series plot, highlight of the selected time, tap-to-select, summary and CSV text."""

    height = param.Integer(default=260, doc="Height of the series plot in pixels.")

    def __init__(self, state: ExplorerState, results: ViewResults, **params: Any):
        super().__init__(**params)
        self.state = state
        self.results = results
        self.pane = pn.pane.HoloViews(self._new_plot(), sizing_mode="stretch_width",
                                      height=self.height, css_classes=["gs-series"])  # fmt: skip
        self._plot_dataset = state.dataset
        self._tapped_figures: set[str] = set()
        results.param.watch(self._on_new_series, ["series_version"])
        self.summary = pn.pane.HTML(
            self._summary_html, sizing_mode="stretch_width", css_classes=["gs-series-summary"]
        )
        # the figure (some 50 Bokeh models) is put in the page when a series first
        # arrives, the costly-series prompt when it is first needed: a page whose series
        # is still being computed is sent without them (see `app.views.page_weight`)
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

        def place() -> None:
            if self._figure_slot.objects[0] is not self.pane:
                self._figure_slot.objects = [self.pane]

        pn.state.onload(place)

    def _place_cost_prompt(self, *_: Any) -> None:
        if not self.cost.objects and (self.results.series_question or self.results.series_progress):
            self.cost.objects = self._cost_prompt().objects

    def _new_plot(self) -> hv.Overlay:
        """Curve and highlight as DynamicMaps.

        The curve is redrawn only for a new series; a new time step only moves the
        highlight (a small separate element: the curve's data is not re-sent).
        """
        for stream in getattr(self, "_streams", ()):
            stream.unwatch()  # the replaced plot no longer redraws (nor is kept alive)
        self._streams = [
            hv.streams.Params(self.results, ["series_version"]),
            hv.streams.Params(self.state, ["time_mode", "time", "start", "end"]),
        ]
        curve = hv.DynamicMap(self._curve, streams=[self._streams[0]])
        highlight = hv.DynamicMap(self._highlight, streams=[self._streams[1]])
        self.plot = curve * highlight
        return self.plot

    def _on_new_series(self, event: Any) -> None:
        """A series of another dataset gets a new plot: Bokeh keeps an axis's type (month
        numbers for a climatology, dates otherwise) for the plot's life, so a reused plot
        lost its date labels after a dataset change."""
        if self.state.dataset != self._plot_dataset:
            self._plot_dataset = self.state.dataset
            self.pane.object = self._new_plot()

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

    def _plot(self, **_: Any) -> hv.Overlay:
        """Curve, points and highlight of the current series and time (as drawn)."""
        return self._curve() * self._highlight()

    def _curve(self, **_: Any) -> hv.Overlay:
        series = self.results.series
        clim = self._climatology()
        step_units = self.state.sources.info(self.state.dataset).time_units
        xdim = hv.Dimension("time", label="month" if clim else labels.time_axis_text(step_units))
        words = self._labels()
        # the y label is the quantity when it fits beside a 260-pixel plot, else the
        # units (the title names the quantity): a long name was cut off
        ylabel = (
            words.quantity if len(words.quantity) <= 28 else (words.units or words.variable[:28])
        )
        ydim = hv.Dimension("value", label=ylabel)
        if series is None or series.size == 0:
            # typed like the series to come: the first frame fixes the axis (dates or
            # numbers) for the plot's life, and the series often arrives after it
            empty = (self._empty_x(clim), np.array([], dtype="float64"))
            curve = hv.Curve(empty, kdims=[xdim], vdims=[ydim])
            points = hv.Scatter(empty, kdims=[xdim], vdims=[ydim])
        else:
            x = series_x(series["time"].values, clim)
            y = np.asarray(series.values, dtype="float64")
            curve = hv.Curve((x, y), kdims=[xdim], vdims=[ydim])
            points = hv.Scatter((x, y), kdims=[xdim], vdims=[ydim])
        # no box zoom nor save tool (the wheel zooms; "Series CSV" saves): 5 models fewer
        opts: dict[str, Any] = dict(responsive=True, height=self.height, tools=["hover", "tap"], framewise=True,
                                    line_width=2, color="#1f5fa8", default_tools=["pan", "wheel_zoom", "reset"])  # fmt: skip
        if clim:
            opts["xticks"] = [(i, pd.Timestamp(2000, i, 1).strftime("%b")) for i in range(1, 13)]
        title = words.series_title() if series is not None else ""
        # the hook holds the view weakly: HoloViews keeps an element's options (hooks
        # included) in a process-wide tree, which would keep every closed page alive
        opts["hooks"] = [functools.partial(_series_figure_hook, weakref.ref(self), title),
                         drop_glyph_variants]  # fmt: skip
        return curve.opts(**opts) * points.opts(size=5, color="#1f5fa8", tools=["hover", "tap"],
                                                default_tools=[], hooks=[drop_glyph_variants])  # fmt: skip

    def _figure_hook(self, plot: Any, element: Any, title: str = "") -> None:
        """Title and tap handler on the Bokeh figure itself.

        Neither works through HoloViews here: the figure is an overlay of two
        DynamicMaps, whose title option is the (empty) outer one's, and a ``Tap``
        stream on either DynamicMap was never linked to the figure (a tap did nothing).
        """
        figure = plot.state
        if figure.title is not None and figure.title.text != title:
            figure.title.text = title
        if figure.id not in self._tapped_figures:
            self._tapped_figures.add(figure.id)
            view = weakref.ref(self)
            figure.on_event("tap", lambda event: _tap(view, event))

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

    def _highlight(self, **_: Any) -> hv.Overlay:
        """The selected step (a line) and range (a band); empty ones keep the plot's layout."""
        line, band = hv.VLine(np.nan), hv.VSpan(None, None)
        if self.state.time_mode == "range":
            a, b = self._x_of_label(self.state.start), self._x_of_label(self.state.end)
            if a is not None and b is not None:
                band = hv.VSpan(a, b)
        else:
            t = self._x_of_label(self.state.time)
            if t is not None:
                line = hv.VLine(t)
        return line.opts(color="orange", line_width=2, default_tools=[]) * band.opts(
            color="orange", alpha=0.2, default_tools=[]
        )

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
