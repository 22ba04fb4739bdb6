"""A link to a day reopens on that day, however often it is reopened (issue 11, point 1).

A small daily store (virtual, 20 steps at 10°, computed on read) is served; the page is
opened with ``time=1980-01-05`` and then, five times, with the link the page itself
offers. Each time the time picker shows 1980-01-05, the link says 1980-01-05 and the map
shows the same picture. Before the fix the page showed 1980-01-06 and moved on a day
with every reopening.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import start_server, stop_server
from tests.browser.test_dashboard import wait_for_map

pytestmark = pytest.mark.browser

SOURCE = "virtual:daily:20:10:0"


@pytest.fixture(scope="module")
def daily_server(artifacts: Path):
    proc, url = start_server([SOURCE], artifacts / "serve-time-links.log")
    yield url
    stop_server(proc)


def _link(page, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    value = ""
    while time.monotonic() < deadline:
        value = page.locator(".gs-link input").input_value()
        if "time=" in value:
            return value
        page.wait_for_timeout(50)
    raise AssertionError(f"the link never named a time: {value!r}")


def test_a_daily_link_reopens_on_the_same_day(page, daily_server, artifacts: Path) -> None:
    url = f"{daily_server}/?dataset={SOURCE}&var=t2m&time=1980-01-05"
    first = None
    for attempt in range(6):
        page.goto(url)
        page.wait_for_selector(".gs-map canvas")
        pixels = wait_for_map(page)
        assert page.locator(".gs-time select").input_value() == "1980-01-05", attempt
        link = _link(page)
        assert "time=1980-01-05&" in link + "&", link
        if first is None:
            first = pixels
        else:  # same day, same picture
            assert np.abs(pixels.astype(int) - first.astype(int)).mean() < 1.0, attempt
        url = link if link.startswith("http") else f"{daily_server}/{link.lstrip('/')}"
    page.screenshot(path=str(artifacts / "time-link-reopened.png"), full_page=True)
    assert "time=1980-01-05" in page.url
