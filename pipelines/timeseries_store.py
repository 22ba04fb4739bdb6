"""Time-series copy: the data chunked long in time and small in space.

Level 0 is the data itself (float32), so a point series is one small read. Coarser
levels ``l >= 1`` store per aligned ``2**l x 2**l`` block and step ``wsum`` (sum of
area * value over valid cells) and ``warea`` (sum of the valid cells' areas), float64.
An area-weighted region mean is ``sum(wsum) / sum(warea)`` over any set of disjoint
pieces covering the region, which `decompose_rectangle` finds: the largest aligned
blocks inside the rectangle plus thinner strips at finer levels (a quadtree cover),
so a region series reads O(perimeter) cells per step instead of O(area).
"""

from __future__ import annotations

import math

__all__ = ["decompose_rectangle", "lon_runs"]


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
    i0: int, i1: int, j0: int, j1: int, ny: int, nx: int, max_level: int
) -> list[tuple[int, int, int, int, int]]:
    """Cover level-0 cells ``[i0, i1) x [j0, j1)`` with aligned blocks of levels 0..max_level.

    Returns ``(level, bi0, bi1, bj0, bj1)`` pieces: block index ranges at ``level``.
    Blocks at the grid's far edges may hold fewer cells (partial blocks); such a block
    counts as inside when the rectangle reaches the edge.
    """
    out: list[tuple[int, int, int, int, int]] = []
    _cover(i0, i1, j0, j1, ny, nx, max_level, out)
    return out


def _inner(a: int, b: int, n: int, s: int) -> tuple[int, int]:
    lo = math.ceil(a / s)
    hi = math.ceil(n / s) if b >= n else b // s
    return lo, hi


def _cover(i0: int, i1: int, j0: int, j1: int, ny: int, nx: int, level: int, out: list) -> None:
    if i0 >= i1 or j0 >= j1:
        return
    if level == 0:
        out.append((0, i0, i1, j0, j1))
        return
    s = 2**level
    bi0, bi1 = _inner(i0, i1, ny, s)
    bj0, bj1 = _inner(j0, j1, nx, s)
    if bi0 >= bi1 or bj0 >= bj1:
        _cover(i0, i1, j0, j1, ny, nx, level - 1, out)
        return
    out.append((level, bi0, bi1, bj0, bj1))
    ci0, ci1 = bi0 * s, min(bi1 * s, ny)
    cj0, cj1 = bj0 * s, min(bj1 * s, nx)
    # strips south and north of the core over the full width, then west and east of it
    _cover(i0, ci0, j0, j1, ny, nx, level - 1, out)
    _cover(ci1, i1, j0, j1, ny, nx, level - 1, out)
    _cover(ci0, ci1, j0, cj0, ny, nx, level - 1, out)
    _cover(ci0, ci1, cj1, j1, ny, nx, level - 1, out)
