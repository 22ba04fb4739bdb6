"""The dashboard in a real Chromium: map pixels, widgets, region tools, permalinks."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser


def open_dashboard(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(".gs-map canvas")
    wait_for_map(page)


def map_pixels(page) -> np.ndarray:
    from PIL import Image

    png = page.locator(".gs-map canvas").first.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def colourful(pixels: np.ndarray) -> int:
    """Number of distinct colours that are not grey (data, not axes/land/background)."""
    flat = pixels.reshape(-1, 3).astype(int)
    saturated = flat[(flat.max(axis=1) - flat.min(axis=1)) > 40]
    return len({tuple(p) for p in saturated[:: max(1, len(saturated) // 20000)]})


def wait_for_map(page, timeout: float = 30.0) -> np.ndarray:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pixels = map_pixels(page)
        if colourful(pixels) > 30:
            return pixels
        page.wait_for_timeout(100)
    raise AssertionError("the map never showed data")


def wait_for_change(page, before: np.ndarray, timeout: float = 30.0) -> tuple[np.ndarray, float]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        pixels = map_pixels(page)
        if pixels.shape != before.shape or np.abs(pixels.astype(int) - before).sum() > 1000:
            return pixels, time.monotonic() - start
        page.wait_for_timeout(20)
    raise AssertionError("the map did not change")


def text_of(page, selector: str) -> str:
    """Text of a Panel component, including what it renders inside its shadow root."""
    return page.locator(selector).first.evaluate(
        "e => (e.shadowRoot ? e.shadowRoot.textContent : '') + (e.textContent || '')"
    )


def series_csv(page) -> list[tuple[str, float]]:
    text = page.locator(".gs-series-csv").first.text_content()
    rows = text.strip().splitlines()[1:]
    return [(t, float(v) if v else float("nan")) for t, v in (row.split(",") for row in rows)]


def wait_for_text(page, selector: str, pattern: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = text_of(page, selector)
        if re.search(pattern, text):
            return text
        page.wait_for_timeout(50)
    raise AssertionError(f"{selector} never matched {pattern!r}; last text {text!r}")


def expected_series(query_fields: dict) -> np.ndarray:
    from data_catalog import open_dataset
    from pipelines import Query, compute_series

    query = Query(**query_fields)
    return compute_series(open_dataset(query.dataset), query).values


def test_page_loads_with_a_map_then_variable_and_time_change_it(
    page, server_url: str, artifacts: Path
) -> None:
    """The first page shows a map of data (and its cluster); a new variable, then a new
    time, each change the picture (one page: these were two tests opening the same one)."""
    open_dashboard(page, server_url)
    before = wait_for_map(page)
    assert colourful(before) > 100, "colours should vary across the map"
    page.screenshot(path=str(artifacts / "01-loaded.png"), full_page=True)
    assert "Dask" in text_of(page, ".gs-cluster")
    page.locator(".gs-var select").select_option(label="AIR TEMPERATURE (DEG C)")
    after_var, seconds_var = wait_for_change(page, before)
    page.locator(".gs-time select").select_option(label="Jul")
    after_time, seconds_time = wait_for_change(page, after_var)
    page.screenshot(path=str(artifacts / "02-airt-jul.png"), full_page=True)
    assert colourful(after_time) > 100
    print(
        f"widget change to new map: variable {seconds_var * 1000:.0f} ms, time {seconds_time * 1000:.0f} ms"
    )
    link = page.locator(".gs-link input").input_value()
    assert "var=AIRT" in link and "time=Jul" in link


def test_box_and_point_series_match_pipelines(page, server_url: str, artifacts: Path) -> None:
    open_dashboard(page, server_url)
    canvas = page.locator(".gs-map canvas").first.bounding_box()
    x0, y0 = canvas["x"] + canvas["width"] * 0.25, canvas["y"] + canvas["height"] * 0.35
    x1, y1 = canvas["x"] + canvas["width"] * 0.45, canvas["y"] + canvas["height"] * 0.6
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()
    # the Global preset is also shown as a box: wait for a different one
    text = wait_for_text(page, ".gs-region-text", r"Box W (?!-180, S -90, E 180, N 90)-?[\d.]+, S")
    bbox = tuple(float(v) for v in re.search(r"W (\S+), S (\S+), E (\S+), N (\S+)", text).groups())
    assert bbox != (-180.0, -90.0, 180.0, 90.0)
    wait_for_text(
        page, ".gs-series-summary", re.escape("bbox " + ",".join(f"{v:g}" for v in bbox) + ":")
    )
    wanted_link = "bbox=" + ",".join(f"{v:g}" for v in bbox)
    deadline = time.monotonic() + 20
    while (
        wanted_link not in page.locator(".gs-link input").input_value()
        and time.monotonic() < deadline
    ):
        page.wait_for_timeout(50)
    assert wanted_link in page.locator(".gs-link input").input_value(), (
        "the permalink follows the box"
    )
    page.screenshot(path=str(artifacts / "03-box-series.png"), full_page=True)
    got = np.array([v for _, v in series_csv(page)])
    want = expected_series({"dataset": "coads", "var": "SST", "bbox": bbox})
    np.testing.assert_allclose(got, want, rtol=1e-12)

    page.mouse.click(canvas["x"] + canvas["width"] * 0.7, canvas["y"] + canvas["height"] * 0.55)
    text = wait_for_text(page, ".gs-region-text", r"Point (-?[\d.]+)°E, (-?[\d.]+)°N")
    point = tuple(float(v) for v in re.search(r"Point (\S+)°E, (\S+)°N", text).groups())
    wait_for_text(page, ".gs-series-summary", re.escape(f"point {point[0]:g},{point[1]:g}:"))
    got = np.array([v for _, v in series_csv(page)])
    want = expected_series({"dataset": "coads", "var": "SST", "point": point})
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    page.screenshot(path=str(artifacts / "04-point-series.png"), full_page=True)


def test_permalink_restores_the_view(browser, page, server_url: str, artifacts: Path) -> None:
    open_dashboard(page, server_url)
    page.locator(".gs-dataset select").select_option(
        label="FNOC monthly surface winds 1982–1992 (2.5°)"
    )
    deadline = time.monotonic() + 20
    while page.locator(".gs-time select option").count() < 100 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    page.locator(".gs-var select").select_option(label="MERIDIONAL WIND (M/S)")
    page.locator(".gs-time select").select_option(index=40)
    page.locator(".gs-region select").select_option(label="North Pacific")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        link = page.locator(".gs-link input").input_value()
        if "region=North" in link and "VWND" in link and "navy-winds" in link:
            break
        page.wait_for_timeout(50)
    assert "bbox=120,20,-100,60" in link
    wanted = {
        name: page.locator(f".gs-{name} select").input_value()
        for name in ("dataset", "var", "time", "region")
    }
    context = browser.new_context(viewport={"width": 1400, "height": 1150})
    fresh = context.new_page()
    open_dashboard(fresh, link)
    restored = {name: fresh.locator(f".gs-{name} select").input_value() for name in wanted}
    fresh.screenshot(path=str(artifacts / "05-permalink.png"), full_page=True)
    assert restored == wanted
    assert fresh.locator(".gs-link input").input_value() == link
    wait_for_text(
        fresh, ".gs-series-summary", "navy-winds VWND area-weighted mean over bbox 120,20,-100,60:"
    )
    context.close()


def test_invalid_link_shows_a_message(page, server_url: str, artifacts: Path) -> None:
    open_dashboard(page, f"{server_url}/?dataset=nope&var=SST&time=2999-99")
    text = wait_for_text(page, ".gs-message", "Unknown dataset")
    page.screenshot(path=str(artifacts / "06-invalid-link.png"), full_page=True)
    assert "Traceback" not in page.content()
    assert "COADS" in text
