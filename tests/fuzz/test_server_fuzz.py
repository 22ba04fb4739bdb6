"""Hostile links against a real ``gridscope serve --public``: words, never an error page.

Each hypothesis case is fetched over HTTP (the page: 200, no traceback, no path) and its
session of every fifth case pulled with Bokeh's client (the document: a message or a
map, no traceback, no path); ``/liveness`` must answer after each. A browser test then opens hostile links and
uses the same session for a valid request.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.browser.conftest import browser, start_server, stop_server  # noqa: F401  (fixture)
from tests.browser.conftest import page as page  # noqa: F401  (fixture)
from tests.conftest import REPO_ROOT

_FIELDS = ["dataset", "var", "time", "start", "end", "agg", "baseline_start", "baseline_end",
           "bbox", "point", "level", "cmap", "clim", "region", "x_range", "y_range", "bogus",
           "bokeh-session-id", "bokeh-absolute-url"]  # fmt: skip
_VALUES = st.one_of(
    st.sampled_from(
        ["coads", "navy-winds", "etopo20", "era5-arco", "../../etc/passwd", "/etc/passwd",
         "file:///etc/passwd", "s3://bucket/x.zarr", "https://example.org/x.nc", "SST", "UWND",
         "ROSE", "NOPE", "Jan", "Dec", "1982", "1992-12", "1985-02-30", "2050", "1900-01",
         "1990-01", "mean", "std", "median", "nan,nan,nan,nan", "inf,0,1,1", "-80,0,-10,60",
         "170,-10,-170,10", "0,95,1,1", "1e308,0,1,1", "-140,0", "0,-91", "500", "fire",
         "0,40", "40,0", "Niño 3.4", "x" * 3000, "🌊", "%00", "\x00", "<script>alert(1)</script>",
         "{{7*7}}", "'; DROP TABLE x; --"]
    ),
    st.text(max_size=40),
)  # fmt: skip

STATS = {
    "cases": 0,
    "forged_session_refused": 0,
    "documents": 0,
    "messages": 0,
    "refused_for_cost": 0,
}


@pytest.fixture(scope="module")
def public_server(tmp_path_factory):
    key = secrets.token_urlsafe(40)
    env = {"BOKEH_SECRET_KEY": key, "BOKEH_SIGN_SESSIONS": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # the Bokeh client signs its session ids with the same key (bokeh.util.token binds the
    # key from the environment at import time, so bind it explicitly)
    import functools

    import bokeh.client.session as client_session
    from bokeh.util import token

    patches = pytest.MonkeyPatch()
    patches.setattr(client_session, "generate_jwt_token",
                    functools.partial(token.generate_jwt_token, secret_key=key.encode(), signed=True))  # fmt: skip
    patches.setattr(client_session, "generate_session_id",
                    functools.partial(token.generate_session_id, secret_key=key.encode(), signed=True))  # fmt: skip
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc, url = start_server(
        ["--public", "--workers", "1", "--max-request-bytes", "2MB", "--max-concurrent", "2",
         "--request-timeout", "30", "--unused-session-lifetime", "1", "--check-unused-sessions", "0.5"],
        log, env=env,
    )  # fmt: skip
    try:
        yield url, proc, log
    finally:
        patches.undo()
        stop_server(proc)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        out = REPO_ROOT / "test-artifacts"
        out.mkdir(exist_ok=True)
        (out / "server-fuzz.json").write_text(json.dumps(STATS, indent=1))


def _bad(text: str) -> list[str]:
    """Things that must never be in a page: tracebacks, server paths."""
    return [w for w in ("Traceback", str(REPO_ROOT), "site-packages", "/tmp/", "File \"")
            if w in text]  # fmt: skip


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _document_texts(
    url: str, arguments: dict[str, str], until=lambda text: "Opening " not in text
) -> str:
    """The texts of a page's models, as a browser would come to see them: the page is
    told it was drawn (Panel's onload work runs) and pulled again until ``until(text)``
    (by default: its dashboard replaced the first "Opening ..." line) or 30 s (a
    `bokeh.client` session drops patches that arrive while it waits)."""
    import holoviews.plotting.bokeh  # noqa: F401  (registers the models the page uses)
    import panel.models  # noqa: F401
    from bokeh.client import pull_session
    from bokeh.events import DocumentReady

    def texts_of(document) -> str:
        texts = []
        for model in document.models:
            for name in ("text", "object"):
                if name in model.properties() and isinstance(getattr(model, name), str):
                    texts.append(getattr(model, name))
        return "\n".join(texts)

    session = pull_session(url=url + "/", arguments=arguments)
    try:
        session.document.callbacks.send_event(DocumentReady())
        session.force_roundtrip()  # the event is sent: Panel runs the onload work
        text, deadline = texts_of(session.document), time.monotonic() + 30
        while not until(text) and time.monotonic() < deadline:
            time.sleep(0.3)
            again = pull_session(session_id=session.id, url=url + "/")
            text = texts_of(again.document)
            again.close()
        return text
    finally:
        session.close()


def _alive(url: str) -> None:
    status, body = _get(url + "/liveness")
    assert status == 200 and "true" in body


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(params=st.dictionaries(st.sampled_from(_FIELDS), _VALUES, min_size=1, max_size=6))
def test_hostile_links_get_words_and_the_server_lives(public_server, params) -> None:
    url, proc, _ = public_server
    STATS["cases"] += 1
    query = urlencode({k: v.replace("\x00", "") for k, v in params.items()})
    status, body = _get(f"{url}/?{query}")
    if status != 200:
        STATS["forged_session_refused"] += 1
    # Bokeh refuses a forged session id with 403 (signed ids); anything else is a page
    forged = "bokeh-session-id" in params
    assert status == 200 or (forged and status in (400, 403)), (status, body[:500])
    assert not _bad(body), _bad(body)
    if STATS["cases"] % 5 == 1:  # every fifth case: the session's document too (~3 s each)
        STATS["documents"] += 1
        arguments = {
            k: v.replace("\x00", "") for k, v in params.items() if not k.startswith("bokeh-")
        }
        text = _document_texts(url, arguments)
        assert not _bad(text), (_bad(text), text[:2000])
        assert "Map " in text or "Could not" in text, text[:2000]  # a map, or a reason in words
        if any(
            w in text
            for w in ("Ignored", "Unknown", "Could not", "not in this dataset", "no time axis")
        ):
            STATS["messages"] += 1
        if "per request" in text:
            STATS["refused_for_cost"] += 1
    assert proc.poll() is None
    _alive(url)


def test_costly_view_is_refused_in_words_and_a_cheap_one_works(public_server) -> None:
    url, proc, _ = public_server
    # 132 steps of the 2.5-degree grid: 5.5 MB, over the 2 MB budget
    text = _document_texts(
        url,
        {"dataset": "navy-winds", "var": "UWND", "start": "1982-01", "end": "1992-12"},
        until=lambda text: "allowed per request" in text,
    )
    assert "allowed per request" in text and "coarser view" in text, text[:2000]
    assert "No map computed" in text  # nothing was computed (one error line: the last one refused)
    text = _document_texts(url, {"dataset": "navy-winds", "var": "UWND", "time": "1985-07"},
                           until=lambda text: "Map 73x144 cells" in text)  # fmt: skip
    assert "Map 73x144 cells" in text and "Could not compute the map" not in text, text[:2000]
    _alive(url)


def test_unsigned_session_ids_are_refused(public_server) -> None:
    url, _, _ = public_server
    status, body = _get(f"{url}/?bokeh-session-id=attacker-chosen-id")
    assert status in (400, 403) and not _bad(body)


@pytest.mark.browser
def test_browser_hostile_link_then_valid_request_in_the_same_session(public_server, page) -> None:
    url, proc, _ = public_server
    from tests.browser.test_dashboard import text_of

    hostile = urlencode({"dataset": "../../etc/passwd", "var": "<script>x</script>", "bbox": "nan,0,1e308,1",
                         "time": "1985-02-30", "level": "inf", "cmap": "🌊" * 50})  # fmt: skip
    page.goto(f"{url}/?{hostile}")
    page.wait_for_selector(".gs-message")
    deadline = time.monotonic() + 30
    while "Unknown dataset" not in text_of(page, ".gs-message") and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    message = text_of(page, ".gs-message")
    assert "Unknown dataset" in message and not _bad(message)
    assert not _bad(page.content())
    # the same session, a valid request: another dataset through the menu
    page.locator(".gs-dataset select").select_option(
        label="FNOC monthly surface winds 1982–1992 (2.5°)"
    )
    deadline = time.monotonic() + 30
    while "73x144" not in text_of(page, ".gs-status") and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert "73x144" in text_of(page, ".gs-status"), text_of(page, ".gs-status")
    _alive(url)
