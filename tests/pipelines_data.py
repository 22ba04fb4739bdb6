"""Seeded synthetic datasets in the normalised layout, for pipeline tests.

Built like ``pangeo_forge_recipes/tests/data_generation.py::make_ds``: small, seeded,
shaped like real data (global grid, NaN "land", monthly steps), so tests can
compare pipelines against independent numpy brute force.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

EARTH_RADIUS = 6371008.8


def spherical_cell_area(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Cell areas for regular centres (edges at midpoints, clipped at the poles)."""
    dlat = np.diff(lat).mean() if lat.size > 1 else 180.0
    dlon = np.diff(lon).mean() if lon.size > 1 else 360.0
    south = np.clip(lat - dlat / 2, -90, 90)
    north = np.clip(lat + dlat / 2, -90, 90)
    band = np.sin(np.deg2rad(north)) - np.sin(np.deg2rad(south))
    return EARTH_RADIUS**2 * np.deg2rad(dlon) * band[:, None] * np.ones(lon.size)[None, :]


def make_normalised(
    nlat: int = 18,
    nlon: int = 36,
    ntime: int = 48,
    seed: int = 0,
    land_fraction: float = 0.2,
    start: str = "1990-01",
    levels: int = 0,
) -> xr.Dataset:
    """A global dataset in contract form: lon ascending in [-180, 180), lat ascending."""
    rng = np.random.default_rng(seed)
    dlon = 360.0 / nlon
    lon = -180.0 + dlon / 2 + dlon * np.arange(nlon)
    dlat = 180.0 / nlat
    lat = -90.0 + dlat / 2 + dlat * np.arange(nlat)
    time = pd.date_range(start, periods=ntime, freq="MS") + pd.Timedelta(days=14)
    shape: tuple[int, ...] = (ntime, nlat, nlon)
    dims: tuple[str, ...] = ("time", "lat", "lon")
    coords: dict = {"time": time, "lat": lat, "lon": lon}
    if levels:
        shape = (ntime, levels, nlat, nlon)
        dims = ("time", "level", "lat", "lon")
        coords["level"] = (
            "level",
            10.0 * 2 ** np.arange(levels),
            {"units": "m", "positive": "down"},
        )
    season = np.cos(2 * np.pi * np.arange(ntime) / 12.0)
    base = 15 + 10 * np.cos(np.deg2rad(lat))[:, None] * np.ones(nlon)
    data = base + season.reshape((ntime,) + (1,) * (len(shape) - 1)) + rng.normal(0, 1, shape)
    land = rng.random((nlat, nlon)) < land_fraction
    data = np.where(land, np.nan, data).astype("float32")
    ds = xr.Dataset(
        {"sst": (dims, data, {"units": "degC", "long_name": "sea surface temperature"})},
        coords=coords,
    )
    ds = ds.assign_coords(cell_area=(("lat", "lon"), spherical_cell_area(lat, lon)))
    ds["lon"].attrs["units"] = "degrees_east"
    ds["lat"].attrs["units"] = "degrees_north"
    ds.attrs["gridscope_source"] = "synthetic"
    return ds


def store_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file of the published version's pyramid, aggregates and
    time-series stores in the derived folder ``folder``, by path in the version."""
    from pipelines.derived import DerivedStores

    data = DerivedStores(folder).data_folder
    return {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
        for store in ("pyramid.zarr", "aggregates.zarr", "timeseries.zarr")
        for p in sorted((data / store).rglob("*"))
        if p.is_file()
    }


def write_daily_source(
    path: Path, fields: dict[str, np.ndarray], lat: np.ndarray, lon: np.ndarray, units: str
) -> Path:
    """A zarr source of daily ``(time, lat, lon)`` fields from 2000-01-01 on a regular
    grid whose axes carry CF units (what `data_catalog` recognises), written at ``path``."""
    nt = next(iter(fields.values())).shape[0]
    ds = xr.Dataset(
        {name: (("time", "lat", "lon"), x, {"units": units}) for name, x in fields.items()},
        coords={
            "time": pd.date_range("2000-01-01", periods=nt, freq="D"),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    ds.to_zarr(path, mode="w")
    return path
