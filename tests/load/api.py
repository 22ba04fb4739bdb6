"""HTTP API load: many concurrent clients on ``/api/v1/map.json``, ``map.png``, ``series.json``.

A small HTTP/1.1 client on asyncio streams (one keep-alive connection per client, the
body read by ``Content-Length``), so the client's share of the two cores stays small
next to the server's. `api_run` runs two phases and `ApiPhase` records each:

- **cold**: every request a query never asked before (time step, variable, box,
  viewport and point drawn at random, seeded), so each one is computed;
- **warm**: a fixed set of queries asked once first, then asked over and over by all
  clients for a fixed time, so each one is a cache hit.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlparse

import numpy as np

__all__ = ["ApiPhase", "api_run", "cold_queries"]

ENDPOINTS = ("map.json", "map.png", "series.json")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_VARS = ["SST", "AIRT", "SPEH", "WSPD", "UWND", "VWND", "SLP"]


@dataclass
class ApiPhase:
    """Requests of one phase: latencies per endpoint, errors, the phase's duration."""

    name: str
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float]) -> dict[str, Any]:
            if not values:
                return {"n": 0, "p50_ms": None, "p95_ms": None}
            ms = np.asarray(values) * 1000
            return {"n": len(values), "p50_ms": round(float(np.percentile(ms, 50)), 1),
                    "p95_ms": round(float(np.percentile(ms, 95)), 1)}  # fmt: skip

        every = [v for vs in self.latencies.values() for v in vs]
        return {"requests": self.requests, "seconds": round(self.seconds, 2),
                "per_s": round(self.requests / self.seconds, 1) if self.seconds else None,
                "all": pct(every), **{e: pct(v) for e, v in self.latencies.items()},
                "errors": len(self.errors)}  # fmt: skip


def cold_queries(n: int, seed: int, dataset: str = "coads") -> list[str]:
    """``n`` distinct request paths (endpoint and query), in a seeded random order."""
    rng = random.Random(seed)
    seen: set[str] = set()
    paths: list[str] = []
    while len(paths) < n:
        endpoint = ENDPOINTS[len(paths) % len(ENDPOINTS)]
        params: dict[str, Any] = {"dataset": dataset, "var": rng.choice(_VARS)}
        if endpoint == "series.json":
            params["point"] = f"{rng.randint(-179, 179)},{rng.randint(-60, 60)}"
        else:
            params["time"] = rng.choice(_MONTHS)
            w, s = rng.randint(-180, 100), rng.randint(-90, 40)
            params["x_range"] = f"{w},{w + rng.randint(20, 80)}"
            params["y_range"] = f"{s},{s + rng.randint(20, 50)}"
            if endpoint == "map.png":
                params["width"], params["height"] = rng.randint(200, 800), rng.randint(150, 600)
        path = f"/api/v1/{endpoint}?{urlencode(params)}"
        if path not in seen:
            seen.add(path)
            paths.append(path)
    return paths


class _Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int, prefix: str):
        self.host, self.port, self.prefix = host, port, prefix
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        request = f"GET {self.prefix}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n"
        self.writer.write(request.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
        }
        body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _clients(url: str, clients: int, next_path, phase: ApiPhase) -> None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80

    async def client() -> None:
        conn = _Connection(host, port, parsed.path.rstrip("/"))
        try:
            while (path := next_path()) is not None:
                started = time.perf_counter()
                try:
                    status, body = await conn.get(path)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    phase.errors.append(f"{path}: {exc!r}"[:200])
                    conn.close()
                    continue
                took = time.perf_counter() - started
                if status != 200:
                    phase.errors.append(f"{path}: HTTP {status} {body[:120]!r}")
                    continue
                phase.latencies[path.split("?")[0].rsplit("/", 1)[-1]].append(took)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    phase.seconds = time.perf_counter() - started


async def api_run(url: str, *, clients: int = 50, cold: int = 300, warm_queries: int = 30,
                  warm_seconds: float = 20.0, seed: int = 0) -> tuple[ApiPhase, ApiPhase]:  # fmt: skip
    """The cold phase (``cold`` distinct requests), then the warm one (``warm_seconds``)."""
    cold_paths = cold_queries(cold + warm_queries, seed)
    todo = iter(cold_paths[:cold])
    cold_phase = ApiPhase("cold")
    await _clients(url, clients, lambda: next(todo, None), cold_phase)

    hot = cold_paths[cold:]
    fill = iter(hot)
    await _clients(url, min(clients, len(hot)), lambda: next(fill, None), ApiPhase("fill"))
    warm_phase = ApiPhase("warm")
    deadline = time.perf_counter() + warm_seconds
    turn = iter(range(10**9))
    await _clients(
        url, clients,
        lambda: hot[next(turn) % len(hot)] if time.perf_counter() < deadline else None,
        warm_phase,
    )  # fmt: skip
    return cold_phase, warm_phase
