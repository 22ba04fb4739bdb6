"""Figures of the load runs: latency percentiles, their table cells, the JSON results."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ms", "percentiles", "write_result"]


def percentiles(values: list[float]) -> dict[str, Any]:
    """``{n, p50_ms, p95_ms, max_ms}`` of durations in seconds (None when there are none)."""
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    arr = np.asarray(values) * 1000
    return {"n": len(values), "p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p95_ms": round(float(np.percentile(arr, 95)), 1), "max_ms": round(float(arr.max()), 1)}  # fmt: skip


def ms(v: Any) -> str:
    """A table cell of milliseconds: ``1,234``, or ``-`` for no figure."""
    return "-" if v is None else f"{v:,.0f}"


def write_result(out: Path | None, result: Any) -> None:
    """Write a run's result dataclass as JSON to ``out`` (nothing when None)."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(result), indent=1, default=str))
