"""Closed browser sessions are released: no `Dashboard` or document outlives its session.

The server runs in this process (threaded, with the Panel settings of `gridscope serve`)
so the test can count live objects; Chromium opens sessions, changes time and region,
and closes them. A reference kept anywhere would keep every closed session's whole page
alive, 5-10 MB each. Two such leaks were found by the load test and are checked here:
Panel's JS-callback registry held the copy-link button's page, and Panel's view
registry (``pn.state._views``) held every session's notification area and document.
"""

from __future__ import annotations

import gc
import time

import pytest

from tests.browser.conftest import free_port

pytestmark = pytest.mark.browser


def _alive() -> dict[str, int]:
    """Live dashboards, Bokeh documents and Panel view-registry entries."""
    import panel as pn
    from bokeh.document import Document

    from app.views.dashboard import Dashboard

    gc.collect()
    objects = gc.get_objects()
    return {
        "dashboards": sum(1 for o in objects if isinstance(o, Dashboard)),
        "documents": sum(1 for o in objects if isinstance(o, Document)),
        "views": len(pn.state._views),
    }


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
        baseline = _alive()
        for _ in range(3):
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/?dataset=coads&var=SST&time=Jan")
            page.wait_for_selector(".gs-map canvas", timeout=60000)
            page.locator(".gs-time select").select_option(label="Jul")
            page.locator(".gs-region select").select_option(label="Tropics")
            page.wait_for_timeout(1500)
            assert _alive()["dashboards"] >= baseline["dashboards"] + 1
            context.close()
        deadline = time.monotonic() + 30
        while _alive() != baseline and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _alive() == baseline, "closed sessions are still alive"
    finally:
        server.stop()
