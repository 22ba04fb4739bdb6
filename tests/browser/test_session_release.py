"""Closed browser sessions are released: no `Dashboard` or document outlives its session.

The server runs in this process (threaded, with the Panel settings of `gridscope serve`)
so the test can count live objects; Chromium opens sessions, changes time and region,
and closes them. A reference kept anywhere would keep every closed session's whole page
alive, 5-10 MB each. Leaks found by the load test and checked here: Panel's JS-callback
registry held the copy-link button's page; Panel's view registry (``pn.state._views``)
held every session's notification area and document; and a coastline element shared by
all sessions grew by a HoloViews operation each time a session displayed it; a plot hook
(the map's centre-follower, the series' title) held its view strongly, and HoloViews
keeps hooks in a process-wide options tree while the last drawn element lives. Anything
created once per process is made by a warm-up session before the baseline is counted.
"""

from __future__ import annotations

import gc
import time

import pytest

from tests.ports import free_port

pytestmark = pytest.mark.browser


def _alive() -> dict[str, int]:
    """Live dashboards, Bokeh documents, Panel view-registry entries and Parameterized
    objects (widgets, panes, HoloViews elements, streams and operations)."""
    import panel as pn
    import param
    from bokeh.document import Document

    from app.views.dashboard import Dashboard

    gc.collect()
    objects = gc.get_objects()
    return {
        "dashboards": sum(1 for o in objects if isinstance(o, Dashboard)),
        "documents": sum(1 for o in objects if isinstance(o, Document)),
        "views": len(pn.state._views),
        "parameterized": sum(1 for o in objects if isinstance(o, param.Parameterized)),
    }


def _use_one_session(browser, port: int, while_open=lambda: None) -> None:
    """Open the page, change time and region, call `while_open`, close it."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/?dataset=coads&var=SST&time=Jan")
    page.wait_for_selector(".gs-map canvas", timeout=60000)
    page.locator(".gs-time select").select_option(label="Jul")
    page.locator(".gs-region select").select_option(label="Tropics")
    page.wait_for_timeout(1500)
    while_open()
    context.close()


def _settle(baseline: dict[str, int] | None, seconds: float = 30) -> dict[str, int]:
    """Counts once they stop changing (or equal `baseline`), within `seconds`."""
    deadline = time.monotonic() + seconds
    last = _alive()
    while time.monotonic() < deadline and last != baseline:
        time.sleep(1.0)
        now = _alive()
        if baseline is None and now == last:
            break
        last = now
    return last


def test_closed_sessions_release_their_dashboards(browser):
    import panel as pn

    from app.server import configure_panel, create_session, server_options
    from app.sources import DatasetSources

    configure_panel()
    sources = DatasetSources.from_catalog()
    port = free_port()
    options = server_options(port=port, unused_session_lifetime=1, check_unused_sessions=0.5)
    origins = options.pop("websocket_origin")
    server = pn.serve({"/": lambda: create_session(sources)}, port=port, address="127.0.0.1",
                      websocket_origin=origins, show=False, threaded=True, start=True, **options)  # fmt: skip
    try:
        _use_one_session(browser, port)  # one-off costs: lazy imports, caches, templates
        time.sleep(4)  # Bokeh discards the closed session (lifetime 1 s, checked every 0.5 s)
        baseline = _settle(None)

        def one_more_page() -> None:
            assert _alive()["dashboards"] == baseline["dashboards"] + 1

        for _ in range(3):
            _use_one_session(browser, port, while_open=one_more_page)
        assert _settle(baseline) == baseline, "closed sessions left objects alive"
    finally:
        server.stop()
