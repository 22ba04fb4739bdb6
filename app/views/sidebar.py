"""The sidebar: widgets built from `ExplorerState` parameters (two-way)."""

from __future__ import annotations

from typing import Any

import panel as pn

from app.state import ExplorerState

__all__ = ["Sidebar"]


class Sidebar(pn.viewable.Viewer):
    """Dataset, variable, time, baseline, region, level and colour controls."""

    def __init__(self, state: ExplorerState, **params: Any):
        super().__init__(**params)
        self.state = state
        s = state.param
        is_range = s.time_mode.rx() == "range"
        is_step = s.time_mode.rx() == "step"
        self.dataset = pn.widgets.Select.from_param(s.dataset, name="Dataset", css_classes=["gs-dataset"])
        self.var = pn.widgets.Select.from_param(s.var, name="Variable", css_classes=["gs-var"])
        self.time_mode = pn.widgets.RadioButtonGroup.from_param(
            s.time_mode, name="Time", options={"Single step": "step", "Range": "range"}
        )
        self.time = pn.widgets.Select.from_param(s.time, name="Time step", visible=is_step, css_classes=["gs-time"])
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
        self.start = pn.widgets.Select.from_param(s.start, name="From", visible=is_range, css_classes=["gs-start"])
        self.end = pn.widgets.Select.from_param(s.end, name="To", visible=is_range, css_classes=["gs-end"])
        self.agg = pn.widgets.Select.from_param(s.agg, name="Aggregation", visible=is_range)
        self.anomaly = pn.widgets.Checkbox.from_param(s.anomaly, name="Anomaly against a baseline")
        self.baseline_start = pn.widgets.Select.from_param(s.baseline_start, name="Baseline from", visible=s.anomaly)
        self.baseline_end = pn.widgets.Select.from_param(s.baseline_end, name="Baseline to", visible=s.anomaly)
        self.region = pn.widgets.Select.from_param(s.region, name="Region", css_classes=["gs-region"])
        self.level = pn.widgets.Select.from_param(
            s.level, name="Level", visible=s.level.rx().rx.pipe(lambda v: v is not None)
        )
        self.cmap = pn.widgets.Select.from_param(s.cmap, name="Colour map")
        self.clim_mode = pn.widgets.RadioButtonGroup.from_param(s.clim_mode, name="Colour range")
        self.clim = pn.widgets.LiteralInput.from_param(
            s.clim, name="Fixed range (low, high)", visible=s.clim_mode.rx() == "fixed"
        )

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
            self.level, self.cmap, self.clim_mode, self.clim,
            width=300,
        )  # fmt: skip
