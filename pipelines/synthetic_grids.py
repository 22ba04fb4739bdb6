"""Synthetic non-regular grids with deterministic fields: tests and benchmarks at scale.

Two grid families, both written as raw files that ``data_catalog.open_dataset``
normalises through its grid model (`data_catalog.grid`):

- `tripolar_like_grid`: a curvilinear ocean-model grid ``(y, x)`` that is a regular
  lon/lat grid south of ``fold_lat`` and, north of it, is tilted smoothly so that the
  grid's north pole sits over land at ``(pole_lon, 90 - pole_tilt)`` (a displaced pole,
  as in bipolar/tripolar grids; the cells stay a continuous curvilinear mesh). Corners
  come from the same mapping at half indices, so the stored bounds and true spherical
  areas are exact for these polygons.
- `icosahedral_cells`: an unstructured polygon mesh of ``20 n^2`` spherical triangles
  (each face of an icosahedron cut into ``n^2`` triangles and projected onto the sphere,
  as ICON's grids), with vertex lon/lat per cell (ICON ``clon_vertices``) and true
  spherical areas; the benchmark's unstructured store.
- `fibonacci_cells`: an unstructured point cloud of ``n`` cells on the Fibonacci sphere
  lattice, each cell representing the same area ``4 pi R^2 / n`` (the lattice's
  construction: points at the centres of ``n`` equal-area latitude bands), as CAM-SE's
  ``ncol`` or a mesh's cell centres without polygons.

Values are a pure function of (seed, step, lon, lat): a latitude profile, a seasonal
cycle, moving large-scale waves and fixed per-cell noise, NaN over a fixed "land" mask
(the field is SST-like), so the same numbers come out whatever the chunking.
"""

from __future__ import annotations

import sys
import time as _time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from data_catalog.grid import EARTH_RADIUS_M, spherical_polygon_area

__all__ = [
    "GridField",
    "curvilinear_dataset",
    "fibonacci_cells",
    "grid_field",
    "icosahedral_cells",
    "mesh_dataset",
    "tripolar_like_grid",
    "unstructured_dataset",
    "write_grid_store",
]

_ATTRS = {
    "units": "K",
    "long_name": "Sea surface temperature",
    "standard_name": "sea_surface_temperature",
}


def _tilt(lon: np.ndarray, lat: np.ndarray, angle: np.ndarray, pole_lon: float):
    """Rotate points towards ``pole_lon`` by ``angle`` degrees (about the axis through
    the equator 90 degrees east of ``pole_lon``), returned as (lon, lat) degrees."""
    lam = np.radians(lon - pole_lon)
    phi = np.radians(lat)
    x, y, z = np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)
    a = np.radians(angle)
    # rotating about the y axis moves the north pole towards +x (lon = pole_lon)
    x2 = x * np.cos(a) + z * np.sin(a)
    z2 = -x * np.sin(a) + z * np.cos(a)
    out_lat = np.degrees(np.arcsin(np.clip(z2, -1.0, 1.0)))
    out_lon = np.degrees(np.arctan2(y, x2)) + pole_lon
    return (out_lon + 180.0) % 360.0 - 180.0, out_lat


def _tripolar_points(
    i: np.ndarray,
    j: np.ndarray,
    nx: int,
    ny: int,
    south: float,
    fold_lat: float,
    pole_lon: float,
    pole_tilt: float,
):
    """Geographic positions of fractional grid indices (i along x, j along y)."""
    lon = -180.0 + (i / nx) * 360.0
    lat = south + (j / ny) * (90.0 - south)
    s = np.clip((lat - fold_lat) / (90.0 - fold_lat), 0.0, 1.0) ** 2
    return _tilt(lon, lat, pole_tilt * s, pole_lon)


def tripolar_like_grid(
    nx: int,
    ny: int,
    *,
    south: float = -80.0,
    fold_lat: float = 50.0,
    pole_lon: float = -100.0,
    pole_tilt: float = 25.0,
):
    """Centres, corner bounds and true areas of a tripolar-like curvilinear grid.

    Returns
    -------
    tuple
        ``lon, lat`` (ny, nx) degrees, ``lon_bounds, lat_bounds`` (ny, nx, 4) degrees
        (counter-clockwise corners) and ``area`` (ny, nx) m^2 (spherical polygons).
    """
    jj, ii = np.meshgrid(np.arange(ny) + 0.5, np.arange(nx) + 0.5, indexing="ij")
    args = (nx, ny, south, fold_lat, pole_lon, pole_tilt)
    lon, lat = _tripolar_points(ii, jj, *args)
    cj, ci = np.meshgrid(np.arange(ny + 1.0), np.arange(nx + 1.0), indexing="ij")
    clon, clat = _tripolar_points(ci, cj, *args)
    blon = np.stack([clon[:-1, :-1], clon[:-1, 1:], clon[1:, 1:], clon[1:, :-1]], -1)
    blat = np.stack([clat[:-1, :-1], clat[:-1, 1:], clat[1:, 1:], clat[1:, :-1]], -1)
    area = spherical_polygon_area(blon, blat, lon, lat)
    return lon, lat, blon, blat, area


def fibonacci_cells(n: int):
    """Centres (lon, lat degrees) and areas (m^2, all equal) of ``n`` Fibonacci-lattice
    cells; cell ``k`` is in latitude band ``k`` of ``n`` equal-area bands (south first)."""
    k = np.arange(n, dtype="float64")
    z = -1.0 + (2.0 * k + 1.0) / n
    golden = (1.0 + 5.0**0.5) / 2.0
    lon = (np.degrees(2.0 * np.pi * k / golden) + 180.0) % 360.0 - 180.0
    lat = np.degrees(np.arcsin(z))
    area = np.full(n, 4.0 * np.pi * EARTH_RADIUS_M**2 / n)
    return lon, lat, area


_PHI = (1.0 + 5.0**0.5) / 2.0
_ICO_VERTICES = np.array(
    [
        (-1, _PHI, 0), (1, _PHI, 0), (-1, -_PHI, 0), (1, -_PHI, 0),
        (0, -1, _PHI), (0, 1, _PHI), (0, -1, -_PHI), (0, 1, -_PHI),
        (_PHI, 0, -1), (_PHI, 0, 1), (-_PHI, 0, -1), (-_PHI, 0, 1),
    ]
)  # fmt: skip
_ICO_FACES = np.array(
    [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
        (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
        (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
        (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]
)  # fmt: skip


def _to_lonlat(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xyz = xyz / np.linalg.norm(xyz, axis=-1, keepdims=True)
    lon = np.degrees(np.arctan2(xyz[..., 1], xyz[..., 0]))
    lat = np.degrees(np.arcsin(np.clip(xyz[..., 2], -1.0, 1.0)))
    return (lon + 180.0) % 360.0 - 180.0, lat


def icosahedral_cells(n: int):
    """Centres, vertices and true areas of an icosahedral triangle mesh of ``20 n^2`` cells.

    Each icosahedron face ``(A, B, C)`` is cut into ``n^2`` triangles with corners at
    ``A + (B - A) i / n + (C - A) j / n`` (``n (n + 1) / 2`` pointing like the face,
    ``n (n - 1) / 2`` the other way), every corner projected onto the sphere; a cell's
    centre is its corners' mean projected onto the sphere (inside the triangle).

    Returns
    -------
    tuple
        ``lon, lat`` (cells,) degrees, ``lon_vertices, lat_vertices`` (cells, 3) degrees
        (counter-clockwise seen from outside) and ``area`` (cells,) m^2 (spherical
        triangles).
    """
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    up = i + j <= n - 1
    down = i + j <= n - 2
    iu, ju, idn, jdn = i[up], j[up], i[down], j[down]
    # corners as (i, j) index pairs: up (i,j) (i+1,j) (i,j+1); down (i+1,j) (i+1,j+1) (i,j+1)
    corners_i = np.concatenate(
        [np.stack([iu, iu + 1, iu], 1), np.stack([idn + 1, idn + 1, idn], 1)]
    )
    corners_j = np.concatenate(
        [np.stack([ju, ju, ju + 1], 1), np.stack([jdn, jdn + 1, jdn + 1], 1)]
    )
    v = _ICO_VERTICES / np.linalg.norm(_ICO_VERTICES, axis=1, keepdims=True)
    parts = []
    for a, b, c in _ICO_FACES:
        xyz = (
            v[a]
            + (v[b] - v[a]) * (corners_i[..., None] / n)
            + (v[c] - v[a]) * (corners_j[..., None] / n)
        )
        parts.append(xyz / np.linalg.norm(xyz, axis=-1, keepdims=True))
    corners = np.concatenate(parts)  # (cells, 3, 3)
    lon, lat = _to_lonlat(corners.mean(axis=1))
    vlon, vlat = _to_lonlat(corners)
    area = spherical_polygon_area(vlon, vlat, lon, lat)
    return lon, lat, vlon, vlat, area


def _land(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """A fixed blobby "land" mask (a few continents and Antarctica)."""
    lam, phi = np.radians(lon), np.radians(lat)
    blobs = np.sin(2 * lam + 0.5) * np.cos(3 * phi) + 0.6 * np.sin(3 * lam - 1.0) * np.sin(2 * phi)
    return (blobs > 0.9) | (lat < -72.0)


class GridField:
    """The synthetic SST of cells with centres ``lon``/``lat``, step by step.

    The per-cell terms (latitude profile, wave bases, noise, land mask) are computed
    once; a step then costs a few multiply-adds per cell (``sin(a + p)`` expanded as
    ``sin a cos p + cos a sin p``), so a 6.5 M-cell step takes well under a second.
    """

    def __init__(self, lon: np.ndarray, lat: np.ndarray, seed: int = 0):
        lam, phi = np.radians(lon), np.radians(lat)
        self.seed = seed
        self.base = 273.15 + 28.0 * np.cos(phi) ** 2 - 2.0
        self.season = 3.0 * np.sin(phi)
        self.s3, self.c3 = np.sin(3 * lam), np.cos(3 * lam)
        self.s2, self.c2 = np.sin(2 * phi), np.cos(2 * phi)
        self.s7, self.c7 = np.sin(7 * lam) * np.cos(phi), np.cos(7 * lam) * np.cos(phi)
        # per-cell noise fixed in space, its sign flipping with the step
        noise = np.sin(lon * 12.9898 + lat * 78.233) * 43758.5453
        self.noise = 0.3 * ((noise - np.floor(noise)) - 0.5)
        self.land = _land(lon, lat)

    def __call__(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        p1, p2, p3 = rng.uniform(0, 2 * np.pi, 3)
        season = np.cos(2 * np.pi * step / 365.25)
        # 1.5 sin(3 lam + p1) cos(2 phi + p2) + 0.8 cos(7 lam - p3) cos(phi)
        wave1 = (self.s3 * np.cos(p1) + self.c3 * np.sin(p1)) * (
            self.c2 * np.cos(p2) - self.s2 * np.sin(p2)
        )
        wave2 = self.c7 * np.cos(p3) + self.s7 * np.sin(p3)
        out = self.base + season * self.season + 1.5 * wave1 + 0.8 * wave2
        out += self.noise if step % 2 == 0 else -self.noise
        return np.where(self.land, np.nan, out).astype("float32")


def grid_field(lon: np.ndarray, lat: np.ndarray, step: int, seed: int = 0) -> np.ndarray:
    """The synthetic SST (K, float32) of one step at cells with centres ``lon``/``lat``."""
    return GridField(lon, lat, seed)(step)


def _times(nsteps: int) -> pd.DatetimeIndex:
    return pd.date_range("2000-01-01", periods=nsteps, freq="D")


def curvilinear_dataset(nx: int, ny: int, nsteps: int, seed: int = 0, **grid) -> xr.Dataset:
    """A raw (unnormalised) in-memory curvilinear dataset ``tos(time, j, i)`` with 2-D
    lon/lat, corner bounds and a CF ``cell_measures`` area variable (small sizes)."""
    lon, lat, blon, blat, area = tripolar_like_grid(nx, ny, **grid)
    field = GridField(lon, lat, seed)
    data = np.stack([field(t) for t in range(nsteps)])
    return _curvilinear(lon, lat, blon, blat, area, data, nsteps)


def _curvilinear(lon, lat, blon, blat, area, data, nsteps) -> xr.Dataset:
    ds = xr.Dataset(
        {
            "tos": (
                ("time", "j", "i"),
                data,
                _ATTRS | {"coordinates": "lon lat", "cell_measures": "area: areacello"},
            ),
            "areacello": (("j", "i"), area, {"units": "m2", "standard_name": "cell_area"}),
        },
        coords={
            "time": _times(nsteps),
            "lon": (
                ("j", "i"),
                lon,
                {"units": "degrees_east", "standard_name": "longitude", "bounds": "lon_bnds"},
            ),
            "lat": (
                ("j", "i"),
                lat,
                {"units": "degrees_north", "standard_name": "latitude", "bounds": "lat_bnds"},
            ),
            "lon_bnds": (("j", "i", "nv"), blon),
            "lat_bnds": (("j", "i", "nv"), blat),
        },
    )
    return ds


def unstructured_dataset(ncells: int, nsteps: int, seed: int = 0) -> xr.Dataset:
    """A raw in-memory point-cloud dataset ``tos(time, ncells)`` (Fibonacci cells)."""
    lon, lat, area = fibonacci_cells(ncells)
    field = GridField(lon, lat, seed)
    data = np.stack([field(t) for t in range(nsteps)])
    return _unstructured(lon, lat, area, data, nsteps)


def mesh_dataset(n: int, nsteps: int, seed: int = 0) -> xr.Dataset:
    """A raw in-memory ICON-like triangle mesh dataset ``tos(time, ncells)`` with vertex
    lon/lat (`icosahedral_cells`, ``20 n^2`` cells)."""
    lon, lat, vlon, vlat, area = icosahedral_cells(n)
    field = GridField(lon, lat, seed)
    data = np.stack([field(t) for t in range(nsteps)])
    return _unstructured(lon, lat, area, data, nsteps, vlon, vlat)


def _unstructured(lon, lat, area, data, nsteps, vlon=None, vlat=None) -> xr.Dataset:
    ds = _point_cloud(lon, lat, area, data, nsteps)
    if vlon is not None:
        ds = ds.assign_coords(
            clon_vertices=(("ncells", "vertices"), vlon, {"units": "degrees_east"}),
            clat_vertices=(("ncells", "vertices"), vlat, {"units": "degrees_north"}),
        )
        ds["clon"].attrs["bounds"] = "clon_vertices"
        ds["clat"].attrs["bounds"] = "clat_vertices"
    return ds


def _point_cloud(lon, lat, area, data, nsteps) -> xr.Dataset:
    return xr.Dataset(
        {
            "tos": (
                ("time", "ncells"),
                data,
                _ATTRS | {"coordinates": "clon clat", "cell_measures": "area: cell_area"},
            ),
            "cell_area": (("ncells",), area, {"units": "m2", "standard_name": "cell_area"}),
        },
        coords={
            "time": _times(nsteps),
            "clon": (("ncells",), lon, {"units": "degrees_east", "standard_name": "longitude"}),
            "clat": (("ncells",), lat, {"units": "degrees_north", "standard_name": "latitude"}),
        },
    )


def write_grid_store(
    kind: str,
    path: str | Path,
    nsteps: int,
    *,
    shape: tuple[int, ...],
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a curvilinear (``shape=(ny, nx)``), unstructured point-cloud
    (``shape=(ncells,)``, Fibonacci) or triangle-mesh (``kind="mesh"``, ``shape=(n,)``:
    `icosahedral_cells` of ``20 n^2`` cells) zarr v3 store of ``nsteps`` daily steps, one
    step per chunk; reused when complete.

    A ``<name>.complete`` marker beside the store is written last, so an interrupted
    write starts over.
    """
    import zarr

    path = Path(path)
    marker = path.with_name(path.name + ".complete")
    if marker.exists():
        return path
    import dask.array as dsa

    def zeros(cells: tuple[int, ...]):
        return dsa.zeros((nsteps, *cells), dtype="float32", chunks=(1, *cells))

    if kind == "curvilinear":
        ny, nx = shape
        lon, lat, blon, blat, area = tripolar_like_grid(nx, ny)
        ds = _curvilinear(lon, lat, blon, blat, area, zeros(lon.shape), nsteps)
    elif kind == "unstructured":
        (n,) = shape
        lon, lat, area = fibonacci_cells(n)
        ds = _unstructured(lon, lat, area, zeros(lon.shape), nsteps)
    elif kind == "mesh":
        (n,) = shape
        lon, lat, vlon, vlat, area = icosahedral_cells(n)
        ds = _unstructured(lon, lat, area, zeros(lon.shape), nsteps, vlon, vlat)
    else:
        raise ValueError(f"kind must be 'curvilinear', 'unstructured' or 'mesh', not {kind!r}")
    from zarr.codecs import BloscCodec

    encoding = {"tos": {"compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]}}
    ds.to_zarr(path, mode="w", compute=False, zarr_format=3, encoding=encoding, consolidated=False)
    arr = zarr.open_array(path, path="tos", mode="r+")
    field = GridField(lon, lat, seed)
    started = _time.perf_counter()
    for t in range(nsteps):
        arr[t] = field(t)
        if progress:
            rate = (t + 1) / max(_time.perf_counter() - started, 1e-9)
            sys.stderr.write(f"\rwriting {path.name}: {t + 1}/{nsteps} steps ({rate:.1f}/s)")
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    marker.write_text("done\n")
    return path
