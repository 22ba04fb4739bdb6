"""Temporal aggregate levels: exact, decomposable statistics per block of time steps.

Blocks have power-of-four multiples of a base size ``B`` (``B, 4B, 16B, ...``: each
size combines 4 of the last; every 2x cost a third more rows for a range map that reads
at most 3 instead of 1 block of each size per end) and are aligned: block ``b`` of size ``s`` covers steps ``[b*s, (b+1)*s)``; only complete blocks
are stored. For each block and cell they hold

- ``sum`` of ``x - shift`` (float64; ``shift`` is a per-cell constant, the first
  step's value),
- ``m2``: the sum of squared deviations from the block's own mean (float32; two
  passes over the block, so no cancellation; blocks merge with Chan's parallel
  formula ``m2 = m2a + m2b + (mean_a - mean_b)**2 na nb / n`` in float64),
- ``count`` of valid (non-NaN) values (int32, near constant: compresses ~250x),
- ``min`` and ``max`` (float32, exact copies of data values).

A query turns each block's ``m2`` back into a sum of squares about the shift,
``sumsq = m2 + sum**2 / count`` (float64, `stat_of`), and adds those: the rounding of
``m2`` to float32 then changes the total by at most ``2**-24`` of the summed ``m2``,
which is at most the range's ``n * variance`` (all terms are non-negative), so a std
is off by at most ~1e-7 relative however strong the trend or seasonal cycle between
blocks (their means stay float64). The final ``sumsq / n - mean**2`` about the shift
loses ``1e-16 * (mean_d / std)**2`` (``tests/test_derived_precision.py``: a large offset,
trend, cycle and NaNs against float64 numpy). Storing the sum of squares as float64
instead cost 8 bytes per block and cell compressing only 1.3-1.5x; ``m2`` costs 4
compressing ~1.6x.

Why ``sum`` stays float64: a float32 ``sum`` moves a block's mean by up to ``2**-24`` of
``|mean - shift|``, harmless for a mean (relative error ``2**-24 * max|x - shift| /
|mean|``) but not for a std, whose between-block part ``sum(sum_b**2 / n_b) / n -
mean_d**2`` is then off by ~``2**-23 * (mean_d / std)**2`` relative. The shift is the
first step's value (0 where it is NaN), so ``mean_d / std`` is large wherever a range
is far from the first step relative to its spread: a cell whose first step is missing
(sea ice: 271 K +- 0.2 about a shift of 0: std wrong by 40-100 %), a strong trend (1e4
+ 50 per step, the last 16 of 512 steps: 5e-4), even a seasonal cycle of +-20 K over 2
K noise (5e-6, half the 1e-5 budget). Measured with ``tests/test_derived_precision.py::
test_block_sums_stay_float64``. Nor would it save bytes: float64 sums of a few float32
inputs have zero low mantissa bits, which bit shuffling packs away (1 GB bench store,
t2m, one unit's 8-step block sums, blosc-lz4 bitshuffle: 26.1 MB float64, 25.4 MB
float32).

The base size is 8 steps (`pipelines.build.BuildConfig.base_block`), measured against 16
on the 1 GB bench store (t2m, 120 daily steps, whole-globe range maps of 30-120 steps,
both stores in one process, queries interleaved, load 5-6 on 2 cores): 16 halves the
aggregates (278 -> 126 MB) but doubles the raw edge steps (up to 30), and range maps
got slower: full resolution median/p95 165/415 -> 282/721 ms, level 1 79/181 ->
101/477 ms.

All block sizes live in one array per statistic (a flat block index, see
`BlockTable`), so a query reads each statistic with one orthogonal selection.
`decompose_range` splits any step range into the fewest aligned blocks plus fewer
than ``2B`` raw edge steps (a segment-tree decomposition): O(log T) pieces.
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np

__all__ = [
    "STATS",
    "add_moments",
    "BlockStats",
    "BlockTable",
    "block_stats",
    "combine_stats",
    "decompose_range",
    "finish",
    "layout_steps_for",
    "stat_of",
    "stored",
]

#: The statistics stored per block (arrays of the aggregates store).
STATS = ("sum", "m2", "count", "min", "max")
#: Their stored dtypes.
STAT_DTYPES = {
    "sum": "float64",
    "m2": "float32",
    "count": "int32",
    "min": "float32",
    "max": "float32",
}


@dataclasses.dataclass(frozen=True)
class BlockTable:
    """Block sizes stored for a record of ``nsteps`` steps, and their flat offsets.

    ``layout_steps`` (default ``nsteps``) is the record length the flat index is laid
    out for: each size ``s`` gets ``layout_steps // s`` rows (of which the first
    ``nsteps // s`` hold blocks), sizes up to ``layout_steps``. The builder lays stores
    out for `layout_steps_for` ``(nsteps)`` so that a record that grows (an append) keeps
    its rows where they are until it passes that length.
    """

    nsteps: int
    base: int
    max_size: int | None = None  # largest size usable now (a build in progress)
    layout_steps: int | None = None
    ratio: int = 4  # each size is this many of the last

    @property
    def sizes(self) -> tuple[int, ...]:
        out = []
        s = self.base
        while s <= self.nsteps:
            out.append(s)
            s *= self.ratio
        return tuple(out)

    @property
    def usable_sizes(self) -> tuple[int, ...]:
        limit = self.max_size if self.max_size is not None else self.nsteps
        return tuple(s for s in self.sizes if s <= limit)

    def count(self, size: int) -> int:
        return self.nsteps // size

    def offset(self, size: int) -> int:
        rows = self.layout_steps or self.nsteps
        total = 0
        for s in self.sizes:
            if s == size:
                return total
            total += rows // s
        raise KeyError(size)

    @property
    def total(self) -> int:
        """Rows of the flat index (those of sizes longer than the record stay empty)."""
        rows = self.layout_steps or self.nsteps
        return sum(rows // s for s in BlockTable(rows, self.base, ratio=self.ratio).sizes)

    def flat_index(self, size: int, block: int) -> int:
        return self.offset(size) + block


def layout_steps_for(nsteps: int, base: int) -> int:
    """The record length a store of ``nsteps`` steps lays its blocks out for: the
    smallest ``base * 2**k`` of at least ``nsteps`` (appends within it move no row)."""
    rows = base
    while rows < nsteps:
        rows *= 2
    return rows


def decompose_range(t0: int, t1: int, table: BlockTable) -> tuple[list[tuple[int, int]], list[int]]:
    """Cover steps ``[t0, t1)`` with the fewest stored aligned blocks plus raw steps.

    Returns ``(blocks, steps)``: ``blocks`` as ``(size, block_index)`` pairs and
    ``steps`` the raw step indices at the edges (fewer than ``2 * base``).
    """
    blocks: list[tuple[int, int]] = []
    steps: list[int] = []
    sizes = table.usable_sizes
    t = t0
    while t < t1:
        chosen = 0
        for s in reversed(sizes):
            if t % s == 0 and t + s <= t1 and (t // s) < table.count(s):
                chosen = s
                break
        if chosen:
            blocks.append((chosen, t // chosen))
            t += chosen
        else:
            steps.append(t)
            t += 1
    return blocks, steps


@dataclasses.dataclass
class BlockStats:
    """Statistics of a set of steps per cell (see module docstring); ``m2`` is float64
    in memory and float32 once stored (`stored`)."""

    sum: np.ndarray
    m2: np.ndarray
    count: np.ndarray
    min: np.ndarray
    max: np.ndarray


def stored(stats: BlockStats, name: str) -> np.ndarray:
    """Statistic ``name`` of ``stats`` in its stored dtype (`STAT_DTYPES`)."""
    return np.asarray(getattr(stats, name)).astype(STAT_DTYPES[name], copy=False)


def stat_of(stats: BlockStats | dict[str, np.ndarray], name: str) -> np.ndarray:
    """What queries add up per block: the stored statistics, and ``sumsq`` (the sum of
    squares of ``x - shift``, float64) rebuilt from ``sum``, ``m2`` and ``count``."""
    get = stats.get if isinstance(stats, dict) else (lambda n: getattr(stats, n))
    if name != "sumsq":
        return np.asarray(get(name))
    total = np.asarray(get("sum"), "float64")
    count = np.asarray(get("count"))
    with np.errstate(invalid="ignore", divide="ignore"):
        square = np.where(count > 0, total * total / np.maximum(count, 1), 0.0)
    return np.asarray(get("m2"), "float64") + square


@numba.njit(cache=True, nogil=True)
def _block_stats_kernel(x, lo, hi, shift, block, s, m2, cnt, mn, mx):  # pragma: no cover - numba
    """Per block of ``block`` steps and cell: sum of ``x - shift`` (float64, in step
    order), sum of squared deviations from the block mean (a second pass over the
    block), valid count, NaN-ignoring min of ``lo`` and max of ``hi``. Inputs are
    (steps, cells), walked step by step (contiguous)."""
    nb = s.shape[0]
    n = x.shape[1]
    nan = mn.dtype.type(np.nan)
    for b in range(nb):
        for c in range(n):
            s[b, c] = 0.0
            m2[b, c] = 0.0
            cnt[b, c] = 0
            mn[b, c] = nan
            mx[b, c] = nan
        for k in range(block):
            t = b * block + k
            for c in range(n):
                v = x[t, c]
                if v == v:
                    s[b, c] += np.float64(v) - shift[c]
                    cnt[b, c] += 1
                v = lo[t, c]
                if v == v and not (mn[b, c] <= v):
                    mn[b, c] = v
                v = hi[t, c]
                if v == v and not (mx[b, c] >= v):
                    mx[b, c] = v
        for k in range(block):
            t = b * block + k
            for c in range(n):
                v = x[t, c]
                if v == v:
                    d = np.float64(v) - shift[c] - s[b, c] / cnt[b, c]
                    m2[b, c] += d * d


def block_stats(
    values: np.ndarray,
    shift: np.ndarray,
    block: int,
    vmin: np.ndarray | None = None,
    vmax: np.ndarray | None = None,
) -> BlockStats:
    """Stats of consecutive blocks of ``block`` steps of ``values`` (t, ...).

    ``vmin``/``vmax`` are the fields min/max are taken from when they differ from
    ``values`` (pyramid levels: min/max fields rather than the mean field). float32
    input is read as is (no float64 copy); sums accumulate in float64.
    """
    nt = values.shape[0] // block
    cells = values.shape[1:]

    def flat(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if a.dtype.kind != "f":
            a = a.astype("float64")
        return np.ascontiguousarray(a[: nt * block]).reshape((nt * block, -1))

    x = flat(values)
    lo = x if vmin is None else flat(vmin)
    hi = x if vmax is None else flat(vmax)
    sh = np.ascontiguousarray(np.broadcast_to(np.asarray(shift, "float64"), cells)).reshape(-1)
    n = x.shape[1]
    out = BlockStats(
        sum=np.empty((nt, n), "float64"),
        m2=np.empty((nt, n), "float64"),
        count=np.empty((nt, n), "int32"),
        min=np.empty((nt, n), lo.dtype),
        max=np.empty((nt, n), hi.dtype),
    )
    _block_stats_kernel(x, lo, hi, sh, block, out.sum, out.m2, out.count, out.min, out.max)
    return BlockStats(
        sum=out.sum.reshape((nt,) + cells),
        m2=out.m2.reshape((nt,) + cells),
        count=out.count.reshape((nt,) + cells),
        min=out.min.astype("float32", copy=False).reshape((nt,) + cells),
        max=out.max.astype("float32", copy=False).reshape((nt,) + cells),
    )


@numba.njit(cache=True, nogil=True)
def _combine_kernel(s, m2, cnt, mn, mx, s2, m22, cnt2, mn2, mx2):  # pragma: no cover - numba
    for k in range(s2.shape[0]):
        a, b = 2 * k, 2 * k + 1
        for c in range(s2.shape[1]):
            na, nb = cnt[a, c], cnt[b, c]
            s2[k, c] = s[a, c] + s[b, c]
            cnt2[k, c] = na + nb
            if na == 0:
                m22[k, c] = m2[b, c]
            elif nb == 0:
                m22[k, c] = m2[a, c]
            else:  # Chan et al.: no cancellation, means in float64
                delta = s[b, c] / nb - s[a, c] / na
                m22[k, c] = m2[a, c] + m2[b, c] + delta * delta * (na * np.float64(nb) / (na + nb))
            lo, v = mn[a, c], mn[b, c]
            mn2[k, c] = v if (lo != lo or v < lo) else lo
            hi, v = mx[a, c], mx[b, c]
            mx2[k, c] = v if (hi != hi or v > hi) else hi


def combine_stats(parts: BlockStats) -> BlockStats:
    """Combine pairs of consecutive blocks (axis 0) into blocks twice the size."""
    n = parts.sum.shape[0] // 2
    cells = parts.sum.shape[1:]

    m = int(np.prod(cells, dtype=np.int64))

    def flat(a: np.ndarray, dtype: str) -> np.ndarray:
        return np.ascontiguousarray(a[: 2 * n], dtype).reshape((2 * n, m))

    ins = [
        flat(parts.sum, "float64"),
        flat(parts.m2, "float64"),
        flat(parts.count, "int32"),
        flat(parts.min, "float32"),
        flat(parts.max, "float32"),
    ]
    outs = [np.empty((n, m), a.dtype) for a in ins]
    _combine_kernel(*ins, *outs)
    return BlockStats(*(o.reshape((n,) + cells) for o in outs))


@numba.njit(cache=True, nogil=True)
def add_moments(tsum, tcount, tsumsq, bsum, bcount, bm2):  # pragma: no cover - numba
    """Add blocks' ``(block, cell)`` ``sum`` and ``count`` to the per-cell totals
    ``tsum``, ``tcount`` in place and, when ``tsumsq`` is not empty, their sums of
    squares about the shift (`stat_of`'s ``m2 + sum**2 / count``, float64, 0 without a
    valid value) to ``tsumsq``: one pass, no ``(block, cell)`` float64 temporaries
    (numpy's took ~15 ms per full-resolution block, more than decoding it)."""
    squares = tsumsq.size > 0
    for b in range(bsum.shape[0]):
        for k in range(bsum.shape[1]):
            x = np.float64(bsum[b, k])
            n = bcount[b, k]
            tsum[k] += x
            tcount[k] += n
            if squares:
                tsumsq[k] += np.float64(bm2[b, k]) + (x * x / n if n > 0 else 0.0)


def finish(agg: str, stats: dict[str, np.ndarray], shift: np.ndarray) -> np.ndarray:
    """The map of ``agg`` from totals over all pieces (NaN where no valid value)."""
    if agg == "min":
        return stats["min"].astype("float32")
    if agg == "max":
        return stats["max"].astype("float32")
    count = stats["count"]
    n = np.where(count > 0, count, 1).astype("float64")
    mean_d = stats["sum"] / n
    if agg == "mean":
        out = shift + mean_d
    else:
        var = np.maximum(stats["sumsq"] / n - mean_d * mean_d, 0.0)
        out = np.sqrt(var)
    return np.where(count > 0, out, np.nan).astype("float32")
