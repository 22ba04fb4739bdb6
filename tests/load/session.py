"""One simulated user: open the dashboard, then change time, region, variable and zoom.

Each action's latency is the time from starting the action to the plot it updates
visibly changing: the time series for a region change (the new numbers; on a zoomed-in
map the region's outline may be off screen), the map for the others
(`tests.load.probe`: a pixel signature polled in the page every 50 ms); no change within
`LATENCY_TIMEOUT_S` is an error, as is a failed page load, a visible error/warning
message or 'Traceback', an uncaught page error, or the websocket closing while the
session is open.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from tests.load.probe import INIT_SCRIPT

#: An action whose map does not change within this many seconds is an error.
LATENCY_TIMEOUT_S = 30.0
#: Region presets visible on the map at every zoom level the users reach.
REGIONS = ("Global", "Tropics", "Niño 3.4", "North Atlantic", "North Pacific")
ACTIONS = ("time", "region", "variable", "zoom")
#: Actions whose result is the time series (the others: the map).
SERIES_ACTIONS = ("region",)
#: In-page expression: the signature of both plots (to wait for an update's tail).
_BOTH_PLOTS = "() => window.__gs.sig('map') + '|' + window.__gs.sig('series')"
#: Wheel steps in from the full view a user goes at most (keeps presets on screen).
MAX_ZOOM_LEVEL = 2
VIEWPORT = {"width": 1400, "height": 1000}


@dataclass
class SessionStats:
    """What one session saw."""

    index: int
    load_s: float | None = None
    latencies: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unsettled: int = 0

    def error(self, kind: str, detail: str = "") -> None:
        self.errors.append(f"session {self.index}: {kind}" + (f": {detail}" if detail else ""))


class Session:
    """A browser context on the dashboard; `act` performs one random action."""

    def __init__(self, browser: Any, url: str, index: int, seed: int, *, think: tuple[float, float] = (1.0, 4.0),
                 latency_timeout: float = LATENCY_TIMEOUT_S):  # fmt: skip
        self.browser, self.url, self.index = browser, url, index
        self.rng = random.Random(seed * 1000 + index)
        self.think = think
        self.latency_timeout = latency_timeout
        self.stats = SessionStats(index)
        self.context: Any = None
        self.page: Any = None
        self.zoom_level = 0
        self.closing = False

    # --- lifecycle ------------------------------------------------------------------
    async def open(self, path: str = "/", load_timeout: float = 90.0) -> bool:
        self.context = await self.browser.new_context(viewport=VIEWPORT)
        await self.context.add_init_script(INIT_SCRIPT)
        page = self.page = await self.context.new_page()
        page.set_default_timeout(30000)
        page.on("pageerror", lambda exc: self.stats.error("page error", str(exc)[:300]))
        page.on("websocket", self._watch_websocket)
        start = time.monotonic()
        try:
            response = await page.goto(self.url.rstrip("/") + path, timeout=load_timeout * 1000)
            if response is None or not response.ok:
                status = response.status if response is not None else "no response"
                self.stats.error("page load failed", f"HTTP {status}")
                return False
            remaining = max(1.0, load_timeout - (time.monotonic() - start))
            await page.wait_for_function("() => window.__gs && window.__gs.hasData()", polling=100,
                                         timeout=remaining * 1000)  # fmt: skip
        except Exception as exc:
            self.stats.error(
                "page load failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            )
            await self.check_problems(with_text=True)
            return False
        self.stats.load_s = time.monotonic() - start
        return await self.check_problems(with_text=True)

    def _watch_websocket(self, ws: Any) -> None:
        def closed(*_: Any) -> None:
            if not self.closing:
                self.stats.error("websocket closed", ws.url)

        ws.on("close", closed)

    async def close(self) -> None:
        self.closing = True
        if self.context is not None:
            try:
                await self.context.close()
            except Exception:
                pass
            self.context = None

    # --- checks ---------------------------------------------------------------------
    async def check_problems(self, *, with_text: bool = False) -> bool:
        """Record what the page shows that is wrong; True when nothing is."""
        try:
            problems = await self.page.evaluate("w => window.__gs.problems(w)", with_text)
        except Exception as exc:
            self.stats.error(
                "page unreachable", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            )
            return False
        for problem in problems:
            self.stats.error("page shows a problem", problem)
        return not problems

    async def settle(self, quiet_s: float = 0.4, limit_s: float = 10.0) -> None:
        """Wait until neither plot has changed for `quiet_s` (an earlier update's tail)."""
        deadline = time.monotonic() + limit_s
        last = await self.page.evaluate(_BOTH_PLOTS)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            now = await self.page.evaluate(_BOTH_PLOTS)
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return
        self.stats.unsettled += 1

    # --- actions --------------------------------------------------------------------
    async def _select_other(self, selector: str, choices: list[str] | None = None) -> str:
        select = self.page.locator(f"{selector} select").first
        options = await select.locator("option").all_text_contents()
        current = await select.evaluate(
            "s => s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : ''"
        )
        pool = [o for o in (choices or options) if o in options and o != current]
        label = self.rng.choice(pool)
        await select.select_option(label=label)
        return label

    async def _zoom(self) -> str:
        box = await self.page.locator(".gs-map canvas").first.bounding_box()
        if box is None:
            raise RuntimeError("map canvas has no box")
        if self.zoom_level <= 0:
            direction = -1
        elif self.zoom_level >= MAX_ZOOM_LEVEL:
            direction = 1
        else:
            direction = self.rng.choice((-1, 1))
        # near the middle of the plot frame (the colour bar takes the right of the canvas)
        x = box["x"] + box["width"] * 0.45
        y = box["y"] + box["height"] * 0.5
        await self.page.mouse.move(x, y)
        await self.page.mouse.wheel(0, 120 * direction)
        self.zoom_level -= direction
        return "in" if direction < 0 else "out"

    async def _park_mouse(self) -> None:
        await self.page.mouse.move(5, 5)

    async def act(self, kind: str) -> float | None:
        """Do one action and return its latency in seconds (None on error)."""
        page = self.page
        await self.settle()
        await page.evaluate(
            "p => window.__gs.mark(p)", "series" if kind in SERIES_ACTIONS else "map"
        )
        start = time.monotonic()
        try:
            if kind == "time":
                what = await self._select_other(".gs-time")
            elif kind == "region":
                what = await self._select_other(".gs-region", list(REGIONS))
            elif kind == "variable":
                what = await self._select_other(".gs-var")
            elif kind == "zoom":
                what = await self._zoom()
            else:
                raise ValueError(kind)
        except Exception as exc:
            self.stats.error(
                f"{kind} action failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            )
            return None
        try:
            await page.wait_for_function("() => window.__gs.changed()", polling=50,
                                         timeout=self.latency_timeout * 1000)  # fmt: skip
        except Exception as exc:
            timed_out = "Timeout" in type(exc).__name__
            self.stats.error(f"{kind} {what!r}: " + ("no map update" if timed_out else "update wait failed"),
                             f"after {self.latency_timeout:g} s" if timed_out else str(exc)[:200])  # fmt: skip
            await self.check_problems()
            return None
        latency = time.monotonic() - start
        if kind == "zoom":
            await self._park_mouse()
        if not await self.check_problems():
            return None
        self.stats.latencies.append((kind, latency))
        return latency

    async def run(self, deadline: float, min_actions: int = 0) -> SessionStats:
        """Act at human pace (random think time) until `deadline` (monotonic seconds),
        and at least `min_actions` times (a busy machine's slow answers)."""
        order = list(ACTIONS)
        self.rng.shuffle(order)
        n = 0
        while True:
            pause = self.rng.uniform(*self.think)
            if n >= min_actions and time.monotonic() + pause >= deadline:
                break
            await asyncio.sleep(pause)
            # every kind in turn, a fresh random order each round
            if n and n % len(order) == 0:
                self.rng.shuffle(order)
            await self.act(order[n % len(order)])
            n += 1
        await self.check_problems(with_text=True)
        return self.stats
