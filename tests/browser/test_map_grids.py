"""Maps on every grid in a real Chromium: the four real NCL sample files.

Each file is served as an extra source and its map is read where a person would look:
the pixel at a known place (from the Bokeh figure's frame and ranges) must show what the
file holds there, checked against the file's own values at the nearest cell: sea
against land (missing values are grey), or warm against cold through the colour map.
The coastlines are drawn from a fixed file, so data in the right place against the axes
is data in the right place against the coastlines.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from tests.browser.conftest import start_server, stop_server
from tests.browser.test_dashboard import map_pixels, text_of
from tests.browser.test_dateline import (
    NAN_GREY,
    is_data_colour,
    map_frame,
    pixel_at,
    wait_for_frame,
)
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.browser

GRIDS = REPO_ROOT / "data_catalog" / "samples" / "grids"
FILES = {
    "mpiom": ("tos_ocean_bipolar_grid.nc", "tos"),
    "eur11": ("tas_rotated_grid_EUR11.nc", "tas"),
    "icon": ("triangular_grid_ICON.nc", "S"),
    "sstdata": ("sstdata_netcdf.nc", "sst"),
}


def _relative(name: str) -> str:
    return str((GRIDS / name).relative_to(REPO_ROOT))


def _opens(name: str) -> str | None:
    """Why ``name`` cannot be shown yet (None: it opens on its grid)."""
    if not (GRIDS / name).exists():
        return f"{name} is not in data_catalog/samples/grids"
    try:
        from data_catalog import open_dataset

        open_dataset(_relative(name))
    except Exception as exc:  # noqa: BLE001  (the reason is the skip message)
        return f"the grid normaliser does not open {name} yet: {exc}"
    return None


@pytest.fixture(scope="module")
def grids_url(artifacts: Path):
    names = [name for name, _var in FILES.values() if _opens(name) is None]
    if not names:
        pytest.skip("none of the grid sample files opens yet")
    proc, url = start_server([_relative(n) for n in names], artifacts / "serve-grids.log")
    yield url
    stop_server(proc)


def _open_map(
    page, url: str, key: str, probe: tuple[float, float], **view: str
) -> tuple[dict, np.ndarray]:
    """Open ``key``'s map and wait until the pixel at ``probe`` (lon, lat) shows data."""
    name, var = FILES[key]
    reason = _opens(name)
    if reason:
        pytest.skip(reason)
    query = urlencode({"dataset": _relative(name), "var": var, **view}, safe=",")
    # the server's first map of a non-regular grid may still wait for datashader's
    # glyphs to compile (app.rasterize.warm_up, started with the server)
    page.set_default_timeout(90_000)
    page.goto(f"{url}/?{query}")
    page.wait_for_selector(".gs-map canvas")
    if "x_range" in view:
        x0, x1 = (float(v) for v in view["x_range"].split(","))
        wait_for_frame(page, x0, x1, timeout=90.0)
    for _ in range(900):
        frame, pixels = map_frame(page), map_pixels(page)
        if is_data_colour(pixel_at(pixels, frame, *probe)):
            page.wait_for_timeout(300)  # the rest of the frame's update
            return map_frame(page), map_pixels(page)
        page.wait_for_timeout(100)
    raise AssertionError(f"the {key} map never showed data at {probe}")


def _palette() -> np.ndarray:
    import colorcet

    hexes = colorcet.palette["rainbow4"]
    return np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in hexes], dtype=float)


def colour_rank(rgb: np.ndarray) -> int:
    """Where a pixel's colour lies on the colour map (0 coldest .. 255 warmest)."""
    palette = _palette()
    distance = np.abs(palette - np.asarray(rgb, dtype=float)).sum(axis=1)
    assert distance.min() < 30, f"{rgb} is not a colour of the colour map"
    return int(distance.argmin())


def is_missing(rgb: np.ndarray) -> bool:
    return bool(np.abs(np.asarray(rgb) - NAN_GREY).max() < 12)


def test_mpiom_bipolar_sst_sea_and_land(page, grids_url: str, artifacts: Path) -> None:
    frame, pixels = _open_map(page, grids_url, "mpiom", (-150.0, 0.0))
    page.screenshot(path=str(artifacts / "grid-mpiom.png"), full_page=True)
    assert colour_rank(pixel_at(pixels, frame, -150.0, 0.0)) > 150  # the warm mid-Pacific
    assert is_missing(pixel_at(pixels, frame, 20.0, 22.0))  # the Sahara has no SST
    # along the equator the Gulf of Guinea (5E) is sea, Gabon (15E) is land
    assert not is_missing(pixel_at(pixels, frame, 5.0, 0.0))
    assert is_missing(pixel_at(pixels, frame, 15.0, 0.0))
    assert "native cells drawn at screen resolution" in text_of(page, ".gs-map-info")


def test_mpiom_on_a_pacific_centred_map(page, grids_url: str) -> None:
    frame, pixels = _open_map(page, grids_url, "mpiom", (210.0, 0.0), centre="180", x_range="0,360")
    assert colour_rank(pixel_at(pixels, frame, 210.0, 0.0)) > 150  # 150W, drawn past 180
    assert is_missing(pixel_at(pixels, frame, 20.0, 22.0))


def test_eur11_rotated_pole_alps_colder_than_po_valley(
    page, grids_url: str, artifacts: Path
) -> None:
    frame, pixels = _open_map(
        page, grids_url, "eur11", (10.0, 50.0), x_range="-15,40", y_range="33,62"
    )
    page.screenshot(path=str(artifacts / "grid-eur11.png"), full_page=True)
    alps = colour_rank(pixel_at(pixels, frame, 10.0, 46.5))  # 264 K in the file
    po = colour_rank(pixel_at(pixels, frame, 10.5, 45.1))  # 277 K in the file
    assert po > alps + 40
    # the domain ends over the Atlantic: 45W 40N has no cell (rotated coordinates drawn
    # as if geographic would cover it)
    wide_frame, wide = _open_map(
        page, grids_url, "eur11", (10.0, 50.0), x_range="-60,60", y_range="15,80"
    )
    assert is_missing(pixel_at(wide, wide_frame, -50.0, 40.0))
    assert not is_missing(pixel_at(wide, wide_frame, 10.0, 50.0))


def test_icon_triangles_ocean_salinity(page, grids_url: str, artifacts: Path) -> None:
    frame, pixels = _open_map(page, grids_url, "icon", (-150.0, 0.0))
    page.screenshot(path=str(artifacts / "grid-icon.png"), full_page=True)
    pacific = colour_rank(pixel_at(pixels, frame, -150.0, 0.0))  # 34.8 psu
    sahara = colour_rank(pixel_at(pixels, frame, 20.0, 22.0))  # 0 over land in this file
    assert pacific > 200 and sahara < 20


def test_sstdata_lat_lon_variables_on_other_dims(page, grids_url: str) -> None:
    frame, pixels = _open_map(page, grids_url, "sstdata", (-150.0, 0.0))
    tropics = colour_rank(pixel_at(pixels, frame, -150.0, 0.0))
    southern = colour_rank(pixel_at(pixels, frame, -150.0, -60.0))
    assert tropics > southern + 100
