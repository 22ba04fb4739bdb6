"""Offline coastlines drawn over every map (no tile server is ever contacted).

The shipped file ``app/assets/coastlines.json`` is the 0 m contour of the bundled real
ETOPO20 relief (``data_catalog/samples/etopo20.cdf``, NOAA PMEL, public domain),
traced with contourpy, simplified and rounded to 0.01 degree. Regenerate it with::

    .venv/bin/python -m app.coastlines

The file holds ``{"source": ..., "lines": [[[lon, lat], ...], ...]}`` with longitudes
in [-180, 180); a line never jumps across the antimeridian.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["COASTLINES_PATH", "coastline_paths", "generate_coastlines"]

COASTLINES_PATH = Path(__file__).with_name("assets") / "coastlines.json"
_SOURCE = "0 m contour of data_catalog/samples/etopo20.cdf (ETOPO20, NOAA PMEL, public domain)"


def generate_coastlines(
    out: Path = COASTLINES_PATH, *, min_points: int = 8, tolerance: float = 0.15
) -> int:
    """Trace the 0 m contour of the bundled ETOPO20 relief and write it to ``out``.

    Returns the number of lines written. Lines shorter than ``min_points`` vertices
    (islets) are dropped; vertices are thinned so that consecutive kept points are at
    least ``tolerance`` degrees apart.
    """
    import contourpy

    from data_catalog import open_dataset

    ds = open_dataset("etopo20")
    relief = ds["ROSE"].load()
    lon = relief["lon"].values
    lat = relief["lat"].values
    generator = contourpy.contour_generator(lon, lat, relief.values, name="serial")
    lines = []
    for line in generator.lines(0.0):
        thinned = _thin(np.asarray(line), tolerance)
        if len(thinned) < min_points:
            continue
        lines.append([[round(float(x), 2), round(float(y), 2)] for x, y in thinned])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": _SOURCE, "lines": lines}, separators=(",", ":")))
    return len(lines)


def _thin(line: np.ndarray, tolerance: float) -> np.ndarray:
    kept = [line[0]]
    for point in line[1:-1]:
        if np.abs(point - kept[-1]).max() >= tolerance:
            kept.append(point)
    kept.append(line[-1])
    return np.asarray(kept)


def coastline_paths(path: Path = COASTLINES_PATH) -> list[np.ndarray]:
    """The coastlines as ``(n, 2)`` arrays of (lon, lat)."""
    data = json.loads(path.read_text())
    return [np.asarray(line, dtype="float64") for line in data["lines"]]


if __name__ == "__main__":  # pragma: no cover
    count = generate_coastlines()
    size = COASTLINES_PATH.stat().st_size
    print(f"wrote {count} coastlines ({size / 1024:.0f} KiB) to {COASTLINES_PATH}")
