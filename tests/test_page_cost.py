"""A new dashboard page stays light: at most 150 Bokeh models in its first render.

Every model of a page is built, serialised and sent by the server for each new session
(issue 13: "light pages"). The count is deterministic, so it is asserted; the page's
CPU time is measured by ``python -m tests.bench.page_cost`` against a real server, never
asserted here. The page is the default view of a small synthetic dataset (36 monthly steps) as a served session
first sends it: the map drawn (a small grid's map is delivered inside the page's first
callback) and the series still being computed (off the event loop).
"""

from __future__ import annotations

import collections

import pytest

pn = pytest.importorskip("panel")

from app.sources import DatasetSources  # noqa: E402
from app.state import ExplorerState  # noqa: E402
from app.views.dashboard import Dashboard  # noqa: E402
from app.views.results import ViewResults  # noqa: E402
from tests.app_data import make_ds  # noqa: E402

#: Goal of issue 13 for a page's first render.
MAX_MODELS = 150


def _page_models(*, with_series: bool) -> collections.Counter:
    """Model types of the default page's document (the map drawn; the series if asked)."""
    from bokeh.document import Document

    state = ExplorerState(DatasetSources.from_datasets({"synth": make_ds(0)}))
    results = ViewResults(state)
    if with_series:
        results.refresh()
    else:
        results._run_sync("map")  # what a served page has at once; its series comes later
    dashboard = Dashboard(state, results=results)
    assert results.field is not None and results.map_error == ""
    doc = Document()
    doc.add_root(pn.Column(dashboard, sizing_mode="stretch_width").get_root(doc))
    return collections.Counter(type(model).__name__ for model in doc.models)


def test_first_render_has_at_most_150_models() -> None:
    models = _page_models(with_series=False)
    assert "figure" in models, "the page has no map figure"  # what is counted is a page
    total = sum(models.values())
    assert total <= MAX_MODELS, f"{total} Bokeh models: {models.most_common(12)}"


def test_series_figure_joins_the_page_when_there_is_a_series() -> None:
    """The series figure is not built for a page whose series has not arrived, and is
    there once it has (outside a server: at once)."""
    without = _page_models(with_series=False)
    with_series = _page_models(with_series=True)
    assert without["figure"] == 1 and with_series["figure"] == 2
