"""Time-series copy: the data chunked long in time and small in space.

Level 0 is the data itself (float32; a CF-packed source's own integers, see below), so
a point series is one small read. Coarser
levels ``l >= 1`` store per aligned ``2**l x 2**l`` block and step ``mean`` (the
area-weighted mean of the valid cells, float32, NaN where none is valid) and ``area``
(the valid cells' area, float32; it compresses ~100x when the mask does not change in
time). An area-weighted region mean is ``sum(wsum) / sum(warea)`` over any set of
disjoint pieces covering the region (``wsum = mean * area``, ``warea = area``, summed in
float64: `level_sums`), which `decompose_rectangle` finds: the largest aligned blocks
inside the rectangle plus thinner strips at finer levels (a quadtree cover), so a
region series reads O(perimeter) cells per step instead of O(area).

Error bound: a region mean is a weighted mean of block means each rounded to float32
(relative error <= 2**-24) with weights rounded to float32 alike, so it is off by at most
about ``2**-23 * mean(|x|)`` over the region, i.e. relative 1.2e-7 for a field of one
sign (temperatures in K, SST), far inside the 1e-5 the planner promises
(``tests/test_timeseries_levels.py`` checks it against float64 brute force). The float64
sums stored before cost 16 bytes per block and step, hardly compressible; these cost
about 4 on disk (the mean ~1.7x compressed, the area almost nothing).

Packed sources: a variable stored as int8/uint8/int16/uint16 with ``scale_factor`` /
``add_offset`` and a fill value (ERA5 netCDF from the CDS, many NOAA files) keeps its
level 0 as those integers, re-encoded from the decoded data as xarray's CF encoder does
(`pack_values`), and is read back through xarray's own decoder (`decode_values`): the
values, and their dtype (float32 or float64, as xarray gives the source), are bit for
bit the dataset's. `packing_of` decides at layout time (every code and a sample of the
data must round-trip; else float32), the build records it in the manifest
(``ts_packing``; missing: float32). 64 steps of synthetic 0.25-degree t2m packed as
int16 (scale 0.002): 104 MB instead of 157 MB for the float32 copy, the packed netCDF
source (zlib level 1) being 102 MB.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import xarray as xr

__all__ = [
    "PACKED_DTYPES",
    "cheapest_cover",
    "decode_table",
    "decode_values",
    "decompose_rectangle",
    "level_means",
    "level_sums",
    "lon_runs",
    "pack_values",
    "packing_of",
    "stored_levels",
]


def stored_levels(max_level: int) -> tuple[int, ...]:
    """The time-series levels a build stores up to ``max_level``: every other one
    (2, 4, ...: blocks 4x4, 16x16 cells, each 16 times fewer than the last), or level 1
    alone when ``max_level`` is 1.

    Level 1 alone would cost a quarter of the raw data again; the strips between two
    stored levels are at most three blocks (cells) thick, and a read decodes whole
    chunks of 32 x 32 blocks anyway, so skipping the odd levels costs a region series
    little (`cheapest_cover` picks the cover by chunks decoded).
    """
    if max_level == 1:
        return (1,)
    return tuple(range(2, max_level + 1, 2))


def level_means(wsum: np.ndarray, warea: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a time-series level stores for area-weighted sums ``wsum`` / valid areas
    ``warea`` (float64): the block means (float32, NaN where no valid cell) and the
    valid areas (float32)."""
    wsum = np.asarray(wsum, "float64")
    warea = np.asarray(warea, "float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(warea > 0, wsum / np.where(warea > 0, warea, 1.0), np.nan)
    return mean.astype("float32"), warea.astype("float32")


def level_sums(mean: np.ndarray, area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The area-weighted sums and valid areas (float64) of stored block ``mean`` /
    ``area`` (`level_means`), ready to be summed over blocks."""
    area = np.asarray(area, "float64")
    wsum = np.where(area > 0, np.nan_to_num(np.asarray(mean, "float64")) * area, 0.0)
    return wsum, np.where(area > 0, area, 0.0)


def lon_runs(indices: list[int] | tuple[int, ...]) -> list[tuple[int, int]]:
    """Split a sequence of indices into maximal runs of consecutive values ``[a, b)``."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        i = int(i)
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def decompose_rectangle(
    i0: int,
    i1: int,
    j0: int,
    j1: int,
    ny: int,
    nx: int,
    max_level: int,
    levels: tuple[int, ...] | None = None,
) -> list[tuple[int, int, int, int, int]]:
    """Cover level-0 cells ``[i0, i1) x [j0, j1)`` with aligned blocks of levels 0..max_level.

    ``levels``: the levels stored (default all of ``1..max_level``); level 0 (the cells)
    always is. Returns ``(level, bi0, bi1, bj0, bj1)`` pieces: block index ranges at
    ``level``. Blocks at the grid's far edges may hold fewer cells (partial blocks);
    such a block counts as inside when the rectangle reaches the edge.
    """
    out: list[tuple[int, int, int, int, int]] = []
    usable = _usable(max_level, levels)
    _cover(i0, i1, j0, j1, ny, nx, usable, len(usable) - 1, out)
    return out


def _usable(max_level: int, levels: tuple[int, ...] | None) -> tuple[int, ...]:
    """Level 0 and the stored levels up to ``max_level``, ascending."""
    stored = range(1, max_level + 1) if levels is None else levels
    return (0, *sorted(lev for lev in stored if 1 <= lev <= max_level))


def _inner(a: int, b: int, n: int, s: int) -> tuple[int, int]:
    lo = math.ceil(a / s)
    hi = math.ceil(n / s) if b >= n else b // s
    return lo, hi


def _cover(
    i0: int,
    i1: int,
    j0: int,
    j1: int,
    ny: int,
    nx: int,
    levels: tuple[int, ...],
    k: int,
    out: list,
) -> None:
    """Cover with ``levels[k]`` blocks and, around them, the next finer stored level."""
    if i0 >= i1 or j0 >= j1:
        return
    level = levels[k]
    if level == 0:
        out.append((0, i0, i1, j0, j1))
        return
    s = 2**level
    bi0, bi1 = _inner(i0, i1, ny, s)
    bj0, bj1 = _inner(j0, j1, nx, s)
    if bi0 >= bi1 or bj0 >= bj1:
        _cover(i0, i1, j0, j1, ny, nx, levels, k - 1, out)
        return
    out.append((level, bi0, bi1, bj0, bj1))
    ci0, ci1 = bi0 * s, min(bi1 * s, ny)
    cj0, cj1 = bj0 * s, min(bj1 * s, nx)
    # strips south and north of the core over the full width, then west and east of it
    _cover(i0, ci0, j0, j1, ny, nx, levels, k - 1, out)
    _cover(ci1, i1, j0, j1, ny, nx, levels, k - 1, out)
    _cover(ci0, ci1, j0, cj0, ny, nx, levels, k - 1, out)
    _cover(ci0, ci1, cj1, j1, ny, nx, levels, k - 1, out)


Piece = tuple[int, int, int, int, int]


def _cover_cost(pieces: list[Piece], chunks: dict[int, tuple[int, int]], cell_cost: float) -> float:
    """Bytes decoded per time step (whole chunks: a read decodes every chunk it touches,
    so a thin strip costs its chunks, not its cells) plus ``cell_cost`` per raw cell
    reduced (level-0 cells are weighted in numpy; coarser cells are just summed)."""
    cost = 0.0
    for lev, bi0, bi1, bj0, bj1 in pieces:
        cy, cx = chunks[lev]
        n = ((bi1 - 1) // cy - bi0 // cy + 1) * ((bj1 - 1) // cx - bj0 // cx + 1)
        cost += n * cy * cx * (4 if lev == 0 else 8)  # float32 values / float32 mean+area
        if lev == 0:
            cost += (bi1 - bi0) * (bj1 - bj0) * cell_cost
    return cost


def cheapest_cover(
    i0: int,
    i1: int,
    j0: int,
    j1: int,
    ny: int,
    nx: int,
    max_level: int,
    chunks: dict[int, tuple[int, int]],
    cell_cost: float = 8.0,
    min_saving: float = 65536.0,
    levels: tuple[int, ...] | None = None,
) -> list[Piece]:
    """A cover of ``[i0, i1) x [j0, j1)`` like `decompose_rectangle`, but the cheapest to
    read of a few candidates: the quadtree cover, or an aligned core at one level with the
    border strips covered by the quadtree up to a lower level (0: the raw cells).

    ``levels``: the levels stored (default all of ``1..max_level``, `stored_levels`).
    ``chunks[level]`` is the (lat, lon) chunk shape of that level's arrays. Thin strips at
    every intermediate level each decode a row of whole chunks; a wider raw strip that
    stays inside the raw level's chunks it touches anyway is often much cheaper.
    Another cover replaces the quadtree one only when it saves at least ``min_saving``
    bytes per step: small reads keep the quadtree cover (and its use of every level).
    """
    usable = _usable(max_level, levels)
    quadtree = decompose_rectangle(i0, i1, j0, j1, ny, nx, max_level, usable)
    quadtree_cost = _cover_cost(quadtree, chunks, cell_cost)
    best, best_cost = quadtree, quadtree_cost
    for core in usable[1:]:
        s = 2**core
        bi0, bi1 = _inner(i0, i1, ny, s)
        bj0, bj1 = _inner(j0, j1, nx, s)
        if bi0 >= bi1 or bj0 >= bj1:
            break
        ci0, ci1 = bi0 * s, min(bi1 * s, ny)
        cj0, cj1 = bj0 * s, min(bj1 * s, nx)
        strips = [
            (i0, ci0, j0, j1),
            (ci1, i1, j0, j1),
            (ci0, ci1, j0, cj0),
            (ci0, ci1, cj1, j1),
        ]
        for low in (lev for lev in usable if lev < core):
            pieces: list[Piece] = [(core, bi0, bi1, bj0, bj1)]
            for a, b, c, d in strips:
                pieces += decompose_rectangle(a, b, c, d, ny, nx, low, usable)
            cost = _cover_cost(pieces, chunks, cell_cost)
            if cost < best_cost:
                best, best_cost = pieces, cost
    whole: list[Piece] = [(0, i0, i1, j0, j1)]
    whole_cost = _cover_cost(whole, chunks, cell_cost)
    if whole_cost < best_cost:
        best, best_cost = whole, whole_cost
    return best if best_cost <= quadtree_cost - min_saving else quadtree


# --------------------------------------------------------------------------- packing

#: Integer types whose time-series copy stays packed: smaller than the float32 copy, and
#: few enough codes (<= 65536) that every code's round trip is checked at layout time.
PACKED_DTYPES = ("int8", "uint8", "int16", "uint16")


def _scalar(value: float, kind: str) -> Any:
    """A scale factor / offset as the type the source's attribute had (it decides the
    decoded dtype and arithmetic, `xarray.coding.variables._choose_float_dtype`)."""
    if kind in ("float", "int"):
        return float(value) if kind == "float" else int(value)
    return np.dtype(kind).type(value)


def _kind(value: Any) -> str:
    if type(value) in (float, int):
        return type(value).__name__
    return np.dtype(type(value)).name


def decode_table(packing: dict[str, Any]) -> np.ndarray:
    """Every code of ``packing``'s integer type decoded by xarray's own CF decoder, in
    code order from the type's minimum (the fill value's entry NaN).

    Decoding is element by element, so ``table[code - min]`` is bit for bit what xarray
    gives for a stored code, whatever the scale/offset types do to the arithmetic.
    """
    key = tuple(sorted((k, str(v)) for k, v in packing.items()))
    table = _TABLES.get(key)
    if table is None:
        from xarray.conventions import decode_cf_variable

        dtype = np.dtype(packing["dtype"])
        info = np.iinfo(dtype)
        codes = np.arange(int(info.min), int(info.max) + 1).astype(dtype)
        attrs: dict[str, Any] = {"_FillValue": dtype.type(packing["_FillValue"])}
        for name in ("scale_factor", "add_offset"):
            if name in packing:
                attrs[name] = _scalar(packing[name], packing[f"{name}_type"])
        var = xr.Variable(("code",), codes, attrs)
        table = np.asarray(decode_cf_variable("values", var, decode_times=False).values)
        table.setflags(write=False)
        _TABLES[key] = table
    return table


_TABLES: dict[tuple, np.ndarray] = {}


def decode_values(raw: np.ndarray, packing: dict[str, Any] | None) -> np.ndarray:
    """Stored time-series ``values`` as the source's decoded data: packed codes through
    `decode_table` (the dtype xarray gives the source), float values as they are
    (``packing`` None: a float copy, or a store from before packing)."""
    if packing is None:
        return raw
    lo = int(np.iinfo(np.dtype(packing["dtype"])).min)
    return decode_table(packing)[np.asarray(raw).astype(np.int32) - lo]


@numba.njit(cache=True, nogil=True)
def _encode_kernel(x, bits, offset, inverse, table_bits, lo, fill, out):  # pragma: no cover
    for n in range(x.size):
        v = x[n]
        if v != v:
            out[n] = fill
            continue
        index = int(np.rint((np.float64(v) - offset) * inverse)) - lo
        if index < 0 or index >= table_bits.size or table_bits[index] != bits[n]:
            return n
        out[n] = index + lo
    return -1


def pack_values(x: np.ndarray, packing: dict[str, Any]) -> tuple[np.ndarray, int]:
    """``x`` (the decoded data, in the dtype xarray gives the source) re-encoded as the
    CF encoder does (``round((x - add_offset) / scale_factor)``, the fill value for NaN;
    in float64, times the scale's inverse: ~30% faster than dividing, and `packing_of`
    checks this very encoding on every code).

    Returns the codes and ``-1`` when every value decodes back bit for bit
    (`decode_table`), else the flat index of the first one that does not.
    """
    table = decode_table(packing)
    flat = np.ascontiguousarray(x).reshape(-1)
    if flat.dtype != table.dtype:
        return np.empty(0, packing["dtype"]), 0
    uint = np.dtype(f"uint{8 * table.dtype.itemsize}")
    out = np.empty(flat.size, packing["dtype"])
    bad = _encode_kernel(
        flat,
        flat.view(uint),
        float(packing.get("add_offset", 0.0)),
        1.0 / float(packing.get("scale_factor", 1.0)),
        table.view(uint),
        int(np.iinfo(out.dtype).min),
        int(packing["_FillValue"]),
        out,
    )
    return out.reshape(np.shape(x)), int(bad)


def packing_of(da: xr.DataArray, sample: np.ndarray | None = None) -> tuple[dict | None, str]:
    """How a variable's time-series copy is stored: its source's packed integers, or
    float32 (``None``), and why.

    Packed when the source is CF-packed (``scale_factor`` / ``add_offset`` on an integer
    type of `PACKED_DTYPES`, with a ``_FillValue`` or ``missing_value`` for missing
    cells), xarray's decoder gives the variable's dtype, every code's decoded value
    re-encodes to a code decoding to it bit for bit, and so does every value of
    ``sample`` (the decoded data of some steps, e.g. the first: values the dataset
    changed after decoding would show there). A unit's values are checked again when
    written (`pack_values`).
    """
    enc = da.encoding
    if "scale_factor" not in enc and "add_offset" not in enc:
        return None, "not CF-packed"
    dtype = np.dtype(enc.get("dtype", "float32"))
    if dtype.name not in PACKED_DTYPES or "_Unsigned" in enc or "_Unsigned" in da.attrs:
        return None, f"packed as {dtype.name}: only {', '.join(PACKED_DTYPES)} are kept packed"
    fill = enc.get("_FillValue", enc.get("missing_value"))
    if fill is None or np.ndim(fill) > 1 or np.size(fill) != 1:
        return None, "packed without one _FillValue / missing_value for missing cells"
    packing: dict[str, Any] = {"dtype": dtype.name, "_FillValue": int(np.ravel(fill)[0])}
    for name in ("scale_factor", "add_offset"):
        if name in enc:
            value = enc[name]
            kind = "float" if np.ndim(value) > 0 else _kind(value)  # xarray: .item()
            packing[name] = float(np.ravel(value)[0])
            packing[f"{name}_type"] = kind
    table = decode_table(packing)
    if table.dtype != da.dtype:
        return None, f"xarray decodes the codes to {table.dtype}, the variable is {da.dtype}"
    valid = table[~np.isnan(table)]
    _, bad = pack_values(valid, packing)
    if bad >= 0:
        return None, f"the decoded value {valid[bad]!r} does not re-encode to itself"
    if sample is not None:
        _, bad = pack_values(np.asarray(sample, da.dtype), packing)
        if bad >= 0:
            value = np.ravel(sample)[bad]
            return None, f"the value {value!r} of the first steps is not a decoded code"
    return packing, f"packed {dtype.name} (scale {packing.get('scale_factor', 1.0)!r})"
