"""Synthetic, deterministic ERA5-like global fields: for demos, tests and benchmarks.

Every value is a pure function of ``(seed, variable, time step index, latitude,
longitude)``: a latitude profile, a seasonal cycle, a trend, a diurnal cycle for hourly
data, large-scale "weather" waves whose phases are drawn per step from the seed, and a
per-cell noise pattern shifted per step. Because values depend on coordinates and not
on chunking, the same numbers come out of

- `write_demo_store`: a zarr v3 store in ERA5's raw layout (``latitude`` 90..-90,
  ``longitude`` 0..359.75, ``time``), which ``data_catalog.open_dataset`` normalises;
- `virtual_dataset`: a lazy, already normalised dataset of any length (e.g. 40 years
  hourly, ~1.4 TB) whose chunks are computed on read.

Variables: ``t2m`` (2 m temperature, K) and ``sst`` (sea surface temperature, K, NaN
over a fixed land mask).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import sys
import time as _time
from collections.abc import Callable
from pathlib import Path

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from data_catalog import EARTH_RADIUS_M

__all__ = [
    "VARIABLES",
    "SyntheticSpec",
    "land_mask",
    "parse_size",
    "spec_for_size",
    "synthetic_field",
    "virtual_dataset",
    "write_demo_store",
]

VARIABLES = ("t2m", "sst")

_ATTRS = {
    "t2m": {
        "units": "K",
        "long_name": "2 metre temperature",
        "standard_name": "air_temperature",
    },
    "sst": {
        "units": "K",
        "long_name": "Sea surface temperature",
        "standard_name": "sea_surface_temperature",
    },
}
_VAR_ID = {"t2m": 1, "sst": 2}
# (zonal wavenumber, meridional wavenumber, amplitude in K) of the weather waves
_WAVES = ((2, 3, 3.0), (3, 5, 2.5), (5, 4, 2.0), (8, 7, 1.5), (13, 11, 1.0), (21, 17, 0.7))
_FREQ_HOURS = {"daily": 24, "hourly": 1}


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic dataset holds.

    Parameters
    ----------
    nsteps
        Number of time steps.
    freq
        ``"daily"`` or ``"hourly"``.
    resolution
        Grid spacing in degrees; 0.25 gives ERA5's 721 x 1440 grid.
    start
        Date of the first step.
    seed
        Seed of the weather waves and noise.
    variables
        Subset of ``("t2m", "sst")``.
    """

    nsteps: int
    freq: str = "daily"
    resolution: float = 0.25
    start: str = "1980-01-01"
    seed: int = 0
    variables: tuple[str, ...] = VARIABLES

    def __post_init__(self) -> None:
        if self.freq not in _FREQ_HOURS:
            raise ValueError(f"freq must be daily or hourly, not {self.freq!r}")
        if self.nsteps < 1:
            raise ValueError("nsteps must be >= 1")
        if round(180 / self.resolution) * self.resolution != 180:
            raise ValueError("resolution must divide 180 degrees")
        unknown = set(self.variables) - set(VARIABLES)
        if unknown:
            raise ValueError(f"unknown synthetic variables {sorted(unknown)}; known: {VARIABLES}")

    @classmethod
    def from_source(cls, source: str) -> SyntheticSpec:
        """The spec a ``virtual:FREQ:NSTEPS:RES:SEED`` source names (`ValueError` in words)."""
        usage = (
            f"virtual source {source[:80]!r} must be virtual:FREQ:NSTEPS:RES:SEED with FREQ "
            "daily or hourly, NSTEPS a positive integer, RES degrees dividing 180 and SEED "
            "an integer, e.g. virtual:hourly:350640:0.25:0"
        )
        parts = source.split(":")
        if len(parts) != 5 or parts[0] != "virtual":
            raise ValueError(usage)
        _, freq, nsteps, res, seed = parts
        try:
            return cls(int(nsteps), freq, float(res), seed=int(seed))
        except ValueError as exc:
            raise ValueError(f"{usage} ({exc})") from None

    @property
    def nlat(self) -> int:
        return round(180 / self.resolution) + 1

    @property
    def nlon(self) -> int:
        return round(360 / self.resolution)

    @property
    def lat(self) -> np.ndarray:
        """Ascending latitudes -90..90 (normalised layout)."""
        return np.linspace(-90.0, 90.0, self.nlat)

    @property
    def lon(self) -> np.ndarray:
        """Ascending longitudes -180..180-res (normalised layout)."""
        return -180.0 + self.resolution * np.arange(self.nlon)

    @property
    def times(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=self.nsteps, freq=f"{_FREQ_HOURS[self.freq]}h")

    @property
    def step_bytes(self) -> int:
        """Uncompressed bytes of one time step of all variables (float32)."""
        return 4 * self.nlat * self.nlon * len(self.variables)

    @property
    def nbytes(self) -> int:
        return self.step_bytes * self.nsteps


def parse_size(text: str) -> int:
    """``"1GB"``, ``"20 GB"``, ``"500MB"``, ``"1.4TB"`` -> bytes (decimal units)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)[bB]?\s*", str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a size; use e.g. 1GB, 500MB, 1.4TB")
    scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def spec_for_size(size: str | int, **kwargs: object) -> SyntheticSpec:
    """A spec whose uncompressed size (all variables, float32) is about ``size``."""
    nbytes = parse_size(size) if isinstance(size, str) else int(size)
    probe = SyntheticSpec(nsteps=1, **kwargs)  # type: ignore[arg-type]
    return dataclasses.replace(probe, nsteps=max(1, round(nbytes / probe.step_bytes)))


# --------------------------------------------------------------------------- values


def _grid_index(values: np.ndarray, origin: float, resolution: float, modulo: int) -> np.ndarray:
    return np.rint((np.asarray(values, "float64") - origin) / resolution).astype(np.int64) % modulo


@functools.lru_cache(maxsize=8)
def _noise_pattern(seed: int, var_id: int, nlat: int, nlon: int) -> np.ndarray:
    rng = np.random.default_rng([seed, var_id, 7919])
    return rng.standard_normal((nlat, nlon)).astype("float32")


def land_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A fixed, plausible-looking land mask (True = land) on the given centres."""
    phi = np.radians(np.asarray(lat, "float64"))[:, None]
    lam = np.radians(np.asarray(lon, "float64"))[None, :]
    m = np.cos(phi) * (np.sin(2 * lam + 0.5) + 0.6 * np.sin(5 * lam + 1.3) * np.cos(3 * phi))
    m = m + 0.3 * np.sin(4 * phi)
    return (m > 0.75) | (np.degrees(phi) < -72.0) | np.zeros(lam.shape, bool)


def synthetic_field(
    spec: SyntheticSpec, var: str, steps: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> np.ndarray:
    """Values of ``var`` at the given step indices and cell centres, float32 (t, lat, lon).

    ``lat``/``lon`` may be in any order or longitude convention (0..360 or -180..180);
    the value of a cell depends only on its position, so raw and normalised layouts
    hold the same numbers.
    """
    if var not in spec.variables:
        raise KeyError(var)
    steps = np.asarray(steps, dtype=np.int64)
    lat = np.asarray(lat, "float64")
    lon = np.asarray(lon, "float64")
    var_id = _VAR_ID[var]
    phi = np.radians(lat)[:, None]
    lam = np.radians(lon)[None, :]
    sin_phi = np.sin(phi)
    hours = steps * _FREQ_HOURS[spec.freq]
    start = pd.Timestamp(spec.start)
    doy0 = start.day_of_year - 1 + start.hour / 24
    days = doy0 + hours / 24.0
    ii = _grid_index(lat, -90.0, spec.resolution, spec.nlat)
    jj = _grid_index(lon, -180.0, spec.resolution, spec.nlon)
    pattern = _noise_pattern(spec.seed, var_id, spec.nlat, spec.nlon)
    cos_phi = np.cos(phi)
    if var == "t2m":
        base = 288.0 - 45.0 * sin_phi**2
        zonal = 5.0 * cos_phi  # times sin(lon)
        seasonal_amp, trend, wave_scale, noise_scale = 14.0 * sin_phi, 0.03, 1.0, 0.8
    else:
        base = 301.0 - 30.0 * sin_phi**2
        zonal = 0.0 * cos_phi
        seasonal_amp, trend, wave_scale, noise_scale = 3.0 * sin_phi, 0.015, 0.3, 0.2
    # Everything but the noise is a sum of separable terms f(lat) * g(lon), so one step is
    # a small matrix product (lat x R) @ (R x lon): fast enough to generate on read.
    wave_lat = [np.cos(n * phi[:, 0]) for (_m, n, _a) in _WAVES] + [
        np.sin(n * phi[:, 0]) for (_m, n, _a) in _WAVES
    ]
    wave_lon = np.stack(
        [np.cos(m * lam[0]) for (m, _n, _a) in _WAVES]
        + [np.sin(m * lam[0]) for (m, _n, _a) in _WAVES]
    )
    lat_terms = np.empty((lat.size, 2 * len(_WAVES) + 5))
    lon_terms = np.empty((2 * len(_WAVES) + 5, lon.size))
    lon_terms[: 2 * len(_WAVES)] = wave_lon
    lon_terms[-5] = 1.0
    lon_terms[-4] = np.sin(lam[0])
    lon_terms[-3] = np.cos(lam[0])
    lon_terms[-2] = np.sin(lam[0])
    lon_terms[-1] = 0.0
    land = land_mask(lat, lon) if var == "sst" else None
    out = np.empty((steps.size, lat.size, lon.size), dtype="float32")
    nw = len(_WAVES)
    for k, (step, day) in enumerate(zip(steps, days, strict=True)):
        rng = np.random.default_rng([spec.seed, var_id, int(step)])
        phases = rng.uniform(0, 2 * math.pi, size=(nw, 2))
        season = -seasonal_amp[:, 0] * math.cos(2 * math.pi * (day - 15.0) / 365.25)
        # cos(n phi + q) cos(m lam + p) expanded into products of cos/sin of each angle
        for w, ((_m, _n, amp), (p, q)) in enumerate(zip(_WAVES, phases, strict=True)):
            a = wave_scale * amp
            lat_c = a * (math.cos(q) * wave_lat[w] - math.sin(q) * wave_lat[nw + w])
            # (cos m lam cos p - sin m lam sin p) split over the cos and sin rows
            lat_terms[:, w] = lat_c * math.cos(p)
            lat_terms[:, nw + w] = -lat_c * math.sin(p)
        lat_terms[:, -5] = base[:, 0] + season + trend * day / 365.25
        lat_terms[:, -4] = zonal[:, 0]
        if spec.freq == "hourly":
            hour = (int(step) * _FREQ_HOURS[spec.freq]) % 24 + start.hour
            angle = 2 * math.pi * (hour - 15.0) / 24.0
            # cos(angle + lam) = cos(angle) cos(lam) - sin(angle) sin(lam)
            lat_terms[:, -3] = 3.0 * wave_scale * cos_phi[:, 0] * math.cos(angle)
            lat_terms[:, -2] = -3.0 * wave_scale * cos_phi[:, 0] * math.sin(angle)
        else:
            lat_terms[:, -3] = 0.0
            lat_terms[:, -2] = 0.0
        lat_terms[:, -1] = 0.0
        field = (lat_terms @ lon_terms).astype("float32")
        shift_i, shift_j = int(rng.integers(spec.nlat)), int(rng.integers(spec.nlon))
        noise = pattern.take((ii + shift_i) % spec.nlat, axis=0).take(
            (jj + shift_j) % spec.nlon, axis=1
        )
        field += np.float32(noise_scale) * noise
        if land is not None:
            np.maximum(field, np.float32(271.35), out=field)
            field[land] = np.nan
        out[k] = field
    return out


# --------------------------------------------------------------------------- datasets


def _cell_area(lat: np.ndarray, lon: np.ndarray, resolution: float) -> np.ndarray:
    """Same formula as ``data_catalog.normalise``: spherical cells, edges clipped at the poles."""
    north = np.radians(np.clip(lat + resolution / 2, -90, 90))
    south = np.radians(np.clip(lat - resolution / 2, -90, 90))
    extent = np.abs(np.sin(north) - np.sin(south))
    return (
        EARTH_RADIUS_M**2 * math.radians(resolution) * extent[:, None] * np.ones(lon.size)[None, :]
    )


def virtual_dataset(spec: SyntheticSpec, *, time_chunk: int = 1) -> xr.Dataset:
    """A lazy, normalised dataset whose chunks are computed when read.

    Nothing is stored: each chunk is `synthetic_field` of its step indices, so a 40-year
    hourly 0.25-degree source (~1.4 TB) costs nothing until a chunk is read and is the same
    every time. ``attrs["gridscope_source"]`` is ``virtual:<spec>``.
    """
    lat, lon = spec.lat, spec.lon
    time_chunks = dsa.core.normalize_chunks(time_chunk, (spec.nsteps,))[0]
    data_vars = {}
    for var in spec.variables:
        # no input array: each block's steps come from its block id, so the graph is
        # one symbolic (blockwise) layer and selecting a step costs O(1), not a cull
        # over all ~10^5..10^6 chunk keys (measured: 5 ms instead of ~350 ms per read)
        arr = dsa.map_blocks(
            _virtual_block,
            spec,
            var,
            time_chunk,
            chunks=(time_chunks, (lat.size,), (lon.size,)),
            dtype="float32",
            meta=np.empty((0, 0, 0), "float32"),
            name=f"synthetic-{var}-{spec.seed}-{spec.nsteps}-{spec.freq}-{spec.resolution}-{time_chunk}",
        )
        data_vars[var] = (("time", "lat", "lon"), arr, dict(_ATTRS[var]))
    ds = xr.Dataset(
        data_vars,
        coords={
            "time": ("time", spec.times),
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
            "cell_area": (("lat", "lon"), _cell_area(lat, lon, spec.resolution), {"units": "m2"}),
        },
    )
    ds.attrs.update(
        gridscope_source=f"virtual:{spec.freq}:{spec.nsteps}:{spec.resolution}:{spec.seed}",
        gridscope_climatology=False,
        title="gridscope synthetic ERA5-like dataset (virtual)",
    )
    return ds


def _virtual_block(
    spec: SyntheticSpec, var: str, time_chunk: int, block_id: tuple[int, ...] = (0,)
) -> np.ndarray:
    t0 = block_id[0] * time_chunk
    steps = np.arange(t0, min(t0 + time_chunk, spec.nsteps), dtype=np.int64)
    return synthetic_field(spec, var, steps, spec.lat, spec.lon)


def _raw_coords(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """ERA5 raw layout: latitude descending 90..-90, longitude 0..360-res."""
    return spec.lat[::-1].copy(), spec.resolution * np.arange(spec.nlon)


def write_demo_store(
    spec: SyntheticSpec,
    path: str | Path,
    *,
    time_chunk: int = 1,
    batch_steps: int = 16,
    progress: Callable[[int, int], None] | bool = True,
) -> Path:
    """Write the dataset as a zarr v3 store in ERA5's raw layout, resumably.

    Steps already written (recorded in ``<path>.demo-progress``) are skipped when
    the same spec is written again to the same path. Chunks are one time step by the
    whole globe (ERA5's map-friendly layout), blosc-lz4 with byte shuffle.
    """
    import zarr

    path = Path(path)
    lat, lon = _raw_coords(spec)
    marker = path.with_name(path.name + ".demo-progress")
    spec_text = repr(spec)
    done_steps = 0
    if marker.exists() and marker.read_text().split("\n", 1)[0] == spec_text:
        done_steps = int(marker.read_text().split("\n")[1])
    else:
        if path.exists():
            import shutil

            shutil.rmtree(path)
        template = xr.Dataset(
            {
                var: (
                    ("time", "latitude", "longitude"),
                    dsa.zeros(
                        (spec.nsteps, lat.size, lon.size),
                        chunks=(time_chunk, lat.size, lon.size),
                        dtype="float32",
                    ),
                    dict(_ATTRS[var]),
                )
                for var in spec.variables
            },
            coords={
                "time": ("time", spec.times, {"standard_name": "time", "axis": "T"}),
                "latitude": (
                    "latitude",
                    lat,
                    {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"},
                ),
                "longitude": (
                    "longitude",
                    lon,
                    {"units": "degrees_east", "standard_name": "longitude", "axis": "X"},
                ),
            },
            attrs={
                "title": "gridscope synthetic ERA5-like dataset",
                "Conventions": "CF-1.8",
                "source": f"pipelines.synthetic {spec_text}",
            },
        )
        from zarr.codecs import BloscCodec

        encoding = {
            var: {
                "compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
                "fill_value": np.float32("nan"),
            }
            for var in spec.variables
        }
        encoding["time"] = {"units": f"hours since {spec.start}", "dtype": "int64"}
        template.to_zarr(
            path, mode="w", compute=False, zarr_format=3, encoding=encoding, consolidated=False
        )
        marker.write_text(f"{spec_text}\n0\n")
    group = zarr.open_group(path, mode="r+")
    batch = max(time_chunk, (batch_steps // time_chunk) * time_chunk)
    started = _time.perf_counter()
    for t0 in range(done_steps, spec.nsteps, batch):
        t1 = min(t0 + batch, spec.nsteps)
        steps = np.arange(t0, t1)
        for var in spec.variables:
            group[var][t0:t1] = synthetic_field(spec, var, steps, lat, lon)
        marker.write_text(f"{spec_text}\n{t1}\n")
        _report(progress, t1, spec.nsteps, spec.step_bytes * (t1 - done_steps), started)
    return path


def _report(
    progress: Callable[[int, int], None] | bool, done: int, total: int, nbytes: int, started: float
) -> None:
    if callable(progress):
        progress(done, total)
    elif progress:
        elapsed = max(_time.perf_counter() - started, 1e-9)
        width = 30
        filled = int(width * done / total)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} steps "
            f"{nbytes / 1e6 / elapsed:7.1f} MB/s"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
