"""One session's work never stalls the server: the virtual ~1.4 TB source in Chromium.

`gridscope serve virtual:hourly:350640:0.25:0` (40 years hourly at 0.25°, chunks computed
on read) and a page on it. Its default view asks for the area-weighted Global series over
the whole unbuilt record (1.4 TB): that series must be costed and *asked about*, not run,
while the map comes first. Meanwhile ``/liveness`` is polled every 100 ms and each answer
must come within 1 s, a second session (the bundled COADS page) must load, and the
server's resident memory must stay under 2 GiB.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import start_server, stop_server
from tests.browser.test_dashboard import colourful, map_pixels, text_of, wait_for_map, wait_for_text

pytestmark = pytest.mark.browser

SOURCE = "virtual:hourly:350640:0.25:0"
RSS_LIMIT = 2 * 2**30
LIVENESS_LIMIT = 1.0


def _rss_bytes(pid: int) -> int:
    """Resident memory of one process, from /proc (the server itself, not its workers)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class _Watch(threading.Thread):
    """Polls ``/liveness`` every 100 ms (latency of each answer) and the server's RSS."""

    def __init__(self, url: str, pid: int):
        super().__init__(daemon=True)
        self.url, self.pid = url, pid
        self.latencies: list[float] = []  # seconds per answer; a failure counts as 60
        self.peak_rss = 0
        self.slow: list[tuple[float, float]] = []  # (wall clock, seconds) of slow answers
        self.load = 0.0  # highest run-queue length per core seen
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.url}/liveness", timeout=30) as response:
                    response.read()
                    ok = response.status == 200
            except OSError:
                ok = False
            self.latencies.append(time.monotonic() - started if ok else 60.0)
            if self.latencies[-1] > 1.0:
                self.slow.append((round(time.time(), 1), round(self.latencies[-1], 2)))
            self.load = max(self.load, os.getloadavg()[0] / (os.cpu_count() or 1))
            try:
                self.peak_rss = max(self.peak_rss, _rss_bytes(self.pid))
            except OSError:
                pass
            self._halt.wait(max(0.1 - (time.monotonic() - started), 0.0))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=40)

    def worst(self) -> float:
        return max(self.latencies, default=float("inf"))

    def limit(self) -> float:
        """1 s, stretched by how oversubscribed the machine's cores were meanwhile.

        On a shared test machine other processes alone delay an idle server's answers
        (measured: 0.6 s at 4 runnable processes per core); a stalled event loop delays
        them by the whole computation (minutes).
        """
        return LIVENESS_LIMIT * max(1.0, self.load)


@pytest.fixture(scope="module")
def virtual_server(artifacts: Path):
    proc, url = start_server([SOURCE, "--workers", "1"], artifacts / "serve-no-stall.log")
    yield proc, url
    stop_server(proc)


def test_a_terabyte_page_never_stalls_the_server(browser, virtual_server, artifacts: Path) -> None:
    proc, url = virtual_server
    watch = _Watch(url, proc.pid)
    watch.start()
    first = browser.new_context(viewport={"width": 1400, "height": 1150})
    second = browser.new_context(viewport={"width": 1400, "height": 1150})
    try:
        page = first.new_page()
        page.set_default_timeout(60000)
        started = time.monotonic()
        try:
            page.goto(f"{url}/?dataset={SOURCE}", timeout=60000)
            page.wait_for_selector(".gs-map canvas", timeout=60000)
        finally:
            # a stalled server shows first as a slow /liveness: say so before anything else
            assert watch.worst() <= watch.limit(), (
                f"/liveness took {watch.worst():.1f} s while the page loaded "
                f"(limit {watch.limit():.1f} s)"
            )
        # a second session loads while the first one's page is still being computed
        other = second.new_page()
        other.set_default_timeout(60000)
        other.goto(url)
        other.wait_for_selector(".gs-map canvas")
        assert colourful(wait_for_map(other, timeout=60)) > 30
        assert colourful(wait_for_map(page, timeout=120)) > 100
        first_map = time.monotonic() - started
        print(f"first page on {SOURCE}: map drawn after {first_map:.1f} s")

        question = wait_for_text(page, ".gs-series-question", r"reads .*TB", timeout=60)
        assert "Compute anyway" in text_of(page, ".gs-series-run")
        assert "build fast-access stores" in question.lower()
        assert page.locator(".gs-series-stats").count() == 0, "the series must not have run"
        page.screenshot(path=str(artifacts / "12-no-stall-question.png"), full_page=True)
        time.sleep(2)  # a little more watching: nothing runs in the background
        assert colourful(map_pixels(page)) > 100
    finally:
        watch.stop()
        first.close()
        second.close()
    worst = watch.worst()
    ordered = sorted(watch.latencies)
    print(
        f"/liveness: {len(ordered)} answers, median {ordered[len(ordered) // 2] * 1000:.0f} ms, "
        f"worst {worst * 1000:.0f} ms (limit {watch.limit():.1f} s at {watch.load:.1f} "
        f"runnable per core); server RSS peak {watch.peak_rss / 2**20:.0f} MiB; "
        f"answers over 1 s (time, s): {watch.slow}"
    )
    assert worst <= watch.limit(), f"/liveness took {worst:.1f} s (limit {watch.limit():.1f} s)"
    assert watch.peak_rss < RSS_LIMIT, f"server RSS reached {watch.peak_rss / 2**20:.0f} MiB"


SMALL = "virtual:daily:400:2:0"  # 26 MB: asked about with a 10 MB threshold, then quick
LONG = "virtual:hourly:20000:2:0"  # 1.3 GB: still running when Cancel is pressed


@pytest.fixture(scope="module")
def asking_server(artifacts: Path):
    proc, url = start_server(
        [SMALL, LONG, "--workers", "1"],
        artifacts / "serve-ask.log",
        env={"GRIDSCOPE_ASK_BYTES": "10MB"},
    )
    yield proc, url
    stop_server(proc)


def _visible(page, selector: str) -> bool:
    locator = page.locator(selector)
    return locator.count() > 0 and locator.first.is_visible()


def test_compute_anyway_gives_the_series_and_cancel_stops_it(browser, asking_server) -> None:
    from pipelines import Query, compute_series
    from pipelines.build import open_source
    from tests.browser.test_dashboard import series_csv

    _, url = asking_server
    context = browser.new_context(viewport={"width": 1400, "height": 1150})
    try:
        page = context.new_page()
        page.set_default_timeout(60000)
        page.goto(f"{url}/?dataset={SMALL}&var=t2m")
        wait_for_text(page, ".gs-series-question", r"reads 26\.\d MB from the unbuilt", 60)
        assert page.locator(".gs-series-stats").count() == 0
        page.locator(".gs-series-run button").first.click()
        wait_for_text(page, ".gs-series-stats", r"400 steps", timeout=120)
        assert not _visible(page, ".gs-series-question")
        shown = np.array([v for _, v in series_csv(page)])
        query = Query(dataset=SMALL, var="t2m", bbox=(-180.0, -90.0, 180.0, 90.0))
        expected = compute_series(open_source(SMALL), query).values
        np.testing.assert_allclose(shown, expected, rtol=1e-5)

        page.goto(f"{url}/?dataset={LONG}&var=t2m")
        wait_for_text(page, ".gs-series-question", r"reads 1\.3 GB", 60)
        page.locator(".gs-series-run button").first.click()
        wait_for_text(page, ".gs-series-progress", r"Computing the series .*reading about 1\.3 GB")
        assert _visible(page, ".gs-series-cancel")
        page.locator(".gs-series-cancel button").first.click()
        wait_for_text(page, ".gs-series-question", r"reads 1\.3 GB", 30)
        page.wait_for_timeout(500)
        assert not _visible(page, ".gs-series-progress") and not _visible(page, ".gs-series-cancel")
        assert page.locator(".gs-series-stats").count() == 0
    finally:
        context.close()
