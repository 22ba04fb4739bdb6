"""Small load test (``make test``): concurrent sessions, no errors, every session updates, no leak.

One run of `tests.load.run` (module fixture, about a minute): 4 simulated users for 40 s,
each reopening a fresh session every ~10 s (churn: ~12 sessions come and go, so a
per-session leak adds up). The leak reference is the server's memory with one *warm-up* session
open that has done every action once: one-off costs (imports, the coastline glyph, the
first compute, first use of each variable) are then in the reference, and the server
holds that same one session in the reference and at the end, so what is compared is
only what the closed sessions left behind. The error detection itself is checked
against pages that are broken on purpose (`test_detects_*`), in seconds.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import CHROMIUM_PATH, REPO_ROOT

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts"


def _need_chromium() -> None:
    if not CHROMIUM_PATH.exists():
        pytest.skip(f"no Chromium at {CHROMIUM_PATH}")


@pytest.fixture(scope="module")
def small_run():
    _need_chromium()
    from tests.load.run import LoadConfig, format_table, run_load

    ARTIFACTS.mkdir(exist_ok=True)
    cfg = LoadConfig(
        sessions=4, minutes=40 / 60, session_s=10.0, min_actions=2, seed=11, ramp_s=2.0,
        release_wait_s=20.0, release_min_s=0.0, hard_cap_s=150.0,
        out=ARTIFACTS / "loadtest-small.json", log=ARTIFACTS / "loadtest-small-serve.log",
    )  # fmt: skip
    result = run_load(cfg)
    print(format_table(result))
    return result


def test_small_load_has_no_errors_and_every_session_updates(small_run) -> None:
    r = small_run
    assert not r.errors, "\n".join(r.errors[:20])
    assert r.sessions >= 4 and r.sessions_loaded == r.sessions
    assert r.sessions_with_updates == r.sessions, r.per_session
    assert r.actions >= 2 * r.sessions


#: What a closed session may leave in the server's live heap, per session: a page is
#: ~45k blocks and ~25k gc objects, so a leaked page per session fails by 7x and one
#: page leaked per ~8 sessions still fails. The answer cache (bounded in bytes) keeps
#: each session's new answers (zooms: new viewports): 500-1,600 blocks and 50-700
#: objects per session measured.
BLOCKS_PER_SESSION = 6000
OBJECTS_PER_SESSION = 3000


def test_small_load_does_not_leak(small_run) -> None:
    """What the closed sessions left in the server's live heap (allocated blocks and
    gc-tracked objects, logged by the server after it collected them), per session.

    Both readings hold only the warm session (``sessions=1`` in the server's line): a
    reading taken while a closed tab's session was still held counted that whole page
    (+3.1 % in a CI run: one of 8 sessions not yet discarded, not a leak). Measured:
    +0.7 % with the session-release fixes; +4.8 % blocks / +10 % objects with Panel's view
    registry holding each closed page (the leak the full load test found). The exact
    check (no page outlives its session) counts objects in
    tests/browser/test_session_release.py. RSS also keeps what the allocator holds after
    a burst of sessions, so it gets a coarser 20 %.
    """
    r = small_run
    heap_ref, heap_after = r.heap.get("reference"), r.heap.get("after")
    assert heap_ref and heap_after, f"no live-heap reading in the server log: {r.heap}"
    assert heap_ref.get("sessions") == 1 and heap_after.get("sessions") == 1, (
        f"the server still held closed sessions when its heap was read: {r.heap}"
    )
    for key, allowed in (("blocks", BLOCKS_PER_SESSION), ("objects", OBJECTS_PER_SESSION)):
        per_session = (heap_after[key] - heap_ref[key]) / r.sessions
        assert per_session <= allowed, (
            f"live heap after closing {r.sessions} sessions: {key} {heap_ref[key]:,} -> "
            f"{heap_after[key]:,}, {per_session:,.0f} per session (allowed {allowed:,})"
        )
    assert r.leak is False
    ref, after = r.memory.get("reference"), r.memory.get("after")
    assert ref and after, r.memory
    assert (
        after["server_mib"] <= 1.2 * ref["server_mib"]
        and after["total_mib"] <= 1.2 * ref["total_mib"]
    ), (
        f"server memory after closing {r.sessions} sessions is more than 20% above the reference "
        f"(one warm session open): server {ref['server_mib']:.0f} -> {after['server_mib']:.0f} MiB, "
        f"with workers {ref['total_mib']:.0f} -> {after['total_mib']:.0f} MiB"
    )


# --- the detection itself, on pages broken on purpose ---------------------------------------

STATIC_PAGE = """
<div class="gs-map"><canvas width="300" height="150"></canvas></div>
<div class="gs-time"><select><option>Jan</option><option>Feb</option><option>Mar</option></select></div>
<div class="gs-message" style="display: none"></div>
<script>
  const ctx = document.querySelector('canvas').getContext('2d');
  function draw(hue) { for (let x = 0; x < 300; x += 10) { ctx.fillStyle = `hsl(${(x + hue) % 360}, 90%, 50%)`;
                                                      ctx.fillRect(x, 0, 10, 150); } }
  draw(0);
  if (REDRAW) document.querySelector('select').addEventListener('change', e => setTimeout(
      () => draw(40 * e.target.selectedIndex), 120));
</script>
"""


async def _static_session(redraw: bool, extra: str = ""):
    from playwright.async_api import async_playwright

    from tests.browser.conftest import CHROMIUM_ARGS
    from tests.load.probe import INIT_SCRIPT
    from tests.load.session import Session

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS)
        try:
            session = Session(browser, "about:blank", index=0, seed=1, latency_timeout=2.0)
            session.context = await browser.new_context()
            await session.context.add_init_script(INIT_SCRIPT)
            session.page = await session.context.new_page()
            await session.page.set_content(
                STATIC_PAGE.replace("REDRAW", "true" if redraw else "false") + extra
            )
            assert await session.page.evaluate("() => window.__gs.hasData()")
            latency = await session.act("time")
            clean = await session.check_problems(with_text=True)
            await session.close()
            return latency, clean, session.stats
        finally:
            await browser.close()


def test_detects_a_map_that_updates() -> None:
    _need_chromium()
    latency, clean, stats = asyncio.run(_static_session(redraw=True))
    assert latency is not None and 0.1 <= latency < 2.0, stats.errors
    assert clean and not stats.errors


def test_detects_a_map_that_never_updates() -> None:
    _need_chromium()
    latency, _, stats = asyncio.run(_static_session(redraw=False))
    assert latency is None
    assert any("no map update" in e for e in stats.errors), stats.errors


def test_detects_a_traceback_and_a_visible_message() -> None:
    _need_chromium()
    extra = ("<pre>Traceback (most recent call last):\\n  File ...</pre>"
             "<script>document.querySelector('.gs-message').style.display = 'block';"
             "document.querySelector('.gs-message').textContent = 'Unknown dataset';</script>")  # fmt: skip
    _, clean, stats = asyncio.run(_static_session(redraw=True, extra=extra))
    assert not clean
    assert any("Traceback" in e for e in stats.errors), stats.errors
    assert any(".gs-message: Unknown dataset" in e for e in stats.errors), stats.errors
