"""Fuzz the permalink: any URL query restores a valid, computable view with a message.

`ExplorerState.from_url` must never raise; whatever it keeps must form a valid
`Query` whose map computes; anything it drops must be explained in a message.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.sources import DatasetSources
from app.state import ExplorerState
from pipelines import Query, compute_map
from tests.conftest import REPO_ROOT

_FIELDS = ["dataset", "var", "time", "start", "end", "agg", "baseline_start", "baseline_end",
           "bbox", "point", "level", "cmap", "clim", "region", "x_range", "y_range", "bogus"]  # fmt: skip
_VALUES = st.one_of(
    st.sampled_from(
        ["coads", "navy-winds", "etopo20", "../../etc/passwd", "/etc/passwd", "file:///etc/passwd",
         "SST", "UWND", "ROSE", "NOPE", "Jan", "Jul", "1982", "1992-12", "1985-02-30", "2050",
         "0000-03", "mean", "std", "median", "nan,nan,nan,nan", "inf,0,1,1", "-80,0,-10,60",
         "170,-10,-170,10", "0,95,1,1", "1e308,0,1,1", "-140,0", "500", "fire", "0,40", "40,0",
         "Niño 3.4", "x" * 3000, "🌊", "%00", "<script>alert(1)</script>"]
    ),
    st.text(max_size=30),
)  # fmt: skip


@pytest.fixture(scope="module")
def sources():
    return DatasetSources.from_catalog()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(params=st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=8))
def test_any_link_gives_a_valid_view_or_a_message(sources, params):
    state = ExplorerState(sources)
    # through a real query string, as a browser would send it
    restored = dict(parse_qsl(urlencode(params), keep_blank_values=True))
    messages = state.from_url(restored)
    query = state.query
    assert isinstance(query, Query) and query.dataset in sources.ids
    assert "Traceback" not in " ".join(messages)
    text = " ".join(messages)
    assert str(REPO_ROOT) not in text and "site-packages" not in text  # no server paths
    if restored and not messages:
        # nothing was dropped: every known query field given must be in the view
        for key in ("dataset", "var", "agg"):
            if restored.get(key):
                assert str(getattr(query, key)) == restored[key]


@pytest.mark.parametrize(
    "text",
    [
        "dataset=../../etc/passwd&var=SST",
        "dataset=coads&var=SST&bbox=nan,0,1,1",
        "dataset=coads&var=SST&start=1985&end=1984",
        "dataset=coads&var=SST&agg=median",
        "dataset=coads&var=NOPE",
        "dataset=coads&var=SST&level=500",
        "dataset=etopo20&var=ROSE&time=Jan",
    ],
)
def test_bad_link_then_next_valid_link_works(sources, text):
    state = ExplorerState(sources)
    assert state.from_url(dict(parse_qsl(text))), "a bad link must be explained"
    field = compute_map(sources.open(state.dataset), state.map_query).values
    assert np.isfinite(field).any()
    assert state.from_url({"dataset": "navy-winds", "var": "VWND", "time": "1985-07"}) == []
    assert state.query.var == "VWND" and state.query.time.startswith("1985-07")
