"""The sidebar: widgets built from `ExplorerState` parameters (two-way).

Time pickers are drop-downs while a dataset has at most ``GRIDSCOPE_MAX_TIME_OPTIONS``
steps (default 5000); beyond that (40 years hourly is 350k steps, megabytes of options
per drop-down) they become text boxes taking a time label, turned into a step by the one
rule of `pipelines.selection.step_index` (a partial date: the first step in it), and the player steps through the record by index.
"""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from app.state import ExplorerState, check_colour_range
from app.views.page_weight import without_tooltips
from app.views.region_fields import RegionFields
from pipelines import QueryError

__all__ = ["Sidebar"]

_ANOMALY = "Anomaly against a baseline"


def _has_time(state: ExplorerState) -> bool:
    """Whether the variable shown has a time axis (False while a dataset cannot be opened)."""
    try:
        return state.has_time
    except Exception:  # noqa: BLE001  (the state reverts to a dataset that opens)
        return False


def _pair_text(values: Any) -> str:
    return ", ".join(f"{float(v):g}" for v in values)


def max_time_options() -> int:
    """Steps above which a time is typed, not picked (``GRIDSCOPE_MAX_TIME_OPTIONS``)."""
    from app.runtime import current

    return current().settings.max_time_options


class _TimePicker(pn.viewable.Viewer):
    """A drop-down of the dataset's steps, or a text box when there are too many.

    Only the one in use is on the page, and only once the picker is shown: a hidden
    picker (the range's and the baseline's in step mode) is one empty column in the
    page, not two widgets (fewer Bokeh models for every new session to build and send).
    """

    def __init__(self, state: ExplorerState, name: str, label: str, css: str, visible: Any = True):
        super().__init__()
        self.state, self.field = state, name
        self._label, self._css = label, css
        self._select: pn.widgets.Select | None = None
        self._text: pn.widgets.TextInput | None = None
        self._few = True  # the dataset's steps fit a drop-down
        self._column = pn.Column(visible=visible, margin=0)
        state.param.watch(self._from_state, [name])
        state.param.watch(self._on_dataset, ["dataset"])
        self._column.param.watch(self._on_dataset, "visible")
        self._on_dataset()

    @property
    def select(self) -> pn.widgets.Select:
        """The drop-down of the steps (made when first needed)."""
        if self._select is None:
            value = getattr(self.state, self.field)
            times = list(self.state.param[self.field].objects)
            self._select = pn.widgets.Select(
                name=self._label, options=times, value=value if value in times else None,
                css_classes=[self._css],
            )  # fmt: skip
            self._select.param.watch(self._from_widget, "value")
        return self._select

    @property
    def text(self) -> pn.widgets.TextInput:
        """The text box taking a time label (made when first needed)."""
        if self._text is None:
            self._text = pn.widgets.TextInput(name=self._label, placeholder="e.g. 1995-07-01T12:00",
                                              css_classes=[f"{self._css}-text"])  # fmt: skip
            self._text.param.watch(self._from_widget, "value")
        return self._text

    def _on_dataset(self, *_: Any) -> None:
        times = self.state.param[self.field].objects
        self._few = len(times) <= max_time_options()
        if not self._column.visible:
            return  # set up when shown
        units = self.state.sources.info(self.state.dataset).time_units
        name = f"{self._label} ({units})" if units else self._label  # numbered steps' units
        if self._few:
            widget: Any = self.select
            widget.param.update(options=list(times), name=name)
        else:
            widget = self.text
            widget.param.update(
                name=name, placeholder="e.g. 3" if units else "e.g. 1995-07-01T12:00"
            )
        if self._column.objects != [widget]:
            self._column.objects = [widget]
        self._from_state()

    def _from_state(self, *_: Any) -> None:
        if not self._column.objects:
            return  # not shown yet: its widget takes the state's value when made
        value = getattr(self.state, self.field)
        if self._few:
            if value in self.select.options and self.select.value != value:
                self.select.value = value
        elif self.text.value != (value or ""):
            self.text.value = value or ""

    def _from_widget(self, event: Any) -> None:
        value = event.new
        if not value or value == getattr(self.state, self.field):
            return
        times = self.state.param[self.field].objects
        if value not in times and event.obj is self._select:
            # a drop-down only offers steps: this is the previous dataset's step, echoed
            # by the browser while the options change; not a request, so no message
            self._from_state()
            self._resend()
            return
        if value not in times:
            value = self._nearest(value)
        if value is not None:
            setattr(self.state, self.field, value)
        else:
            self._from_state()

    def _resend(self) -> None:
        """Send the drop-down's value to the browser again on the next tick.

        Panel does not send a property back while it handles the browser's change of
        that property, so the stale step would stay on screen.
        """
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            pn.state.execute(lambda: self.select.param.trigger("value"), schedule=True)

    def _nearest(self, text: str) -> str | None:
        from app.query_checks import resolve_time_labels
        from pipelines import Query, QueryError

        state = self.state
        key = "time" if self.field == "time" else ("start" if "start" in self.field else "end")
        try:
            query = Query(dataset=state.dataset, var=state.var, **{key: text})
            ds = state.sources.open(state.dataset)
            label = resolve_time_labels(ds, query, state.param[self.field].objects)[key]
        except (QueryError, ValueError, KeyError) as exc:
            state.message = f"Ignored time {text[:40]!r}: {getattr(exc, 'message', exc)}"
            return None
        return label

    def __panel__(self) -> pn.viewable.Viewable:
        return self._column


class Sidebar(pn.viewable.Viewer):
    """Dataset, variable, time, baseline, region, level and colour controls."""

    def __init__(self, state: ExplorerState, **params: Any):
        super().__init__(**params)
        self.state = state
        s = state.param
        # time, range and anomaly controls only where the data have a time axis
        has_time = pn.rx(lambda *_: _has_time(state))(s.dataset, s.var)
        is_range = (s.time_mode.rx() == "range") & has_time
        is_step = (s.time_mode.rx() == "step") & has_time
        self.dataset = pn.widgets.Select.from_param(
            s.dataset, name="Dataset", css_classes=["gs-dataset"]
        )
        self.var = pn.widgets.Select.from_param(s.var, name="Variable", css_classes=["gs-var"])
        self.time_mode = pn.widgets.RadioButtonGroup.from_param(
            s.time_mode, name="Time", options={"Single step": "step", "Range": "range"},
            visible=has_time, css_classes=["gs-time-mode"],
        )  # fmt: skip
        self.time = _TimePicker(state, "time", "Time step", "gs-time", visible=is_step)
        # a Player over step indices, kept in step with state.time both ways (DiscretePlayer
        # cannot follow options that change with the dataset)
        self.player = pn.widgets.Player(
            name="", start=0, end=max(len(s.time.objects) - 1, 1), value=0, interval=1000,
            visible=is_step, show_loop_controls=False, show_value=False,
            visible_buttons=["previous", "play", "pause", "next"], css_classes=["gs-player"],
        )  # fmt: skip
        self.player.param.watch(self._on_player, "value")
        state.param.watch(self._sync_player, ["time"])
        self._sync_player()
        self.start = _TimePicker(state, "start", "From", "gs-start", visible=is_range)
        self.end = _TimePicker(state, "end", "To", "gs-end", visible=is_range)
        self.agg = pn.widgets.Select.from_param(s.agg, name="Aggregation", visible=is_range)
        # a one-option CheckBoxGroup, not a Checkbox: Bokeh draws a Checkbox's text beside
        # its box, not in a <label>, so a click on the words did not tick it
        self.anomaly = pn.widgets.CheckBoxGroup(
            options=[_ANOMALY], value=[_ANOMALY] if state.anomaly else [],
            visible=has_time, css_classes=["gs-anomaly"], margin=(5, 10),
        )  # fmt: skip
        self.anomaly.param.watch(lambda e: setattr(state, "anomaly", _ANOMALY in e.new), "value")
        state.param.watch(
            lambda e: setattr(self.anomaly, "value", [_ANOMALY] if e.new else []), "anomaly"
        )
        with_baseline = s.anomaly.rx() & has_time
        self.baseline_start = _TimePicker(
            state, "baseline_start", "Baseline from", "gs-baseline-start", visible=with_baseline
        )
        self.baseline_end = _TimePicker(
            state, "baseline_end", "Baseline to", "gs-baseline-end", visible=with_baseline
        )
        self.region = pn.widgets.Select.from_param(
            s.region, name="Region", css_classes=["gs-region"]
        )
        self.region_fields = RegionFields(state)  # the box as W/S/E/N numbers to type
        # the choices read "500 hPa": ExplorerState names each level with its units
        self.level = pn.widgets.Select.from_param(
            s.level, name="Level", visible=s.level.rx().rx.pipe(lambda v: v is not None),
            css_classes=["gs-level"],
        )  # fmt: skip
        self.cmap = pn.widgets.Select.from_param(s.cmap, name="Colour map")
        self.clim_mode = pn.widgets.RadioButtonGroup.from_param(s.clim_mode, name="Colour range")
        fixed = s.clim_mode.rx() == "fixed"
        self.clim = pn.widgets.TextInput(
            name="Fixed range (low, high)", value=_pair_text(state.clim), visible=fixed,
            css_classes=["gs-clim"], placeholder="e.g. -2, 30",
        )  # fmt: skip
        self.clim_error = pn.pane.HTML("", visible=fixed, css_classes=["gs-clim-error"],
                                       styles={"color": "#b00020"}, margin=(0, 10))  # fmt: skip
        self.clim.param.watch(self._on_clim_text, "value")
        state.param.watch(self._on_clim_state, ["clim"])
        without_tooltips(self.dataset, self.var, self.time_mode, self.agg, self.region,
                         self.level, self.cmap, self.clim_mode)  # fmt: skip

    def _on_clim_text(self, event: Any) -> None:
        """A typed colour range: applied when valid, else explained under the box."""
        try:
            pair = check_colour_range(event.new)
        except QueryError as exc:
            self.clim_error.object = html.escape(exc.message)
            return
        self.clim_error.object = ""
        if tuple(self.state.clim) != pair:
            self.state.clim = pair

    def _on_clim_state(self, event: Any) -> None:
        text = _pair_text(event.new)
        try:
            same = check_colour_range(self.clim.value) == tuple(event.new)
        except QueryError:
            same = False
        if not same:
            self.clim_error.object = ""
            self.clim.value = text

    def _on_player(self, event: Any) -> None:
        times = self.state.param.time.objects
        if 0 <= event.new < len(times) and self.state.time != times[event.new]:
            self.state.time = times[event.new]

    def _sync_player(self, *_: Any) -> None:
        times = self.state.param.time.objects
        index = times.index(self.state.time) if self.state.time in times else 0
        self.player.param.update(end=max(len(times) - 1, 1), value=index)

    def _region_text(self) -> str:
        state = self.state
        if state.region == "Point" and state.point is not None:
            return f"Point {state.point[0]:g}°E, {state.point[1]:g}°N"
        if state.bbox is not None:
            w, s, e, n = state.bbox
            return f"Box W {w:g}, S {s:g}, E {e:g}, N {n:g}"
        return ""

    def __panel__(self) -> pn.viewable.Viewable:
        region_text = pn.bind(lambda *_: self._region_text(), self.state.param.region,
                              self.state.param.bbox, self.state.param.point)  # fmt: skip
        return pn.Column(
            self.dataset, self.var,
            self.time_mode, self.time, self.player, self.start, self.end, self.agg,
            self.anomaly, self.baseline_start, self.baseline_end,
            self.region, pn.pane.Markdown(region_text, css_classes=["gs-region-text"], margin=(0, 10)),
            self.region_fields,
            self.level, self.cmap, self.clim_mode, self.clim, self.clim_error,
            width=300,
        )  # fmt: skip
