"""What keeps a dashboard page light: fewer Bokeh models per session.

Every Bokeh model of a page is built, serialised and sent by the server for each new
session, and built again by the browser (a page cost ~250 models and ~1 s of server
CPU; the goal of issue 13 is <= 150 models and <= 150 ms). Two kinds of model are
pure overhead here:

- a widget made with ``from_param`` carries its parameter's docstring as a tooltip:
  a ``Tooltip`` and an ``HTML`` model per widget, for developer-facing words;
- a HoloViews glyph renderer carries a selection, a non-selection and a muted copy of
  its glyph; the dashboard selects nothing with them (box select and tap set the
  region, not a selection to dim around) and mutes nothing (no legends).

`tests/test_page_cost.py` counts the models of a default page; `tests/bench/page_cost.py`
measures a served page's CPU and models.
"""

from __future__ import annotations

from typing import Any

__all__ = ["drop_glyph_variants", "without_tooltips"]


def without_tooltips(*widgets: Any) -> None:
    """No description tooltip on ``widgets`` (``from_param`` gives each its param's doc)."""
    for widget in widgets:
        widget.description = None


def drop_glyph_variants(plot: Any, element: Any) -> None:
    """HoloViews hook: the plot's glyph renderer draws only its glyph.

    The selection, non-selection and muted glyphs (three models per renderer) are
    dropped; HoloViews skips a variant that is None when it updates the glyphs, and
    Bokeh then draws every point with the glyph itself.
    """
    renderer = plot.handles.get("glyph_renderer")
    if renderer is None or not hasattr(renderer, "nonselection_glyph"):
        return
    if renderer.selection_glyph is not None or renderer.nonselection_glyph is not None:
        renderer.update(selection_glyph=None, nonselection_glyph=None, muted_glyph=None)
