"""Where derived stores live, what they hold, and how the planner finds them.

A source's derived stores live in one folder (``<source>.gridscope/`` next to a local
source, or ``$GRIDSCOPE_DERIVED_DIR/<slug>/``, or a folder given to ``gridscope build
--out`` and recorded in the dataset's ``attrs["gridscope_derived"]`` / the catalog's
``derived`` field). Layout::

    manifest.json                      the published version: its id, its data folder,
                                       what is complete per variable
    manifest.next.json                 a build's own state until it publishes (resume)
    data-<id>/                         one version's arrays (below), progress/ and cells/
    data-<id>/progress/<var>/*.done    completed build units (resumability)
    pyramid.zarr/<var>/L<l>/mean                    (time, lat_l, lon_l) float32, l >= 1
    pyramid.zarr/<var>/L<l>/{min,max}               (time, lat_l, lon_l) float32, l >= 2
    aggregates.zarr/<var>/L<l>/{sum,m2,count,min,max}     (block, lat_l, lon_l)
    aggregates.zarr/<var>/L<l>/shift                (lat_l, lon_l) float64
    timeseries.zarr/<var>/values                    (time, lat, lon) float32, long in time
                                                    (a packed source's integers: ts_packing)
    timeseries.zarr/<var>/L<l>/{mean,area}          (time, lat_l, lon_l) float32, l >= 1

On rotated, projected, curvilinear and unstructured grids (manifest
``variables.<var>.layout == "cells"``) the arrays hold the grid's cells flattened and
put in Morton order (``cells/`` holds the order, centres, areas and the pyramid's
regridding matrices); see `pipelines.cell_stores`::

    pyramid.zarr/<var>/L<k>/mean                           (time, nlat_k, 2 nlat_k), k >= 1
    pyramid.zarr/<var>/L<k>/{min,max}                      (time, nlat_k, 2 nlat_k), k >= 2
    aggregates.zarr/<var>/L0/{sum,m2,count,min,max}        (block, position)
    aggregates.zarr/<var>/L<k>/{sum,m2,count,min,max}      (block, nlat_k, 2 nlat_k)
    timeseries.zarr/<var>/values                           (time, position) float32
    timeseries.zarr/<var>/L<l>/{mean,area}                 (time, ceil(n / 4**l)) float32

(per-step min/max fields from level `pipelines.pyramid.MINMAX_FROM_LEVEL` on: the
planner makes level 1's from the native cells where it needs them; the ``*.zarr`` and
``cells/`` paths are inside the version's data folder; stores built before versions
have them in the folder itself and no ``data`` entry).

``<var>`` is a variable's name, or ``<var>@level=<value>`` for one vertical level of a
variable that has a ``level`` axis (`level_store_name`: each level is built as its own
variable, a size-1 level such as a 2 m ``height`` too); the planner uses the stores of
exactly the level a query selects.

Versions: readers open the arrays of the data folder the manifest names, and the
manifest is only ever replaced whole (`write_manifest`: a new file, ``os.replace``), so a
reader sees one version or the next, never a mix; each published manifest has a new
``version`` id, which answers and caches are keyed by (`DerivedStores.version`). A build
from scratch writes a new data folder and publishes it at once, then again whenever a
component completes (a running server uses a level as soon as it is complete, without a
restart); an append publishes once, complete (`pipelines.build`). `DerivedStores`
re-reads the manifest when its file changes (inode or modification time). A data folder
no manifest names is removed at the next build (readers switch on their next query).

Why a manifest and not an Icechunk repository: the stores are plain zarr v3 folders
that any zarr reader, the dashboard's direct chunk reads (`pipelines.cell_stores`) and
the missing-chunk check can open without a transactional layer; one JSON file replaced
atomically gives all-or-nothing visibility on a local disk; appends within the
aggregates' layout only add files or replace chunks with the same values for the old
steps, so they need no copy-on-write, and the rare relayout is a folder of hard links.
Icechunk (not installed here) would add snapshot history and object-store transactions.
On an fsspec location (``s3://``, ``gs://``, ``memory://``: ``gridscope build --out URL`` or
``$GRIDSCOPE_DERIVED_DIR=URL``) the build runs in a local staging folder, then the
version's data folder is uploaded and the manifest written last as one object, atomic
on object stores (`pipelines.locations`); readers open it through fsspec.

Missing chunk files: zarr reads a missing chunk as the fill value, so a deleted chunk
file of a derived array would silently give wrong maps and series. The build writes
every chunk (all-fill ones too) and records each array's shape and chunks in the
manifest (``variables.<var>.arrays``); when a variable is first used after the manifest
(re)loads, `missing_chunks` counts the chunk files of its complete arrays. An
incomplete array makes its level unusable (the planner answers from finer levels or
the raw data, which is exact), and the problem is logged and listed in
`DerivedStores.problems`. Manifests written before this field existed are used
unverified.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from data_catalog.normalise import NORMALISATION_VERSION
from pipelines.aggregates import BlockTable
from pipelines.chunk_reader import ChunkReader, reader
from pipelines.locations import MANIFEST_TTL_S, is_url, join, read_text

__all__ = [
    "ArrayProblem",
    "DerivedStores",
    "VariableStores",
    "count_chunk_files",
    "derived_dir_for",
    "fingerprint",
    "find_derived",
    "level_store_name",
    "missing_chunks",
    "register_derived",
    "source_grew",
    "split_store_name",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: A build's own state until it is published (`pipelines.build`); readers never open it.
NEXT_MANIFEST = "manifest.next.json"
#: The layout of the arrays this code reads and `pipelines.build` writes (the manifest's
#: ``format``): 4 = float32 time-series level means and areas, aggregates' float32
#: ``m2`` and block sizes 4x apart; 5 = the pyramid held the mean field only (no
#: per-step min/max), on regular grids and on cell stores; 6 = per-step min/max fields
#: again from level `pipelines.pyramid.MINMAX_FROM_LEVEL` (2) on. Stores of another
#: format are not read (a build rebuilds them; the planner answers by brute force).
STORE_FORMAT = 6
_REGISTERED: dict[str, Path | str] = {}
_OPEN: dict[Path | str, DerivedStores] = {}
_LOCK = threading.Lock()


def _slug(source: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(source).rstrip("/")).name)[:60] or "source"
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def derived_dir_for(source: str, out: str | os.PathLike[str] | None = None) -> Any:
    """Folder of ``source``'s derived stores (``out`` given to ``gridscope build --out``):
    a `Path`, or a URL string when ``out`` / ``$GRIDSCOPE_DERIVED_DIR`` is an fsspec URL
    (`pipelines.locations`)."""
    if out is not None:
        return join(out, _slug(source))
    # read here, not passed in: `gridscope build`, every server process and the Dask
    # workers must find the same folder, and pipelines never sees the app's settings
    env = os.environ.get("GRIDSCOPE_DERIVED_DIR")
    if env:
        return join(env, _slug(source))
    path = Path(str(source).rstrip("/"))
    if not str(source).startswith("virtual:") and path.exists():
        return path.with_name(path.name + ".gridscope")
    return Path.home() / ".cache" / "gridscope" / "derived" / _slug(source)


def register_derived(source: str, folder: str | os.PathLike[str]) -> None:
    """Tell this process that ``source``'s derived stores are in ``folder``."""
    _REGISTERED[str(source)] = join(folder)


def level_store_name(var: str, level: float | None) -> str:
    """The name ``var``'s stores have in a manifest: ``var`` itself for a variable
    without a vertical axis, ``var@level=<value>`` for one of its levels.

    A variable with levels is built once per level (`pipelines.build`); the planner
    looks up the stores of exactly the level a query selects, by the axis value itself
    (``repr`` of the float, so no two levels share a name and a level the source no
    longer has finds nothing and is answered from the raw data)."""
    return var if level is None else f"{var}@level={float(level)!r}"


def split_store_name(name: str) -> tuple[str, float | None]:
    """``(var, level)`` of a manifest name (`level_store_name`'s inverse)."""
    var, sep, level = name.rpartition("@level=")
    return (var, float(level)) if sep else (name, None)


def fingerprint(ds: xr.Dataset) -> dict[str, Any]:
    """What must not change between a build and its use: shape and time axis ends; on
    other grids the grid kind, its cells and a few of their centres; the total cell area
    and the normalisation version (a store built before a fix to masking or areas would
    otherwise keep serving the old numbers)."""
    if "lat" in ds.dims and "lon" in ds.dims:
        out: dict[str, Any] = {"nlat": int(ds.sizes["lat"]), "nlon": int(ds.sizes["lon"])}
    else:
        from pipelines.reductions import spatial_dims

        dims = spatial_dims(ds)
        lon = np.asarray(ds["lon"].transpose(*dims).values).ravel()
        lat = np.asarray(ds["lat"].transpose(*dims).values).ravel()
        probe = np.linspace(0, lon.size - 1, 5).astype(int)
        out = {
            "grid": str(ds.attrs.get("gridscope_grid", "native")),
            "cells": {d: int(ds.sizes[d]) for d in dims},
            "centres": [round(float(v), 6) for v in np.concatenate([lon[probe], lat[probe]])],
        }
    if "time" in ds.dims:
        times = ds["time"].values
        out.update(nsteps=int(times.size), time0=str(times[0]), time1=str(times[-1]))
    out["normalisation"] = NORMALISATION_VERSION
    if "cell_area" in ds.coords:
        # areas weight every box mean: a store built with other areas is stale
        out["area_sum"] = float(f"{_area_sum(ds['cell_area'].variable):.9e}")
    return out


#: Total cell area per area array: id of the array owning the memory -> (a weak
#: reference to it, {(address, shape, strides, dtype) of the view: sum}).
_AREA_SUMS: dict[int, tuple[weakref.ref, dict[tuple, float]]] = {}
_AREA_LOCK = threading.Lock()


def _area_sum(area: xr.Variable) -> float:
    """``nansum`` of a cell-area array, computed once per array in memory.

    `fingerprint` runs on every `find_derived` call (twice per map frame); summing the
    6.5M areas of a 0.1-degree curvilinear grid costs ~100 ms each time. The areas of
    an opened dataset are one numpy array (views of it after selections), so the sum is
    kept per array, keyed by the array that owns the memory (held weakly: dropped with
    it, and an id reused by a new array is not mistaken for it) and the view's address,
    shape, strides and dtype. New areas (``assign_coords``, another dataset) are new
    arrays and are summed afresh. Lazy (dask or file-backed) areas are summed each time.
    """
    data = area._data
    if not isinstance(data, np.ndarray):
        return float(np.nansum(area.values))
    owner = data
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    view = (
        data.__array_interface__["data"][0],
        data.shape,
        data.strides,
        data.dtype.str,
    )
    with _AREA_LOCK:
        entry = _AREA_SUMS.get(id(owner))
        if entry is not None and entry[0]() is owner and view in entry[1]:
            return entry[1][view]
    total = float(np.nansum(data))
    with _AREA_LOCK:
        entry = _AREA_SUMS.get(id(owner))
        if entry is None or entry[0]() is not owner:
            key = id(owner)

            def forget(_ref: object, key: int = key) -> None:
                _AREA_SUMS.pop(key, None)

            try:
                ref = weakref.ref(owner, forget)
            except TypeError:  # not weakly referable: no way to know it is the same
                return total
            entry = _AREA_SUMS[key] = (ref, {})
        if len(entry[1]) >= 16:  # many different views of one array: keep the latest
            entry[1].pop(next(iter(entry[1])))
        entry[1][view] = total
    return total


def find_derived(ds: xr.Dataset) -> DerivedStores | None:
    """The derived stores recorded for ``ds``, or None when there are none (yet)."""
    for stores in _candidates(ds):
        if stores.matches(ds):
            return stores
    return None


def source_grew(ds: xr.Dataset) -> bool:
    """Whether ``ds`` (opened earlier) is shorter than the record its derived stores were
    since built or appended for: the source gained time steps, so re-open it to see
    them (a running server does, `app.sources.DatasetSources.open`). A few ``stat``
    calls; False without stores."""
    if "time" not in ds.dims:
        return False
    mine = fingerprint(ds)
    for stores in _candidates(ds):
        theirs = dict(stores.manifest().get("fingerprint", {}))
        if int(theirs.get("nsteps", 0)) <= mine.get("nsteps", 0):
            continue
        rest = {k: v for k, v in theirs.items() if k not in ("nsteps", "time1")}
        if rest == {k: v for k, v in mine.items() if k not in ("nsteps", "time1")}:
            return True
    return False


def _candidates(ds: xr.Dataset) -> list[DerivedStores]:
    """The derived-store folders that may hold ``ds``'s stores (with a manifest)."""
    source = str(ds.attrs.get("gridscope_source", ""))
    folders = []
    if ds.attrs.get("gridscope_derived"):
        folders.append(join(str(ds.attrs["gridscope_derived"])))
    if source in _REGISTERED:
        folders.append(_REGISTERED[source])
    if source:
        folders.append(derived_dir_for(source))
    out = []
    for folder in folders:
        if str(folder).rstrip("/").endswith("/" + MANIFEST):
            folder = join(str(folder).rstrip("/")[: -len(MANIFEST) - 1])
        if _has_manifest(folder):
            with _LOCK:
                stores = _OPEN.get(folder)
                if stores is None:
                    stores = _OPEN[folder] = DerivedStores(folder)
            out.append(stores)
    return out


@dataclasses.dataclass(frozen=True)
class ArrayProblem:
    """A complete derived array that lacks chunk files (they would read as fill values).

    Attributes
    ----------
    component
        ``"pyramid"``, ``"aggregates"`` or ``"timeseries"``.
    path
        The array inside the variable's group, e.g. ``"L1/count"`` or ``"values"``.
    level
        Its level (``"values"`` is level 0).
    text
        The problem in words, naming the source, variable and array.
    """

    component: str
    path: str
    level: int
    text: str


def count_chunk_files(
    array_dir: str | os.PathLike[str], grid: Sequence[int | frozenset[int]]
) -> int:
    """How many chunk files of a zarr v3 array exist, of those with indices inside ``grid``.

    The default chunk key encoding ("/" separator) stores chunk ``(i, j, k)`` at
    ``c/i/j/k``; ``grid[d]`` is the number of chunk indices expected along dimension
    ``d`` (``0 .. grid[d] - 1``), or the set of them. Names outside the grid (temporary
    files, stale chunks) are not counted. Each directory listing is intersected with the
    expected names as sets, so the cost is about one system call per directory plus
    C-speed set work per file.
    """
    root = os.path.join(os.fspath(array_dir), "c")
    if not grid:
        return int(os.path.isfile(root))
    names = [frozenset(str(i) for i in (range(int(n)) if isinstance(n, int) else n)) for n in grid]
    return _count_under(root, names)


def _count_under(path: str, names: list[frozenset[str]]) -> int:
    try:
        present = names[0].intersection(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    if len(names) == 1:
        return len(present)
    return sum(_count_under(os.path.join(path, name), names[1:]) for name in present)


def _has_manifest(folder: Path | str) -> bool:
    if not is_url(folder):
        return (Path(folder) / MANIFEST).exists()
    try:  # one small read; a reader keeps the stores it opened (`_OPEN`)
        return folder in _OPEN or bool(read_text(join(folder, MANIFEST)))
    except (FileNotFoundError, OSError):
        return False


def _level_of(path: str) -> int:
    match = re.match(r"L(\d+)/", path)
    return int(match.group(1)) if match else 0


def _consequence(component: str, path: str, level: int) -> str:
    """What the planner does without the array (always exact, possibly slower)."""
    if component == "pyramid":
        return f"pyramid levels {level} and coarser are not used (maps come from finer levels)"
    if component == "aggregates":
        return (
            f"temporal aggregates of level {level} are not used (time-range maps at that "
            "level are computed from its pyramid level or the raw data, more slowly)"
        )
    if path == "values":
        return "the time-series copy is not used (series are computed from the raw data)"
    return f"time-series levels {level} and coarser are not used (region series read finer levels)"


def _expected_chunks(
    component: str, path: str, spec: dict[str, Any], aggregate_rows: Sequence[range]
) -> list[frozenset[int]]:
    """Chunk indices per dimension that must exist; aggregates only at the rows of the
    complete block sizes (``aggregate_rows``, one range per size)."""
    shape, chunks = spec["shape"], spec["chunks"]
    grid = [
        frozenset(range(math.ceil(int(n) / int(c)))) for n, c in zip(shape, chunks, strict=True)
    ]
    if component == "aggregates" and not path.endswith("shift"):
        c0 = int(chunks[0])
        grid[0] = frozenset(i // c0 for rows in aggregate_rows for i in rows) & grid[0]
    return grid


def _aggregate_rows(info: dict[str, Any], nsteps: int) -> list[range]:
    """Flat rows of the variable's complete aggregate blocks, one range per size."""
    done = info.get("complete", {}).get("aggregate_sizes") or []
    if not done:
        return []
    table = BlockTable(
        nsteps, int(info["base_block"]), max(done), layout_steps=info.get("layout_steps")
    )
    return [range(table.offset(s), table.offset(s) + table.count(s)) for s in table.usable_sizes]


def missing_chunks(
    folder: Path, var: str, info: dict[str, Any], nsteps: int, source: str = ""
) -> list[ArrayProblem]:
    """The complete derived arrays of ``var`` that lack chunk files.

    ``info`` is the variable's manifest entry. Only components the manifest marks
    complete are checked (aggregates: the rows of the complete block sizes, which are
    a prefix of the flat block index). An entry without ``arrays`` (built before chunk
    counts were recorded) is not checked and gives no problems.

    Returns
    -------
    list of ArrayProblem
        Empty when every expected chunk file is there.
    """
    arrays = info.get("arrays")
    if not arrays:
        return []
    complete = info.get("complete", {})
    done = complete.get("aggregate_sizes") or []
    rows = _aggregate_rows(info, nsteps)
    usable = {
        "pyramid": bool(complete.get("pyramid")),
        "aggregates": bool(done),
        "timeseries": bool(complete.get("timeseries")),
    }
    out = []
    for component, specs in sorted(arrays.items()):
        if not usable.get(component):
            continue
        for path, spec in sorted(specs.items()):
            array_dir = folder / f"{component}.zarr" / var / path
            grid = _expected_chunks(component, path, spec, rows)
            expected = math.prod(len(g) for g in grid)
            if not (array_dir / "zarr.json").is_file():
                what = "its metadata (zarr.json) is missing"
            else:
                found = count_chunk_files(array_dir, grid)
                if found >= expected:
                    continue
                what = (
                    f"{expected - found} of its {expected} chunk files are missing "
                    "(they would read as fill values: wrong numbers)"
                )
            level = _level_of(path)
            out.append(
                ArrayProblem(
                    component,
                    path,
                    level,
                    f"derived stores of {source or str(folder)!r}, variable {var!r}: array "
                    f"{component}.zarr/{var}/{path}: {what}; "
                    f"{_consequence(component, path, level)}; run 'gridscope build' for this "
                    f"source again to rebuild it (folder {folder})",
                )
            )
    return out


class VariableStores:
    """The complete derived arrays of one variable (zarr arrays, opened lazily).

    ``problems`` (from `missing_chunks`) take levels out of use: a broken pyramid or
    time-series level caps the usable levels below it, a broken aggregates level
    turns off that level's aggregates, a broken time-series ``values`` array the
    whole time-series copy.
    """

    def __init__(
        self,
        folder: Path,
        var: str,
        info: dict[str, Any],
        nsteps: int,
        problems: Sequence[ArrayProblem] = (),
    ):
        self.folder = folder
        self.var = var
        self.info = info
        self.nsteps = nsteps
        self.problems = list(problems)
        self._arrays: dict[str, Any] = {}
        self._readers: dict[str, ChunkReader | None] = {}

    @property
    def layout(self) -> str:
        """``"grid"`` (regular lat/lon arrays) or ``"cells"`` (a non-regular grid's cells in
        position order, `pipelines.cell_stores`)."""
        return str(self.info.get("layout", "grid"))

    @property
    def complete(self) -> dict[str, Any]:
        return dict(self.info.get("complete", {}))

    def _broken_levels(self, component: str) -> set[int]:
        return {p.level for p in self.problems if p.component == component}

    @property
    def max_level(self) -> int:
        if not self.complete.get("pyramid"):
            return 0
        return min(
            [int(self.info["max_level"])] + [lv - 1 for lv in self._broken_levels("pyramid")]
        )

    @property
    def ts_max_level(self) -> int:
        if not self.has_timeseries:
            return 0
        broken = [lv - 1 for lv in self._broken_levels("timeseries")]
        return min([int(self.info["ts_max_level"])] + broken)

    @property
    def ts_levels(self) -> tuple[int, ...]:
        """The time-series levels stored and usable now (``1..ts_max_level`` when the
        manifest does not say; `pipelines.timeseries_store.stored_levels`)."""
        stored = self.info.get("ts_levels") or range(1, int(self.info["ts_max_level"]) + 1)
        return tuple(int(lev) for lev in stored if int(lev) <= self.ts_max_level)

    @property
    def has_timeseries(self) -> bool:
        return bool(self.complete.get("timeseries")) and not any(
            p.component == "timeseries" and p.path == "values" for p in self.problems
        )

    def block_table(self, level: int) -> BlockTable | None:
        """Blocks usable now at ``level``: sizes up to the largest complete one, or None
        (nothing complete yet, or that level's aggregates lack chunk files)."""
        done = self.complete.get("aggregate_sizes") or []
        if not done or level in self._broken_levels("aggregates"):
            return None
        return BlockTable(
            self.nsteps,
            int(self.info["base_block"]),
            max(done),
            layout_steps=self.info.get("layout_steps"),
        )

    def array(self, store: str, path: str) -> Any:
        key = f"{store}/{path}"
        arr = self._arrays.get(key)
        if arr is None:
            import zarr

            arr = zarr.open_array(
                str(join(self.folder, f"{store}.zarr")), path=f"{self.var}/{path}", mode="r"
            )
            self._arrays[key] = arr
        return arr

    def reader(self, store: str, path: str) -> ChunkReader | None:
        """The `pipelines.chunk_reader.ChunkReader` of `array` ``(store, path)`` (None
        where zarr's own read path must read it: a remote store, other codecs)."""
        key = f"{store}/{path}"
        if key not in self._readers:
            self._readers[key] = reader(self.array(store, path))
        return self._readers[key]


class DerivedStores:
    """A derived-store folder; `variable` answers what is usable right now."""

    def __init__(self, folder: Path | str):
        self.folder = join(folder)  # a Path, or a URL (`pipelines.locations`)
        self._read_at = -math.inf
        self._mtime: int | None = None
        self._stamp: tuple[int, int] | None = None
        self._manifest: dict[str, Any] = {}
        self._vars: dict[str, VariableStores] = {}
        self._lock = threading.Lock()

    def manifest(self) -> dict[str, Any]:
        """The manifest, re-read only when the file changed (a build replaces it whole,
        `write_manifest`: a new file, so its inode and modification time say so); at a
        URL, re-read at most every `pipelines.locations.MANIFEST_TTL_S` seconds."""
        if is_url(self.folder):
            return self._remote_manifest()
        path = self.folder / MANIFEST
        try:
            info = path.stat()
        except FileNotFoundError:
            return {}
        stamp = (info.st_ino, info.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                try:
                    with open(path, "rb") as handle:  # content and stamp of the same file
                        opened = os.fstat(handle.fileno())
                        self._manifest = json.loads(handle.read())
                except (OSError, json.JSONDecodeError):
                    return self._manifest  # being replaced; keep the last good one
                self._stamp = (opened.st_ino, opened.st_mtime_ns)
                self._mtime = opened.st_mtime_ns
                self._vars = {}
            return self._manifest

    def _remote_manifest(self) -> dict[str, Any]:
        """The manifest at a URL (one object, written whole: `pipelines.locations`)."""
        now = time.monotonic()
        with self._lock:
            if now - self._read_at < MANIFEST_TTL_S:
                return self._manifest
            try:
                manifest = json.loads(read_text(join(self.folder, MANIFEST)))
            except FileNotFoundError:
                manifest = {}
            except (OSError, json.JSONDecodeError):
                return self._manifest  # unreachable for now; keep the last good one
            self._read_at = now
            if manifest != self._manifest:
                self._manifest = manifest
                self._vars = {}
            return self._manifest

    @property
    def version(self) -> str:
        """The id of the version readers see now (changes with every published change:
        answers and caches are keyed by it); stores built before versions have their
        manifest's modification time instead."""
        manifest = self.manifest()
        return f"{self.folder}:{manifest.get('version') or self._mtime}"

    @property
    def data_folder(self) -> Any:
        """The folder (a `Path` or URL) of the arrays of the version readers see now."""
        return join(self.folder, str(self.manifest().get("data", "")))

    @property
    def problems(self) -> list[str]:
        """Every variable's missing-chunk problems, in words (checks all variables)."""
        out = []
        for var in sorted(self.manifest().get("variables", {})):
            stores = self.variable(var)
            out += [p.text for p in stores.problems] if stores is not None else []
        return out

    def matches(self, ds: xr.Dataset) -> bool:
        manifest = self.manifest()
        return bool(manifest) and manifest.get("fingerprint") == fingerprint(ds)

    def variable(self, var: str) -> VariableStores | None:
        manifest = self.manifest()
        info = manifest.get("variables", {}).get(var)
        if info is None or manifest.get("format") != STORE_FORMAT:
            return None  # other formats hold other arrays: read them as not built
        with self._lock:
            stores = self._vars.get(var)
            if stores is None:
                nsteps = int(manifest["fingerprint"].get("nsteps", 0))
                data = join(self.folder, str(manifest.get("data", "")))
                problems = self._check(data, var, info, nsteps, str(manifest.get("source", "")))
                stores = VariableStores(data, var, info, nsteps, problems)
                self._vars[var] = stores
            return stores

    def _check(self, data: Path, var: str, info: dict[str, Any], nsteps: int, source: str) -> list:
        """`missing_chunks` for a local folder (logged); remote folders are not listed."""
        if is_url(self.folder):
            return []
        problems = missing_chunks(data, var, info, nsteps, source)
        for problem in problems:
            log.warning("%s", problem.text)
        return problems


def write_manifest(folder: Path, manifest: dict[str, Any], name: str = MANIFEST) -> None:
    """Atomically replace the manifest (readers never see a partial file), or the file
    ``name`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=_json_default))
    os.replace(tmp, folder / name)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(type(value))
