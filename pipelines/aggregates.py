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

import numpy as np

__all__ = [
    "STATS",
    "BlockStats",
    "BlockTable",
    "block_stats",
    "combine_stats",
    "decompose_range",
    "finish",
]

STATS = ("sum", "sumsq", "count", "min", "max")


@dataclasses.dataclass(frozen=True)
class BlockTable:
    """Block sizes stored for a record of ``nsteps`` steps, and their flat offsets."""

    nsteps: int
    base: int
    max_size: int | None = None  # largest size usable now (a build in progress)

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
        total = 0
        for s in self.sizes:
            if s == size:
                return total
            total += self.count(s)
        raise KeyError(size)

    @property
    def total(self) -> int:
        return sum(self.count(s) for s in self.sizes)

    def flat_index(self, size: int, block: int) -> int:
        return self.offset(size) + block


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


def block_stats(
    values: np.ndarray,
    shift: np.ndarray,
    block: int,
    vmin: np.ndarray | None = None,
    vmax: np.ndarray | None = None,
) -> BlockStats:
    """Stats of consecutive blocks of ``block`` steps of ``values`` (t, ...).

    ``vmin``/``vmax`` are the fields min/max are taken from when they differ from
    ``values`` (pyramid levels: min/max fields rather than the mean field).
    """
    nt = values.shape[0] // block
    shape = (nt, block) + values.shape[1:]
    x = values[: nt * block].reshape(shape)
    valid = ~np.isnan(x)
    d = np.where(valid, x.astype("float64") - shift, 0.0)
    lo = (values if vmin is None else vmin)[: nt * block].reshape(shape)
    hi = (values if vmax is None else vmax)[: nt * block].reshape(shape)
    return BlockStats(
        sum=d.sum(axis=1),
        sumsq=(d * d).sum(axis=1),
        count=valid.sum(axis=1, dtype="int32"),
        min=np.fmin.reduce(lo, axis=1).astype("float32"),
        max=np.fmax.reduce(hi, axis=1).astype("float32"),
    )


def combine_stats(parts: BlockStats) -> BlockStats:
    """Combine pairs of consecutive blocks (axis 0) into blocks twice the size."""
    n = parts.sum.shape[0] // 2

    def pair(a: np.ndarray) -> np.ndarray:
        return a[: 2 * n].reshape((n, 2) + a.shape[1:])

    return BlockStats(
        sum=pair(parts.sum).sum(axis=1),
        sumsq=pair(parts.sumsq).sum(axis=1),
        count=pair(parts.count).sum(axis=1, dtype="int32"),
        min=np.fmin.reduce(pair(parts.min), axis=1),
        max=np.fmax.reduce(pair(parts.max), axis=1),
    )


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
