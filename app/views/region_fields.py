"""The region's box as four numbers the user can type: west, south, east, north.

Kept in step with `ExplorerState.bbox` both ways: a drawn box or a preset fills the
fields, and a typed box (checked as `pipelines.Query` checks a bbox) becomes the region
(the preset of that name when it is one, else a custom box). West greater than east
crosses the antimeridian: 160, -10, -120, 10 is the Pacific from 160E to 120W. A box that
is not valid is explained under the fields and not applied.
"""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from app.regions import CUSTOM_BOX, POINT, preset_for_bbox
from app.state import ExplorerState
from pipelines import Query, QueryError

__all__ = ["RegionFields"]

_FIELDS = (("west", "W (°E)"), ("south", "S (°N)"), ("east", "E (°E)"), ("north", "N (°N)"))


class RegionFields(pn.viewable.Viewer):
    """W/S/E/N number fields for the region's box, with a line that says what is wrong."""

    def __init__(self, state: ExplorerState, **params: Any):
        super().__init__(**params)
        self.state = state
        self._syncing = False
        self.inputs = {
            key: pn.widgets.FloatInput(
                name=label,
                value=None,
                width=62,
                margin=(0, 3),
                css_classes=[f"gs-{key}"],
                format="0[.]00",
            )  # fmt: skip
            for key, label in _FIELDS
        }
        self.error = pn.pane.HTML("", css_classes=["gs-box-error"], margin=(0, 10),
                                  styles={"color": "#b00020"})  # fmt: skip
        for widget in self.inputs.values():
            widget.param.watch(self._on_typed, "value")
        state.param.watch(self._from_state, ["bbox", "region", "point"])
        self._from_state()

    def _from_state(self, *_: Any) -> None:
        box = self.state.bbox if self.state.region != POINT else None
        self._syncing = True
        try:
            for (key, _label), value in zip(_FIELDS, box or (None,) * 4, strict=True):
                self.inputs[key].value = None if value is None else float(value)
        finally:
            self._syncing = False
        self.error.object = ""

    def _on_typed(self, event: Any) -> None:
        if self._syncing:
            return
        values = [self.inputs[key].value for key, _label in _FIELDS]
        if any(v is None for v in values):
            self.error.object = html.escape("Give all four numbers: west, south, east, north.")
            return
        try:
            box = Query(dataset="-", var="-", bbox=tuple(float(v) for v in values)).bbox
        except QueryError as exc:
            self.error.object = html.escape(f"Box not applied: {exc.message}.")
            return
        self.error.object = ""
        if box is None or tuple(box) == tuple(self.state.bbox or ()):
            return
        preset = preset_for_bbox(box)
        self.state.param.update(region=preset or CUSTOM_BOX, bbox=tuple(box), point=None)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(*self.inputs.values(), margin=(0, 7)), self.error,
            css_classes=["gs-box-fields"], margin=0,
        )  # fmt: skip
