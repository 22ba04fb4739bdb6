"""The dashboard on a virtual ~12 TB source: maps at screen resolution through the planner.

`gridscope serve virtual:hourly:350640:0.125:0` (40 years hourly at 0.125°, two
variables, ~11.6 TB, chunks computed on read): the page loads, the map shows data at a pyramid
level matching the plot, a mouse-wheel zoom re-renders it at a finer resolution, and
the server's memory stays bounded.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.browser.conftest import start_server, stop_server
from tests.browser.test_dashboard import colourful, map_pixels, text_of, wait_for_map

pytestmark = pytest.mark.browser

SOURCE = "virtual:hourly:350640:0.125:0"
RSS_LIMIT = 2 * 2**30


@pytest.fixture(scope="module")
def virtual_server(artifacts: Path):
    # the whole-record Global series of a raw TB source is refused in words (budget)
    proc, url = start_server(
        [SOURCE], artifacts / "serve-virtual.log", env={"GRIDSCOPE_MAX_REQUEST_BYTES": "2GB"}
    )
    yield proc, url
    stop_server(proc)


def _rss(pid: int) -> int:
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=False)] if p.pid == pid)


def _info(page) -> str:
    text = text_of(page, ".gs-map-info")
    return text[text.find("Showing") :] if "Showing" in text else text


def _wait_info(page, pattern: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = _info(page)
        if re.search(pattern, text):
            return text
        page.wait_for_timeout(100)
    raise AssertionError(f"map info never matched {pattern!r}; last {text!r}")


def test_virtual_source_map_zoom_and_memory(browser, virtual_server, artifacts: Path) -> None:
    proc, url = virtual_server
    # the map plot is ~900x400 px: the global view needs level 1 (0.25°), a zoom level 0
    context = browser.new_context(viewport={"width": 1400, "height": 1150})
    page = context.new_page()
    page.set_default_timeout(120000)
    try:
        page.goto(f"{url}/?dataset={SOURCE}&var=t2m&time=2001-07-01T12:00")
        page.wait_for_selector(".gs-map canvas")
        before = wait_for_map(page, timeout=120)
        assert colourful(before) > 100
        coarse = _wait_info(page, r"Showing 0\.25° \(pyramid level 1\)")
        page.screenshot(path=str(artifacts / "10-virtual-loaded.png"), full_page=True)
        assert "2001-07-01T12:00" in page.locator(".gs-link input").input_value()

        box = page.locator(".gs-map canvas").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.45)
        for _ in range(6):
            page.mouse.wheel(0, -240)
            page.wait_for_timeout(80)
        fine = _wait_info(page, r"Showing 0\.125° \(full resolution\)")
        cells = [int(v) for v in re.search(r"(\d+)x(\d+) cells", fine).groups()]
        assert cells[0] * cells[1] < 1441 * 2880 / 4, (
            "a zoomed frame reads about one screen of cells"
        )
        link = page.locator(".gs-link input").input_value()
        assert "x_range=" in link
        after = map_pixels(page)
        assert colourful(after) > 100
        page.screenshot(path=str(artifacts / "11-virtual-zoomed.png"), full_page=True)
        assert coarse != fine
        rss = _rss(proc.pid)
        print(f"server RSS on {SOURCE}: {rss / 2**20:.0f} MiB")
        assert rss < RSS_LIMIT
    finally:
        context.close()
