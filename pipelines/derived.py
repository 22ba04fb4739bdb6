"""Where derived stores live, what they hold, and how the planner finds them.

A source's derived stores live in one folder (``<source>.gridscope/`` next to a local
source, or ``$GRIDSCOPE_DERIVED_DIR/<slug>/``, or a folder given to ``gridscope build
--out`` and recorded in the dataset's ``attrs["gridscope_derived"]`` / the catalog's
``derived`` field). Layout::

    manifest.json                      what is complete, per variable (see `Manifest`)
    progress/<var>/*.done              completed build units (resumability)
    pyramid.zarr/<var>/L<l>/{mean,min,max}          (time, lat_l, lon_l) float32, l >= 1
    aggregates.zarr/<var>/L<l>/{sum,sumsq,count,min,max}  (block, lat_l, lon_l)
    aggregates.zarr/<var>/L<l>/shift                (lat_l, lon_l) float64
    timeseries.zarr/<var>/values                    (time, lat, lon) float32, long in time
    timeseries.zarr/<var>/L<l>/{wsum,warea}         (time, lat_l, lon_l) float64, l >= 1

The manifest is rewritten atomically whenever a component completes; `DerivedStores`
re-reads it when its modification time changes, so a running server starts using a
level as soon as it is complete, without a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from pipelines.aggregates import BlockTable

__all__ = [
    "DerivedStores",
    "VariableStores",
    "derived_dir_for",
    "fingerprint",
    "find_derived",
    "register_derived",
]

MANIFEST = "manifest.json"
_REGISTERED: dict[str, Path] = {}
_OPEN: dict[Path, DerivedStores] = {}
_LOCK = threading.Lock()


def _slug(source: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(source).rstrip("/")).name)[:60] or "source"
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def derived_dir_for(source: str, out: str | os.PathLike[str] | None = None) -> Path:
    """Folder of ``source``'s derived stores (``out`` given to ``gridscope build --out``)."""
    if out is not None:
        return Path(out) / _slug(source)
    env = os.environ.get("GRIDSCOPE_DERIVED_DIR")
    if env:
        return Path(env) / _slug(source)
    path = Path(str(source).rstrip("/"))
    if not str(source).startswith("virtual:") and path.exists():
        return path.with_name(path.name + ".gridscope")
    return Path.home() / ".cache" / "gridscope" / "derived" / _slug(source)


def register_derived(source: str, folder: str | os.PathLike[str]) -> None:
    """Tell this process that ``source``'s derived stores are in ``folder``."""
    _REGISTERED[str(source)] = Path(folder)


def fingerprint(ds: xr.Dataset) -> dict[str, Any]:
    """What must not change between a build and its use (shape and time axis ends)."""
    out: dict[str, Any] = {"nlat": int(ds.sizes["lat"]), "nlon": int(ds.sizes["lon"])}
    if "time" in ds.dims:
        times = ds["time"].values
        out.update(nsteps=int(times.size), time0=str(times[0]), time1=str(times[-1]))
    return out


def find_derived(ds: xr.Dataset) -> DerivedStores | None:
    """The derived stores recorded for ``ds``, or None when there are none (yet)."""
    source = str(ds.attrs.get("gridscope_source", ""))
    candidates = []
    if ds.attrs.get("gridscope_derived"):
        candidates.append(Path(str(ds.attrs["gridscope_derived"])))
    if source in _REGISTERED:
        candidates.append(_REGISTERED[source])
    if source:
        candidates.append(derived_dir_for(source))
    for folder in candidates:
        if folder.name == MANIFEST:
            folder = folder.parent
        if (folder / MANIFEST).exists():
            with _LOCK:
                stores = _OPEN.get(folder)
                if stores is None:
                    stores = _OPEN[folder] = DerivedStores(folder)
            if stores.matches(ds):
                return stores
    return None


class VariableStores:
    """The complete derived arrays of one variable (zarr arrays, opened lazily)."""

    def __init__(self, folder: Path, var: str, info: dict[str, Any], nsteps: int):
        self.folder = folder
        self.var = var
        self.info = info
        self.nsteps = nsteps
        self._arrays: dict[str, Any] = {}

    @property
    def complete(self) -> dict[str, Any]:
        return dict(self.info.get("complete", {}))

    @property
    def max_level(self) -> int:
        return int(self.info["max_level"]) if self.complete.get("pyramid") else 0

    @property
    def ts_max_level(self) -> int:
        return int(self.info["ts_max_level"]) if self.complete.get("timeseries") else 0

    @property
    def has_timeseries(self) -> bool:
        return bool(self.complete.get("timeseries"))

    def block_table(self) -> BlockTable | None:
        """Blocks usable now: sizes up to the largest complete one, or None."""
        done = self.complete.get("aggregate_sizes") or []
        if not done:
            return None
        return BlockTable(self.nsteps, int(self.info["base_block"]), max(done))

    def array(self, store: str, path: str) -> Any:
        key = f"{store}/{path}"
        arr = self._arrays.get(key)
        if arr is None:
            import zarr

            arr = zarr.open_array(
                self.folder / f"{store}.zarr", path=f"{self.var}/{path}", mode="r"
            )
            self._arrays[key] = arr
        return arr


class DerivedStores:
    """A derived-store folder; `variable` answers what is usable right now."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._mtime: int | None = None
        self._manifest: dict[str, Any] = {}
        self._vars: dict[str, VariableStores] = {}
        self._lock = threading.Lock()

    def manifest(self) -> dict[str, Any]:
        """The manifest, re-read only when its modification time changed."""
        path = self.folder / MANIFEST
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        with self._lock:
            if mtime != self._mtime:
                try:
                    self._manifest = json.loads(path.read_text())
                except (OSError, json.JSONDecodeError):
                    return self._manifest  # being replaced; keep the last good one
                self._mtime = mtime
                self._vars = {}
            return self._manifest

    @property
    def version(self) -> str:
        self.manifest()
        return f"{self.folder}:{self._mtime}"

    def matches(self, ds: xr.Dataset) -> bool:
        manifest = self.manifest()
        return bool(manifest) and manifest.get("fingerprint") == fingerprint(ds)

    def variable(self, var: str) -> VariableStores | None:
        manifest = self.manifest()
        info = manifest.get("variables", {}).get(var)
        if info is None:
            return None
        with self._lock:
            stores = self._vars.get(var)
            if stores is None:
                stores = VariableStores(
                    self.folder, var, info, int(manifest["fingerprint"].get("nsteps", 0))
                )
                self._vars[var] = stores
            return stores


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Atomically replace the manifest (readers never see a partial file)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=_json_default))
    os.replace(tmp, folder / MANIFEST)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(type(value))
