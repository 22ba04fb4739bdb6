"""Planner behaviour beyond exactness: fallback, budget, cache, levels, errors."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines import Query, QueryError, compute_map
from pipelines.aggregates import BlockTable, decompose_range
from pipelines.planner import PlanBudgetError, plan_map, plan_series
from pipelines.synthetic import SyntheticSpec, virtual_dataset


@pytest.fixture(scope="module")
def virtual():
    return virtual_dataset(SyntheticSpec(nsteps=40, resolution=2.0, seed=4), time_chunk=8)


def test_fallback_is_brute_force_at_full_resolution_without_screen(virtual) -> None:
    query = Query(dataset="v", var="t2m", start="1980-01-05", end="1980-01-20", agg="mean")
    plan = plan_map(virtual, query)
    assert plan.description.startswith("brute force") and plan.level == 0
    assert plan.estimated_bytes == 91 * 180 * 16 * 4
    np.testing.assert_array_equal(plan.compute().values, compute_map(virtual, query).values)


def test_fallback_coarsens_only_where_exact(virtual) -> None:
    mean = Query(dataset="v", var="t2m", start="1980-01-05", end="1980-01-20", agg="mean")
    assert plan_map(virtual, mean, screen=(20, 10)).level == 0
    assert plan_map(virtual, mean.replace(agg="max"), screen=(20, 10)).level == 2
    step = Query(dataset="v", var="t2m", time="1980-01-07")
    got = plan_map(virtual, step, viewport=(-90, 90, -45, 45), screen=(40, 20)).compute()
    assert got.attrs["gridscope_level"] == 1 and got.shape == (23, 45)


def test_budget_refuses_before_reading(virtual, monkeypatch) -> None:
    query = Query(
        dataset="v", var="sst", start="1980-01-01", end="1980-02-09", agg="std", bbox=(0, 0, 30, 30)
    )
    with pytest.raises(PlanBudgetError, match="would read") as info:
        plan_map(virtual, query, max_bytes=1000).compute()
    assert isinstance(info.value, QueryError) and info.value.estimated_bytes > 1000
    monkeypatch.setenv("GRIDSCOPE_MAX_BYTES", "10")
    with pytest.raises(PlanBudgetError):
        plan_series(virtual, Query(dataset="v", var="sst", point=(0, 0))).compute()


def test_segment_tree_decomposition_covers_exactly() -> None:
    table = BlockTable(nsteps=1000, base=8)
    for t0, t1 in [(0, 1000), (3, 997), (500, 501), (8, 16), (0, 1)]:
        blocks, steps = decompose_range(t0, t1, table)
        covered = sorted(steps + [t for s, b in blocks for t in range(b * s, (b + 1) * s)])
        assert covered == list(range(t0, t1))
        # at most ratio - 1 blocks of each size at each end
        assert len(steps) < 16 and len(blocks) <= 2 * (table.ratio - 1) * len(table.sizes)
    limited = BlockTable(nsteps=1000, base=8, max_size=32)
    assert max(s for s, _ in decompose_range(0, 1000, limited)[0]) == 32
    assert table.sizes == (8, 32, 128, 512)


def test_errors_are_query_errors(virtual) -> None:
    with pytest.raises(QueryError, match="point"):
        plan_series(virtual, Query(dataset="v", var="t2m"))
    with pytest.raises(QueryError, match="not in this dataset"):
        plan_map(virtual, Query(dataset="v", var="nope"))
    with pytest.raises(QueryError, match="outside the record"):
        plan_map(virtual, Query(dataset="v", var="t2m", time="1990-01-01"))


def test_cheapest_cover_covers_each_cell_once():
    from pipelines.timeseries_store import cheapest_cover

    rng = np.random.default_rng(0)
    ny, nx, max_level = 181, 360, 5
    chunks = {0: (32, 32), **{lev: (min(32, -(-ny // 2**lev)), 32) for lev in range(1, 6)}}
    for k in range(200):
        i0, i1 = sorted(int(v) for v in rng.integers(0, ny + 1, 2))
        j0, j1 = sorted(int(v) for v in rng.integers(0, nx + 1, 2))
        count = np.zeros((ny, nx), dtype=int)
        levels = (None, (2, 4), (1, 3, 5), (4,))[k % 4]  # all levels, or the ones stored
        for lev, bi0, bi1, bj0, bj1 in cheapest_cover(
            i0, i1, j0, j1, ny, nx, max_level, chunks, min_saving=0, levels=levels
        ):
            assert lev == 0 or levels is None or lev in levels
            s = 2**lev
            count[bi0 * s : min(bi1 * s, ny), bj0 * s : min(bj1 * s, nx)] += 1
        expected = np.zeros((ny, nx), dtype=int)
        expected[i0:i1, j0:j1] = 1
        np.testing.assert_array_equal(count, expected)
