"""Opening datasets by catalog id, path, glob or URL, normalised and lazy.

:func:`open_dataset` is the one entry point the pipelines and the app use. It picks the
reader from the catalog entry's ``format`` or from the path (zarr stores are recognised
by their metadata files or a ``.zarr`` suffix; everything else is read as netCDF), opens
with ``decode_times=False`` and dask chunks, then hands the result to
:func:`~data_catalog.normalise.normalise_dataset`. Every failure becomes a
:class:`~data_catalog.errors.DatasetOpenError` that names the file or URL.
"""

import glob
import json
import os
import posixpath
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import fsspec
import fsspec.core
import xarray as xr

from data_catalog.catalog import load_catalog
from data_catalog.errors import DatasetOpenError
from data_catalog.normalise import normalise_dataset
from data_catalog.schema import Catalog, CatalogEntry

__all__ = ["VariableInfo", "list_variables", "open_dataset"]

_ZARR_METADATA = ("zarr.json", ".zgroup", ".zmetadata")
_GLOB_CHARS = set("*?[")


class VariableInfo(NamedTuple):
    """What the UI and the CLI show about one data variable."""

    name: str
    long_name: str
    units: str
    dims: tuple[str, ...]


def open_dataset(
    source: str | os.PathLike[str],
    catalog: Catalog | None = None,
    *,
    chunks: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Open a gridded dataset lazily and normalise it to the gridscope contract.

    Parameters
    ----------
    source
        A catalog id, or a local path, glob of netCDF files, or ``file://``,
        ``https://``, ``s3://`` or ``gs://`` URL of a netCDF file or zarr store.
    catalog
        Catalog in which to look ids up; ``None`` means :func:`load_catalog` (the
        ``GRIDSCOPE_CATALOG`` file or the bundled one), read only when ``source`` is not
        an existing local path.
    chunks
        Dask chunks (by original dimension name) passed to xarray; ``None`` means the
        store's own chunks (``{}``), so the result is always dask-backed.

    Returns
    -------
    xarray.Dataset
        The normalised dataset described in the :mod:`data_catalog` docstring.

    Raises
    ------
    DatasetOpenError
        When the id is unknown, the file is missing or unreadable, or the data is not
        a longitude/latitude grid; the message names the file or URL.
    """
    entry = _find_entry(str(source), catalog)
    if entry is not None:
        urlpath, fmt = entry.urlpath, entry.format
        open_options, storage_options = dict(entry.open_options), dict(entry.storage_options)
    else:
        urlpath, fmt, open_options, storage_options = str(source), None, {}, {}
    chunks = {} if chunks is None else dict(chunks)
    protocol, _ = fsspec.core.split_protocol(urlpath)
    if protocol in (None, "file"):
        raw = _open_local(urlpath, fmt, chunks, open_options)
    else:
        raw = _open_remote(urlpath, fmt, chunks, open_options, storage_options)
    if entry is None:
        return normalise_dataset(raw, urlpath)
    # The id is what re-opens the dataset, so it is the recorded source; errors still
    # name the file behind it.
    try:
        ds = normalise_dataset(raw, entry.id)
    except DatasetOpenError as exc:
        raise DatasetOpenError(f"{exc} (file: {urlpath})") from None
    if entry.derived:
        ds.attrs["gridscope_derived"] = derived_folder(entry)
    return ds


def derived_folder(entry: CatalogEntry) -> str:
    """The folder holding an entry's derived stores (read by the planner).

    ``derived: {folder: PATH}`` names it directly; otherwise it is the folder that
    holds the named stores (``pyramid: X.gridscope/pyramid.zarr`` -> ``X.gridscope``).
    """
    if "folder" in entry.derived:
        return entry.derived["folder"]
    parents = {posixpath.dirname(str(p).rstrip("/")) for p in entry.derived.values()}
    return sorted(parents)[0]


def list_variables(ds: xr.Dataset) -> list[VariableInfo]:
    """Describe the data variables of a (normalised) dataset.

    Parameters
    ----------
    ds
        Any dataset; attributes are read, data are not.

    Returns
    -------
    list of VariableInfo
        One per data variable in dataset order: name, ``long_name`` (falling back to the
        name), ``units`` (empty when absent) and dims.
    """
    return [
        VariableInfo(
            name=str(name),
            long_name=str(var.attrs.get("long_name", name)),
            units=str(var.attrs.get("units", "")),
            dims=tuple(str(d) for d in var.dims),
        )
        for name, var in ds.data_vars.items()
    ]


# --- resolving the source --------------------------------------------------------------


def _find_entry(source: str, catalog: Catalog | None) -> CatalogEntry | None:
    if catalog is not None and source in catalog:
        return catalog.get(source)
    looks_like_id = fsspec.core.split_protocol(source)[0] is None and not (
        _GLOB_CHARS & set(source) or os.sep in source or "/" in source or "." in source
    )
    if not looks_like_id or os.path.exists(source):
        return None
    if catalog is None:
        catalog = load_catalog()
    if source in catalog:
        return catalog.get(source)
    known = ", ".join(catalog.ids) or "none"
    raise DatasetOpenError(
        f"{source}: no such file, and not a dataset id of the catalog (known ids: {known})"
    )


# --- local files -----------------------------------------------------------------------


def _open_local(
    urlpath: str, fmt: str | None, chunks: dict[str, Any], open_options: dict[str, Any]
) -> xr.Dataset:
    path = fsspec.core.split_protocol(urlpath)[1]
    if _GLOB_CHARS & set(path):
        matches = sorted(glob.glob(os.path.expanduser(path)))
        if not matches:
            raise DatasetOpenError(f"{urlpath}: no files match this pattern")
        if fmt == "zarr" or any(_is_local_zarr(Path(m)) for m in matches):
            raise DatasetOpenError(f"{urlpath}: globs are supported for netCDF files only")
        return _guard(urlpath, lambda: _open_netcdf_files(matches, chunks, open_options))
    local = Path(path).expanduser()
    if not local.exists():
        raise DatasetOpenError(f"{urlpath}: file not found")
    if fmt == "zarr" or (fmt is None and _is_local_zarr(local)):
        consolidated = _local_zarr_is_consolidated(local)
        return _guard(
            urlpath, lambda: _open_zarr(str(local), chunks, open_options, {}, consolidated)
        )
    if local.is_dir():
        raise DatasetOpenError(
            f"{urlpath}: is a folder but not a zarr store (no zarr.json, .zgroup or .zmetadata)"
        )
    return _guard(urlpath, lambda: _open_netcdf_file(str(local), chunks, open_options))


def _is_local_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or any((path / name).exists() for name in _ZARR_METADATA)


def _local_zarr_is_consolidated(path: Path) -> bool:
    # Decided up front so xarray does not have to guess (and warn) when it is not.
    if (path / ".zmetadata").exists():
        return True
    try:
        meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and bool(meta.get("consolidated_metadata"))


def _netcdf_engine(path: str) -> str:
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic.startswith(b"CDF") or magic.startswith(b"\x89HDF"):
        return "netcdf4"
    raise DatasetOpenError(f"{path}: not a netCDF file (unrecognised file signature {magic[:4]!r})")


def _open_netcdf_file(path: str, chunks: dict[str, Any], options: dict[str, Any]) -> xr.Dataset:
    options = {"engine": _netcdf_engine(path), **options}
    return xr.open_dataset(path, chunks=chunks, decode_times=False, **options)


def _open_netcdf_files(
    paths: list[str], chunks: dict[str, Any], options: dict[str, Any]
) -> xr.Dataset:
    options = {"engine": _netcdf_engine(paths[0]), **options}
    return xr.open_mfdataset(
        paths,
        combine="by_coords",
        chunks=chunks,
        decode_times=False,
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="outer",
        **options,
    )


# --- remote (fsspec) -------------------------------------------------------------------


def _open_remote(
    urlpath: str,
    fmt: str | None,
    chunks: dict[str, Any],
    open_options: dict[str, Any],
    storage_options: dict[str, Any],
) -> xr.Dataset:
    if fmt is None:
        fmt = "zarr" if _is_remote_zarr(urlpath, storage_options) else "netcdf"
    if fmt == "zarr":
        return _guard(
            urlpath, lambda: _open_zarr(urlpath, chunks, open_options, storage_options, None)
        )

    def open_remote_netcdf() -> xr.Dataset:
        # netCDF4-C cannot read Python file objects; h5netcdf can (netCDF-4/HDF5 only).
        handle = fsspec.open(urlpath, mode="rb", **storage_options).open()
        options = {"engine": "h5netcdf", **open_options}
        return xr.open_dataset(handle, chunks=chunks, decode_times=False, **options)

    return _guard(urlpath, open_remote_netcdf)


def _is_remote_zarr(urlpath: str, storage_options: dict[str, Any]) -> bool:
    if urlpath.rstrip("/").endswith(".zarr"):
        return True
    try:
        fs, root = fsspec.core.url_to_fs(urlpath, **storage_options)
        return any(fs.exists(f"{root.rstrip('/')}/{name}") for name in _ZARR_METADATA)
    except (OSError, ValueError, ImportError):
        return False


def _open_zarr(
    store: str,
    chunks: dict[str, Any],
    open_options: dict[str, Any],
    storage_options: dict[str, Any],
    consolidated: bool | None,
) -> xr.Dataset:
    options: dict[str, Any] = {"consolidated": consolidated, **open_options}
    if storage_options:
        options["storage_options"] = storage_options
    with warnings.catch_warnings():
        # With consolidated=None xarray falls back to plain metadata and says so; the
        # fallback is what we want for remote stores of unknown layout.
        warnings.filterwarnings(
            "ignore", message="Failed to open Zarr store with consolidated metadata"
        )
        return xr.open_zarr(store, chunks=chunks, decode_times=False, **options)


def _guard(urlpath: str, opener: Any) -> xr.Dataset:
    """Run ``opener`` and turn library errors into a one-line DatasetOpenError."""
    try:
        return opener()
    except DatasetOpenError:
        raise
    except FileNotFoundError:
        raise DatasetOpenError(f"{urlpath}: file not found") from None
    except Exception as exc:  # noqa: BLE001  (any reader failure is the user's file's)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetOpenError(f"{urlpath}: cannot be read ({detail})") from None
