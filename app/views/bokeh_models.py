"""Plots drawn with Bokeh models directly, updated in place.

The map and the series are Bokeh figures built by their views (not HoloViews plots):
a HoloViews plot cost ~130 ms of server CPU to build and about as much to update, most
of a page's and an update's cost (issue 13, "light pages"). Here a figure's glyphs read
``ColumnDataSource`` objects whose data, and a few properties (ranges, titles, colour
mapper), are replaced on each update: an update sends new numbers and builds no model.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["call_alive", "glyph_renderer", "in_document", "set_changed"]


def glyph_renderer(fig: Any, source: Any, glyph: Any) -> Any:
    """A renderer of ``glyph`` over ``source`` in ``fig`` that draws only its glyph.

    No selection, non-selection or muted copies of it (three models each): the plots
    select nothing with them (box select and tap set the region) and mute nothing.
    """
    from bokeh.models import GlyphRenderer

    renderer = GlyphRenderer(data_source=source, glyph=glyph, selection_glyph=None,
                             nonselection_glyph=None, muted_glyph=None)  # fmt: skip
    fig.renderers.append(renderer)
    return renderer


def set_changed(model: Any, **values: Any) -> None:
    """Set the properties of ``model`` that differ (an unchanged one sends nothing)."""
    changed = {k: v for k, v in values.items() if getattr(model, k) != v}
    if changed:
        model.update(**changed)


def in_document(model: Any, change: Callable[[], None]) -> None:
    """Apply ``change`` to models of ``model``'s document, as Panel applies its own.

    At once (its events sent together) in the session's own callbacks and outside a
    server; on the session's next tick from anywhere else (another thread, another
    session's callback), where Bokeh's document must not be touched.
    """
    import panel as pn
    from panel.io.document import unlocked

    doc = model.document
    if doc is None or doc.session_context is None or pn.state._unblocked(doc):
        with unlocked():
            change()
    else:
        doc.add_next_tick_callback(change)


def call_alive(view: weakref.ref, method: str, *args: Any, **kwargs: Any) -> None:
    """``view.method(*args, **kwargs)`` if the view still lives (a figure's callbacks
    hold their view weakly, so a closed page is freed with its document)."""
    target = view()
    if target is not None:
        getattr(target, method)(*args, **kwargs)
