"""Planner answers equal brute force on the raw data, at every zoom level.

Random time ranges, aggregations, bboxes (antimeridian included), viewports and screen
sizes on a small built synthetic store. A level-L answer is compared with the brute
force on the level-L dataset (`pipelines.pyramid.level_dataset`), level 0 with the raw
data. Tolerances: mean rel <= 1e-5 against the float32 brute force; std rel <= 1e-5
against the float64 brute force (the float32 reference itself is off by ~2e-5 on
values near 300 K); min/max exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pipelines import Query, QueryError, compute_map, compute_series
from pipelines.build import BuildConfig, build_derived
from pipelines.pyramid import field_kind, level_dataset
from pipelines.selection import select_bbox
from pipelines.synthetic import SyntheticSpec, write_demo_store

NSTEPS = 100
DAYS = pd.date_range("1980-01-01", periods=NSTEPS, freq="D")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from data_catalog import open_dataset

    folder = tmp_path_factory.mktemp("planner-props")
    path = folder / "src.zarr"
    write_demo_store(SyntheticSpec(nsteps=NSTEPS, resolution=4.0, seed=11), path, progress=False)
    build_derived(
        str(path),
        scheduler="synchronous",
        progress=False,
        config=BuildConfig(max_level=2, ts_max_level=3, base_block=4, unit_steps=16),
    )
    ds = open_dataset(str(path))
    memory = ds.load()
    levels = {
        (lev, kind): level_dataset(memory, lev, kind)
        for lev in (1, 2)
        for kind in ("mean", "min", "max")
    }
    return ds, memory, levels


longitudes = st.integers(-180, 179).map(float)
latitudes = st.integers(-90, 90).map(float)


@st.composite
def boxes(draw):
    west, east = draw(longitudes), draw(longitudes)
    south, north = sorted((draw(latitudes), draw(latitudes)))
    if north - south < 10:
        north = min(90.0, south + 10)
        south = north - 10
    if (east - west) % 360 < 10:
        east = ((west + 10 + 180) % 360) - 180
    return (west, south, east, north)


@st.composite
def time_ranges(draw):
    a = draw(st.integers(0, NSTEPS - 1))
    b = draw(st.integers(a, NSTEPS - 1))
    return DAYS[a].strftime("%Y-%m-%d"), DAYS[b].strftime("%Y-%m-%d")


def _reference(built, query: Query, level: int, viewport) -> np.ndarray:
    ds, memory, levels = built
    kind = field_kind(query.agg, query.time is not None, query.is_anomaly)
    source = memory if level == 0 else levels[(level, kind)]
    if query.agg == "std" and query.time is None:
        source = source.astype("float64")
    out = compute_map(source, query)
    if viewport is not None:
        x0, x1, y0, y1 = viewport
        out = select_bbox(out, (x0, y0, x1, y1))
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    var=st.sampled_from(["t2m", "sst"]),
    agg=st.sampled_from(["mean", "min", "max", "std"]),
    span=time_ranges(),
    bbox=st.none() | boxes(),
    viewport=st.none() | boxes(),
    screen=st.none() | st.tuples(st.integers(2, 60), st.integers(2, 30)),
)
def test_range_maps_equal_brute_force(built, var, agg, span, bbox, viewport, screen) -> None:
    from pipelines.planner import plan_map

    ds = built[0]
    vp = None if viewport is None else (viewport[0], viewport[2], viewport[1], viewport[3])
    query = Query(dataset="x", var=var, start=span[0], end=span[1], agg=agg, bbox=bbox)
    try:
        plan = plan_map(ds, query, viewport=vp, screen=screen)
    except QueryError as exc:
        assume(exc.field != "bbox")  # box and viewport do not overlap: a clear error
        raise
    got = plan.compute()
    level = got.attrs["gridscope_level"]
    assert plan.description.startswith("temporal aggregates")
    ref = _reference(built, query, level, vp)
    np.testing.assert_array_equal(got["lon"].values, ref["lon"].values)
    np.testing.assert_array_equal(got["lat"].values, ref["lat"].values)
    if agg in ("min", "max"):
        np.testing.assert_array_equal(got.values, ref.values)
    else:
        np.testing.assert_allclose(
            got.values, ref.values, rtol=1e-5, atol=0 if agg == "mean" else 1e-6
        )


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    step=st.integers(0, NSTEPS - 1),
    viewport=st.none() | boxes(),
    screen=st.none() | st.tuples(st.integers(2, 60), st.integers(2, 30)),
    anomaly=st.booleans(),
)
def test_step_maps_equal_brute_force(built, step, viewport, screen, anomaly) -> None:
    from pipelines.planner import plan_map

    ds = built[0]
    vp = None if viewport is None else (viewport[0], viewport[2], viewport[1], viewport[3])
    extra = {"baseline_start": "1980-01", "baseline_end": "1980-02"} if anomaly else {}
    query = Query(dataset="x", var="sst", time=DAYS[step].strftime("%Y-%m-%d"), **extra)
    try:
        got = plan_map(ds, query, viewport=vp, screen=screen).compute()
    except QueryError as exc:
        assume(exc.field != "bbox")
        raise
    ref = _reference(built, query, got.attrs["gridscope_level"], vp)
    np.testing.assert_array_equal(got["lon"].values, ref["lon"].values)
    # anomalies are differences of ~300 K float32 numbers: compare at 1e-5 of the field
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-6, atol=3e-3 if anomaly else 0)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    span=time_ranges(),
    where=st.one_of(
        boxes().map(lambda b: {"bbox": b}),
        st.tuples(longitudes, latitudes).map(lambda p: {"point": p}),
    ),
    var=st.sampled_from(["t2m", "sst"]),
)
# a land-only band across the antimeridian: every SST cell is missing, the mean is NaN
@example(span=("1980-01-01", "1980-01-01"), where={"bbox": (0.0, -86.0, -1.0, -71.0)}, var="sst")
def test_series_equal_brute_force(built, span, where, var) -> None:
    from pipelines.planner import plan_series

    ds, memory, _ = built
    query = Query(dataset="x", var=var, start=span[0], end=span[1], **where)
    plan = plan_series(ds, query)
    assert plan.description.startswith("time-series copy")
    got = plan.compute()
    ref = compute_series(memory, query)
    np.testing.assert_array_equal(got["time"].values, ref["time"].values)
    if "point" in where:
        np.testing.assert_array_equal(got.values, ref.values)
    else:
        np.testing.assert_allclose(got.values, ref.values, rtol=1e-6)
