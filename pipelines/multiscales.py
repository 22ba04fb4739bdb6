"""GeoZarr ``multiscales`` metadata on the pyramid store, so other viewers find its levels.

The pyramid of a variable on a regular grid is the zarr group
``pyramid.zarr/<var>/`` with one child group per level, ``L<l>/mean`` and from level
`pipelines.pyramid.MINMAX_FROM_LEVEL` (2) on ``L<l>/{min,max}`` (``(time, lat_l,
lon_l)``, level ``l`` averaging blocks of ``2**l x 2**l`` source cells, `pipelines.build`;
level 1 has no per-step min/max fields: the planner derives those from the raw data
where it needs them). `multiscales_attrs` describes these levels in the attributes of
that group following the zarr conventions that GeoZarr is made of:

- ``multiscales`` (https://github.com/zarr-conventions/multiscales, UUID
  ``d35379db-...``): ``layout``, one entry per level present, finest first, each with
  its ``asset`` (the child group's name), ``derived_from`` (the next finer level) and a
  ``transform`` of ``scale`` (2 per horizontal axis from the level it is derived from)
  and ``translation`` (0: every level starts at the grid's first cell edge);
- ``spatial:`` (UUID ``689b58e2-...``): ``spatial:dimensions`` ``["lat", "lon"]`` and per
  level ``spatial:shape`` and ``spatial:transform``, the affine ``[a, b, c, d, e, f]``
  with ``lon = a * col + b * row + c`` and ``lat = d * col + e * row + f`` for a cell's
  corner (``e > 0``: rows go north, as the arrays are stored);
- ``proj:`` (UUID ``f17cb550-...``): ``proj:code`` ``EPSG:4326`` (the normalised
  grid's longitudes and latitudes in degrees).

Each level also states its cell size in degrees (``gridscope:resolution``,
``[dlat, dlon]``). Level 0 (the source itself, or the time-series copy) is not in the
pyramid group, so the layout starts at level 1. The last row or column of a level
whose source size is not a multiple of its block is a partial block; the transform
gives the full block's size (its centre coordinate is `pipelines.pyramid.level_grid`'s).

Non-regular grids' cell stores (`pipelines.cell_stores`) are not described here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.pyramid import MINMAX_FROM_LEVEL, stores_minmax

__all__ = ["CONVENTIONS", "multiscales_attrs", "write_multiscales"]

#: The ``zarr_conventions`` entries of the conventions the attributes use.
CONVENTIONS = [
    {
        "uuid": "d35379db-88df-4056-af3a-620245f8e347",
        "name": "multiscales",
        "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json",
        "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v1/README.md",
        "description": "Multiscale layout of zarr datasets",
    },
    {
        "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
        "name": "spatial:",
        "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
        "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
        "description": "Spatial coordinate information",
    },
    {
        "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
        "name": "proj:",
        "schema_url": "https://raw.githubusercontent.com/zarr-conventions/proj/refs/tags/v1/schema.json",
        "spec_url": "https://github.com/zarr-conventions/proj/blob/v1/README.md",
        "description": "Coordinate reference system information for geospatial data",
    },
]


def _spacing(values: np.ndarray, name: str) -> float:
    """The constant step of a regular axis (ValueError when it has none)."""
    steps = np.diff(np.asarray(values, dtype="float64"))
    if steps.size == 0 or not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        raise ValueError(f"{name} is not evenly spaced: no multiscales transform for it")
    return float(steps[0])


def multiscales_attrs(lat: np.ndarray, lon: np.ndarray, levels: list[int]) -> dict[str, Any]:
    """The attributes of a pyramid group whose levels ``levels`` (``L<l>`` groups,
    ``l >= 1``) coarsen the regular grid of cell centres ``lat``, ``lon`` by ``2**l``.

    Returns
    -------
    dict
        ``zarr_conventions``, ``multiscales``, ``spatial:dimensions`` and ``proj:code``
        (see the module docstring); JSON-serialisable.
    """
    dlat, dlon = _spacing(lat, "lat"), _spacing(lon, "lon")
    lat0 = float(lat[0]) - dlat / 2  # the first cell's edges
    lon0 = float(lon[0]) - dlon / 2
    layout = []
    previous = None
    arrays = {"mean": "area-weighted mean of the block's cells"}
    if any(stores_minmax(level) for level in levels):
        arrays["min"] = f"minimum of the block's cells (levels >= {MINMAX_FROM_LEVEL})"
        arrays["max"] = f"maximum of the block's cells (levels >= {MINMAX_FROM_LEVEL})"
    for level in sorted(levels):
        f = 2**level
        shape = [-(-int(lat.size) // f), -(-int(lon.size) // f)]
        entry: dict[str, Any] = {
            "asset": f"L{level}",
            "resampling_method": "average",
            "spatial:shape": shape,
            "spatial:transform": [dlon * f, 0.0, lon0, 0.0, dlat * f, lat0],
            "gridscope:resolution": [abs(dlat) * f, abs(dlon) * f],
        }
        if previous is not None:
            scale = float(2 ** (level - previous))
            entry["derived_from"] = f"L{previous}"
            entry["transform"] = {"scale": [scale, scale], "translation": [0.0, 0.0]}
        layout.append(entry)
        previous = level
    return {
        "zarr_conventions": CONVENTIONS,
        "multiscales": {"layout": layout, "resampling_method": "average"},
        "spatial:dimensions": ["lat", "lon"],
        "proj:code": "EPSG:4326",
        "gridscope:level_arrays": arrays,
    }


def write_multiscales(data: str | Path, var: str, lat: np.ndarray, lon: np.ndarray) -> None:
    """Write `multiscales_attrs` for the levels ``pyramid.zarr/<var>/`` holds in the data
    folder ``data`` (a local path or fsspec URL); nothing when it has none or they are
    already there (an append within the layout leaves the file alone)."""
    import zarr

    try:
        group = zarr.open_group(f"{data}/pyramid.zarr", path=var, mode="r+")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return
    levels = sorted(
        int(match.group(1))
        for name in group.group_keys()
        if (match := re.fullmatch(r"L(\d+)", name)) and int(match.group(1)) >= 1
    )
    if not levels:
        return
    attrs = multiscales_attrs(lat, lon, levels)
    if {k: group.attrs.get(k) for k in attrs} != attrs:
        group.attrs.update(attrs)
