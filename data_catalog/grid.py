"""The horizontal grid of a dataset: what its cells are, where they are, how big they are.

This is the one place that says what a dataset's horizontal grid is; selection,
reductions, drawing and exports ask it. Five kinds:

``regular``
    1-D longitude and latitude dimension coordinates (also a rotated pole at 90N and
    ``lat(latitude)`` / ``lon(longitude)`` variables, which normalise to it).
``rotated``
    CF ``rotated_latitude_longitude`` grid mapping: 1-D rotated axes, geographic centres
    from the rotation.
``projected``
    Any other CF grid mapping pyproj's ``CRS.from_cf`` understands (Lambert conformal,
    polar stereographic, transverse Mercator, ...): 1-D projection x/y axes.
``curvilinear``
    2-D longitude and latitude variables on the data's two horizontal dimensions, found
    through the CF ``coordinates`` attribute, ``standard_name`` or degree units (never
    cell bounds, and never a pair only the grid's own variables lie on: a mesh's
    ``(cell, vertex)`` bounds are its polygons, even when a store lost its
    ``coordinates`` attribute in an xarray append).
``unstructured``
    Cells along one dimension with a longitude and latitude per cell (degrees or radians),
    polygons from vertices (ICON ``clon_vertices``, SCRIP ``grid_corner_lon``, UGRID
    ``face_node_connectivity``) or none (a point cloud such as CAM-SE ``ncol``).

Cell areas are true areas on the sphere of radius :data:`EARTH_RADIUS_M`: a CF
``cell_measures`` area variable when present, else spherical polygon areas from the
cell bounds or vertices, else a rotated grid's regular spacing (a rotation keeps areas),
else from neighbouring centres (corners midway between centres, or spherical Voronoi
cells for a point cloud).

:func:`find_grid` reads a raw dataset (used by :mod:`data_catalog.normalise`);
:func:`grid_of` reads the :class:`Grid` back from a normalised dataset or data array.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable
from typing import Any

import numba
import numpy as np
import xarray as xr

__all__ = [
    "EARTH_RADIUS_M",
    "GRID_KINDS",
    "LOOKED_FOR",
    "NATIVE_DIMS",
    "Grid",
    "RawGrid",
    "find_grid",
    "grid_of",
    "spherical_polygon_area",
    "unit_vectors",
]

#: Mean Earth radius (IUGG R1) used for every cell area.
EARTH_RADIUS_M = 6371008.8

#: The grid kinds, in the order they are looked for.
GRID_KINDS = ("regular", "rotated", "projected", "curvilinear", "unstructured")

#: Spatial dimension names of a normalised dataset per kind.
NATIVE_DIMS = {
    "regular": ("lat", "lon"),
    "rotated": ("y", "x"),
    "projected": ("y", "x"),
    "curvilinear": ("y", "x"),
    "unstructured": ("cell",),
}

_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}
_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
_PLAIN_DEGREES = {"degrees", "degree", "deg"}
_RADIANS = {"radian", "radians", "rad"}
_X_STANDARD_NAMES = {"grid_longitude", "projection_x_coordinate", "projection_x_angular_coordinate"}
_Y_STANDARD_NAMES = {"grid_latitude", "projection_y_coordinate", "projection_y_angular_coordinate"}
_LENGTH_TO_M = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0, "km": 1e3}
_LONISH = re.compile(r".*lon.*")
_LATISH = re.compile(r".*lat.*")


@dataclasses.dataclass(frozen=True, eq=False)
class Grid:
    """The horizontal grid of a normalised dataset.

    Attributes
    ----------
    kind
        One of :data:`GRID_KINDS`.
    dims
        The spatial dims of the normalised dataset: ``("lat", "lon")``, ``("y", "x")`` or
        ``("cell",)``.
    lon, lat
        Geographic centres in degrees (lon in [-180, 180)), shaped like the cells (a
        regular grid's 1-D axes are broadcast to ``(lat, lon)``).
    area
        True cell areas on the sphere in m^2, shaped like the cells.
    lon_bounds, lat_bounds
        Cell polygons (shape ``cells + (nv,)``, degrees) when known.
    grid_mapping
        The CF grid-mapping attributes of a rotated or projected grid.
    """

    kind: str
    dims: tuple[str, ...]
    lon: np.ndarray
    lat: np.ndarray
    area: np.ndarray
    lon_bounds: np.ndarray | None = None
    lat_bounds: np.ndarray | None = None
    grid_mapping: dict[str, Any] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of cells along each of :attr:`dims`."""
        return tuple(self.area.shape)

    def unit_vectors(self) -> np.ndarray:
        """Cell centres as unit vectors, shape ``cells + (3,)``."""
        return unit_vectors(self.lon, self.lat)


def grid_of(obj: xr.Dataset | xr.DataArray) -> Grid:
    """The horizontal grid of a normalised dataset or of one of its data variables.

    Parameters
    ----------
    obj
        Output of :func:`data_catalog.open_dataset` (or a selection from it that keeps
        the spatial dims and the ``lon``, ``lat`` and ``cell_area`` coordinates).

    Returns
    -------
    Grid

    Raises
    ------
    ValueError
        When ``obj`` has none of the normalised spatial layouts.
    """
    kind = str(obj.attrs.get("gridscope_grid", "") or "")
    dims = set(obj.dims)
    if kind not in GRID_KINDS:
        if {"lat", "lon"} <= dims:
            kind = "regular"
        elif {"y", "x"} <= dims and "lon" in obj.coords:
            kind = "curvilinear"
        elif "cell" in dims:
            kind = "unstructured"
        else:
            raise ValueError(
                "not a normalised dataset: no (lat, lon), (y, x) or (cell) spatial dims"
            )
    grid_dims = NATIVE_DIMS[kind]
    mapping = obj.attrs.get("gridscope_grid_mapping")
    if kind == "regular":
        lat1 = np.asarray(obj["lat"].values, dtype="float64")
        lon1 = np.asarray(obj["lon"].values, dtype="float64")
        lon, lat = np.meshgrid(_wrap(lon1), lat1)
        area = _area_values(obj, grid_dims, lon.shape)
        return Grid(kind, grid_dims, lon, lat, area)
    lon = np.asarray(obj["lon"].transpose(*grid_dims).values, dtype="float64")
    lat = np.asarray(obj["lat"].transpose(*grid_dims).values, dtype="float64")
    area = _area_values(obj, grid_dims, lon.shape)
    bounds: list[np.ndarray | None] = [None, None]
    if "lon_bounds" in obj.coords and "lat_bounds" in obj.coords:
        bounds = [
            np.asarray(obj[name].transpose(*grid_dims, ...).values, dtype="float64")
            for name in ("lon_bounds", "lat_bounds")
        ]
    return Grid(
        kind,
        grid_dims,
        lon,
        lat,
        area,
        bounds[0],
        bounds[1],
        dict(mapping) if isinstance(mapping, dict) else None,
    )


def _area_values(obj: Any, dims: tuple[str, ...], shape: tuple[int, ...]) -> np.ndarray:
    if "cell_area" not in obj.coords:
        raise ValueError("not a normalised dataset: no 'cell_area' coordinate")
    area = obj["cell_area"]
    return np.broadcast_to(np.asarray(area.transpose(*dims).values, dtype="float64"), shape)


# --- geometry on the sphere ---------------------------------------------------------------


def _wrap(lon: np.ndarray) -> np.ndarray:
    """Longitudes in [-180, 180)."""
    out = np.mod(np.asarray(lon, dtype="float64") + 180.0, 360.0) - 180.0
    out[out >= 180.0] -= 360.0
    return out


def unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Points given in degrees as unit vectors (last axis x, y, z)."""
    lam = np.radians(np.asarray(lon, dtype="float64"))
    phi = np.radians(np.asarray(lat, dtype="float64"))
    cos_phi = np.cos(phi)
    return np.stack([cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)], axis=-1)


def _to_lonlat(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norm = np.linalg.norm(vec, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = vec / norm[..., None]
    lat = np.degrees(np.arcsin(np.clip(unit[..., 2], -1.0, 1.0)))
    lon = np.degrees(np.arctan2(unit[..., 1], unit[..., 0]))
    return _wrap(lon), lat


def spherical_polygon_area(
    lon_bounds: np.ndarray,
    lat_bounds: np.ndarray,
    lon: np.ndarray | None = None,
    lat: np.ndarray | None = None,
    radius: float = EARTH_RADIUS_M,
) -> np.ndarray:
    """Areas of polygons with great-circle edges on a sphere.

    Parameters
    ----------
    lon_bounds, lat_bounds
        Vertices in degrees, shape ``cells + (nv,)``, in order around each polygon
        (either direction). Repeated vertices (SCRIP / UGRID padding) add nothing.
    lon, lat
        A point inside each polygon (its centre) for the fan of triangles; the mean of
        the vertices when not given. The polygon must be star-shaped about it.
    radius
        Sphere radius in metres.

    Returns
    -------
    numpy.ndarray
        Areas in m^2, shape ``cells``; NaN where a vertex is missing.
    """
    lon_bounds = np.asarray(lon_bounds, dtype="float64")
    lat_bounds = np.asarray(lat_bounds, dtype="float64")
    shape, nv = lon_bounds.shape[:-1], lon_bounds.shape[-1]
    flat_lon = np.ascontiguousarray(lon_bounds.reshape(-1, nv))
    flat_lat = np.ascontiguousarray(lat_bounds.reshape(-1, nv))
    has_centre = lon is not None and lat is not None
    if lon is not None and lat is not None:
        clon = np.ascontiguousarray(np.broadcast_to(lon, shape), "float64").ravel()
        clat = np.ascontiguousarray(np.broadcast_to(lat, shape), "float64").ravel()
    else:
        clon = clat = np.zeros(flat_lon.shape[0])
    return _fan_excess(flat_lon, flat_lat, clon, clat, has_centre).reshape(shape) * radius**2


@numba.njit(cache=True, nogil=True)
def _fan_excess(
    lon_b: np.ndarray, lat_b: np.ndarray, clon: np.ndarray, clat: np.ndarray, has_centre: bool
) -> np.ndarray:  # pragma: no cover  (compiled)
    """Spherical excess (steradians) of polygons ``(n, nv)``: signed triangles fanned from
    the centre (or the vertices' mean), each by Van Oosterom & Strackee's
    ``tan(E/2) = a.(b x c) / (1 + a.b + b.c + c.a)``; one pass, no temporaries."""
    n, nv = lon_b.shape
    deg = np.pi / 180.0
    out = np.empty(n)
    v = np.empty((nv, 3))
    for i in range(n):
        for k in range(nv):
            cos_lat = np.cos(lat_b[i, k] * deg)
            v[k, 0] = cos_lat * np.cos(lon_b[i, k] * deg)
            v[k, 1] = cos_lat * np.sin(lon_b[i, k] * deg)
            v[k, 2] = np.sin(lat_b[i, k] * deg)
        if has_centre:
            cos_lat = np.cos(clat[i] * deg)
            ax = cos_lat * np.cos(clon[i] * deg)
            ay = cos_lat * np.sin(clon[i] * deg)
            az = np.sin(clat[i] * deg)
        else:
            ax, ay, az = v[:, 0].sum(), v[:, 1].sum(), v[:, 2].sum()
            norm = np.sqrt(ax * ax + ay * ay + az * az)
            ax, ay, az = ax / norm, ay / norm, az / norm
        total = 0.0
        for k in range(nv):
            bx, by, bz = v[k, 0], v[k, 1], v[k, 2]
            m = (k + 1) % nv
            cx, cy, cz = v[m, 0], v[m, 1], v[m, 2]
            triple = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
            denom = 1.0 + ax * bx + ay * by + az * bz + bx * cx + by * cy + bz * cz
            denom += cx * ax + cy * ay + cz * az
            total += 2.0 * np.arctan2(triple, denom)
        out[i] = abs(total)
    return out


# --- finding the grid of a raw dataset ------------------------------------------------------


@dataclasses.dataclass
class RawGrid:
    """A non-regular horizontal grid found in a raw (not yet normalised) dataset.

    Attributes
    ----------
    kind
        ``"regular"`` (only for a grid mapping whose geographic axes are separable, such
        as a rotation with its pole at 90N: ``lon``/``lat`` are then the 1-D geographic
        axes replacing the file's x/y axes), or a non-regular kind.
    dims
        The file's spatial dims, in the normalised order ``(y, x)`` or ``(cell,)``.
    lon, lat, area
        Geographic centres (degrees, lon in [-180, 180)) and areas (m^2), shaped ``dims``.
    lon_bounds, lat_bounds
        Polygons ``dims + (nv,)`` in degrees, or None.
    grid_mapping
        CF grid-mapping attributes (rotated / projected).
    drop
        Variables of the file that this description replaces (lon/lat, bounds, vertices,
        grid-mapping and area variables).
    """

    kind: str
    dims: tuple[Hashable, ...]
    lon: np.ndarray
    lat: np.ndarray
    area: np.ndarray | None = None
    lon_bounds: np.ndarray | None = None
    lat_bounds: np.ndarray | None = None
    grid_mapping: dict[str, Any] | None = None
    drop: tuple[Hashable, ...] = ()


#: What :func:`find_grid` looks for, for the message when nothing fits.
LOOKED_FOR = (
    "1-D longitude/latitude dimension coordinates (units degrees_east/degrees_north, "
    "standard_name, axis X/Y or a lon/lat-like name), a CF grid_mapping with 1-D x/y axes, "
    "2-D longitude/latitude variables on the data's dimensions (coordinates attribute, "
    "standard_name or degree units), or a longitude/latitude per cell along one dimension "
    "(ICON, SCRIP, UGRID, point clouds)"
)


def find_grid(ds: xr.Dataset, source: str) -> RawGrid | None:
    """Find a grid-mapped, curvilinear or unstructured horizontal grid in a raw dataset.

    Parameters
    ----------
    ds
        Dataset as opened (``decode_times=False``); only coordinates and small grid
        variables are read.
    source
        For error messages.

    Returns
    -------
    RawGrid or None
        None when the dataset should be read as a regular grid of 1-D longitude and
        latitude axes (the caller's own detection then applies).

    Raises
    ------
    DatasetOpenError
        When a grid is recognised but cannot be used (e.g. a grid mapping pyproj does not
        know, with no 2-D longitude/latitude beside it).
    """
    mapped = _grid_mapping(ds)
    if mapped is not None:
        found = _mapped_grid(ds, source, *mapped)
        if found is not None:
            return found
    if _regular_axes_present(ds):
        return None
    curvilinear = _curvilinear_grid(ds, source)
    if curvilinear is not None:
        if _separable(curvilinear.lon, curvilinear.lat):
            # a lat-lon grid stored as 2-D lon/lat: the regular path (and its stores)
            ydim, xdim = curvilinear.dims
            lon, lat = _continuous(curvilinear.lon[0, :]), curvilinear.lat[:, 0]
            return RawGrid("regular", (ydim, xdim), lon, lat, drop=curvilinear.drop)
        return curvilinear
    return _unstructured_grid(ds, source)


# --- small attribute tests ---------------------------------------------------------------


def _units(var: xr.Variable | xr.DataArray) -> str:
    return str(var.attrs.get("units", "")).strip().lower().replace(" ", "_")


def _role(name: Hashable, var: Any, plain_ok: bool) -> str | None:
    """'lon', 'lat' or None for a variable, by standard_name, units, then name."""
    std = str(var.attrs.get("standard_name", "")).lower()
    units = _units(var)
    if std == "longitude" or units in _LON_UNITS:
        return "lon"
    if std == "latitude" or units in _LAT_UNITS:
        return "lat"
    if plain_ok and (units in _PLAIN_DEGREES or units in _RADIANS):
        lname = str(name).lower()
        if _LONISH.fullmatch(lname):
            return "lon"
        if _LATISH.fullmatch(lname):
            return "lat"
    return None


def _degrees(var: Any) -> np.ndarray:
    values = np.asarray(var.values, dtype="float64")
    if _units(var) in _RADIANS:
        values = np.degrees(values)
    return values


def _data_dims(ds: xr.Dataset) -> list[set[Hashable]]:
    return [set(v.dims) for v in ds.data_vars.values() if v.ndim >= 1]


def _referenced_coordinates(ds: xr.Dataset) -> set[Hashable]:
    names: set[Hashable] = set()
    for var in ds.variables.values():
        for key in ("coordinates",):
            text = var.attrs.get(key) or var.encoding.get(key)
            if isinstance(text, str):
                names.update(text.split())
    return names


def _regular_axes_present(ds: xr.Dataset) -> bool:
    """1-D lon and lat dimension coordinates (by units or standard_name) on two dims."""
    roles = {
        _role(name, ds[name], plain_ok=False)
        for name in ds.dims
        if name in ds.variables and ds[name].ndim == 1
    }
    return {"lon", "lat"} <= roles


# --- grid mappings -----------------------------------------------------------------------


def _grid_mapping(ds: xr.Dataset) -> tuple[Hashable, dict[str, Any], set[Hashable]] | None:
    """(name, attrs, dims of the data using it) of the first CF grid mapping."""
    for var in ds.data_vars.values():
        ref = var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
        if isinstance(ref, str) and ref.strip():
            name = ref.split(":")[0].split()[0]
            if name in ds.variables and "grid_mapping_name" in ds[name].attrs:
                return name, dict(ds[name].attrs), set(var.dims)
    for gm_name, gm_var in ds.variables.items():
        if "grid_mapping_name" in gm_var.attrs:
            dims = set().union(*_data_dims(ds)) if ds.data_vars else set()
            return gm_name, dict(gm_var.attrs), dims
    return None


def _native_axis(ds: xr.Dataset, dims: set[Hashable], names: set[str], axis: str) -> Hashable:
    candidates = [d for d in ds.dims if d in dims and d in ds.variables and ds[d].ndim == 1]
    for test in (
        lambda d: str(ds[d].attrs.get("standard_name", "")) in names,
        lambda d: str(ds[d].attrs.get("axis", "")).upper() == axis,
        lambda d: str(d).lower() in ({"rlon", "x", "xc"} if axis == "X" else {"rlat", "y", "yc"}),
    ):
        for d in candidates:
            if test(d):
                return d
    return None


def _mapped_grid(
    ds: xr.Dataset, source: str, name: Hashable, attrs: dict[str, Any], dims: set[Hashable]
) -> RawGrid | None:
    from data_catalog.errors import DatasetOpenError

    gm_name = str(attrs.get("grid_mapping_name", ""))
    if gm_name == "latitude_longitude":
        return None
    xdim = _native_axis(ds, dims, _X_STANDARD_NAMES, "X")
    ydim = _native_axis(ds, dims, _Y_STANDARD_NAMES, "Y")
    if xdim is None or ydim is None or xdim == ydim:
        # Without 1-D native axes the 2-D lon/lat (if any) describe the grid.
        curvilinear = _curvilinear_grid(ds, source)
        if curvilinear is not None:
            curvilinear.grid_mapping = _plain_attrs(attrs)
            curvilinear.drop = (*curvilinear.drop, name)
        return curvilinear
    try:
        import pyproj

        crs = pyproj.CRS.from_cf(attrs)
        # a rotated pole is a derived geographic CRS: its base is the geographic one
        target = crs.source_crs if crs.is_derived and not crs.is_projected else crs.geodetic_crs
        transformer = pyproj.Transformer.from_crs(crs, target, always_xy=True)
    except Exception as exc:  # noqa: BLE001  (pyproj's errors are many; the message is what matters)
        raise DatasetOpenError(
            f"{source}: grid mapping {name!s} ({gm_name or 'no grid_mapping_name'}) is not "
            f"understood by pyproj ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    rotated = gm_name == "rotated_latitude_longitude"
    scale_x = 1.0 if rotated else _length_scale(ds[xdim], source)
    scale_y = 1.0 if rotated else _length_scale(ds[ydim], source)
    x = np.asarray(ds[xdim].values, dtype="float64")
    y = np.asarray(ds[ydim].values, dtype="float64")
    xx, yy = np.meshgrid(x * scale_x, y * scale_y)
    lon, lat = transformer.transform(xx, yy)
    lon, lat = _wrap(np.asarray(lon)), np.asarray(lat, dtype="float64")
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise DatasetOpenError(
            f"{source}: grid mapping {name!s} ({gm_name}) gives no geographic position for "
            f"some cells of {ydim!s}/{xdim!s}; check the mapping's parameters and axis units"
        )
    drop = (name, *_bounds_names(ds, xdim), *_bounds_names(ds, ydim))
    # 2-D lon/lat beside the native axes (as in CORDEX files) are computed here instead
    for pair in _pairs(ds, 2):
        if set(ds[pair[0]].dims) == {xdim, ydim}:
            drop = (*drop, *pair, *_bounds_names(ds, pair[0]), *_bounds_names(ds, pair[1]))
    if _separable(lon, lat):
        return RawGrid("regular", (ydim, xdim), _continuous(lon[0, :]), lat[:, 0], drop=drop)
    xe = _edges(ds, xdim, x) * scale_x
    ye = _edges(ds, ydim, y) * scale_y
    # corners counter-clockwise in native coordinates: (W,S), (E,S), (E,N), (W,N)
    cx = np.stack([xe[:-1][None, :], xe[1:][None, :], xe[1:][None, :], xe[:-1][None, :]], -1)
    cy = np.stack([ye[:-1][:, None], ye[:-1][:, None], ye[1:][:, None], ye[1:][:, None]], -1)
    cx, cy = np.broadcast_arrays(cx, cy)
    blon, blat = transformer.transform(cx, cy)
    blon, blat = _wrap(np.asarray(blon)), np.asarray(blat, dtype="float64")
    if rotated:
        # A rotation keeps areas: the rotated grid's spacing gives them exactly.
        sines = np.abs(np.diff(np.sin(np.radians(np.clip(ye, -90.0, 90.0)))))
        area = EARTH_RADIUS_M**2 * sines[:, None] * np.abs(np.radians(np.diff(xe)))[None, :]
    else:
        area = spherical_polygon_area(blon, blat, lon, lat)
    return RawGrid(
        "rotated" if rotated else "projected",
        (ydim, xdim),
        lon,
        lat,
        area,
        blon,
        blat,
        _plain_attrs(attrs),
        drop,
    )


def _plain_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes as plain Python values (numpy scalars and arrays made lists/floats)."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, np.ndarray):
            out[key] = value.tolist()
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out


def _length_scale(var: Any, source: str) -> float:
    from data_catalog.errors import DatasetOpenError

    units = _units(var) or "m"
    if units not in _LENGTH_TO_M:
        raise DatasetOpenError(
            f"{source}: projection axis {var.name!s} has units {units!r}; "
            f"allowed: {', '.join(sorted(_LENGTH_TO_M))}"
        )
    return _LENGTH_TO_M[units]


def _continuous(lon: np.ndarray) -> np.ndarray:
    """A row of longitudes without jumps of 360 (the regular path measures cell widths
    between neighbours, then wraps)."""
    return np.degrees(np.unwrap(np.radians(lon)))


def _separable(lon: np.ndarray, lat: np.ndarray) -> bool:
    """Whether lat depends on the row only and lon on the column only (a regular grid)."""
    dlon = np.abs(((lon - lon[:1, :]) + 180.0) % 360.0 - 180.0)
    return bool(np.all(np.abs(lat - lat[:, :1]) < 1e-6) and np.all(dlon < 1e-6))


def _bounds_names(ds: xr.Dataset, name: Hashable) -> list[Hashable]:
    names: list[Hashable] = []
    for key in ("bounds", "edges"):
        ref = ds[name].attrs.get(key)
        if isinstance(ref, str) and ref in ds.variables:
            names.append(ref)
    for suffix in ("_bnds", "_bounds", "_edges", "_vertices"):
        if f"{name}{suffix}" in ds.variables:
            names.append(f"{name}{suffix}")
    return names


def _bounds_variables(ds: xr.Dataset) -> set[Hashable]:
    """Names of the dataset's cell-bounds variables: named by a variable's ``bounds`` /
    ``edges`` attribute or by a ``_bnds``/``_bounds``/``_edges``/``_vertices`` suffix."""
    names: set[Hashable] = set()
    for name in ds.variables:
        names.update(_bounds_names(ds, name))
    return names


def _edges(ds: xr.Dataset, name: Hashable, values: np.ndarray) -> np.ndarray:
    """n+1 cell edges of a 1-D axis: its bounds variable, else midpoints between centres."""
    n = values.size
    for ref in _bounds_names(ds, name):
        var = ds[ref]
        if var.ndim == 2 and var.dims[0] == name and var.shape[1] == 2:
            b = np.asarray(var.values, dtype="float64")
            return np.concatenate([b[:, 0], b[-1:, 1]])
        if var.ndim == 1 and var.size == n + 1:
            return np.asarray(var.values, dtype="float64")
    if n == 1:
        return np.array([values[0] - 0.5, values[0] + 0.5])
    mid = (values[:-1] + values[1:]) / 2
    return np.concatenate(
        [
            [values[0] - (values[1] - values[0]) / 2],
            mid,
            [values[-1] + (values[-1] - values[-2]) / 2],
        ]
    )


# --- curvilinear -----------------------------------------------------------------------------


def _pairs(ds: xr.Dataset, ndim: int) -> list[tuple[Hashable, Hashable]]:
    """(lon, lat) variable pairs of ``ndim`` dims on the same dims, best first."""
    referenced = _referenced_coordinates(ds)
    bounds = _bounds_variables(ds)
    roles: dict[str, list[Hashable]] = {"lon": [], "lat": []}
    for name, var in ds.variables.items():
        var = _static(var)
        if var.ndim != ndim or (ndim == 1 and name in ds.dims) or name in bounds:
            continue  # bounds are a cell's corners, not a grid of centres
        if not np.issubdtype(var.dtype, np.number):
            continue
        role = _role(name, var, plain_ok=ndim == 1 or name in referenced)
        if role is not None:
            roles[role].append(name)
    # the data a pair describes: not the grid's own lon/lat or bounds (which are data
    # variables when a store lost its ``coordinates`` attribute, e.g. after an xarray
    # append; counted as users, a mesh's (cell, vertex) bounds were taken for a 2-D grid)
    grid_names = {*roles["lon"], *roles["lat"], *bounds}
    data = [name for name in ds.data_vars if name not in grid_names]
    used = [set(ds[name].dims) for name in data if ds[name].ndim >= 1]
    scored = []
    for lo in roles["lon"]:
        for la in roles["lat"]:
            dims = set(_static(ds[lo]).dims)
            if set(_static(ds[la]).dims) != dims:
                continue
            users = sum(dims <= d for d in used)
            if data and users == 0:
                continue
            key = _name_key(lo)
            score = (
                users,
                (lo in referenced) + (la in referenced),
                key == _name_key(la),  # TLONG/TLAT, not TLONG/ULAT
                key.strip("_") in _CENTRE_KEYS,  # cell centres (T points) before corners
            )
            scored.append((score, lo, la))
    scored.sort(key=lambda item: item[0], reverse=True)
    return [(lo, la) for _, lo, la in scored]


#: What is left of a centre longitude's name without "lon" (TLONG, geolon_t, nav_lon...).
_CENTRE_KEYS = {"", "t", "geo_t", "nav", "c", "cell", "center", "centre", "grid_center"}


def _name_key(name: Hashable) -> str:
    key = str(name).lower()
    for word in ("longitude", "latitude", "long", "lon", "lat"):
        key = key.replace(word, "")
    return key


def _static(var: Any) -> Any:
    """A coordinate without a leading time dim (WRF's ``XLONG(Time, y, x)``): its first step."""
    if var.ndim == 3 and "time" in str(var.dims[0]).lower():
        return var[0]
    return var


def _curvilinear_grid(ds: xr.Dataset, source: str) -> RawGrid | None:
    pairs = _pairs(ds, 2)
    if not pairs:
        return None
    lon_name, lat_name = pairs[0]
    lon_var, lat_var = _static(ds[lon_name]), _static(ds[lat_name])
    dims = lon_var.dims
    lon = _wrap(_plausible_lon(source, lon_name, _degrees(lon_var)))
    lat = _degrees(lat_var.transpose(*dims))
    _check_finite(source, lon_name, lon, lat)
    blon, blat, bnames = _vertex_variables(ds, lon_name, lat_name, dims)
    if blon is None or blat is None:
        blon, blat = _corners_from_centres(lon, lat)
    area, area_names = _measured_area(ds, dims, source)
    if area is None:
        area = spherical_polygon_area(blon, blat, lon, lat)
    return RawGrid(
        "curvilinear",
        dims,
        lon,
        lat,
        area,
        blon,
        blat,
        None,
        (lon_name, lat_name, *bnames, *area_names),
    )


def _check_finite(source: str, name: Hashable, lon: np.ndarray, lat: np.ndarray) -> None:
    from data_catalog.errors import DatasetOpenError

    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise DatasetOpenError(
            f"{source}: the cell longitudes/latitudes ({name!s}) have missing values; "
            "gridscope needs a position for every cell"
        )
    if np.nanmax(np.abs(lat)) > 90.0 + 1e-6:
        raise DatasetOpenError(f"{source}: latitudes beside {name!s} are outside -90..90")


def _plausible_lon(source: str, name: Hashable, lon: np.ndarray) -> np.ndarray:
    """``lon`` unchanged, or a refusal when it holds values no longitude has (an
    undeclared fill value such as 9.97e36 at land cells wraps to a made-up position)."""
    from data_catalog.errors import DatasetOpenError

    finite = lon[np.isfinite(lon)]
    if finite.size and np.max(np.abs(finite)) > _MAX_ABS_LON:
        raise DatasetOpenError(
            f"{source}: longitudes {name!s} hold values such as {finite[np.argmax(np.abs(finite))]:g} "
            f"(a fill value without _FillValue?); gridscope needs a position for every cell"
        )
    return lon


#: No longitude in degrees is this far from 0 (grids run over at most -540..720).
_MAX_ABS_LON = 1080.0


def _vertex_variables(
    ds: xr.Dataset, lon_name: Hashable, lat_name: Hashable, dims: tuple[Hashable, ...]
) -> tuple[np.ndarray | None, np.ndarray | None, tuple[Hashable, ...]]:
    """Cell polygons from bounds/vertex variables: CF bounds, ICON vertices, SCRIP corners."""
    lon_refs = _bounds_names(ds, lon_name)
    lat_refs = _bounds_names(ds, lat_name)
    if "grid_corner_lon" in ds.variables and "grid_corner_lat" in ds.variables:
        lon_refs.append("grid_corner_lon")
        lat_refs.append("grid_corner_lat")
    for lo, la in zip(lon_refs, lat_refs, strict=False):
        blo, bla = ds[lo], ds[la]
        if blo.ndim != len(dims) + 1 or blo.dims[: len(dims)] != dims or blo.shape != bla.shape:
            continue
        blon = _degrees(blo) if _units(blo) else _degrees_like(blo, ds[lon_name])
        blat = _degrees(bla) if _units(bla) else _degrees_like(bla, ds[lat_name])
        if np.all(np.isfinite(blon)) and np.all(np.isfinite(blat)):
            extra: tuple[Hashable, ...] = ()
            if lo == "grid_corner_lon":  # SCRIP's other grid descriptors are not data
                extra = tuple(n for n in _SCRIP_DESCRIPTORS if n in ds.variables)
            return _wrap(blon), blat, (lo, la, *extra)
    return None, None, ()


#: SCRIP grid-file variables beside the centres and corners (a mask, the logical shape,
#: areas in steradians); they describe the grid, they are not variables to show.
_SCRIP_DESCRIPTORS = ("grid_imask", "grid_dims", "grid_area")


def _degrees_like(var: Any, centre: Any) -> np.ndarray:
    """Vertices without units are in the units of their centres."""
    values = np.asarray(var.values, dtype="float64")
    return np.degrees(values) if _units(centre) in _RADIANS else values


def _corners_from_centres(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners midway between neighbouring centres (outer ones extrapolated), (ny, nx, 4)."""
    vec = unit_vectors(lon, lat)
    ny, nx = lon.shape
    pad = np.empty((ny + 2, nx + 2, 3))
    pad[1:-1, 1:-1] = vec
    if nx > 1:
        pad[1:-1, 0] = 2 * vec[:, 0] - vec[:, 1]
        pad[1:-1, -1] = 2 * vec[:, -1] - vec[:, -2]
    else:
        pad[1:-1, 0] = pad[1:-1, -1] = vec[:, 0]
    if ny > 1:
        pad[0] = 2 * pad[1] - pad[2]
        pad[-1] = 2 * pad[-2] - pad[-3]
    else:
        pad[0] = pad[-1] = pad[1]
    corner = (pad[:-1, :-1] + pad[1:, :-1] + pad[:-1, 1:] + pad[1:, 1:]) / 4  # (ny+1, nx+1)
    clon, clat = _to_lonlat(corner)
    blon = np.stack([clon[:-1, :-1], clon[:-1, 1:], clon[1:, 1:], clon[1:, :-1]], -1)
    blat = np.stack([clat[:-1, :-1], clat[:-1, 1:], clat[1:, 1:], clat[1:, :-1]], -1)
    return blon, blat


def _measured_area(
    ds: xr.Dataset, dims: tuple[Hashable, ...], source: str
) -> tuple[np.ndarray | None, tuple[Hashable, ...]]:
    """Areas from a CF ``cell_measures: area: NAME`` variable of the file, in m^2."""
    for var in ds.data_vars.values():
        text = var.attrs.get("cell_measures") or var.encoding.get("cell_measures")
        if not isinstance(text, str):
            continue
        match = re.search(r"area:\s*(\S+)", text)
        if not match or match.group(1) not in ds.variables:
            continue
        name = match.group(1)
        area_var = ds[name]
        if set(area_var.dims) != set(dims):
            continue
        values = np.asarray(area_var.transpose(*dims).values, dtype="float64")
        units = _units(area_var)
        if "rad" in units or units in ("sr", "steradian", "steradians"):
            values = values * EARTH_RADIUS_M**2
        elif units in ("km2", "km^2", "km**2"):
            values = values * 1e6
        if np.all(np.isfinite(values)) and np.all(values >= 0):
            return values, (name,)
    return None, ()


# --- unstructured ------------------------------------------------------------------------------


def _unstructured_grid(ds: xr.Dataset, source: str) -> RawGrid | None:
    ugrid = _ugrid_faces(ds, source)
    if ugrid is not None:
        return ugrid
    pairs = _pairs(ds, 1)
    if not pairs:
        return None
    lon_name, lat_name = pairs[0]
    (dim,) = ds[lon_name].dims
    lon = _wrap(_plausible_lon(source, lon_name, _degrees(ds[lon_name])))
    lat = _degrees(ds[lat_name])
    _check_finite(source, lon_name, lon, lat)
    blon, blat, bnames = _vertex_variables(ds, lon_name, lat_name, (dim,))
    return _cells(ds, source, dim, lon, lat, blon, blat, (lon_name, lat_name, *bnames))


def _cells(
    ds: xr.Dataset,
    source: str,
    dim: Hashable,
    lon: np.ndarray,
    lat: np.ndarray,
    blon: np.ndarray | None,
    blat: np.ndarray | None,
    drop: tuple[Hashable, ...],
) -> RawGrid:
    area, area_names = _measured_area(ds, (dim,), source)
    if area is None and blon is not None and blat is not None:
        area = spherical_polygon_area(blon, blat, lon, lat)
    if area is None:
        area = _point_cloud_areas(lon, lat)
    return RawGrid("unstructured", (dim,), lon, lat, area, blon, blat, None, (*drop, *area_names))


def _ugrid_faces(ds: xr.Dataset, source: str) -> RawGrid | None:
    """Faces of a UGRID mesh (``cf_role: mesh_topology`` with ``face_node_connectivity``)."""
    for mesh_name, mesh in ds.variables.items():
        if mesh.attrs.get("cf_role") != "mesh_topology":
            continue
        conn_name = mesh.attrs.get("face_node_connectivity")
        nodes = str(mesh.attrs.get("node_coordinates", "")).split()
        if conn_name not in ds.variables or len(nodes) != 2:
            continue
        conn = ds[conn_name]
        face_dim = mesh.attrs.get("face_dimension", conn.dims[0])
        if face_dim not in conn.dims:
            continue
        mesh_vars = {
            mesh_name,
            *(w for v in mesh.attrs.values() if isinstance(v, str) for w in v.split()),
        }
        users = [set(v.dims) for n, v in ds.data_vars.items() if n not in mesh_vars and v.ndim]
        if users and not any(face_dim in dims for dims in users):
            continue  # data on nodes or edges: their own lon/lat pair describes them
        nx_name, ny_name = nodes
        if _role(ny_name, ds[ny_name], plain_ok=True) == "lon":
            nx_name, ny_name = ny_name, nx_name
        node_lon = _degrees(ds[nx_name])
        node_lat = _degrees(ds[ny_name])
        index = np.asarray(conn.transpose(face_dim, ...).values)
        fill = conn.attrs.get("_FillValue", conn.encoding.get("_FillValue"))
        missing = ~np.isfinite(index.astype("float64"))
        if fill is not None:
            missing |= index == fill
        start = int(conn.attrs.get("start_index", 0))
        index = np.where(missing, -1, index - start).astype("int64")
        present = index >= 0
        # pad short faces by repeating their last node (adds no area)
        for col in range(1, index.shape[1]):
            index[:, col] = np.where(index[:, col] < 0, index[:, col - 1], index[:, col])
        if np.any(index < 0) or np.any(index >= node_lon.size):
            continue
        blon, blat = _wrap(node_lon[index]), node_lat[index]
        faces = str(mesh.attrs.get("face_coordinates", "")).split()
        drop: tuple[Hashable, ...] = (mesh_name, conn_name, nx_name, ny_name)
        if len(faces) == 2 and all(f in ds.variables for f in faces):
            fx, fy = faces
            if _role(fy, ds[fy], plain_ok=True) == "lon":
                fx, fy = fy, fx
            lon, lat = _wrap(_degrees(ds[fx])), _degrees(ds[fy])
            drop = (*drop, fx, fy)
        else:
            # the mean of a face's own nodes (a padded triangle's repeated node counted
            # once: counted twice it pulled the centre 1.7 degrees on a 10-degree mesh)
            weight = present[..., None].astype("float64")
            lon, lat = _to_lonlat((unit_vectors(blon, blat) * weight).sum(axis=-2))
        _check_finite(source, mesh_name, lon, lat)
        return _cells(ds, source, face_dim, lon, lat, blon, blat, drop)
    return None


#: Point clouds up to this many cells get exact spherical Voronoi areas; larger ones
#: (Voronoi takes minutes there) areas from their neighbours' spacing.
_VORONOI_MAX = 50_000
#: A Voronoi cell is capped at this many hexagons of its neighbour spacing.
_CAP = 3.0


def _point_cloud_areas(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Areas of a point cloud's cells (m^2) from neighbouring centres.

    Up to :data:`_VORONOI_MAX` points: the spherical Voronoi cells, each capped at
    :data:`_CAP` hexagons of its spacing to its six nearest neighbours when the cloud is
    regional (so its outer cells stay local). Larger clouds: a hexagon of the mean spacing to the six nearest neighbours
    (what a quasi-uniform mesh such as CAM-SE's has), scaled to cover the sphere exactly
    when the cloud covers it.
    """
    from scipy.spatial import SphericalVoronoi, cKDTree

    points = unit_vectors(lon, lat)
    n = points.shape[0]
    if n < 4:
        return np.full(n, np.nan)
    tree = cKDTree(points)
    chord, _ = tree.query(points, k=min(7, n))
    angle = 2.0 * np.arcsin(np.clip(chord[:, 1:] / 2.0, 0.0, 1.0))
    spacing = angle.mean(axis=1)
    hexagon = np.sqrt(3.0) / 2.0 * spacing**2 * EARTH_RADIUS_M**2
    cap = _CAP * hexagon
    if n > _VORONOI_MAX:
        area = hexagon
        if _covers_sphere(tree, float(np.median(spacing))):
            area *= 4.0 * np.pi * EARTH_RADIUS_M**2 / area.sum()
        return area
    try:
        voronoi = SphericalVoronoi(points, radius=1.0, threshold=1e-9)
        area = voronoi.calculate_areas() * EARTH_RADIUS_M**2
    except ValueError:  # duplicates or all points on a great circle
        return cap
    if _covers_sphere(tree, float(np.median(spacing))):
        # a global cloud's Voronoi cells are all bounded: exact, whatever their shape (the
        # cap would shrink the thin cells of a latitude row near a pole)
        return area
    return np.minimum(area, cap)


def _covers_sphere(tree: Any, spacing: float) -> bool:
    """Whether no probe point of a Fibonacci lattice is farther than three spacings
    from the cloud."""
    k = np.arange(4000) + 0.5
    z = 1.0 - 2.0 * k / k.size
    r = np.sqrt(1.0 - z**2)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k
    probes = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    chord, _ = tree.query(probes)
    return bool(2.0 * np.arcsin(min(float(chord.max()) / 2.0, 1.0)) < 3.0 * spacing)
