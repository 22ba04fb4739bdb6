"""CF normalisation: turn a raw gridded dataset into the gridscope contract.

:func:`normalise_dataset` is a pure function on an :class:`xarray.Dataset` opened with
``decode_times=False``. It reads only small 1-D coordinates (and bounds) into memory;
data variables stay lazy (dask) and are only re-indexed by slicing. See the package
docstring of :mod:`data_catalog` for the contract it produces.
"""

import re
from collections.abc import Hashable, Iterable
from typing import Any

import cf_xarray  # noqa: F401  (registers the ``.cf`` accessor)
import numpy as np
import xarray as xr

from data_catalog.errors import DatasetOpenError
from data_catalog.grid import EARTH_RADIUS_M, LOOKED_FOR, NATIVE_DIMS, RawGrid, find_grid
from data_catalog.time_axis import decode_time_axis

__all__ = ["EARTH_RADIUS_M", "NORMALISATION_VERSION", "normalise_dataset"]

#: Changes whenever normalisation changes the values a dataset opens with (masking, areas,
#: time decoding). Derived stores record it, so a store built by an older gridscope is
#: not used for numbers the raw data now give differently (rebuild with `gridscope build`).
NORMALISATION_VERSION = 2

_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}
_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
_LON_NAME = re.compile(r"(.*lon.*|x|[a-z][a-z0-9]*x(\d+(_\d+)?)?)")
_LAT_NAME = re.compile(r"(.*lat.*|y|[a-z][a-z0-9]*y(\d+(_\d+)?)?)")
_TIME_NAME = re.compile(r"(time|t|times|date|.*time.*)")
_LEVEL_NAME = re.compile(
    r"(depth.*|lev|level|levels|plev|pressure|height|altitude|z|isobaric.*|pfull|phalf|.*lev)"
)
_PRESSURE_UNITS = {"pa", "hpa", "kpa", "mbar", "millibar", "mb", "bar", "dbar", "decibar", "atm"}
_LEVEL_STANDARD_NAMES = {
    "depth",
    "height",
    "altitude",
    "air_pressure",
    "sea_water_pressure",
    "model_level_number",
    "depth_below_geoid",
    "height_above_geoid",
}
# Attributes that describe the raw encoding or refer to variables we drop.
_STALE_AXIS_ATTRS = ("bounds", "edges", "modulo", "point_spacing")
_NO_ITEMS = ()


def normalise_dataset(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Normalise a raw gridded dataset to the gridscope contract.

    Parameters
    ----------
    ds
        Dataset as opened by xarray with ``decode_times=False`` (mask_and_scale on), so
        that time axes xarray cannot decode, like a climatology in year 0, still open.
        Data variables may be dask- or numpy-backed; they are never loaded.
    source
        Where the dataset came from (path, URL or catalog id); stored in
        ``attrs["gridscope_source"]`` and used in error messages.

    Returns
    -------
    xarray.Dataset
        A regular grid: dims ``lon`` (ascending, [-180, 180)), ``lat`` (ascending) and a
        ``cell_area(lat, lon)`` coordinate in m^2. Other grids (see
        :mod:`data_catalog.grid`): spatial dims ``(y, x)`` or ``(cell,)`` with geographic
        ``lon``/``lat`` coordinates on them, ``cell_area`` and, where known,
        ``lon_bounds``/``lat_bounds``. ``time`` and ``level`` when present; only variables
        on the horizontal grid are kept as data variables. ``attrs["gridscope_grid"]``
        names the grid's kind.

    Raises
    ------
    DatasetOpenError
        When no horizontal grid can be found, no variable lies on the grid found, or the
        time axis cannot be decoded.
    """
    raw = ds
    native = find_grid(ds, source)
    if native is not None and native.kind == "regular":
        ds, native = _geographic_axes(ds, native), None
    if native is not None:
        return _some_data_on_grid(raw, _normalise_native(ds, native, source), native.drop)
    ds = _promote_axis_variables(ds)
    ds = _bare_time_dimension(ds)
    axes = _detect_axes(ds, source)
    lon_name, lat_name = axes["lon"], axes["lat"]
    lon_raw = _axis_values(ds, lon_name, source)
    lat_raw = _axis_values(ds, lat_name, source)
    _check_axis_ranges(lon_raw, lat_raw, lon_name, lat_name, source)
    lon_width_deg = _lon_widths(ds, lon_name, lon_raw)
    lat_sin_extent = _lat_sin_extents(ds, lat_name, lat_raw)
    axis_bounds = _bounds_variable_names(ds, (lon_name, lat_name))
    ds = ds.drop_vars(axis_bounds, errors="ignore")
    ds = _rename_axes(ds, axes)

    climatology = False
    if "time" in axes:
        ds, climatology = decode_time_axis(ds, source)

    ds, lon_order = _wrap_longitudes(ds, lon_raw)
    ds, lat_order = _ascending_latitudes(ds, lat_raw)

    area = (
        EARTH_RADIUS_M**2
        * np.radians(lon_width_deg[lon_order])[np.newaxis, :]
        * lat_sin_extent[lat_order][:, np.newaxis]
    )
    ds = ds.assign_coords(
        cell_area=xr.Variable(
            ("lat", "lon"),
            area,
            {
                "units": "m2",
                "standard_name": "cell_area",
                "long_name": "area of the grid cell on a sphere of radius 6371008.8 m",
            },
        )
    )
    ds = _keep_gridded_float_variables(ds, ("lat", "lon"))
    ds.attrs["gridscope_source"] = source
    ds.attrs["gridscope_climatology"] = climatology
    ds.attrs["gridscope_grid"] = "regular"
    return _some_data_on_grid(raw, ds, (lon_name, lat_name, *axis_bounds))


def _some_data_on_grid(
    raw: xr.Dataset, ds: xr.Dataset, grid_names: Iterable[Hashable]
) -> xr.Dataset:
    """``ds``, or a refusal when none of the raw dataset's variables is on the grid found.

    A dataset whose variables all lie off the grid was read wrongly (e.g. a mesh's
    (cell, vertex) bounds taken for a 2-D grid): opening it empty would be a silent wrong
    answer. A file of grid descriptors only (no other variables) still opens.
    """
    if ds.data_vars:
        return ds
    skip = {*grid_names, *_bounds_variable_names(raw, raw.variables)}
    lost = [
        f"{name}{tuple(str(d) for d in var.dims)}"
        for name, var in raw.data_vars.items()
        if var.ndim >= 1 and name not in skip
    ]
    if not lost:
        return ds
    kind = ds.attrs["gridscope_grid"]
    dims = [str(d) for d in NATIVE_DIMS[kind] if d in ds.dims]
    found = {str(ds[d].attrs.get("original_name", d)) for d in dims}
    raise DatasetOpenError(
        f"{ds.attrs['gridscope_source']}: no variable lies on the horizontal grid found "
        f"({kind}, dims {sorted(found)}): {', '.join(lost)}; gridscope reads variables on "
        f"{LOOKED_FOR}"
    )


# --- grids other than regular ------------------------------------------------------------


def _normalise_native(ds: xr.Dataset, grid: RawGrid, source: str) -> xr.Dataset:
    """The contract for rotated, projected, curvilinear and unstructured grids.

    The file's spatial dims become ``(y, x)`` or ``(cell,)``, rotated/projected grids keep
    their native axes as the ``x``/``y`` coordinates, and the grid's geographic centres,
    areas and polygons become coordinates.
    """
    new_dims = NATIVE_DIMS[grid.kind]
    ds = ds.drop_vars([n for n in grid.drop if n in ds.variables])
    targets = {*new_dims, "lon", "lat", "cell_area", "lon_bounds", "lat_bounds"}
    renames = {
        old: new
        for old, new in zip(grid.dims, new_dims, strict=True)
        if old != new and (old in ds.dims or old in ds.variables)
    }
    clashes = {
        name: f"{name}_original"
        for name in [*ds.variables, *ds.dims]
        if name in targets and name not in renames and name not in grid.dims
    }
    ds = ds.rename(clashes).rename(renames)
    ds = _bare_time_dimension(ds)
    axes = _detect_axes(ds, source, horizontal=False)
    ds = _rename_axes(ds, axes)
    climatology = False
    if "time" in axes:
        ds, climatology = decode_time_axis(ds, source)
    for dim in new_dims:
        if dim in ds.variables:
            attrs = {k: v for k, v in ds[dim].attrs.items() if k not in _STALE_AXIS_ATTRS}
            attrs["original_name"] = str(grid.dims[new_dims.index(dim)])
            ds[dim].attrs = attrs
    coords: dict[str, xr.Variable] = {
        "lon": xr.Variable(
            new_dims, grid.lon, {"units": "degrees_east", "standard_name": "longitude"}
        ),
        "lat": xr.Variable(
            new_dims, grid.lat, {"units": "degrees_north", "standard_name": "latitude"}
        ),
        "cell_area": xr.Variable(
            new_dims,
            np.asarray(grid.area, dtype=np.float64),
            {
                "units": "m2",
                "standard_name": "cell_area",
                "long_name": "area of the grid cell on a sphere of radius 6371008.8 m",
            },
        ),
    }
    if grid.lon_bounds is not None and grid.lat_bounds is not None:
        nv = "nv" if "nv" not in ds.dims else "gridscope_nv"
        coords["lon_bounds"] = xr.Variable((*new_dims, nv), grid.lon_bounds)
        coords["lat_bounds"] = xr.Variable((*new_dims, nv), grid.lat_bounds)
        coords["lon"].attrs["bounds"] = "lon_bounds"
        coords["lat"].attrs["bounds"] = "lat_bounds"
    ds = ds.assign_coords(coords)
    ds = _keep_gridded_float_variables(ds, new_dims)
    ds.attrs["gridscope_source"] = source
    ds.attrs["gridscope_climatology"] = climatology
    ds.attrs["gridscope_grid"] = grid.kind
    if grid.grid_mapping:
        ds.attrs["gridscope_grid_mapping"] = dict(grid.grid_mapping)
    for var in ds.data_vars.values():
        var.attrs["gridscope_grid"] = grid.kind
    return ds


def _geographic_axes(ds: xr.Dataset, grid: RawGrid) -> xr.Dataset:
    """A grid mapping whose geographic axes are separable (e.g. a rotated pole at 90N):
    its x/y axes replaced by their geographic longitudes/latitudes, the mapping dropped."""
    ydim, xdim = grid.dims
    ds = ds.drop_vars([n for n in grid.drop if n in ds.variables])
    for var in ds.data_vars.values():
        var.attrs.pop("grid_mapping", None)
    return ds.assign_coords(
        {
            xdim: xr.Variable(
                xdim, grid.lon, {"units": "degrees_east", "standard_name": "longitude"}
            ),
            ydim: xr.Variable(
                ydim, grid.lat, {"units": "degrees_north", "standard_name": "latitude"}
            ),
        }
    )


def _promote_axis_variables(ds: xr.Dataset) -> xr.Dataset:
    """1-D longitude and latitude variables on two dimensions of other names without
    coordinates of their own (``lat(latitude)``, ``lon(longitude)``) become those
    dimensions' coordinates."""
    found: dict[str, tuple[Hashable, Hashable]] = {}
    for name, var in ds.variables.items():
        if var.ndim != 1 or name in ds.dims:
            continue
        (dim,) = var.dims
        if dim in ds.variables or not np.issubdtype(var.dtype, np.number):
            continue
        units = str(var.attrs.get("units", "")).strip().lower().replace(" ", "_")
        std = str(var.attrs.get("standard_name", "")).lower()
        if units in _LON_UNITS or std == "longitude":
            found.setdefault("lon", (name, dim))
        elif units in _LAT_UNITS or std == "latitude":
            found.setdefault("lat", (name, dim))
    if set(found) != {"lon", "lat"} or found["lon"][1] == found["lat"][1]:
        return ds
    return ds.swap_dims({dim: name for name, dim in found.values()})


def _bare_time_dimension(ds: xr.Dataset) -> xr.Dataset:
    """A time dimension of the data without a coordinate variable (MPAS and WRF files:
    ``Time`` with the dates as characters) gets one: a 1-D variable on it with
    ``<unit> since <date>`` units (WRF's ``XTIME``), else its step numbers 0, 1, ...
    Left bare, its steps were not a time axis at all: no series, and maps that kept
    every step."""

    def since(var: Any) -> bool:
        units = str(var.attrs.get("units", "")).strip().lower().replace("_", " ")
        return " since " in f" {units} " and np.issubdtype(var.dtype, np.number)

    if any(name in ds.dims and since(var) for name, var in ds.variables.items()):
        return ds
    data_dims = {d for var in ds.data_vars.values() for d in var.dims}
    for dim in ds.dims:
        if dim in ds.variables or dim not in data_dims:
            continue
        if not _TIME_NAME.fullmatch(str(dim).lower()):
            continue
        for name, var in ds.variables.items():
            if var.dims == (dim,) and since(var):
                return ds.swap_dims({dim: name})
        steps = np.arange(ds.sizes[dim], dtype="float64")
        return ds.assign_coords({dim: xr.Variable(dim, steps, {"long_name": f"{dim} step"})})
    return ds


# --- axis detection -------------------------------------------------------------------


def _detect_axes(ds: xr.Dataset, source: str, horizontal: bool = True) -> dict[str, Hashable]:
    """Map the roles lon/lat/time/level to dimension-coordinate names of ``ds``.

    With ``horizontal=False`` (a grid already found by :func:`find_grid`, whose spatial
    dims are ``x``/``y``/``cell``) only time and level are looked for.
    """
    spatial = set() if horizontal else {"x", "y", "cell"}
    candidates = [
        name
        for name in ds.dims
        if name in ds.variables and ds[name].ndim == 1 and name not in spatial
    ]
    cf_coords = _cf_lookup(ds, "coordinates")
    cf_axes = _cf_lookup(ds, "axes")
    axes: dict[str, Hashable] = {}

    def pick(role: str, tests: Iterable[Any]) -> None:
        taken = set(axes.values())
        for test in tests:
            for name in candidates:
                if name not in taken and test(name):
                    axes[role] = name
                    return

    def units(name: Hashable) -> str:
        return str(ds[name].attrs.get("units", "")).strip().lower().replace(" ", "_")

    def lname(name: Hashable) -> str:
        return str(name).lower()

    def within(name: Hashable, low: float, high: float) -> bool:
        values = ds[name].values
        return (
            np.issubdtype(values.dtype, np.number)
            and values.size > 0
            and bool(np.nanmin(values) >= low and np.nanmax(values) <= high)
        )

    if horizontal:
        pick(
            "lon",
            [
                lambda n: n in cf_coords.get("longitude", _NO_ITEMS),
                lambda n: units(n) in _LON_UNITS,
                lambda n: ds[n].attrs.get("axis") == "X" and within(n, -360, 720),
                lambda n: bool(_LON_NAME.fullmatch(lname(n))) and within(n, -360, 720),
            ],
        )
        pick(
            "lat",
            [
                lambda n: n in cf_coords.get("latitude", _NO_ITEMS),
                lambda n: units(n) in _LAT_UNITS,
                lambda n: ds[n].attrs.get("axis") == "Y" and within(n, -90, 90),
                lambda n: bool(_LAT_NAME.fullmatch(lname(n))) and within(n, -90, 90),
            ],
        )
    if horizontal and ("lon" not in axes or "lat" not in axes):
        found = ", ".join(
            f"{name}({ds[name].attrs.get('units', 'no units')})" for name in candidates
        )
        missing = " and ".join(role for role in ("longitude", "latitude") if role[:3] not in axes)
        raise DatasetOpenError(
            f"{source}: no {missing} found; looked for {LOOKED_FOR} "
            f"(found dimension coordinates: {found or 'none'}; "
            f"dimensions: {', '.join(map(str, ds.dims)) or 'none'})"
        )
    pick(
        "time",
        [
            lambda n: n in cf_coords.get("time", _NO_ITEMS) or n in cf_axes.get("T", _NO_ITEMS),
            lambda n: " since " in f" {units(n).replace('_', ' ')} ",
            lambda n: np.issubdtype(ds[n].dtype, np.datetime64) or ds[n].dtype == object,
            lambda n: bool(_TIME_NAME.fullmatch(lname(n))),
        ],
    )
    pick(
        "level",
        [
            lambda n: n in cf_coords.get("vertical", _NO_ITEMS) or n in cf_axes.get("Z", _NO_ITEMS),
            lambda n: str(ds[n].attrs.get("positive", "")).lower() in ("up", "down"),
            lambda n: ds[n].attrs.get("standard_name") in _LEVEL_STANDARD_NAMES,
            lambda n: units(n) in _PRESSURE_UNITS,
            lambda n: bool(_LEVEL_NAME.fullmatch(lname(n))),
        ],
    )
    return axes


def _cf_lookup(ds: xr.Dataset, what: str) -> dict[str, list[Hashable]]:
    # cf_xarray reads only attributes; guard against its occasional surprises on odd
    # files so that our own fallbacks still get a chance.
    try:
        return dict(getattr(ds.cf, what))
    except Exception:  # noqa: BLE001
        return {}


def _axis_values(ds: xr.Dataset, name: Hashable, source: str) -> np.ndarray:
    values = np.asarray(ds[name].values, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise DatasetOpenError(f"{source}: axis {name!r} is empty or has missing values")
    return values


def _check_axis_ranges(
    lon: np.ndarray, lat: np.ndarray, lon_name: Hashable, lat_name: Hashable, source: str
) -> None:
    """Latitudes within -90..90 and longitudes within one turn (a repeated wrap column
    allowed): beyond that, columns were silently merged as "duplicates" of others and
    cells were placed past the pole."""
    if np.max(np.abs(lat)) > 90.0 + 1e-4:
        raise DatasetOpenError(
            f"{source}: latitudes {lat_name!s} run from {lat.min():g} to {lat.max():g}, "
            "outside -90..90"
        )
    if lon.size > 1:
        step = float(np.median(np.abs(np.diff(lon))))
        span = float(lon.max() - lon.min())
        if span > 360.0 + step / 2:
            raise DatasetOpenError(
                f"{source}: longitudes {lon_name!s} run from {lon.min():g} to {lon.max():g}, "
                "more than one turn (at most 360 degrees, one repeated wrap column allowed)"
            )


# --- renaming --------------------------------------------------------------------------


def _rename_axes(ds: xr.Dataset, axes: dict[str, Hashable]) -> xr.Dataset:
    renames = {old: new for new, old in axes.items() if old != new}
    # A variable already called like a target (e.g. a 2-D "lon" beside a 1-D "x") would
    # clash; keep it under a suffixed name rather than drop information.
    clashes = {new: f"{new}_original" for new in renames.values() if new in ds.variables}
    clashes = {old: new for old, new in clashes.items() if old not in renames}
    ds = ds.rename(clashes).rename(renames)
    for role, old in axes.items():
        attrs = {k: v for k, v in ds[role].attrs.items() if k not in _STALE_AXIS_ATTRS}
        attrs["original_name"] = str(old)
        if role == "lon":
            attrs.update(units="degrees_east", standard_name="longitude", axis="X")
        elif role == "lat":
            attrs.update(units="degrees_north", standard_name="latitude", axis="Y")
        elif role == "level":
            attrs.setdefault("axis", "Z")
        ds[role].attrs = attrs
    return ds


# --- cell geometry ---------------------------------------------------------------------


def _bounds_variable_names(ds: xr.Dataset, axis_names: Iterable[Hashable]) -> list[Hashable]:
    names: list[Hashable] = []
    for axis in axis_names:
        for key in ("bounds", "edges"):
            ref = ds[axis].attrs.get(key)
            if isinstance(ref, str) and ref in ds.variables:
                names.append(ref)
        for suffix in ("_bnds", "_bounds", "_edges"):
            if f"{axis}{suffix}" in ds.variables:
                names.append(f"{axis}{suffix}")
    return names


def _cell_bounds(ds: xr.Dataset, name: Hashable, values: np.ndarray) -> np.ndarray | None:
    """(n, 2) cell bounds in the file's order from CF bounds or Ferret-style edges."""
    n = values.size
    for ref in _bounds_variable_names(ds, [name]):
        var = ds[ref]
        if var.ndim == 2 and name in var.dims and var.sizes[name] == n:
            other = next(d for d in var.dims if d != name)
            if var.sizes[other] == 2:
                return np.asarray(var.transpose(name, other).values, dtype=np.float64)
        if var.ndim == 1 and var.size == n + 1:
            edges = np.asarray(var.values, dtype=np.float64)
            return np.stack([edges[:-1], edges[1:]], axis=1)
    return None


def _spacing_edges(values: np.ndarray) -> np.ndarray:
    """Cell edges at midpoints; outer edges half a step beyond the outer centres."""
    if values.size == 1:
        return np.array([np.nan, np.nan])
    mid = (values[:-1] + values[1:]) / 2
    first = values[0] - (values[1] - values[0]) / 2
    last = values[-1] + (values[-1] - values[-2]) / 2
    return np.concatenate([[first], mid, [last]])


def _lon_widths(ds: xr.Dataset, name: Hashable, values: np.ndarray) -> np.ndarray:
    """Cell widths in degrees, in the file's order."""
    bounds = _cell_bounds(ds, name, values)
    if bounds is not None:
        return np.abs(bounds[:, 1] - bounds[:, 0])
    return np.abs(np.diff(_spacing_edges(values)))


def _lat_sin_extents(ds: xr.Dataset, name: Hashable, values: np.ndarray) -> np.ndarray:
    """``|sin(north edge) - sin(south edge)|`` per cell, in the file's order."""
    bounds = _cell_bounds(ds, name, values)
    if bounds is None:
        edges = _spacing_edges(values)
        bounds = np.stack([edges[:-1], edges[1:]], axis=1)
    sines = np.sin(np.radians(np.clip(bounds, -90.0, 90.0)))
    return np.abs(sines[:, 1] - sines[:, 0])


# --- re-indexing -----------------------------------------------------------------------


def _wrapped_longitude_order(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into ``raw``) of the ascending [-180, 180) grid, duplicates dropped.

    Two longitudes closer than half the grid spacing (also across the antimeridian) are
    the same column, as in etopo20's repeated wrap-around column; the one that comes
    first in the file is kept.
    """
    wrapped = np.mod(raw + 180.0, 360.0) - 180.0
    wrapped[wrapped >= 180.0] -= 360.0  # float rounding of mod can give exactly 360
    order = np.argsort(wrapped, kind="stable")
    if raw.size < 2:
        return order, wrapped
    tolerance = np.median(np.abs(np.diff(raw))) / 2
    sorted_values = wrapped[order]
    group = np.concatenate([[0], np.cumsum(np.diff(sorted_values) >= tolerance)])
    if group[-1] > 0 and sorted_values[0] + 360.0 - sorted_values[-1] < tolerance:
        group[group == group[-1]] = 0
    keep: dict[int, int] = {}
    for g, index in zip(group.tolist(), order.tolist(), strict=True):
        if g not in keep or index < keep[g]:
            keep[g] = index
    kept = np.fromiter(keep.values(), dtype=np.intp)
    return kept[np.argsort(wrapped[kept], kind="stable")], wrapped


def _take(ds: xr.Dataset, dim: str, order: np.ndarray) -> xr.Dataset:
    """``ds.isel({dim: order})`` built from contiguous slices where possible.

    A longitude rotation is two runs; slicing and concatenating keeps dask chunks whole
    instead of gathering with a fancy index.
    """
    if np.array_equal(order, np.arange(ds.sizes[dim])):
        return ds
    breaks = np.flatnonzero(np.diff(order) != 1) + 1
    runs = np.split(order, breaks)
    if len(runs) == 1:
        return ds.isel({dim: slice(int(runs[0][0]), int(runs[0][-1]) + 1)})
    if len(runs) > 8:
        return ds.isel({dim: order})
    pieces = [ds.isel({dim: slice(int(run[0]), int(run[-1]) + 1)}) for run in runs]
    return xr.concat(
        pieces,
        dim=dim,
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="override",
        combine_attrs="override",
    )


def _wrap_longitudes(ds: xr.Dataset, raw: np.ndarray) -> tuple[xr.Dataset, np.ndarray]:
    order, wrapped = _wrapped_longitude_order(raw)
    attrs = dict(ds["lon"].attrs)
    ds = _take(ds, "lon", order)
    ds = ds.assign_coords(lon=xr.Variable("lon", wrapped[order], attrs))
    return ds, order


def _ascending_latitudes(ds: xr.Dataset, raw: np.ndarray) -> tuple[xr.Dataset, np.ndarray]:
    n = raw.size
    if n > 1 and np.all(np.diff(raw) < 0):
        order = np.arange(n)[::-1]
        return ds.isel(lat=slice(None, None, -1)), order
    order = np.argsort(raw, kind="stable")
    return _take(ds, "lat", order), order


# --- variables -------------------------------------------------------------------------


def _keep_gridded_float_variables(ds: xr.Dataset, grid_dims: tuple[str, ...]) -> xr.Dataset:
    off_grid = [name for name, var in ds.data_vars.items() if not set(grid_dims) <= set(var.dims)]
    ds = ds.drop_vars(off_grid)
    if grid_dims != ("lat", "lon"):
        # spatial dims last, in the grid's order, as on a regular grid
        for name in list(ds.data_vars):
            ds[name] = ds[name].transpose(..., *grid_dims)
    for name, var in ds.data_vars.items():
        # integers and float16 computed as at least float32: float16 sums overflow (a mean
        # of 300 steps near 280 K is inf) and carry three significant digits
        if not np.issubdtype(var.dtype, np.floating) or var.dtype.itemsize < 4:
            ds[name] = var.astype(np.result_type(var.dtype, np.float32))
        ds[name] = _mask_outside_valid_range(ds[name])
        ds[name].attrs["cell_measures"] = "area: cell_area"
    return ds


def _mask_outside_valid_range(da: xr.DataArray) -> xr.DataArray:
    """CF ``valid_range`` / ``valid_min`` / ``valid_max``: values outside are missing
    (xarray masks only ``_FillValue`` and ``missing_value``; a -9999 outside a declared
    valid range would otherwise enter every mean). On packed data the limits are in
    packed units, so they are unpacked like the values."""
    attrs = da.attrs
    low = high = None
    if "valid_range" in attrs:
        bounds = np.asarray(attrs["valid_range"], dtype="float64").ravel()
        if bounds.size == 2:
            low, high = float(bounds[0]), float(bounds[1])
    if "valid_min" in attrs:
        low = float(np.asarray(attrs["valid_min"], dtype="float64").ravel()[0])
    if "valid_max" in attrs:
        high = float(np.asarray(attrs["valid_max"], dtype="float64").ravel()[0])
    if low is None and high is None:
        return da
    scale = float(da.encoding.get("scale_factor", 1.0))
    offset = float(da.encoding.get("add_offset", 0.0))
    packed = "scale_factor" in da.encoding or "add_offset" in da.encoding
    # packed values are whole steps of ``scale`` apart: half a step of slack keeps the
    # limits themselves valid after rounding; unpacked, a float32 rounding's worth
    limits = [None if v is None else v * scale + offset for v in (low, high)]
    if scale < 0:
        limits.reverse()
    low, high = limits
    inside = xr.ones_like(da, dtype=bool)
    if low is not None:
        slack = abs(scale) / 2 if packed else abs(low) * 1e-6
        inside = inside & (da >= low - slack)
    if high is not None:
        slack = abs(scale) / 2 if packed else abs(high) * 1e-6
        inside = inside & (da <= high + slack)
    out = da.where(inside)
    # still the source's decoded values (or missing): keep how they were stored (a
    # packed variable's time-series copy re-encodes them, `pipelines.build`)
    out.encoding = dict(da.encoding)
    return out
