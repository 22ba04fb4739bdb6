"""Spatial pyramid: 2x area-weighted coarsening levels of a normalised grid.

Level ``L`` groups the cells of the normalised grid (``lat`` ascending from the south,
``lon`` ascending from -180) into aligned blocks of ``2**L x 2**L`` cells, starting at
index 0; blocks at the northern edge (721 latitudes) hold the cells that exist. Each
level is a dataset in its own right:

- ``mean``: area-weighted mean of the valid (non-NaN) cells, NaN when none is valid;
- ``min`` / ``max``: minimum / maximum of the valid cells;
- ``cell_area``: sum of the fine cell areas; ``lat``/``lon``: mean of the fine centres.

A map at level ``L`` is, by definition, the query evaluated on the level-``L`` dataset
(the ``mean`` field, or the ``min``/``max`` field for a min/max over time), so planner
answers at any zoom level have a brute-force reference (`level_dataset`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import xarray as xr

__all__ = [
    "LevelGrid",
    "coarsen_fields",
    "coarsen_once",
    "field_kind",
    "level_dataset",
    "level_grid",
]


def field_kind(agg: str, single_step: bool, anomaly: bool) -> str:
    """Which pyramid field a map of this query is computed from: mean, min or max."""
    if single_step or anomaly or agg in ("mean", "std"):
        return "mean"
    return agg


class LevelGrid:
    """Coordinates of one pyramid level (1-D ``lat``, ``lon``; 2-D ``cell_area``)."""

    def __init__(self, level: int, lat: np.ndarray, lon: np.ndarray, cell_area: np.ndarray):
        self.level = level
        self.lat = lat
        self.lon = lon
        self.cell_area = cell_area

    @property
    def factor(self) -> int:
        return 2**self.level

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lat.size, self.lon.size)

    def coords_dataarray(self) -> xr.DataArray:
        """A data-less (lat, lon) array of this grid, for running selections on it."""
        return xr.DataArray(
            np.zeros(self.shape, dtype="int8"),
            dims=("lat", "lon"),
            coords={"lat": self.lat, "lon": self.lon},
        )


def _pad_to_even(a: np.ndarray, fill: float) -> np.ndarray:
    ny, nx = a.shape[-2:]
    if ny % 2 == 0 and nx % 2 == 0:
        return a
    pad = [(0, 0)] * (a.ndim - 2) + [(0, ny % 2), (0, nx % 2)]
    return np.pad(a, pad, constant_values=fill)


def _pairsum(a: np.ndarray) -> np.ndarray:
    a = _pad_to_even(a, 0.0)
    return a[..., 0::2, 0::2] + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2]


def _pairreduce(a: np.ndarray, op: np.ufunc) -> np.ndarray:
    a = _pad_to_even(a, np.nan)
    return op(op(a[..., 0::2, 0::2], a[..., 1::2, 0::2]), op(a[..., 0::2, 1::2], a[..., 1::2, 1::2]))


def coarsen_once(
    wsum: np.ndarray, warea: np.ndarray, vmin: np.ndarray, vmax: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One 2x step: sums add, min/max combine ignoring NaN (fmin/fmax)."""
    return _pairsum(wsum), _pairsum(warea), _pairreduce(vmin, np.fmin), _pairreduce(vmax, np.fmax)


def coarsen_fields(
    values: np.ndarray, cell_area: np.ndarray, max_level: int
) -> list[dict[str, np.ndarray]]:
    """All pyramid levels 1..max_level of ``values`` (..., lat, lon), in memory.

    Returns one dict per level (index 0 is level 1) with ``mean``/``min``/``max``
    (float32) and ``wsum`` (sum of area * value over valid cells) / ``warea`` (sum of
    the valid cells' area), both float64, which the time-series levels store.
    """
    valid = ~np.isnan(values)
    warea = np.where(valid, cell_area, 0.0)
    wsum = np.where(valid, values.astype("float64") * cell_area, 0.0)
    vmin = vmax = values
    out = []
    for _ in range(max_level):
        wsum, warea, vmin, vmax = coarsen_once(wsum, warea, vmin, vmax)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(warea > 0, wsum / np.where(warea > 0, warea, 1.0), np.nan)
        out.append(
            {
                "mean": mean.astype("float32"),
                "min": vmin.astype("float32"),
                "max": vmax.astype("float32"),
                "wsum": wsum,
                "warea": warea,
            }
        )
    return out


@functools.lru_cache(maxsize=64)
def _level_grid_cached(
    level: int, lat_bytes: bytes, lon_bytes: bytes, area_bytes: bytes, ny: int, nx: int
) -> LevelGrid:
    lat = np.frombuffer(lat_bytes, "float64")
    lon = np.frombuffer(lon_bytes, "float64")
    area = np.frombuffer(area_bytes, "float64").reshape(ny, nx)
    if level == 0:
        return LevelGrid(0, lat.copy(), lon.copy(), area.copy())
    s = 2**level
    nyl, nxl = math.ceil(ny / s), math.ceil(nx / s)
    lat_pad = np.pad(lat, (0, nyl * s - ny), constant_values=np.nan).reshape(nyl, s)
    lon_pad = np.pad(lon, (0, nxl * s - nx), constant_values=np.nan).reshape(nxl, s)
    lat_l = np.nanmean(lat_pad, axis=1)
    lon_l = np.nanmean(lon_pad, axis=1)
    area_l = np.pad(area, ((0, nyl * s - ny), (0, nxl * s - nx))).reshape(nyl, s, nxl, s).sum(axis=(1, 3))
    return LevelGrid(level, lat_l, lon_l, area_l)


def level_grid(lat: np.ndarray, lon: np.ndarray, cell_area: np.ndarray, level: int) -> LevelGrid:
    """Coordinates of pyramid ``level`` for a normalised grid (cached)."""
    lat = np.ascontiguousarray(lat, "float64")
    lon = np.ascontiguousarray(lon, "float64")
    area = np.ascontiguousarray(cell_area, "float64")
    return _level_grid_cached(
        level, lat.tobytes(), lon.tobytes(), area.tobytes(), lat.size, lon.size
    )


def level_dataset(ds: xr.Dataset, level: int, kind: str = "mean", variables: list[str] | None = None) -> xr.Dataset:
    """The level-``level`` dataset of ``ds`` (``kind`` field), computed in memory.

    The brute-force reference for pyramid answers; meant for small data (tests and
    the fallback on small stores). Level 0 returns ``ds`` itself.
    """
    if level == 0:
        return ds
    grid = level_grid(ds["lat"].values, ds["lon"].values, ds["cell_area"].values, level)
    data_vars = {}
    for name in variables or list(ds.data_vars):
        da = ds[name]
        values = np.asarray(da.transpose(..., "lat", "lon").values)
        field = coarsen_fields(values, ds["cell_area"].values, level)[-1][kind]
        dims = tuple(d for d in da.transpose(..., "lat", "lon").dims)
        data_vars[name] = xr.Variable(dims, field, dict(da.attrs))
    coords = {
        name: ds[name] for name in ds.coords if name not in ("lat", "lon", "cell_area") and set(ds[name].dims) <= {"time", "level"}
    }
    coords.update(
        lat=("lat", grid.lat, dict(ds["lat"].attrs)),
        lon=("lon", grid.lon, dict(ds["lon"].attrs)),
        cell_area=(("lat", "lon"), grid.cell_area, dict(ds["cell_area"].attrs)),
    )
    out = xr.Dataset(data_vars, coords=coords, attrs=dict(ds.attrs))
    return out
