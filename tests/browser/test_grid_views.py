"""The rest of the app on non-regular grids in a real Chromium: permalinks with a box or a
point reopen the same series, "show code" names the file a notebook can open, and a
file whose grid cannot be understood gets one message naming it.

Expected series come from the raw files by hand (`tests.test_grid_app`'s brute force).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from tests.browser.conftest import start_server, stop_server
from tests.browser.test_dashboard import series_csv, text_of, wait_for_text
from tests.conftest import REPO_ROOT
from tests.test_grid_app import _not_understood, _raw, box_series, nearest_cell

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(artifacts: Path, tmp_path_factory):
    bad = _not_understood(tmp_path_factory.mktemp("bad"))
    paths = [_raw("rotated").path, _raw("regular").path, *(str(p) for p, _ in bad.values())]
    proc, url = start_server(paths, artifacts / "serve-grid-views.log")
    yield url, {name: str(path) for name, (path, _var) in bad.items()}
    stop_server(proc)


def _wait_for_series(page, expected: np.ndarray, timeout: float = 60.0) -> None:
    deadline = page.evaluate("Date.now()") + timeout * 1000
    got: list = []
    while page.evaluate("Date.now()") < deadline:
        try:
            got = [v for _, v in series_csv(page)]
        except Exception:  # noqa: BLE001  (not drawn yet)
            got = []
        if len(got) == len(expected) and np.allclose(got, expected, rtol=1e-5):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"series {got} never equalled {expected}")


@pytest.mark.parametrize("kind", ["rotated", "regular"])
def test_permalink_on_a_grid_reopens_the_same_series(browser, page, served, kind) -> None:
    url, _ = served
    raw = _raw(kind)
    fields = {"dataset": raw.path, "var": raw.var}
    fields |= {"level": f"{raw.level:g}"} if raw.level is not None else {}
    if kind == "rotated":
        fields["point"], expected = "10,47", raw.values[:, nearest_cell(raw, (10.0, 47.0))]
    else:
        fields["bbox"], expected = ",".join(f"{v:g}" for v in raw.box), box_series(raw)
    page.set_default_timeout(90_000)
    page.goto(f"{url}/?{urlencode(fields, safe=',')}")
    page.wait_for_selector(".gs-map canvas")
    _wait_for_series(page, expected)
    link = page.locator(".gs-link input").input_value()
    key = "point=10,47" if kind == "rotated" else f"bbox={fields['bbox']}"
    assert key in link and (kind != "rotated" or "level=2" in link), link
    # the shown code opens the file by its absolute path (a notebook runs elsewhere)
    assert str(REPO_ROOT / raw.path) in text_of(page, ".gs-code")
    context = browser.new_context(viewport={"width": 1400, "height": 1150})
    fresh = context.new_page()
    fresh.set_default_timeout(90_000)
    fresh.goto(link)
    fresh.wait_for_selector(".gs-map canvas")
    _wait_for_series(fresh, expected)
    assert fresh.locator(".gs-link input").input_value() == link
    context.close()


def test_a_grid_that_cannot_be_understood_is_named_in_one_message(page, served) -> None:
    url, bad = served
    name, path = next(iter(bad.items()))
    page.set_default_timeout(90_000)
    page.goto(f"{url}/?{urlencode({'dataset': path})}")
    page.wait_for_selector(".gs-map canvas")
    text = wait_for_text(page, ".gs-message", "looked for")
    assert name in text and "Traceback" not in page.content()
