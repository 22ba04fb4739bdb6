"""The server's live-heap readings, read from its log (`app.server.memory_report`).

The server logs ``memory after sessions closed: blocks=.. objects=.. rss_mib=.. sessions=..``
a few seconds after the last session it discarded. ``sessions`` is how many sessions Bokeh
still held at that moment: a tab closed moments ago lives on until Bokeh discards it (a
second or two with the load tests' flags, longer while its page is still being drawn), so
a reading can count whole closed pages (~3 % of the heap each). A leak is judged only on a
reading that holds no more sessions than the reference did (`next_reading`).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

__all__ = ["HEAP_LINE", "has_reading", "heap_reports", "next_reading"]

#: The server's log line after it collected closed sessions; ``sessions`` is absent in
#: logs of servers older than it.
HEAP_LINE = re.compile(
    r"memory after sessions closed: blocks=(\d+) objects=(\d+) rss_mib=([\d.]+)(?: sessions=(\d+))?"
)


def heap_reports(log: Path | None) -> list[dict[str, float | int | None]]:
    """The server's live-heap readings in its log, oldest first."""
    if log is None or not log.exists():
        return []
    return [{"blocks": int(m[1]), "objects": int(m[2]), "rss_mib": float(m[3]),
             "sessions": None if m[4] is None else int(m[4])}
            for m in HEAP_LINE.finditer(log.read_text(errors="replace"))]  # fmt: skip


def _settled(reading: dict, sessions: int | None) -> bool:
    held = reading.get("sessions")
    return sessions is None or held is None or held <= sessions


def has_reading(log: Path | None, seen: int, sessions: int | None = None) -> bool:
    """Whether a reading after the first `seen` holds at most `sessions` sessions."""
    return any(_settled(r, sessions) for r in heap_reports(log)[seen:])


async def next_reading(
    log: Path | None, seen: int, timeout: float, sessions: int | None = None
) -> dict | None:
    """The newest reading after the first `seen`, once one holds at most `sessions` sessions.

    ``sessions``: how many sessions the server should still hold (the warm session that
    stays open); None takes the first new reading. Waits up to `timeout` seconds; then the
    newest new reading, whatever it holds (its ``sessions`` says so), or None.
    """
    deadline = time.monotonic() + timeout
    newest = None
    while log is not None:
        new = heap_reports(log)[seen:]
        newest = new[-1] if new else newest
        settled = [r for r in new if _settled(r, sessions)]
        if settled:
            return settled[-1]
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)
    return newest
