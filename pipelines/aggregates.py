"""Temporal aggregate levels: exact, decomposable statistics per block of time steps.

Blocks have power-of-two multiples of a base size ``B`` (``B, 2B, 4B, ...``) and are
aligned: block ``b`` of size ``s`` covers steps ``[b*s, (b+1)*s)``; only complete blocks
are stored. For each block and cell they hold

- ``sum`` and ``sumsq`` of ``x - shift`` (float64; ``shift`` is a per-cell constant,
  the first step's value, which keeps the variance ``sumsq/n - (sum/n)**2`` free of
  catastrophic cancellation),
- ``count`` of valid (non-NaN) values (int32),
- ``min`` and ``max`` (float32, exact copies of data values).

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
    "BlockStats",
    "BlockTable",
    "block_stats",
    "combine_stats",
    "decompose_range",
    "finish",
    "layout_steps_for",
]

STATS = ("sum", "sumsq", "count", "min", "max")


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

    @property
    def sizes(self) -> tuple[int, ...]:
        out = []
        s = self.base
        while s <= self.nsteps:
            out.append(s)
            s *= 2
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
        return sum(rows // s for s in BlockTable(rows, self.base).sizes)

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
    """Statistics of a set of steps per cell (see module docstring)."""

    sum: np.ndarray
    sumsq: np.ndarray
    count: np.ndarray
    min: np.ndarray
    max: np.ndarray


@numba.njit(cache=True, nogil=True)
def _block_stats_kernel(x, lo, hi, shift, block, s, ss, cnt, mn, mx):  # pragma: no cover - numba
    """Per block of ``block`` steps and cell: sum / sum of squares of ``x - shift``
    (float64, accumulated in step order), valid count, NaN-ignoring min of ``lo`` and
    max of ``hi``. Inputs are (steps, cells), walked step by step (contiguous)."""
    nb = s.shape[0]
    n = x.shape[1]
    nan = mn.dtype.type(np.nan)
    for b in range(nb):
        for c in range(n):
            s[b, c] = 0.0
            ss[b, c] = 0.0
            cnt[b, c] = 0
            mn[b, c] = nan
            mx[b, c] = nan
        for k in range(block):
            t = b * block + k
            for c in range(n):
                v = x[t, c]
                if v == v:
                    d = np.float64(v) - shift[c]
                    s[b, c] += d
                    ss[b, c] += d * d
                    cnt[b, c] += 1
                v = lo[t, c]
                if v == v and not (mn[b, c] <= v):
                    mn[b, c] = v
                v = hi[t, c]
                if v == v and not (mx[b, c] >= v):
                    mx[b, c] = v


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
        sumsq=np.empty((nt, n), "float64"),
        count=np.empty((nt, n), "int32"),
        min=np.empty((nt, n), lo.dtype),
        max=np.empty((nt, n), hi.dtype),
    )
    _block_stats_kernel(x, lo, hi, sh, block, out.sum, out.sumsq, out.count, out.min, out.max)
    return BlockStats(
        sum=out.sum.reshape((nt,) + cells),
        sumsq=out.sumsq.reshape((nt,) + cells),
        count=out.count.reshape((nt,) + cells),
        min=out.min.astype("float32", copy=False).reshape((nt,) + cells),
        max=out.max.astype("float32", copy=False).reshape((nt,) + cells),
    )


@numba.njit(cache=True, nogil=True)
def _combine_kernel(s, ss, cnt, mn, mx, s2, ss2, cnt2, mn2, mx2):  # pragma: no cover - numba
    for k in range(s2.shape[0]):
        a, b = 2 * k, 2 * k + 1
        for c in range(s2.shape[1]):
            s2[k, c] = s[a, c] + s[b, c]
            ss2[k, c] = ss[a, c] + ss[b, c]
            cnt2[k, c] = cnt[a, c] + cnt[b, c]
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
        flat(parts.sumsq, "float64"),
        flat(parts.count, "int32"),
        flat(parts.min, "float32"),
        flat(parts.max, "float32"),
    ]
    outs = [np.empty((n, m), a.dtype) for a in ins]
    _combine_kernel(*ins, *outs)
    return BlockStats(*(o.reshape((n,) + cells) for o in outs))


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
