"""``GRIDSCOPE_MAX_BYTES`` takes the app's size syntax in the planner too (2GB, 500MiB)."""

from __future__ import annotations

import numpy as np
import pytest

from app.limits import parse_bytes as app_parse_bytes
from pipelines import Query, compute_map
from pipelines.planner import PlanBudgetError, plan_map
from pipelines.sizes import parse_bytes
from pipelines.synthetic import SyntheticSpec, virtual_dataset


@pytest.fixture(scope="module")
def virtual():
    return virtual_dataset(SyntheticSpec(nsteps=16, resolution=4.0, seed=2), time_chunk=8)


def _query() -> Query:
    return Query(dataset="v", var="t2m", start="1980-01-01", end="1980-01-10", agg="mean")


def test_size_units_are_the_app_s(virtual, monkeypatch) -> None:
    assert app_parse_bytes is parse_bytes  # one parser: the app's settings use the same
    plan = plan_map(virtual, _query())
    nbytes = plan.estimated_bytes
    assert nbytes > 2000
    # a limit written with a unit, just above and just below the plan's reads
    monkeypatch.setenv("GRIDSCOPE_MAX_BYTES", f"{(nbytes + 1000) / 1000}kB")
    np.testing.assert_array_equal(plan.compute().values, compute_map(virtual, _query()).values)
    monkeypatch.setenv("GRIDSCOPE_MAX_BYTES", f"{(nbytes - 1000) / 1000} KB")
    with pytest.raises(PlanBudgetError) as info:
        plan_map(virtual, _query()).compute()
    assert info.value.budget == int((nbytes - 1000) / 1000 * 1000)
    monkeypatch.setenv("GRIDSCOPE_MAX_BYTES", "2GB")
    assert plan_map(virtual, _query()).compute().shape == plan.compute().shape
    monkeypatch.setenv("GRIDSCOPE_MAX_BYTES", "1 KiB")
    with pytest.raises(PlanBudgetError) as info:
        plan_map(virtual, _query()).compute()
    assert info.value.budget == 1024


@pytest.mark.parametrize("text", ["lots", "2 parsecs", "-5GB", "0"])
def test_bad_value_says_which_variable_and_what_is_allowed(virtual, monkeypatch, text) -> None:
    monkeypatch.setenv("GRIDSCOPE_MAX_BYTES", text)
    with pytest.raises(
        ValueError, match="GRIDSCOPE_MAX_BYTES=.*(size such as 2GB|positive)"
    ) as info:
        plan_map(virtual, _query()).compute()
    assert "\n" not in str(info.value) and not isinstance(info.value, PlanBudgetError)
