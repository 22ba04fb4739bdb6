"""A link to a day reopens on that day, however often it is reopened (issue 11, point 1).

Small daily and hourly stores (virtual, 10°, computed on read) are served; the page is
opened with ``time=1980-01-05`` (hourly: ``1980-01-01T06:00``) and then, three times, with
the link the page itself offers. Each time the time picker shows that step, the link
names it and the map shows the same picture. Before the fix the daily page showed
1980-01-06 and moved on a day with every reopening.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import start_server, stop_server
from tests.browser.test_dashboard import wait_for_map

pytestmark = pytest.mark.browser

DAILY, HOURLY = "virtual:daily:20:10:0", "virtual:hourly:48:10:0"


SST = "data_catalog/samples/grids/sstdata_netcdf.nc"  # time units "Month", no epoch


@pytest.fixture(scope="module")
def server(artifacts: Path):
    """One server for the module's three sources (each test opens its own by link)."""
    proc, url = start_server([DAILY, HOURLY, SST], artifacts / "serve-time-links.log")
    yield url
    stop_server(proc)


def _link(page, wanted: str = "time=", timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    value = ""
    while time.monotonic() < deadline:
        value = page.locator(".gs-link input").input_value()
        if wanted in value + "&":
            return value
        page.wait_for_timeout(50)
    raise AssertionError(f"the link never held {wanted!r}: {value!r}")


@pytest.mark.parametrize(("source", "step"), [(DAILY, "1980-01-05"), (HOURLY, "1980-01-01T06:00")])
def test_a_link_reopens_on_the_same_step(page, server, artifacts: Path, source, step) -> None:
    url = f"{server}/?dataset={source}&var=t2m&time={step}"
    first = None
    for attempt in range(4):  # the bug moved the page on a step at every reopening
        page.goto(url)
        page.wait_for_selector(".gs-map canvas")
        pixels = wait_for_map(page)
        assert page.locator(".gs-time select").input_value() == step, attempt
        link = _link(page)
        assert f"time={step}&" in link + "&", link
        if first is None:
            first = pixels
        else:  # same day, same picture
            assert np.abs(pixels.astype(int) - first.astype(int)).mean() < 1.0, attempt
        url = link if link.startswith("http") else f"{server}/{link.lstrip('/')}"
    page.screenshot(path=str(artifacts / f"time-link-{source[8:14]}.png"), full_page=True)
    assert f"time={step}" in page.url


def test_a_numbered_step_axis_opens_picks_and_links(page, server, artifacts: Path) -> None:
    from urllib.parse import quote

    from tests.browser.test_dashboard import text_of, wait_for_change

    page.goto(f"{server}/?dataset={quote(SST, safe='')}&var=sst&time=7")
    page.wait_for_selector(".gs-map canvas")
    july = wait_for_map(page)
    assert page.locator(".gs-time select").input_value() == "7"
    assert "Time step (Month)" in text_of(page, ".gs-time")
    assert "time=7&" in _link(page) + "&"
    page.locator(".gs-time select").select_option(label="1")
    january, _ = wait_for_change(page, july)
    assert "time=1&" in _link(page, "time=1&") + "&"
    page.screenshot(path=str(artifacts / "time-numeric.png"), full_page=True)
    assert np.abs(january.astype(int) - july.astype(int)).mean() > 1.0
