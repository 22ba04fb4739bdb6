"""Build the derived stores of a source: pyramid, temporal aggregates, time-series copy.

The work is split into units that each read ``unit_steps`` consecutive time steps of
one variable once, in memory, and write every derived array's slice for those steps
(pyramid levels, aggregate blocks up to ``unit_steps`` long, time-series chunks).
Blocks longer than a unit are then combined from stored blocks, one size at a time.
Units run on threads of this process for a local `pipelines.cluster.ClusterSpec` (the
default: their kernels, codecs and writes release the GIL, and no worker process has to
start), on the Dask cluster a spec names (a scheduler, a Dask Gateway or a
dask-kubernetes cluster), on a client given by the caller, or one after the other in
this thread with ``scheduler="synchronous"``; each writes a marker under
``progress/`` when done, so a re-run after a kill skips completed units and, the
computation being deterministic, ends with the same bytes as an uninterrupted build.
The manifest records each component as soon as it is complete (see
`pipelines.derived`). Every build writes into a version's data folder and publishes it
by replacing the manifest (`pipelines.derived`: a reader sees one version or the next).

Appends: when the source gained time steps since the published version (same grid,
areas, normalisation and first steps), the build grows the stores instead of starting
again: arrays are resized along time, the units from the one holding the old record's
last, partial chunk are (re)written, and only the blocks longer than a unit that the new
steps complete are combined, so the work grows with the new steps (``last_build``
records ``units`` and ``blocks_combined``); the result is byte-identical to a build from
scratch. Aggregate rows are laid out for the next power of two of the record
(`pipelines.aggregates.layout_steps_for`), so an append moves no row until the record
passes it; then the new version is a new data folder of hard links with the rows at
their new places. The published version stays in use until the append is complete.
Cell stores of non-regular grids (`pipelines.cell_stores`) append the same way: their
``cells/`` (order, centres, areas, regridding matrices) depend on the cells alone, so
they are kept when the grid's centres and areas equal them bit for bit (`_same_cells`;
otherwise the stores are rebuilt, and the log says why).

Variables: each one on time and the horizontal grid, and each vertical level of one
that also has a ``level`` axis, built as its own variable (``var@level=<value>``, see
`pipelines.derived.level_store_name`); variables on other dimensions are left out
(``gridscope build`` lists them).

Every chunk of every derived array is written, all-fill ones included (zarr skips
those by default), and the manifest records each array's shape and chunks, so a
deleted chunk file is detected (`pipelines.derived.missing_chunks`) instead of read as
the fill value. A re-run rebuilds a variable whose arrays lack chunk files.

Codecs: blosc-lz4 clevel 5 (`_compressor`), chosen by measurement per array kind on a
real unit (``python -m tests.bench.build_bounds SOURCE --codecs``, figures in
`_compressor`; synthetic data: ``python -m tests.bench.codecs``): bit shuffling for the
time-series copy and the aggregates' sums, minima and maxima (ratio +5-15% over byte
shuffling at about the same encode speed), byte shuffling for counts and areas (~120x
vs ~60x), the aggregates' m2, and the pyramid fields and time-series level means (bit
shuffling packs a cell grid's mostly-NaN levels ~30% worse, and gains only ~2% on a
full field). Other lz4 levels and block sizes change encode CPU and bytes by < 3%;
blosc-zstd is 1-2% smaller and encodes ~3x slower, and encoding is part of the build's
largest stage (``python -m tests.bench.build_bounds``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import shutil
import sys
import threading
import time as _time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from data_catalog.grid import grid_of
from pipelines.aggregates import (
    STAT_DTYPES,
    STATS,
    BlockTable,
    block_stats,
    combine_stats,
    layout_steps_for,
    stored,
)
from pipelines.cell_stores import (
    AGG_CHUNK,
    FANOUT,
    TS_CHUNK,
    block_sums,
    cell_grid,
    level_fields,
    pyramid_shapes,
    write_cell_grid,
)
from pipelines.cluster import ClusterSpec, connect, disconnect
from pipelines.derived import (
    _OPEN,
    MANIFEST,
    NEXT_MANIFEST,
    STORE_FORMAT,
    derived_dir_for,
    fingerprint,
    level_store_name,
    missing_chunks,
    register_derived,
    split_store_name,
    write_manifest,
)
from pipelines.multiscales import write_multiscales
from pipelines.pyramid import coarsen_fields, levels_needed, stores_minmax
from pipelines.reductions import spatial_dims
from pipelines.selection import is_regular, level_index
from pipelines.timeseries_store import level_means, pack_values, packing_of, stored_levels

__all__ = ["BuildConfig", "build_derived", "open_source"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """What to build.

    Parameters
    ----------
    max_level
        Coarsest pyramid / aggregate level (level l has 2**l x 2**l cells per block);
        ``None`` (the default): as many as the grid needs
        (`pipelines.pyramid.levels_needed`: none above a level of at most ~1 M cells),
        chosen per source by `for_grid`.
    ts_max_level
        Coarsest level of the time-series copy's region sums.
    base_block
        Shortest aggregate block in steps (a power of two).
    unit_steps
        Steps per build unit and the time-series copy's time chunk (a power of two,
        multiple of ``base_block``).
    variables
        Variables to build (default: all).
    """

    max_level: int | None = None
    ts_max_level: int = 5
    base_block: int = 8
    unit_steps: int = 64
    variables: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("base_block", "unit_steps"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two, not {value}")
        if self.unit_steps < self.base_block:
            raise ValueError("unit_steps must be >= base_block")
        max_level = 0 if self.max_level is None else self.max_level
        if not 0 <= max_level <= 8 or not 0 <= self.ts_max_level <= 10:
            raise ValueError("levels out of range (max_level 0..8, ts_max_level 0..10)")

    @property
    def levels(self) -> int:
        """``max_level`` once chosen (`for_grid`); an error before, never a guess."""
        if self.max_level is None:
            raise ValueError("BuildConfig.max_level is chosen per grid: call for_grid(ds)")
        return self.max_level

    def for_grid(self, ds: xr.Dataset) -> BuildConfig:
        """This configuration with ``max_level`` chosen for ``ds``'s grid when it is
        ``None`` (`pipelines.pyramid.levels_needed` over the cell counts of levels 0..8:
        a regular grid's 2**l blocks, a cell store's regular levels)."""
        if self.max_level is not None:
            return self
        if is_regular(ds):
            ny, nx = ds.sizes["lat"], ds.sizes["lon"]
            cells = [math.ceil(ny / 2**lev) * math.ceil(nx / 2**lev) for lev in range(9)]
        else:
            area = grid_of(ds).area
            cells = [int(np.size(area))] + [2 * n * n for n in pyramid_shapes(area, 8)]
        return dataclasses.replace(self, max_level=levels_needed(cells))


_SOURCES: dict[str, xr.Dataset] = {}
#: Manifest format (`pipelines.derived.STORE_FORMAT`): 2 lays aggregate rows out for
#: appends (``layout_steps``); 3 stores time-series levels as float32 block means and
#: valid areas, only every other one (`pipelines.timeseries_store.stored_levels`),
#: aggregates' float32 ``m2`` instead of float64 ``sumsq``, floats bit-shuffled; 4 has
#: aggregate block sizes 4x apart (`pipelines.aggregates.BlockTable`); 5 stored the
#: pyramid levels (of regular grids and cell stores) as the mean field only; 6 stores
#: the per-step min/max fields again from level `MINMAX_FROM_LEVEL` (2) on, level 1's
#: being made from the native cells where a range map's edge steps need them (a
#: format-5 store has none at level 2: it is rebuilt, never read without them).
_FORMAT = STORE_FORMAT


def open_source(source: str, nsteps: int | None = None) -> xr.Dataset:
    """Open a source by path/catalog id, or a ``virtual:freq:nsteps:res:seed`` source.

    Opened sources are kept per process; ``nsteps`` (the record length the build saw)
    re-opens one kept with another length (the source gained steps since: an append).
    """
    ds = _SOURCES.get(source)
    if ds is not None and nsteps is not None and ds.sizes.get("time") != nsteps:
        ds = None
    if ds is None:
        if source.startswith("virtual:"):
            from pipelines.synthetic import SyntheticSpec, virtual_dataset

            ds = virtual_dataset(SyntheticSpec.from_source(source))
        else:
            from data_catalog import open_dataset

            ds = open_dataset(source)
        _SOURCES[source] = ds
    return ds


def _table(nt: int, cfg: BuildConfig) -> BlockTable:
    """The aggregate blocks of a record of ``nt`` steps, laid out as the stores are
    (`pipelines.aggregates.layout_steps_for`: room to append up to the next power of two)."""
    return BlockTable(nt, cfg.base_block, layout_steps=layout_steps_for(nt, cfg.base_block))


def _compressor(store: str, path: str, dtype: str) -> Any:
    """The codec of a derived array (see the module docstring): blosc-lz4 clevel 5 with
    bit shuffling for the time-series copy (a packed source's int16 codes too) and the
    aggregates' sums, minima and maxima, byte shuffling for the rest: integer counts
    and areas (nearly constant: byte shuffling packs them twice as well), the pyramid's
    fields and the time-series level means (the same fields: a cell grid's levels are
    mostly NaN off the grid's region, which bit shuffling packs ~30% worse) and the
    aggregates' m2 (bit shuffling packs it 1.7% better for 50% more encode CPU).

    Measured on one real unit (``python -m tests.bench.build_bounds SOURCE --codecs``:
    64 steps of the 1 GB bench store's t2m, one thread, encode CPU s / MB): the copy
    0.21 / 138 (byte shuffling 0.18 / 153: +11%), sums 0.06 / 33 (0.04 / 37), minima
    and maxima 0.03 / 26 each (0.03 / 28), m2 0.02 / 35.8 (bit 0.03 / 35.2), level
    means 0.013 / 9.9 (bit 0.018 / 9.8). All kinds: ~0.5 s / 342 MB per unit; lz4 at
    clevel 1, 3 or 9 or a 256 kB blosc block changes either by < 3%; no shuffling is
    2x faster and 1.6x larger; blosc-zstd clevel 1 is 1-2% smaller and 2.7x slower.
    blosc runs single-threaded in the writer's threads (zarr sets
    ``numcodecs.blosc.use_threads = False``). The unit's other ~1.3 s of
    "encode+write" is copying chunks out of the slab (~0.2 s) and creating ~1500 chunk
    files (~0.1-0.8 ms of kernel CPU each)."""
    from zarr.codecs import BloscCodec

    name = path.rsplit("/", 1)[-1]
    counts = dtype.startswith("int") and path != "values"
    level_means = store == "timeseries" and name == "mean"
    plain = counts or name in ("area", "m2") or level_means or store == "pyramid"
    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle" if plain else "bitshuffle")


def _layout(
    ds: xr.Dataset, var: str, cfg: BuildConfig, packing: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Every derived array of ``var``: store -> path -> (shape, chunks, dtype); the
    time-series copy in ``packing``'s integers when given (`_choose_packing`)."""
    if not is_regular(ds):
        return _cells_layout(ds, cfg)
    ny, nx, nt = ds.sizes["lat"], ds.sizes["lon"], ds.sizes["time"]
    table = _table(nt, cfg)
    out: dict[str, dict[str, Any]] = {"pyramid": {}, "aggregates": {}, "timeseries": {}}
    u = cfg.unit_steps
    for lev in range(0, max(cfg.levels, cfg.ts_max_level) + 1):
        s = 2**lev
        nyl, nxl = math.ceil(ny / s), math.ceil(nx / s)
        if 1 <= lev <= cfg.levels:
            # per-step min/max fields from MINMAX_FROM_LEVEL on (`pipelines.pyramid`); below
            # it the planner coarsens them from the raw cells for a range map's edge steps
            tc = min(u, 4 ** (lev - 1))
            for kind in ("mean", "min", "max") if stores_minmax(lev) else ("mean",):
                out["pyramid"][f"L{lev}/{kind}"] = ((nt, nyl, nxl), (tc, nyl, nxl), "float32")
        if lev <= cfg.levels and table.total:
            tile = (1, min(nyl, 361), min(nxl, 720))
            for name, dtype in _STAT_DTYPES:
                out["aggregates"][f"L{lev}/{name}"] = ((table.total, nyl, nxl), tile, dtype)
            out["aggregates"][f"L{lev}/shift"] = ((nyl, nxl), (nyl, nxl), "float64")
        if lev in stored_levels(cfg.ts_max_level):
            for name in _TS_LEVEL_ARRAYS:
                out["timeseries"][f"L{lev}/{name}"] = (
                    (nt, nyl, nxl),
                    (u, min(_TS_TILE, nyl), min(_TS_TILE, nxl)),
                    "float32",
                )
    ts_dtype = packing["dtype"] if packing else "float32"
    tile = (u, min(_TS_TILE, ny), min(_TS_TILE, nx))
    out["timeseries"]["values"] = ((nt, ny, nx), tile, ts_dtype)
    return out


def _ncells(ds: xr.Dataset) -> int:
    return math.prod(int(ds.sizes[d]) for d in spatial_dims(ds))


def _cells_layout(ds: xr.Dataset, cfg: BuildConfig) -> dict[str, dict[str, Any]]:
    """Derived arrays of a non-regular grid's cells in position order
    (`pipelines.cell_stores`)."""
    n, nt = _ncells(ds), ds.sizes["time"]
    table = _table(nt, cfg)
    u = cfg.unit_steps
    out: dict[str, dict[str, Any]] = {"pyramid": {}, "aggregates": {}, "timeseries": {}}
    out["timeseries"]["values"] = ((nt, n), (u, min(TS_CHUNK, n)), "float32")
    for lev in stored_levels(cfg.ts_max_level):
        m = math.ceil(n / FANOUT**lev)
        for name in _TS_LEVEL_ARRAYS:
            out["timeseries"][f"L{lev}/{name}"] = ((nt, m), (u, min(TS_CHUNK, m)), "float32")
    if table.total:
        for name, dtype in _STAT_DTYPES:
            out["aggregates"][f"L0/{name}"] = ((table.total, n), (1, min(AGG_CHUNK, n)), dtype)
        out["aggregates"]["L0/shift"] = ((n,), (n,), "float64")
    for lev, nlat in enumerate(pyramid_shapes(grid_of(ds).area, cfg.levels), start=1):
        shape = (nlat, 2 * nlat)
        tc = min(u, 4 ** (lev - 1))
        # per-step min/max fields from MINMAX_FROM_LEVEL on (`pipelines.pyramid`); below it
        # a range map's edge steps make them from the native cells (`LevelMembers`)
        for kind in ("mean", "min", "max") if stores_minmax(lev) else ("mean",):
            out["pyramid"][f"L{lev}/{kind}"] = (
                (nt, *shape),
                (tc, min(shape[0], 512), min(shape[1], 1024)),
                "float32",
            )
        if table.total:
            tile = (1, min(shape[0], 361), min(shape[1], 720))
            for name, dtype in _STAT_DTYPES:
                out["aggregates"][f"L{lev}/{name}"] = ((table.total, *shape), tile, dtype)
            out["aggregates"][f"L{lev}/shift"] = (shape, shape, "float64")
    return out


#: Cells along latitude and longitude of a chunk of a regular grid's time-series copy
#: and level means. Measured (issue 14, 0.25-degree bench store, 64-step chunks): 64x64
#: tiles cut a unit's chunk files from ~1630 to ~430, but save only ~0.08 thread-CPU s of
#: its ~3 s (encoding + writing the copy: 0.47-0.56 -> 0.38-0.45 s; files are cheap on a
#: local disk), and make a point series read 4x the bytes: p50 13 -> 27 ms, p95 25 -> 50
#: ms on the 10 GB store (area series about the same: p95 270-550 ms either way).
_TS_TILE = 32

#: A time-series level's arrays (`pipelines.timeseries_store.level_means`).
_TS_LEVEL_ARRAYS = ("mean", "area")

_STAT_DTYPES = tuple(STAT_DTYPES.items())


def _pyramid_levels(layout: dict[str, dict[str, Any]]) -> int:
    """The coarsest pyramid level a layout has (a cell grid may have fewer than asked)."""
    levels = [int(path.split("/")[0][1:]) for path in layout["pyramid"]]
    return max(levels, default=0)


def _array_specs(layout: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The manifest's record of every derived array: store -> path -> shape and chunks
    (what `pipelines.derived.missing_chunks` counts chunk files against)."""
    return {
        store: {
            path: {"shape": list(shape), "chunks": list(chunks)}
            for path, (shape, chunks, _dtype) in arrays.items()
        }
        for store, arrays in layout.items()
    }


def _dense(arr: Any) -> Any:
    """``arr`` writing every chunk, even one equal to the fill value everywhere.

    zarr skips (and deletes) such chunks by default; derived arrays must hold every
    chunk file so that a missing one means damage, not "all fill value".
    """
    return arr.with_config({"write_empty_chunks": True})


def _create_arrays(folder: Path, var: str, layout: dict[str, dict[str, Any]]) -> None:
    import zarr

    for store, arrays in layout.items():
        root = zarr.open_group(folder / f"{store}.zarr", mode="a", zarr_format=3)
        for path, (shape, chunks, dtype) in arrays.items():
            name = f"{var}/{path}"
            if name in root:
                existing = root[name]
                if (
                    tuple(existing.shape) == tuple(shape)
                    and tuple(existing.chunks) == tuple(chunks)
                    and existing.dtype == np.dtype(dtype)
                ):
                    continue
                del root[name]
            # integers: 0 (a packed time-series copy's edge chunks are padded with it,
            # never read; a missing chunk is damage, `pipelines.derived.missing_chunks`)
            fill = 0 if np.dtype(dtype).kind in "iu" else np.nan
            root.create_array(
                name,
                shape=shape,
                chunks=chunks,
                dtype=dtype,
                compressors=[_compressor(store, path, dtype)],
                fill_value=fill,
                overwrite=True,
            )


def _unit_marker(folder: Path, var: str, unit: int) -> Path:
    return folder / "progress" / var / f"unit-{unit:07d}.done"


def _combine_marker(folder: Path, var: str, level: int, size: int, nt: int) -> Path:
    return folder / "progress" / var / f"combine-L{level}-s{size}-n{nt}.done"


class _Arrays:
    """A zarr group's arrays by path (``group[path]``, ``path in group``), each opened
    once: opening one parses its metadata, ~5-10 ms of Python holding the GIL, and a
    unit opens ~50 (3 s of the 1 GB bench store's 15 s of build CPU, units waiting on
    each other for the GIL)."""

    def __init__(self, group: Any):
        self._group = group
        self._arrays: dict[str, Any] = {}

    def __getitem__(self, path: str) -> Any:
        arr = self._arrays.get(path)
        if arr is None:  # two threads may open one twice: the same array
            arr = self._arrays[path] = self._group[path]
        return arr

    def __contains__(self, path: str) -> bool:
        try:
            self[path]
        except KeyError:
            return False
        return True


#: `_Arrays` of the derived stores being built, by (data folder, store, record length):
#: within one build an array's metadata does not change (an append, the only build that
#: grows arrays in place, is of another record length); cleared by each build.
_OPENED: dict[tuple[str, str, int], _Arrays] = {}
_OPENED_LOCK = threading.Lock()


def _opened(folder: Path, store: str, nt: int) -> _Arrays:
    """The arrays of ``folder``'s ``store`` (``"pyramid"``, ...) for a record of ``nt``
    steps, opened once per build and process."""
    import zarr

    key = (str(folder), store, nt)
    with _OPENED_LOCK:
        arrays = _OPENED.get(key)
        if arrays is None:
            if len(_OPENED) >= 30:  # a worker of many builds: keep the latest few
                _OPENED.clear()
            arrays = _OPENED[key] = _Arrays(zarr.open_group(folder / f"{store}.zarr", mode="r+"))
        return arrays


class _SlabWriter:
    """Writes whole chunks of zarr v3 arrays straight to a local store, on threads.

    The build writes aligned slabs (all of the spatial extent, a time range starting on
    a chunk boundary and ending on one or at the array's end), so every chunk it touches
    is written whole: no read-modify-write. zarr-python spends ~1 ms of Python per
    chunk; encoding with the array's own blosc codec and writing the file here costs
    ~0.2 ms, and runs on a thread pool (blosc and file writes release the GIL) while
    the caller computes the next outputs. Arrays with other codecs or stores fall back
    to ``zarr`` assignment. The files are exactly what zarr writes for a full chunk
    (BytesCodec little-endian, then blosc; edge chunks padded with the fill value).
    """

    #: Raw bytes of the chunks one task encodes and writes.
    TASK_BYTES = 4 << 20

    def __init__(self, threads: int = 2):
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=threads)
        self._futures: list[Any] = []
        self._dirs: set[str] = set()

    def write(self, arr: Any, start: int, data: np.ndarray) -> None:
        plan = _fast_chunk_plan(arr, start, data)
        if plan is None:
            _dense(arr)[start : start + data.shape[0]] = data
            return
        codec, chunks, fill, root = plan
        shape = arr.shape
        ct = chunks[0]
        encode_key = arr.metadata.chunk_key_encoding.encode_chunk_key
        rest = [range(-(-shape[d] // chunks[d])) for d in range(1, len(shape))]
        jobs = []
        for c0 in range(start // ct, -(-(start + data.shape[0]) // ct)):
            for cs in itertools.product(*rest):
                key = encode_key((c0, *cs))
                sel = (slice(c0 * ct - start, min((c0 + 1) * ct, shape[0]) - start),) + tuple(
                    slice(c * chunks[d], min((c + 1) * chunks[d], shape[d]))
                    for d, c in enumerate(cs, start=1)
                )
                jobs.append((sel, f"{root}/{key}"))
        # a few MB of chunks per task: one task (a future, a thread hand-over: ~0.2 ms
        # of Python holding the GIL) per 256 kB chunk cost ~1 s per unit of 266 MB
        per_task = max(1, self.TASK_BYTES // (math.prod(chunks) * data.dtype.itemsize))
        for i in range(0, len(jobs), per_task):
            batch = jobs[i : i + per_task]
            self._futures.append(
                self._pool.submit(_encode_write_many, codec, data, batch, chunks, fill, self._dirs)
            )

    def wait(self) -> None:
        futures, self._futures = self._futures, []
        for fut in futures:
            fut.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown()


def _fast_chunk_plan(
    arr: Any, start: int, data: np.ndarray
) -> tuple[Any, tuple[int, ...], Any, str] | None:
    from zarr.codecs import BloscCodec, BytesCodec
    from zarr.storage import LocalStore

    meta = arr.metadata
    if (
        getattr(meta, "zarr_format", None) != 3
        or not isinstance(arr.store, LocalStore)
        or arr.ndim not in (2, 3)
    ):
        return None
    codecs = tuple(meta.codecs)
    if (
        len(codecs) != 2
        or not isinstance(codecs[0], BytesCodec)
        or not isinstance(codecs[1], BloscCodec)
    ):
        return None
    if codecs[0].endian is not None and codecs[0].endian.value != sys.byteorder:
        return None
    chunks = tuple(int(c) for c in arr.chunks)
    shape = tuple(int(n) for n in arr.shape)
    stop = start + data.shape[0]
    if (
        data.shape[1:] != shape[1:]
        or start % chunks[0]
        or not (stop % chunks[0] == 0 or stop == shape[0])
    ):
        return None
    if np.dtype(data.dtype) != np.dtype(arr.dtype):
        return None
    root = str(Path(str(arr.store.root)) / arr.path)
    return codecs[1]._blosc_codec, chunks, arr.fill_value, root


def _encode_write_many(
    codec: Any,
    data: np.ndarray,
    jobs: list[tuple[tuple[slice, ...], str]],
    chunks: tuple[int, ...],
    fill: Any,
    dirs: set[str],
) -> None:
    """`_encode_write` each ``(selection, path)`` of ``jobs``."""
    for sel, path in jobs:
        _encode_write(codec, data, sel, chunks, fill, path, dirs)


def _encode_write(
    codec: Any,
    data: np.ndarray,
    sel: tuple[slice, ...],
    chunks: tuple[int, ...],
    fill: Any,
    path: str,
    dirs: set[str],
) -> None:
    import os

    part = data[sel]
    if part.shape != chunks:
        full = np.full(chunks, fill, dtype=data.dtype)
        full[tuple(slice(0, n) for n in part.shape)] = part
        part = full
    encoded = codec.encode(np.ascontiguousarray(part).view("uint8").reshape(-1))
    parent = os.path.dirname(path)
    if parent not in dirs:
        os.makedirs(parent, exist_ok=True)
        dirs.add(parent)
    if not os.path.exists(path):  # a new chunk: no version reads it before it is complete
        with open(path, "wb") as fh:
            fh.write(encoded)
        return
    # an existing chunk is replaced by a new file: a reader of the published version (an
    # append rewrites the old record's last chunks, same values for the old steps) sees
    # the old file or the new one, and a file hard-linked from an older version
    # (`_relink`) keeps its bytes
    tmp = f"{path}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(encoded)
    os.replace(tmp, path)


def _read_steps(ds: xr.Dataset, var: str, t0: int, t1: int, dtype: str = "float32") -> np.ndarray:
    """Steps ``[t0, t1)`` of ``var`` as (time, lat, lon) float32 (or ``dtype``: a packed
    source's decoded dtype, `_choose_packing`), read once.

    A dask-backed field's blocks are stored straight into one float32 array: no
    concatenation of them afterwards (``compute`` copies every byte once more, and its
    graph handling costs as much again: 0.57 -> 0.32 CPU s for 56 steps of 721x1440).
    """
    from dask import is_dask_collection

    da = _field(ds, var).isel(time=slice(t0, t1)).transpose("time", "lat", "lon")
    if is_dask_collection(da.data):
        import dask.array

        out = np.empty(da.shape, dtype=dtype)
        dask.array.store(da.data, out, lock=False, scheduler="synchronous")
        return out
    return np.ascontiguousarray(np.asarray(da.values), dtype=dtype)


def _field(ds: xr.Dataset, name: str) -> xr.DataArray:
    """The field a manifest name (`pipelines.derived.level_store_name`) stands for:
    the variable, or one of its vertical levels (the ``level`` axis dropped)."""
    var, level = split_store_name(name)
    if level is None:
        return ds[name]
    da = ds[var]
    return da.isel(level=level_index(da["level"].values, level))


def _store_names(ds: xr.Dataset, requested: tuple[str, ...] | None, source: str) -> list[str]:
    """The manifest names to build: each variable on time and the grid, and each level
    of one that also has a vertical ``level`` axis (stores per level, even a size-1
    one such as a 2 m ``height``). By default variables on other dimensions are left
    out (``gridscope build`` says which and why); one asked for by name is an error."""
    grid = {"time", *spatial_dims(ds)}
    names: list[str] = []
    for name in requested or [str(v) for v in ds.data_vars]:
        var, level = split_store_name(name)
        if var not in ds.data_vars:
            raise ValueError(
                f"{source}: no variable {var!r}; available: {', '.join(map(str, ds.data_vars))}"
            )
        dims = set(ds[var].dims)
        if level is not None and dims == grid | {"level"}:
            _field(ds, name)  # a level the variable has (a QueryError naming them if not)
            names.append(name)
        elif level is None and dims == grid:
            names.append(name)
        elif level is None and dims == grid | {"level"}:
            names += [level_store_name(var, value) for value in ds[var]["level"].values]
        elif requested:
            raise ValueError(
                f"{source}: cannot build {name!r} on dimensions {', '.join(map(str, ds[var].dims))}"
                f"; a build takes variables on time and the grid, with at most a vertical level"
            )
    return list(dict.fromkeys(names))


def _run_unit(
    source: str, folder: str, var: str, unit: int, cfg: BuildConfig, nsteps: int | None = None
) -> int:
    """Read one unit of steps and write all its derived slices; returns bytes read.

    The source is read once; chunk encoding and writing run on threads while the
    pyramid / aggregate kernels (compiled, float32 in, float64 sums) compute the next
    outputs.
    """
    ds = open_source(source, nsteps)
    folder_p = Path(folder)
    nt = ds.sizes["time"]
    u = cfg.unit_steps
    t0, t1 = unit * u, min((unit + 1) * u, nt)
    if not is_regular(ds):
        values = _read_cells(ds, var, t0, t1, cell_grid(folder_p).order)
        _write_cell_unit(folder_p, var, values, t0, nt, cfg)
        return _mark_unit(folder_p, var, unit, values.nbytes)
    packing = _ts_packing(folder_p, var)
    decoded = _read_steps(ds, var, t0, t1, packing["decoded"] if packing else "float32")
    values = decoded.astype("float32", copy=False)
    pyr = _opened(folder_p, "pyramid", nt)
    agg = _opened(folder_p, "aggregates", nt)
    ts = _opened(folder_p, "timeseries", nt)
    writer = _SlabWriter()
    # the raw cells' aggregate blocks (the unit's largest kernel) on a thread of their
    # own, beside the pyramid kernels: a unit alone (a small store, a build's last
    # unit) keeps two cores busy
    raw_blocks = _helpers().submit(
        _write_blocks, writer, agg, var, 0, values, None, None, t0, nt, cfg
    )
    try:
        writer.write(ts[f"{var}/values"], t0, _ts_codes(decoded, packing, var, t0))
        area = np.asarray(ds["cell_area"].values, "float64")
        levels = coarsen_fields(values, area, max(cfg.levels, cfg.ts_max_level))
        for lev in range(1, cfg.levels + 1):
            # level 1's min/max fields only feed the aggregates' blocks below, in memory
            for kind in ("mean", "min", "max") if stores_minmax(lev) else ("mean",):
                writer.write(pyr[f"{var}/L{lev}/{kind}"], t0, levels[lev - 1][kind])
        for lev in stored_levels(cfg.ts_max_level):
            # the pyramid's mean field is the time-series level's block mean
            writer.write(ts[f"{var}/L{lev}/mean"], t0, levels[lev - 1]["mean"])
            writer.write(ts[f"{var}/L{lev}/area"], t0, levels[lev - 1]["warea"].astype("float32"))
        for lev in range(1, cfg.levels + 1):
            mean, vmin, vmax = (levels[lev - 1][k] for k in ("mean", "min", "max"))
            _write_blocks(writer, agg, var, lev, mean, vmin, vmax, t0, nt, cfg)
        raw_blocks.result()
        writer.wait()
    finally:
        concurrent.futures.wait([raw_blocks])  # it writes with ``writer`` until done
        writer.close()
    return _mark_unit(folder_p, var, unit, values.nbytes)


_HELPERS: list[Any] = []


def _helpers() -> Any:
    """Threads that run part of a unit beside the unit's own thread (`_run_unit`)."""
    with _OPENED_LOCK:
        if not _HELPERS:
            _HELPERS.append(
                concurrent.futures.ThreadPoolExecutor(thread_name_prefix="gridscope-unit-part")
            )
        return _HELPERS[0]


def _choose_packing(ds: xr.Dataset, var: str, info: dict[str, Any] | None) -> dict[str, Any] | None:
    """How ``var``'s time-series copy stores its values: a CF-packed source's integers
    (half the bytes of float32 for int16, exact for a float64-decoding source too), or
    float32 (None). Decided once per store, when its arrays are laid out: on the
    packing's codes and the first step (`pipelines.timeseries_store.packing_of`), then
    recorded in the manifest (``ts_packing``, missing: float32) and kept; each unit
    checks its own values again (`_ts_codes`). Cell stores keep a float32 copy."""
    if info is not None:
        return info.get("ts_packing")
    if not is_regular(ds) or os.environ.get("GRIDSCOPE_PACK_TIMESERIES", "1") == "0":
        return None
    da = _field(ds, var)
    if "scale_factor" not in da.encoding and "add_offset" not in da.encoding:
        return None
    first = _read_steps(ds, var, 0, 1, str(da.dtype)) if np.dtype(da.dtype).kind == "f" else None
    packing, why = packing_of(da, first)
    log.info("build %s: time-series copy %s", var, why if packing else f"float32 ({why})")
    if packing is not None:
        packing["decoded"] = str(da.dtype)
    return packing


def _mark_packing(folder: Path, var: str, packing: dict[str, Any] | None) -> None:
    """Record ``packing`` on the time-series ``values`` array (what the units encode by)."""
    if packing is not None:
        import zarr

        arr = zarr.open_array(folder / "timeseries.zarr", path=f"{var}/values", mode="r+")
        arr.attrs["gridscope_packing"] = packing


def _ts_packing(folder: Path, var: str) -> dict[str, Any] | None:
    """The packing the time-series ``values`` array was laid out with (`_mark_packing`)."""
    import json

    meta = folder / "timeseries.zarr" / var / "values" / "zarr.json"
    return json.loads(meta.read_text()).get("attributes", {}).get("gridscope_packing")


def _ts_codes(decoded: np.ndarray, packing: dict[str, Any] | None, var: str, t0: int) -> np.ndarray:
    """A unit's time-series values as stored: float32, or the packed codes, every one
    checked to decode to the value bit for bit (a value that does not stops the build
    with a message: never a silently different copy)."""
    if packing is None:
        return decoded
    codes, bad = pack_values(decoded, packing)
    if bad >= 0:
        step = t0 + bad // max(math.prod(decoded.shape[1:]), 1)
        raise ValueError(
            f"build {var}: the value {decoded.reshape(-1)[bad]!r} at step {step} is not one "
            f"the source's packing ({packing}) decodes to, so the packed time-series copy "
            "would differ from the data; delete the derived folder and build again with "
            "GRIDSCOPE_PACK_TIMESERIES=0 (a float32 copy)"
        )
    return codes


def _mark_unit(folder: Path, var: str, unit: int, nbytes: int) -> int:
    marker = _unit_marker(folder, var, unit)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("done\n")
    return int(nbytes)


def _read_cells(ds: xr.Dataset, var: str, t0: int, t1: int, order: np.ndarray) -> np.ndarray:
    """Steps ``[t0, t1)`` of ``var`` on a non-regular grid as (time, position) float32."""
    da = _field(ds, var).isel(time=slice(t0, t1)).transpose("time", *spatial_dims(ds))
    values = np.asarray(da.compute(scheduler="synchronous").values, dtype="float32")
    return np.ascontiguousarray(values.reshape(values.shape[0], -1)[:, order])


def _write_blocks(
    writer: _SlabWriter,
    agg: Any,
    var: str,
    lev: int,
    mean: np.ndarray,
    vmin: np.ndarray | None,
    vmax: np.ndarray | None,
    t0: int,
    nt: int,
    cfg: BuildConfig,
) -> None:
    """Write the aggregate blocks (sizes up to a unit) of one unit's steps at ``lev``."""
    b = cfg.base_block
    nblocks = mean.shape[0] // b
    if nblocks == 0 or f"{var}/L{lev}/sum" not in agg:
        return
    table = _table(nt, cfg)
    shift = agg[f"{var}/L{lev}/shift"][...]
    cut = nblocks * b
    stats = block_stats(
        mean[:cut],
        shift,
        b,
        None if vmin is None else vmin[:cut],
        None if vmax is None else vmax[:cut],
    )
    size = b
    for target in (s for s in table.sizes if s <= cfg.unit_steps):
        while size < target and stats.sum.shape[0] > 1:
            stats = combine_stats(stats)  # pairs: twice per size
            size *= 2
        if size != target or stats.sum.shape[0] == 0:
            break  # a unit at the record's end too short for blocks this long
        first = table.flat_index(size, t0 // size)
        for name in STATS:
            writer.write(agg[f"{var}/L{lev}/{name}"], first, stored(stats, name))


def _write_cell_unit(
    folder: Path, var: str, values: np.ndarray, t0: int, nt: int, cfg: BuildConfig
) -> None:
    """Write one unit's slices of a non-regular grid's cell stores (arrays opened once
    per build, `_opened`)."""
    agg = _opened(folder, "aggregates", nt)
    ts = _opened(folder, "timeseries", nt)
    pyr = _opened(folder, "pyramid", nt)
    grid = cell_grid(folder)
    writer = _SlabWriter()
    try:
        writer.write(ts[f"{var}/values"], t0, values)
        sums = block_sums(values, grid.area, cfg.ts_max_level)
        for lev, (wsum, warea) in enumerate(sums, start=1):
            if lev not in stored_levels(cfg.ts_max_level):
                continue
            mean, area = level_means(wsum, warea)
            writer.write(ts[f"{var}/L{lev}/mean"], t0, mean)
            writer.write(ts[f"{var}/L{lev}/area"], t0, area)
        _write_blocks(writer, agg, var, 0, values, None, None, t0, nt, cfg)
        for lev in range(1, len(grid.level_rows[: cfg.levels]) + 1):
            fields = level_fields(values, grid.level(lev))
            # level 1's min/max fields only feed the aggregates' blocks, in memory
            for kind in ("mean", "min", "max") if stores_minmax(lev) else ("mean",):
                writer.write(pyr[f"{var}/L{lev}/{kind}"], t0, fields[kind])
            _write_blocks(
                writer, agg, var, lev, fields["mean"], fields["min"], fields["max"], t0, nt, cfg
            )
        writer.wait()
    finally:
        writer.close()


def _concat_stats(parts: list) -> Any:
    from pipelines.aggregates import BlockStats

    return BlockStats(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in STATS})


def _run_combine(
    folder: str,
    var: str,
    level: int,
    size: int,
    nt: int,
    cfg: BuildConfig,
    first: int = 0,
    last: int | None = None,
) -> int:
    """Blocks ``first..last`` (default: to the end) of ``size`` steps from the stored
    blocks of the next shorter size (4 per block, combined in pairs; an append combines
    only the blocks its new steps complete; a build combines blocks while the units of
    later steps run); returns their number. The marker says all blocks are done.

    Rows are written by `_SlabWriter` (whole chunks, encoded on its threads while the
    next block is combined; one block in flight keeps memory at a few frames), not
    through zarr's per-chunk Python path."""
    from pipelines.aggregates import BlockStats

    agg = _opened(Path(folder), "aggregates", nt)
    arrays = {name: agg[f"{var}/L{level}/{name}"] for name in STATS}
    table = _table(nt, cfg)
    shorter = max(s for s in table.sizes if s < size)
    ratio = size // shorter
    n = table.count(size)
    src0 = table.offset(shorter)
    dst0 = table.offset(size)
    stop = n if last is None else min(last, n)
    writer = _SlabWriter()
    try:
        for k in range(first, stop):
            rows = slice(src0 + ratio * k, src0 + ratio * (k + 1))
            out = BlockStats(**{name: arrays[name][rows] for name in STATS})
            while out.sum.shape[0] > 1:
                out = combine_stats(out)
            writer.wait()  # the previous block's rows are written
            for name in STATS:
                writer.write(arrays[name], dst0 + k, stored(out, name))
        writer.wait()
    finally:
        writer.close()
    if stop == n:
        marker = _combine_marker(Path(folder), var, level, size, nt)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("done\n")
    return max(stop - first, 0)


def _write_shifts(ds: xr.Dataset, folder: Path, var: str, cfg: BuildConfig) -> None:
    import zarr

    agg = zarr.open_group(folder / "aggregates.zarr", mode="r+")
    if not is_regular(ds):
        grid = cell_grid(folder)
        first = _read_cells(ds, var, 0, 1, grid.order)
        fields = [first[0]] + [
            level_fields(first, grid.level(k))["mean"][0]
            for k in range(1, len(grid.level_rows[: cfg.levels]) + 1)
        ]
        for lev, field in enumerate(fields):
            if f"{var}/L{lev}/shift" in agg:
                shift = np.nan_to_num(field.astype("float64"), nan=0.0)
                _dense(agg[f"{var}/L{lev}/shift"])[...] = shift
        return
    first = np.asarray(
        _field(ds, var).isel(time=0).transpose("lat", "lon").compute(scheduler="synchronous").values
    )
    area = np.asarray(ds["cell_area"].values, "float64")
    fields = [first] + [lv["mean"] for lv in coarsen_fields(first, area, cfg.levels)]
    for lev in range(0, cfg.levels + 1):
        if f"{var}/L{lev}/shift" in agg:
            shift = np.nan_to_num(fields[lev].astype("float64"), nan=0.0)
            _dense(agg[f"{var}/L{lev}/shift"])[...] = shift


def _forget_if_damaged(
    folder: Path, manifest: dict[str, Any], var: str, source: str, nsteps: int
) -> None:
    """Drop ``var``'s manifest entry and progress markers when its complete arrays lack
    chunk files, so this build writes all of its units and blocks again."""
    info = manifest["variables"].get(var)
    if info is None:
        return
    problems = missing_chunks(folder, var, info, nsteps, source)
    if not problems:
        return
    for problem in problems:
        log.warning("rebuilding: %s", problem.text)
    del manifest["variables"][var]
    shutil.rmtree(folder / "progress" / var, ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _new_id() -> str:
    """A version id: sortable by time, unique (``20261127T121314-1a2b3c4d``)."""
    import uuid

    return f"{_time.strftime('%Y%m%dT%H%M%S', _time.gmtime())}-{uuid.uuid4().hex[:8]}"


def _save(folder: Path, state: dict[str, Any], publish: bool) -> None:
    """Keep the build's state (``manifest.next.json``: resumable); with ``publish``, also
    make it the version readers use (`_publish`)."""
    write_manifest(folder, state, NEXT_MANIFEST)
    if publish:
        _publish(folder, state)


def _publish(folder: Path, state: dict[str, Any]) -> None:
    """Switch readers to ``state`` under a new version id: one ``os.replace`` of
    ``manifest.json``, so a reader sees the previous version or this one, never a mix.
    Nothing when ``state`` is the published version already (a re-run with nothing to
    do keeps its version, and the answers cached under it)."""
    published = _read_json(folder / MANIFEST)
    if published.get("version") and {k: v for k, v in published.items() if k != "version"} == {
        k: v for k, v in state.items() if k != "version"
    }:
        state["version"] = published["version"]
        return
    state["version"] = _new_id()
    write_manifest(folder, state)


def _collect_old_versions(folder: Path, keep: set[str]) -> None:
    """Delete data folders no manifest names (``keep``: the published and the pending
    one). A version stops being published only when the next one is, one build ago, so
    readers have long switched (they re-read the manifest on every query). Folders of
    the layout before versions (stores in ``folder`` itself, ``""``) go the same way."""
    for path in folder.glob("data-*"):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    if "" not in keep:
        for name in ("pyramid.zarr", "aggregates.zarr", "timeseries.zarr", "progress", "cells"):
            shutil.rmtree(folder / name, ignore_errors=True)


def _appended_from(manifest: dict[str, Any], ds: xr.Dataset) -> int | None:
    """The record length the stores were built for when ``ds`` is that record plus new
    steps (same grid, areas, normalisation, first steps; stores laid out for appends),
    else None (a build from scratch)."""
    old = dict(manifest.get("fingerprint", {}))
    new = fingerprint(ds)
    variables = manifest.get("variables", {})
    if not old or "nsteps" not in old or not variables or "data" not in manifest:
        return None
    if any("layout_steps" not in v for v in variables.values()):
        return None  # older layouts: rebuilt whole
    if any(not v.get("complete", {}).get("pyramid") for v in variables.values()):
        return None  # an unfinished build of the shorter record: start again
    n = int(old["nsteps"])
    same = {k: v for k, v in old.items() if k not in ("nsteps", "time1")} == {
        k: v for k, v in new.items() if k not in ("nsteps", "time1")
    }
    if not same or int(new["nsteps"]) <= n or str(ds["time"].values[n - 1]) != old["time1"]:
        return None
    return n


def _same_cells(data: Path, ds: xr.Dataset) -> bool:
    """Whether the cell stores in ``data`` (`pipelines.cell_stores`) were built for
    ``ds``'s cells: centres and areas equal, bit for bit, to ``cells/`` in its position
    order, so the order, the tile index and the regridding matrices (functions of them
    alone) hold for the grown record and an append may keep them. The fingerprint
    compares a few centres and the total area only. True for a regular grid."""
    if is_regular(ds):
        return True
    cells = data / "cells"
    try:
        order = np.load(cells / "order.npy")
        stored = {name: np.load(cells / f"{name}.npy") for name in ("lon", "lat", "area")}
    except (FileNotFoundError, ValueError) as exc:
        log.warning("rebuilding, not appending: the cell stores in %s lack cells/ (%s)", data, exc)
        return False
    grid = grid_of(ds)
    for name, values in stored.items():
        now = np.asarray(getattr(grid, name), "float64").ravel()
        if now.size != order.size or not np.array_equal(now[order], values, equal_nan=True):
            log.warning(
                "rebuilding, not appending: the grid's cell %s changed since the stores in %s "
                "were built (only the time axis may grow for an append)",
                "centres" if name != "area" else "areas",
                data,
            )
            return False
    return True


def _start_append(
    folder: Path, published: dict[str, Any], ds: xr.Dataset, old_nt: int, cfg: BuildConfig
) -> dict[str, Any]:
    """The build state of an append from the published stores of ``old_nt`` steps to
    ``ds``'s record. Readers keep the published version until the append completes.

    Within the aggregates' layout (`pipelines.aggregates.layout_steps_for`) the append
    writes into the published data folder: only files past the old record, and the
    old record's last, partial unit again (same values for the old steps; every chunk
    file is replaced atomically). Past it, the aggregate rows move, so the new version
    is a new data folder of hard links to the old files (rows at their new places).
    """
    import copy

    state = copy.deepcopy(published)
    new_nt = ds.sizes["time"]
    relink = layout_steps_for(new_nt, cfg.base_block) != layout_steps_for(old_nt, cfg.base_block)
    state["fingerprint"] = fingerprint(ds)
    state["appending"] = {"from": old_nt, "relink": published["data"] if relink else None}
    if relink:
        state["data"] = f"data-{_new_id()}"
    for var, info in state["variables"].items():
        info["complete"] = {}
        info["blocks_from"] = old_nt
        # units from the one holding the old record's end are (re)written; markers of an
        # earlier, unfinished append to another length are no good either
        for marker in (folder / state["data"] / "progress" / var).glob("unit-*.done"):
            if int(marker.name[5:12]) >= old_nt // cfg.unit_steps:
                marker.unlink()
    _save(folder, state, publish=False)
    return state


def _resume_append(folder: Path, state: dict[str, Any], cfg: BuildConfig) -> None:
    """Prepare the new data folder of an append whose rows move (again after a kill):
    hard links to the old version's files."""
    appending = state["appending"]
    if appending.get("relink"):
        nt = int(state["fingerprint"]["nsteps"])
        _relink(
            folder / appending["relink"], folder / state["data"], int(appending["from"]), nt, cfg
        )


def _relink(old: Path, new: Path, old_nt: int, new_nt: int, cfg: BuildConfig) -> None:
    """Hard-link every file of the data folder ``old`` into ``new`` (no bytes copied),
    aggregate rows at their flat index in the layout for ``new_nt`` steps; files
    already in ``new`` are kept (a resumed append). Unit markers of the units the append
    redoes are left out."""
    import os

    redo = old_nt // cfg.unit_steps
    new_table = BlockTable(layout_steps_for(new_nt, cfg.base_block), cfg.base_block)
    old_tables: dict[Path, BlockTable] = {}
    for root, _dirs, files in os.walk(old):
        parts = Path(root).relative_to(old).parts
        if parts[:1] == ("progress",):
            files = [f for f in files if not (f.startswith("unit-") and int(f[5:12]) >= redo)]
        target = new.joinpath(*_moved_row(old, parts, old_tables, new_table, cfg.base_block))
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                os.link(Path(root) / name, target / name)
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links: a copy (slower, same bytes)
                shutil.copy2(Path(root) / name, target / name)


def _moved_row(
    old: Path,
    parts: tuple[str, ...],
    old_tables: dict[Path, BlockTable],
    new_table: BlockTable,
    base: int,
) -> tuple[str, ...]:
    """``parts`` (a folder under ``old``) with an aggregates array's row (``c/<row>``: one
    block per chunk) moved to its index in ``new_table``'s layout."""
    if parts[:1] != ("aggregates.zarr",) or "c" not in parts:
        return parts
    at = parts.index("c")
    if at + 1 >= len(parts) or parts[at - 1] == "shift":
        return parts
    array_dir = old.joinpath(*parts[:at])
    table = old_tables.get(array_dir)
    if table is None:
        table = old_tables[array_dir] = BlockTable(_layout_length(_rows_of(array_dir), base), base)
    row = int(parts[at + 1])
    start, size = max((table.offset(s), s) for s in table.sizes if table.offset(s) <= row)
    return (*parts[: at + 1], str(new_table.offset(size) + row - start), *parts[at + 2 :])


def _grow_arrays(data: Path, var: str, layout: dict[str, dict[str, Any]]) -> None:
    """Grow ``var``'s arrays to ``layout`` (metadata only: zarr replaces ``zarr.json``
    atomically, a new file, so a hard-linked old version keeps its own)."""
    import zarr

    for store, arrays in layout.items():
        for path, (shape, _chunks, _dtype) in arrays.items():
            arr = zarr.open_array(data / f"{store}.zarr" / var / path, mode="r+")
            if tuple(arr.shape) != tuple(shape):
                arr.resize(shape)


def _rows_of(array_dir: Path) -> int:
    import zarr

    return int(zarr.open_array(array_dir, mode="r").shape[0])


def _layout_length(rows: int, base: int) -> int:
    """The record length (``base * 2**k``) a flat index of ``rows`` rows is laid out for."""
    length = base
    while BlockTable(length, base).total < rows:
        length *= 2
    if BlockTable(length, base).total != rows:
        raise ValueError(f"{rows} aggregate rows fit no layout of base {base}")
    return length


@contextlib.contextmanager
def _units_client(scheduler: str | ClusterSpec | None, client: Any) -> Iterator[Any]:
    """Where the units run: a `distributed.Client`, a number of threads of this process
    (an int), or None for this process's own thread, one unit after the other.

    ``client`` itself when given (left open); threads for a local cluster (``None`` or a
    `ClusterSpec` of kind ``"local"``: ``n_workers * threads_per_worker`` of them);
    otherwise a client connected to the cluster ``scheduler`` names (`build_derived`
    says how), closed with that cluster afterwards.

    Threads instead of a LocalCluster's worker processes: a unit's CPU is in compiled
    kernels, blosc and file writes, which release the GIL, so two units on two threads
    keep two cores busy, with no processes to start (~3-5 s of start-up and ~2 s of
    imports and kernel loading per worker, ~14 s of CPU on the 1 GB bench store's
    17 s of units) and the source opened once.
    """
    if client is not None:
        yield client
        return
    spec = scheduler if isinstance(scheduler, ClusterSpec) else ClusterSpec(scheduler=scheduler)
    if spec.scheduler == "synchronous":
        yield None
        return
    if spec.kind == "local":
        yield spec.n_workers * spec.threads_per_worker
        return
    connected = connect(spec)
    try:
        yield connected
    finally:
        disconnect(connected)


def _run_units(
    client: Any,
    source: str,
    folder: Path,
    todo: list[tuple[str, int]],
    cfg: BuildConfig,
    nsteps: int,
) -> Iterator[tuple[str, int, int]]:
    """Run the units ``todo`` where `_units_client` says (a client's cluster, that many
    threads of this process, or this thread when None), yielding each one's variable,
    unit and the raw bytes it read as it finishes. ``nsteps``: the record length planned
    for (a worker that opened the source before it grew re-opens it)."""
    if client is None:
        for var, u in todo:
            yield var, u, _run_unit(source, str(folder), var, u, cfg, nsteps)
        return
    if isinstance(client, int):
        from concurrent.futures import ThreadPoolExecutor, as_completed

        pool = ThreadPoolExecutor(max_workers=client, thread_name_prefix="gridscope-unit")
        try:
            futures = {
                pool.submit(_run_unit, source, str(folder), var, u, cfg, nsteps): (var, u)
                for var, u in todo
            }
            for fut in as_completed(futures):
                yield *futures[fut], fut.result()
        finally:  # an error (or a consumer that stops) leaves no unit queued
            pool.shutdown(wait=True, cancel_futures=True)
        return
    from distributed import as_completed as completed

    futures = {
        client.submit(_run_unit, source, str(folder), var, u, cfg, nsteps, pure=False): (var, u)
        for var, u in todo
    }
    # the client's own loop: as_completed otherwise looks for a default client, and
    # neither `connect`'s clients nor the dashboard's are made the default
    for fut in completed(list(futures), loop=client.loop):
        yield *futures[fut], fut.result()


def build_derived(
    source: str,
    out: str | Path | None = None,
    *,
    scheduler: str | ClusterSpec | None = None,
    client: Any = None,
    config: BuildConfig | None = None,
    progress: Callable[[str, int, int, float], None] | bool = True,
    stop_after_units: int | None = None,
) -> Path:
    """Build (or resume building) the derived stores of ``source``.

    Parameters
    ----------
    source
        Catalog id, path of a zarr/netCDF source, or ``virtual:...``.
    out
        Folder under which the derived folder is created (default: next to the source).
    scheduler
        Where the units run when no ``client`` is given: the cluster a `ClusterSpec`
        names (connected with `pipelines.cluster.connect` for this build, shut down
        after it), a scheduler address (short for ``ClusterSpec(scheduler=address)``),
        ``None`` or a local spec (``ClusterSpec()``) for ``n_workers *
        threads_per_worker`` threads of this process (see `_units_client`), or
        ``"synchronous"`` (also as a spec's scheduler) for this thread: tests, small data.
    client
        A connected `distributed.Client` to run the units on instead, left open (the
        dashboard passes its own, which also works for a Gateway cluster whose
        address alone is not enough to connect).
    stop_after_units
        Stop after this many units (for testing resumability).

    Returns
    -------
    Path
        The derived folder (holding ``manifest.json``).
    """
    called = _time.perf_counter()  # the whole build's figures count from here
    cpu0 = _time.process_time()
    if client is not None and scheduler is not None:
        raise ValueError("give build_derived a client or a scheduler, not both")
    cfg = config or BuildConfig()
    with _OPENED_LOCK:
        _OPENED.clear()  # arrays opened by an earlier build (maybe since deleted, grown)
    _SOURCES.pop(source, None)  # the source may have gained steps since it was opened
    ds = open_source(source)
    if "time" not in ds.dims:
        raise ValueError(f"{source}: no time axis, nothing to build")
    variables = _store_names(ds, cfg.variables, source)
    if not variables:  # say so: never publish a manifest of no variables
        skipped = [f"{v}{tuple(map(str, ds[v].dims))}" for v in ds.data_vars]
        raise ValueError(
            f"{source}: nothing to build: no variable is on time and the grid "
            f"({', '.join(['time', *map(str, spatial_dims(ds))])}), with at most a level; "
            f"skipped: {', '.join(skipped) or 'none (the dataset opened with no variables)'}"
        )
    cfg = cfg.for_grid(ds)
    folder = derived_dir_for(source, out)
    folder.mkdir(parents=True, exist_ok=True)
    nt = ds.sizes["time"]
    config_record = dataclasses.asdict(cfg) | {"variables": None}

    def ours(m: dict[str, Any]) -> bool:  # stores of this configuration and layout
        return m.get("config") == config_record and m.get("format") == _FORMAT

    published = _read_json(folder / MANIFEST)
    manifest = _read_json(folder / NEXT_MANIFEST)  # an unfinished build's state
    if not (ours(manifest) and manifest.get("fingerprint") == fingerprint(ds)):
        manifest = {}
    if not manifest and ours(published):
        if published.get("fingerprint") == fingerprint(ds):
            manifest = published  # built, or being built: resume (or nothing to do)
        else:
            appended_from = _appended_from(published, ds)
            if appended_from is not None and not _same_cells(folder / published["data"], ds):
                appended_from = None  # a non-regular grid's cells changed: rebuilt (logged)
            if appended_from is not None:  # the source gained steps: grow every variable
                old = folder / published["data"]
                if not any(
                    missing_chunks(old, v, i, appended_from, source)
                    for v, i in published["variables"].items()
                ):
                    manifest = _start_append(folder, published, ds, appended_from, cfg)
    if not manifest:
        manifest = {
            "format": _FORMAT,
            "source": source,
            "fingerprint": fingerprint(ds),
            "config": config_record,
            "variables": {},
            "data": f"data-{_new_id()}",
        }
    appending = manifest.get("appending")
    appended_from = None if appending is None else int(appending["from"])
    # a new data folder is visible as soon as it exists (its complete levels are used);
    # an append becomes visible when it is complete
    publish = appending is None
    _collect_old_versions(folder, {published.get("data", ""), str(manifest["data"])})
    data = folder / str(manifest["data"])
    data.mkdir(parents=True, exist_ok=True)
    if appending is not None:
        _resume_append(folder, manifest, cfg)
        variables += [v for v in manifest["variables"] if v not in variables]
    if not is_regular(ds) and not (data / "cells" / "order.npy").exists():
        grid = grid_of(ds)
        write_cell_grid(data, grid.lon, grid.lat, grid.area, cfg.levels)
    for var in variables:
        _forget_if_damaged(data, manifest, var, source, nt)
        packing = _choose_packing(ds, var, manifest["variables"].get(var))
        layout = _layout(ds, var, cfg, packing)
        info = manifest["variables"].setdefault(
            var,
            {
                "max_level": _pyramid_levels(layout),
                "ts_max_level": cfg.ts_max_level,
                "ts_levels": list(stored_levels(cfg.ts_max_level)),
                "base_block": cfg.base_block,
                "unit_steps": cfg.unit_steps,
                "complete": {},
                "layout": "grid" if is_regular(ds) else "cells",
                "arrays": _array_specs(layout),
            },
        )
        if "blocks_from" in info:  # an append (maybe resumed): grow, then fill in
            _grow_arrays(data, var, layout)
            info["arrays"] = _array_specs(layout)
        info["layout_steps"] = layout_steps_for(nt, cfg.base_block)
        if packing is not None:
            info["ts_packing"] = packing
        if not info["complete"] and "blocks_from" not in info:
            _create_arrays(data, var, layout)
            _mark_packing(data, var, packing)
            _write_shifts(ds, data, var, cfg)
    _save(folder, manifest, publish)
    register_derived(source, folder)
    _OPEN.pop(folder, None)

    nunits = math.ceil(nt / cfg.unit_steps)
    todo = [
        (var, u)
        for var in variables
        for u in range(nunits)
        if not _unit_marker(data, var, u).exists()
    ]
    if stop_after_units is not None:
        todo = todo[:stop_after_units]
    total_units = len(variables) * nunits
    done_units = (
        total_units - len(todo)
        if stop_after_units is None
        else total_units
        - len(
            [
                1
                for var in variables
                for u in range(nunits)
                if not _unit_marker(data, var, u).exists()
            ]
        )
    )
    started = _time.perf_counter()
    nbytes = 0

    def report(stage: str, done: int, total: int) -> None:
        rate = nbytes / 1e6 / max(_time.perf_counter() - started, 1e-9)
        if callable(progress):
            progress(stage, done, total, rate)
        elif progress:
            width = 30
            filled = int(width * done / max(total, 1))
            sys.stderr.write(
                f"\r{stage}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:7.1f} MB/s"
            )
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    table = _table(nt, cfg)
    unit = cfg.unit_steps
    long_sizes = [s for s in table.sizes if s > unit]
    # per variable: the units done, the levels with aggregates, and per (level, size)
    # of the blocks longer than a unit the next block to combine (blocks before it are
    # stored: combined already, or complete before an append)
    units_done = {var: set(range(nunits)) - {u for v, u in todo if v == var} for var in variables}
    levels: dict[str, list[int]] = {}
    next_block: dict[str, dict[tuple[int, int], int]] = {}
    for var in variables:
        info = manifest["variables"][var]
        arrays = info.get("arrays", {}).get("aggregates", {"L0/sum": 1})
        # a non-regular grid's cell stores have level 0 only
        levels[var] = [lev for lev in range(cfg.levels + 1) if f"L{lev}/sum" in arrays]
        recorded = set(info["complete"].get("aggregate_sizes") or [])
        blocks_from = int(info.get("blocks_from", 0))
        next_block[var] = {
            (lev, size): table.count(size)
            if size in recorded or _combine_marker(data, var, lev, size, nt).exists()
            else blocks_from // size
            for size in long_sizes
            for lev in levels[var]
        }

    def inputs_stored(var: str, lev: int, size: int, k: int, units: frozenset[int]) -> bool:
        """Whether block ``k`` of ``size`` steps can be combined: the blocks of the next
        shorter size it is made of are stored (written by units that are done, or
        combined)."""
        shorter = max(s for s in table.sizes if s < size)
        if shorter <= unit:
            first, last = k * size // unit, ((k + 1) * size - 1) // unit
            return all(u in units for u in range(first, last + 1))
        return next_block[var][(lev, shorter)] >= (k + 1) * (size // shorter)

    def advance(var: str, units: frozenset[int]) -> int:
        """Combine ``var``'s long blocks whose inputs are stored; returns their number."""
        count = 0
        for size in long_sizes:
            for lev in levels[var]:
                k0 = k = next_block[var][(lev, size)]
                while k < table.count(size) and inputs_stored(var, lev, size, k, units):
                    k += 1
                if k > k0:
                    count += _run_combine(str(data), var, lev, size, nt, cfg, k0, k)
                    next_block[var][(lev, size)] = k
        return count

    def finish(var: str) -> int:
        """Record ``var``'s units complete, then its blocks longer than a unit (the rest
        combined, one size at a time, each recorded when done); returns the blocks
        combined."""
        info = manifest["variables"][var]
        complete = info["complete"]
        done = set(complete.get("aggregate_sizes") or [])  # a re-run keeps what is done
        complete.update(pyramid=True, timeseries=True)
        complete["aggregate_sizes"] = sorted(done | {s for s in table.sizes if s <= unit})
        _save(folder, manifest, publish)
        count = 0
        for size in long_sizes:
            if size in done:
                continue
            for lev in levels[var]:
                if not _combine_marker(data, var, lev, size, nt).exists():  # writes it
                    first = next_block[var][(lev, size)]
                    count += _run_combine(str(data), var, lev, size, nt, cfg, first)
                next_block[var][(lev, size)] = table.count(size)
            info["complete"]["aggregate_sizes"].append(size)
            _save(folder, manifest, publish)
        info.pop("blocks_from", None)
        return count

    # long blocks are combined on a thread of this process while the units of later
    # steps run, each as soon as the blocks it is made of are stored, and a variable is
    # recorded complete as soon as its last unit is done (one thread: the manifest and
    # ``next_block`` are changed by it alone until the units are done)
    from concurrent.futures import ThreadPoolExecutor

    combiner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridscope-combine")
    combines: list[Any] = []
    try:
        if stop_after_units is None:
            combines += [
                combiner.submit(finish, var) for var in variables if len(units_done[var]) == nunits
            ]
        ran_here = True  # the units ran in this process (threads, or this thread)
        if todo:
            with _units_client(scheduler, client) as units_client:
                ran_here = units_client is None or isinstance(units_client, int)
                for var, u, unit_bytes in _run_units(units_client, source, data, todo, cfg, nt):
                    nbytes += unit_bytes
                    done_units += 1
                    report("units", done_units, total_units)
                    if stop_after_units is not None:
                        continue
                    failed = next((f for f in combines if f.done() and f.exception()), None)
                    if failed is not None:
                        failed.result()  # a combine failed: stop now, not after the units
                    units_done[var].add(u)
                    if len(units_done[var]) == nunits:
                        combines.append(combiner.submit(finish, var))
                    elif long_sizes:
                        combines.append(combiner.submit(advance, var, frozenset(units_done[var])))
        build_seconds = _time.perf_counter() - started
        combined = sum(fut.result() for fut in combines)
    finally:
        combiner.shutdown(wait=True, cancel_futures=True)
    if stop_after_units is not None:
        return folder

    if nbytes:  # a re-run with nothing left to do keeps the last real build's figures
        total_seconds = _time.perf_counter() - called
        manifest["last_build"] = {
            # units of work, for appends: units read and written, blocks combined
            "units": len(todo),
            "blocks_combined": combined,
            "appended_from": appended_from,
            "seconds": round(total_seconds, 2),
            "unit_seconds": round(build_seconds, 2),
            "bytes_read": nbytes,
            # raw bytes read per second of the whole build (opening the source and
            # creating the arrays, cluster start, units, combining the long blocks, the
            # last variable's after its units); units_mb_per_s: until the last unit
            "mb_per_s": round(nbytes / 1e6 / max(total_seconds, 1e-9), 1),
            "units_mb_per_s": round(nbytes / 1e6 / max(build_seconds, 1e-9), 1),
        }
        if ran_here:
            # CPU seconds of this process (all its threads) over the whole build: the
            # build's own CPU, which other work on the machine changes far less than the
            # wall time (nbytes / cpu_seconds * cores: the rate on cores of its own)
            manifest["last_build"]["cpu_seconds"] = round(_time.process_time() - cpu0, 2)
    manifest.pop("appending", None)
    for var in variables:  # GeoZarr multiscales attributes naming the pyramid's levels
        if manifest["variables"][var].get("layout") == "grid":
            write_multiscales(data, var, ds["lat"].values, ds["lon"].values)
    _publish(folder, manifest)  # the complete version, all at once
    (folder / NEXT_MANIFEST).unlink(missing_ok=True)
    return folder
