"""Sizes in bytes written as people write them (``2GB``, ``500 MiB``, ``1e9``).

One parser for the whole of gridscope: the app's settings and flags (`app.limits`) and
the planner's ``GRIDSCOPE_MAX_BYTES`` budget (`pipelines.planner.Plan.compute`, which
may run on a Dask worker without the app) accept the same spellings.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_bytes"]

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_bytes(text: str) -> int:
    """``"2GB"``, ``"500 MiB"``, ``"1e9"`` -> bytes; `ValueError` in words otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"{str(text)[:40]!r}: expected a size such as 2GB, 500MiB or 1e9")
    value = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"{str(text)[:40]!r}: expected a positive size")
    return int(value)
