"""Small synthetic normalised datasets for the app tests (seeded, in memory)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr


def cell_area(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    r = 6371008.8
    dlat = np.gradient(lat)
    dlon = np.gradient(lon)
    band = r**2 * (np.sin(np.radians(lat + dlat / 2)) - np.sin(np.radians(lat - dlat / 2)))
    return band[:, None] * np.radians(dlon)[None, :]


def make_ds(seed: int = 0, chunked: bool = True) -> xr.Dataset:
    """36 monthly steps (2000-2002) on a 10° grid, one var with NaNs, one with levels."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2000-01-01", periods=36, freq="MS") + pd.Timedelta(days=14)
    lat = np.arange(-85.0, 90.0, 10.0)
    lon = np.arange(-175.0, 180.0, 10.0)
    tas = rng.normal(15, 8, (36, lat.size, lon.size))
    tas[:, 3:5, 10:14] = np.nan  # "land"
    ua = rng.normal(0, 5, (36, 3, lat.size, lon.size))
    ds = xr.Dataset(
        {
            "tas": (("time", "lat", "lon"), tas, {"long_name": "air temperature", "units": "degC"}),
            "ua": (
                ("time", "level", "lat", "lon"),
                ua,
                {"long_name": "eastward wind", "units": "m s-1"},
            ),
        },
        coords={
            "time": time,
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
            "level": ("level", [1000.0, 850.0, 500.0], {"units": "hPa"}),
            "cell_area": (("lat", "lon"), cell_area(lat, lon)),
        },
        attrs={"title": "Synthetic monthly", "gridscope_climatology": False},
    )
    return ds.chunk({"time": 12}) if chunked else ds


def make_clim_ds() -> xr.Dataset:
    """A 12-step climatology without levels (month names as labels)."""
    import cftime

    ds = make_ds(1, chunked=False).isel(time=slice(0, 12)).drop_vars("ua")
    times = [cftime.DatetimeProlepticGregorian(0, m, 15, has_year_zero=True) for m in range(1, 13)]
    ds = ds.assign_coords(time=times)
    ds.attrs.update(title="Synthetic climatology", gridscope_climatology=True)
    return ds
