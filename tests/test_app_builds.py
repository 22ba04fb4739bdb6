"""Builds started from the dashboard: background, progress, planner picks them up."""

from __future__ import annotations

import time
import types

import numpy as np
import pytest

from app import builds
from app.sources import DatasetSources
from app.state import ExplorerState
from app.views.build_view import BuildView
from pipelines import Query, compute_map
from pipelines.planner import plan_map


@pytest.fixture
def derived_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDSCOPE_DERIVED_DIR", str(tmp_path))
    return tmp_path


def _wait(progress: builds.BuildProgress, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while progress.state == "running" and time.monotonic() < deadline:
        time.sleep(0.1)


def test_build_from_the_dashboard_speeds_up_the_next_map(derived_dir):
    sources = DatasetSources.from_catalog()
    state = ExplorerState(sources)
    state.from_url({"dataset": "navy-winds", "var": "UWND"})
    ds = sources.open("navy-winds")
    query = Query("navy-winds", "UWND", start="1983-02", end="1990-07", agg="max")
    assert plan_map(ds, query).description.startswith("brute force")

    view = BuildView(state)
    progress = view.start()
    assert view.start() is progress, "a second click joins the running build"
    _wait(progress)
    view.refresh()
    assert progress.state == "done", progress.message
    assert "built for navy-winds" in view.status.object
    assert progress.done == progress.total > 0

    plan = plan_map(ds, query)
    assert not plan.description.startswith("brute force"), plan.description
    np.testing.assert_array_equal(plan.compute().values, compute_map(ds, query).values)


def test_failed_build_is_reported_in_words(derived_dir):
    jobs = builds.BuildJobs()
    progress = jobs.start("etopo20")  # no time axis: nothing to build
    _wait(progress)
    assert progress.state == "failed"
    assert "etopo20" in progress.describe() and "Traceback" not in progress.describe()
    assert "/" not in progress.message.replace("N/A", "")


def test_a_closed_client_gives_way_to_the_apps_current_one(derived_dir, monkeypatch):
    """A view made before a reconnect holds the closed client; the build uses the
    app's current one (none here: in-process) instead of failing."""
    from app import runtime
    from pipelines.build import BuildConfig

    monkeypatch.setattr(runtime.current().cluster, "client", None)
    closed = types.SimpleNamespace(status="closed")
    config = BuildConfig(max_level=1, ts_max_level=1, base_block=4, unit_steps=16)
    progress = builds.BuildJobs().start("navy-winds", closed, config=config)
    _wait(progress)
    assert progress.state == "done", progress.message
