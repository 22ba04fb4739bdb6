"""The dateline in a real Chromium: a Pacific-centred map, boxes across 180, its link and PNG.

Pixels are read where a person would look: the map's frame and axis ranges come from the
Bokeh figure itself, so a longitude/latitude maps to one pixel of the canvas; colours are
then checked against the data (a sea point is a data colour, a desert point is the grey
of missing values). Series are compared with an independent xarray computation.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from tests.browser.test_dashboard import (
    map_pixels,
    open_dashboard,
    series_csv,
    text_of,
    wait_for_map,
    wait_for_text,
)

pytestmark = pytest.mark.browser

NAN_GREY = np.array([0xD9, 0xD9, 0xD9])

_FRAME_JS = """
() => {
  const found = [];
  const seen = new Set();
  function walk(v) {
    if (!v || seen.has(v)) return;
    seen.add(v);
    if (v.frame && v.model && v.model.x_range && v.model.type === "Figure") {
      const f = v.frame.bbox;
      found.push({x0: v.model.x_range.start, x1: v.model.x_range.end,
                  y0: v.model.y_range.start, y1: v.model.y_range.end,
                  left: f.left, top: f.top, width: f.width, height: f.height});
    }
    for (const k of (v.child_views ? [...v.child_views] : [])) walk(k);
  }
  for (const v of Object.values(Bokeh.index)) walk(v);
  return found;
}
"""


def map_frame(page) -> dict:
    """The map figure's frame (pixels in its canvas) and its x/y ranges (degrees)."""
    frames = [f for f in page.evaluate(_FRAME_JS) if f["y0"] >= -91 and f["y1"] <= 91]
    assert frames, "no map figure found"
    return frames[0]


def pixel_at(pixels: np.ndarray, frame: dict, lon: float, lat: float) -> np.ndarray:
    """The colour of the map at (lon, lat) in the map's own frame (x may exceed 180)."""
    x = frame["left"] + (lon - frame["x0"]) / (frame["x1"] - frame["x0"]) * frame["width"]
    y = frame["top"] + (frame["y1"] - lat) / (frame["y1"] - frame["y0"]) * frame["height"]
    patch = pixels[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].reshape(-1, 3)
    return np.median(patch, axis=0)


def darkest(pixels: np.ndarray, frame: dict, lon0: float, lon1: float, lat: float) -> float:
    """The darkest pixel (its brightest channel) on the line lon0..lon1 at ``lat``: a
    coastline drawn there is dark; the warm tropical sea around it is bright red."""
    xs = [frame["left"] + (x - frame["x0"]) / (frame["x1"] - frame["x0"]) * frame["width"]
          for x in (lon0, lon1)]  # fmt: skip
    y = int(frame["top"] + (frame["y1"] - lat) / (frame["y1"] - frame["y0"]) * frame["height"])
    return float(pixels[y - 1 : y + 2, int(xs[0]) : int(xs[1]) + 1].max(axis=2).min())


def is_data_colour(rgb: np.ndarray) -> bool:
    """A saturated colour of the colour map (not white, not the grey of missing values)."""
    return float(rgb.max() - rgb.min()) > 40


def wait_for_frame(page, x0: float, x1: float, timeout: float = 20.0) -> dict:
    deadline = page.evaluate("Date.now()") + timeout * 1000
    frame = map_frame(page)
    while page.evaluate("Date.now()") < deadline:
        frame = map_frame(page)
        if abs(frame["x0"] - x0) < 1 and abs(frame["x1"] - x1) < 1:
            return frame
        page.wait_for_timeout(100)
    raise AssertionError(f"the map's x range stayed {frame['x0']}..{frame['x1']}")


def wait_for_link(page, part: str, timeout: float = 20.0) -> str:
    """The permalink once it contains ``part``."""
    link = ""
    for _ in range(int(timeout * 10)):
        link = page.locator(".gs-link input").input_value()
        if part in link:
            return link
        page.wait_for_timeout(100)
    raise AssertionError(f"the link never contained {part!r}: {link}")


def assert_series_becomes(page, expected: np.ndarray, timeout: float = 30.0) -> None:
    """The page's series (its CSV) equals ``expected`` within ``timeout`` seconds (the
    series of the previous region may still be shown while the new one is computed)."""
    got: list[float] = []
    for _ in range(int(timeout * 10)):
        got = [v for _, v in series_csv(page)]
        if len(got) == len(expected) and np.allclose(got, expected, rtol=1e-5):
            return
        page.wait_for_timeout(100)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_pacific_centre_then_boxes_dragged_and_typed_across_180(
    page, server_url: str, artifacts: Path
) -> None:
    """One page at centre=180 (each check below was a test of its own, each with its own
    page): data east of 180, a box dragged across 180, then a box typed across it."""
    open_dashboard(page, f"{server_url}/?dataset=coads&var=SST&time=Jan&centre=180")
    frame = wait_for_frame(page, 0.0, 360.0)
    pixels = wait_for_map(page)
    page.screenshot(path=str(artifacts / "dateline-centre-180.png"), full_page=True)
    # 200E = 160W on the equator, the middle of the Pacific: a data colour
    assert is_data_colour(pixel_at(pixels, frame, 200.0, 0.0))
    assert is_data_colour(pixel_at(pixels, frame, 181.0, -20.0))
    # the Sahara (20E, 22N) has no SST: the grey of missing values, so the field is not
    # shifted against the axis
    assert np.abs(pixel_at(pixels, frame, 20.0, 22.0) - NAN_GREY).max() < 12
    assert "180° (Pacific)" in text_of(page, ".gs-centre")
    assert "centre=180" in page.locator(".gs-link input").input_value()

    # a box dragged from 170E,10N to 130W,10S
    canvas = page.locator(".gs-map canvas").first.bounding_box()

    def screen(lon: float, lat: float) -> tuple[float, float]:
        x = frame["left"] + (lon - frame["x0"]) / (frame["x1"] - frame["x0"]) * frame["width"]
        y = frame["top"] + (frame["y1"] - lat) / (frame["y1"] - frame["y0"]) * frame["height"]
        return canvas["x"] + x, canvas["y"] + y

    page.mouse.move(*screen(170.0, 10.0))
    page.mouse.down()
    page.mouse.move(*screen(200.0, 0.0), steps=5)
    page.mouse.move(*screen(230.0, -10.0), steps=5)
    page.mouse.up()
    link = wait_for_link(page, "bbox=17")  # the drag's west edge, about 170
    west, south, east, north = (float(v) for v in link.split("bbox=")[1].split("&")[0].split(","))
    # 170..230 on the 0..360 map is 170E..130W: west > east (within a pixel of the drag)
    assert abs(west - 170.0) < 1.0 and abs(east + 130.0) < 1.0 and west > east
    assert_series_becomes(page, box_series(west, south, east, north))

    # then a box typed in the region's fields: 160E..120W
    for key, value in (("west", "160"), ("south", "-10"), ("east", "-120"), ("north", "10")):
        box = page.locator(f".gs-{key} input").first
        box.fill(value)
        box.press("Enter")
    wait_for_link(page, "bbox=160,-10,-120,10")
    wait_for_text(page, ".gs-region-text", r"W 160, S -10, E -120, N 10")
    # the outline is one rectangle 160..240 on the 0..360 map: its top edge is magenta at 200
    frame = wait_for_frame(page, 0.0, 360.0)
    assert_series_becomes(page, box_series(160.0, -10.0, -120.0, 10.0))
    page.screenshot(path=str(artifacts / "dateline-box.png"), full_page=True)
    pixels = map_pixels(page)
    top = pixel_at(pixels, frame, 200.0, 10.0)
    assert top[0] > 180 and top[2] > 180 and top[1] < 120, f"no outline at 200E: {top}"


def test_panning_past_180_still_shows_data(page, server_url: str) -> None:
    # a centre-0 map panned east: its x range runs 60..300 (what a drag to the left does)
    open_dashboard(
        page, f"{server_url}/?dataset=coads&var=SST&time=Jan&x_range=60,300&y_range=-90,90"
    )
    frame = wait_for_frame(page, 60.0, 300.0)
    pixels = wait_for_map(page)
    for lon in (200.0, 240.0):  # 160W, 120W on the equator
        assert is_data_colour(pixel_at(pixels, frame, lon, 0.0)), lon
    # coastlines continue past 180: South America's west coast (about 80W, 0) is black-ish
    assert darkest(pixels, frame, 275.0, 285.0, -5.0) < 150, "no coastline near 80W past 180"
    assert darkest(pixels, frame, 250.0, 260.0, -5.0) > 150, "a coastline in the open Pacific"
    # pan on with the pan tool, more than a turn further east: the field is drawn again
    # around the new view (a map held whole redraws when panned past what it drew)
    page.locator(".gs-map .bk-tool-icon-pan").first.click()
    canvas = page.locator(".gs-map canvas").first.bounding_box()
    y = canvas["y"] + frame["top"] + frame["height"] / 2
    for _ in range(2):
        x = canvas["x"] + frame["left"] + frame["width"] * 0.9
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - frame["width"] * 0.8, y, steps=8)
        page.mouse.up()
        page.wait_for_timeout(300)
    frame = map_frame(page)
    assert frame["x0"] > 400, f"the pan did not move the map: {frame}"
    target = frame["x0"] + (200.0 - frame["x0"]) % 360.0  # 160W, a turn or two on
    for _ in range(100):
        pixels = map_pixels(page)
        if is_data_colour(pixel_at(pixels, frame, target, 0.0)):
            break
        page.wait_for_timeout(100)
    assert is_data_colour(pixel_at(pixels, frame, target, 0.0)), "white past the edge"


def box_series(west: float, south: float, east: float, north: float) -> np.ndarray:
    """COADS SST's area-weighted mean over a box crossing 180, straight from xarray."""
    from data_catalog import open_dataset

    ds = open_dataset("coads")
    sst = ds["SST"].load()
    lon, lat = sst["lon"], sst["lat"]
    inside = ((lon >= west) | (lon <= east)) & (lat >= south) & (lat <= north)
    weights = ds["cell_area"].where(inside & sst.notnull())
    return ((sst * weights).sum(("lat", "lon")) / weights.sum(("lat", "lon"))).values


def test_link_keeps_the_centre_and_png_has_data_at_200e(
    browser, page, server_url: str, artifacts: Path
) -> None:
    from PIL import Image

    open_dashboard(page, f"{server_url}/?dataset=coads&var=SST&time=Jan")
    page.locator(".gs-centre button", has_text="180° (Pacific)").click()
    wait_for_frame(page, 0.0, 360.0)
    link = wait_for_link(page, "centre=180")
    other = browser.new_context(viewport={"width": 1400, "height": 1150}).new_page()
    open_dashboard(other, link)
    frame = wait_for_frame(other, 0.0, 360.0)
    assert is_data_colour(pixel_at(wait_for_map(other), frame, 200.0, 0.0))
    with other.expect_download() as download:
        other.locator("button", has_text="Map PNG").click()
    png = np.asarray(
        Image.open(io.BytesIO(Path(download.value.path()).read_bytes())).convert("RGB")
    )
    Image.fromarray(png).save(artifacts / "dateline-export-180.png")
    other.context.close()
    # the axes' frame in the PNG: its long black spines (then the colour bar's edges)
    dark = png.max(axis=2) < 80
    rows = np.flatnonzero(dark.sum(axis=1) > 0.5 * png.shape[1])
    top, bottom = rows[0], rows[-1]
    cols = np.flatnonzero(dark.sum(axis=0) > 0.5 * (bottom - top))
    spines = [group[0] for group in np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)]
    left, right = spines[0], spines[1]
    x = int(left + (200.0 - 0.0) / 360.0 * (right - left))  # the x axis runs 0..360
    y = int((top + bottom) / 2)  # the equator
    assert is_data_colour(np.median(png[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3), axis=0))
    x_sahara = int(left + 20.0 / 360.0 * (right - left))
    y_sahara = int(top + (89.5 - 22.0) / 179.0 * (bottom - top))
    assert not is_data_colour(png[y_sahara, x_sahara]), "the Sahara has no SST"
