"""Widget changes redraw the map once, measured by the in-page hook of the latency bench."""

from __future__ import annotations

import pytest

from tests.bench.browser_latency import JS_HELPERS, wait_for_signature
from tests.browser.test_dashboard import open_dashboard

pytestmark = pytest.mark.browser


def test_time_changes_redraw_the_map(page, server_url: str) -> None:
    open_dashboard(page, f"{server_url}/?dataset=coads&var=SST")
    page.evaluate(JS_HELPERS)
    wait_for_signature(page)
    timings = []
    for index, label in ((3, "Apr"), (6, "Jul"), (9, "Oct"), (0, "Jan")):
        result = page.evaluate("([c, i]) => window.gsTimeChange(c, i, 20000)", ["gs-time", index])
        assert "error" not in result, result
        timings.append(result["ms"])
        page.wait_for_timeout(300)
        assert f"time={label}" in page.locator(".gs-link input").input_value()
    print("time change -> map drawn (ms):", [round(t) for t in timings])
    info = page.locator(".gs-map-info").first.evaluate(
        "e => (e.shadowRoot ? e.shadowRoot.textContent : '') + (e.textContent || '')"
    )
    assert "2° (full resolution)" in info
