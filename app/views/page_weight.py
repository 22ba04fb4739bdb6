"""What keeps a dashboard page light: fewer Bokeh models per session.

Every Bokeh model of a page is built, serialised and sent by the server for each new
session, and built again by the browser (a page cost ~250 models and ~1 s of server
CPU; the goal of issue 13 is <= 150 models and <= 150 ms). What is pure overhead here:

- a widget made with ``from_param`` carries its parameter's docstring as a tooltip:
  a ``Tooltip`` and an ``HTML`` model per widget, for developer-facing words;
- a glyph renderer's selection, non-selection and muted copies of its glyph: the map
  and series figures are built without them (`app.views.bokeh_models.glyph_renderer`),
  and without HoloViews, whose plots cost ~130 ms of CPU each;
- contents nobody has opened yet (a collapsed card, a series still being computed):
  built when first needed.

`tests/test_page_cost.py` counts the models of a default page; `tests/bench/page_cost.py`
measures a served page's CPU and models.
"""

from __future__ import annotations

from typing import Any

__all__ = ["without_tooltips"]


def without_tooltips(*widgets: Any) -> None:
    """No description tooltip on ``widgets`` (``from_param`` gives each its param's doc)."""
    for widget in widgets:
        widget.description = None
