"""What a person sees of labels and controls, in Chromium (issue 11, points 4-6).

One `gridscope serve` for the module, with the bundled samples plus a small monthly
pressure-level file written here (3 levels in hPa, 1983-1985).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.browser.conftest import start_server, stop_server
from tests.browser.test_dashboard import text_of

pytestmark = pytest.mark.browser

_TITLES_JS = """() => Bokeh.documents.flatMap(d => [...d.all_models])
    .filter(m => m.toolbar !== undefined && m.title != null)
    .map(m => m.title.text)"""


# the last figure of that title: the one drawn (a replaced one may linger in the document)
_SERIES_AXIS_JS = """() => Bokeh.documents.flatMap(d => [...d.all_models])
    .filter(m => m.toolbar !== undefined && m.title != null && m.title.text.startsWith("plev.nc") && m.title.text.includes("area-weighted"))
    .map(m => m.below[0].constructor.__name__).slice(-1)[0]"""


@pytest.fixture(scope="module")
def plev_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plev") / "plev.nc"
    rng = np.random.default_rng(0)
    lat, lon = np.arange(-80.0, 81.0, 20.0), np.arange(0.0, 360.0, 30.0)
    ta = 250.0 + rng.normal(0, 5, (36, 3, lat.size, lon.size))
    xr.Dataset(
        {"ta": (("time", "level", "lat", "lon"), ta, {"long_name": "air temperature", "units": "K"})},
        coords={"time": pd.date_range("1983-01-01", periods=36, freq="MS"),
                "level": ("level", [1000.0, 850.0, 500.0], {"units": "hPa"}),
                "lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"})},
    ).to_netcdf(path)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def served(plev_file: Path, artifacts: Path):
    proc, url = start_server([str(plev_file)], artifacts / "serve-labels.log")
    yield url, str(plev_file)
    stop_server(proc)


def open_page(page, url: str) -> None:
    """Load the page until its plots are drawn (lighter than polling map screenshots)."""
    page.goto(url)
    page.wait_for_selector(".gs-map canvas")
    wait_for_title(page, ".")


def plot_titles(page) -> list[str]:
    """The titles drawn on the map and series plots (Bokeh draws them on the canvas)."""
    return page.evaluate(_TITLES_JS)


def wait_for_title(page, pattern: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    titles: list[str] = []
    while time.monotonic() < deadline:
        titles = plot_titles(page)
        for title in titles:
            if re.search(pattern, title):
                return title
        page.wait_for_timeout(100)
    raise AssertionError(f"no plot title matched {pattern!r}; titles {titles!r}")


def test_titles_say_dataset_variable_units_period_and_level(page, served) -> None:
    url, plev = served
    open_page(page, f"{url}/?dataset={plev}&var=ta&start=1983-01&end=1985-12&agg=std&level=500")
    title = wait_for_title(page, "std")
    assert title == "plev.nc · air temperature (K) · std 1983-01..1985-12 · 500 hPa"
    options = page.locator(".gs-level select option").all_text_contents()
    assert options == ["1000 hPa", "850 hPa", "500 hPa"]
    # a single step of the climatology, and the series titled with its region
    open_page(page, f"{url}/?dataset=coads&var=SST&time=Jul&point=-150,0")
    wait_for_title(
        page, re.escape("COADS monthly climatology (2°) · SEA SURFACE TEMPERATURE (Deg C) · Jul")
    )
    wait_for_title(page, re.escape("SEA SURFACE TEMPERATURE (Deg C) · at point 151°W, 1°S"))
    status = text_of(page, ".gs-status")
    assert "Map 90x180 cells" in status and "cache" not in status, status
    assert not page.locator(".gs-busy").first.is_visible()  # no spinner when nothing runs


def test_address_bar_holds_the_full_state_from_the_first_load(page, served) -> None:
    url, _ = served
    open_page(page, url)
    deadline = time.monotonic() + 20
    while "var=SST" not in page.url and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    for part in ("dataset=coads", "var=SST", "time=Jan", "cmap="):
        assert part in page.url, page.url
    assert (
        page.url.split("?", 1)[1] == page.locator(".gs-link input").input_value().split("?", 1)[1]
    )


def test_controls_follow_the_dataset(page, served) -> None:
    url, plev = served
    open_page(page, url)
    # the map may be drawn before the dataset menu has its options
    page.wait_for_selector(".gs-dataset select option", state="attached")
    options = page.locator(".gs-dataset select option").all_text_contents()
    assert any(o.endswith("(remote)") for o in options), options  # listed, marked
    page.get_by_text("Anomaly against a baseline").first.click()  # the words, not the box
    deadline = time.monotonic() + 20
    while "baseline_start" not in page.url and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert page.locator(".gs-anomaly input").first.is_checked() and "baseline_start" in page.url
    page.get_by_text("Anomaly against a baseline").first.click()
    page.locator(".gs-time select").select_option(label="Jul")
    page.locator(".gs-dataset select").select_option(label="plev.nc")
    deadline = time.monotonic() + 30
    while (
        page.locator(".gs-time select").input_value() != "1983-01-01"
        and time.monotonic() < deadline
    ):
        page.wait_for_timeout(100)
    assert page.locator(".gs-time select").input_value() == "1983-01-01"
    wait_for_title(page, re.escape("plev.nc · air temperature (K) · 1983-01-01 · 1000 hPa"))
    # the series of the new dataset is drawn on a date axis (it kept COADS's month numbers)
    wait_for_title(page, re.escape("plev.nc · air temperature (K) · 1000 hPa · area-weighted"))
    deadline = time.monotonic() + 10  # the new figure replaces the old one just after
    while page.evaluate(_SERIES_AXIS_JS) != "DatetimeAxis" and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert page.evaluate(_SERIES_AXIS_JS) == "DatetimeAxis"
    level = page.locator(".gs-level select")
    assert level.locator("option:checked").text_content() == "1000 hPa"
    page.wait_for_timeout(500)
    assert page.locator(".notyf__toast").count() == 0, page.locator(
        ".notyf__toast"
    ).all_text_contents()
    assert not page.locator(".gs-error").first.is_visible()
    assert not page.locator(".gs-message").first.is_visible(), text_of(page, ".gs-message")[-300:]
    # a relief without a time axis: no time, range or anomaly controls at all
    page.locator(".gs-dataset select").select_option(label="ETOPO20 global relief (20 arc-minute)")
    page.locator(".gs-time-mode").first.wait_for(state="hidden", timeout=30000)
    for selector in (".gs-time-mode", ".gs-anomaly", ".gs-time", ".gs-player", ".gs-start"):
        assert not page.locator(selector).first.is_visible(), selector


def test_tapping_the_series_moves_the_time_step(page, served) -> None:
    url, _ = served
    open_page(page, f"{url}/?dataset=coads&var=SST&time=Jan&point=-150,0")
    wait_for_title(page, "at point")
    box = page.locator(".gs-series canvas").first.bounding_box()
    # months Jan..Dec span the plot's x axis: a tap a little right of the middle is Jul
    page.mouse.click(box["x"] + box["width"] * 0.56, box["y"] + box["height"] * 0.5)
    deadline = time.monotonic() + 20
    while page.locator(".gs-time select").input_value() == "Jan" and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert page.locator(".gs-time select").input_value() == "Jul"
    wait_for_title(page, r"· Jul$")
    deadline = time.monotonic() + 20
    while "time=Jul" not in page.url and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert "time=Jul" in page.url
