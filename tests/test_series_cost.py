"""A costly series is asked about before it runs; checking a link never builds a huge graph.

`app.answers.start_series(..., ask_above=)` refuses to start a series that reads more than
the threshold (`CostToConfirm`, with the bytes in words); `ViewResults` shows the question
and computes the series only after `compute_series_anyway`. The bytes counted for a
brute-force series are those of the whole chunks it touches (checked against a loop over
the chunks). `check_query` raises the same errors as building the real lazy graph, in a
fraction of the time on a 350k-step record.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import xarray as xr

from app import answers, costs, query_checks, runtime
from app.sources import DatasetSources
from app.state import ExplorerState
from app.views.results import ViewResults
from pipelines import Query, QueryError, compute_map, compute_series
from pipelines.build import open_source
from tests.app_data import make_ds


def _touched_bytes_brute(da: xr.DataArray, lat_index: np.ndarray, lon_index: np.ndarray) -> int:
    """Bytes of every (lat, lon) chunk holding a selected cell, over the whole record."""
    lat_edges = np.cumsum((0, *da.chunks[1]))
    lon_edges = np.cumsum((0, *da.chunks[2]))
    total = 0
    for i in range(len(lat_edges) - 1):
        for j in range(len(lon_edges) - 1):
            rows = (lat_index >= lat_edges[i]) & (lat_index < lat_edges[i + 1])
            cols = (lon_index >= lon_edges[j]) & (lon_index < lon_edges[j + 1])
            if rows.any() and cols.any():
                size = (lat_edges[i + 1] - lat_edges[i]) * (lon_edges[j + 1] - lon_edges[j])
                total += size * da.sizes["time"] * da.dtype.itemsize
    return int(total)


@pytest.mark.parametrize("chunks", [{"time": 1}, {"time": 12, "lat": 5, "lon": 7}])
def test_a_brute_force_series_costs_the_whole_chunks_it_reads(chunks) -> None:
    ds = make_ds(chunked=False).chunk(chunks)
    da = ds["tas"]
    lat, lon = da["lat"].values, da["lon"].values
    point = (21.0, -33.0)
    i, j = int(np.argmin(np.abs(lat - point[1]))), int(np.argmin(np.abs(lon - point[0])))
    cost = costs.series_chunk_bytes(ds, Query(dataset="d", var="tas", point=point))
    assert cost == _touched_bytes_brute(da, np.array([i]), np.array([j]))
    bbox = (-60.0, -20.0, 40.0, 30.0)
    rows = np.flatnonzero((lat >= bbox[1]) & (lat <= bbox[3]))
    cols = np.flatnonzero((lon >= bbox[0]) & (lon <= bbox[2]))
    cost = costs.series_chunk_bytes(ds, Query(dataset="d", var="tas", bbox=bbox))
    assert cost == _touched_bytes_brute(da, rows, cols)
    if chunks == {"time": 1}:  # one field per chunk: a point reads every whole field
        assert cost == da.size * da.dtype.itemsize


def test_a_costly_series_waits_for_the_users_go_ahead(monkeypatch) -> None:
    ds = make_ds()
    state = ExplorerState(DatasetSources.from_datasets({"synth": ds}))
    state.param.update(region="Custom box", bbox=(-60.0, -20.0, 40.0, 30.0))
    query = state.series_query
    reads = costs.series_chunk_bytes(ds, query)
    runtime.current().update_settings(ask_bytes=reads - 1)
    with pytest.raises(costs.CostToConfirm) as asked:
        answers.start_series(ds, query, ask_above=costs.ask_limit())
    assert asked.value.estimated_bytes == reads
    results = ViewResults(state)
    results.refresh()
    assert results.field is not None, "the map does not wait for the series"
    assert results.series is None and results.series_error == ""
    assert f"reads {costs.format_bytes(reads)} from the unbuilt record" in (results.series_question)
    results.compute_series_anyway()
    assert results.series_question == ""
    expected = compute_series(ds, query).values  # the brute-force reference
    np.testing.assert_allclose(results.series.values, expected, rtol=1e-12)
    results.cancel_series()  # asked again (the answer is cached now: given at once)
    assert results.series is not None and results.series_question == ""
    state.bbox = (-50.0, -20.0, 40.0, 30.0)  # a new costly series: asked again
    assert results.series is None and "reads" in results.series_question


def test_a_series_under_the_threshold_runs_as_before() -> None:
    ds = make_ds()
    state = ExplorerState(DatasetSources.from_datasets({"synth": ds}))
    results = ViewResults(state)
    results.refresh()
    assert results.series_question == ""
    np.testing.assert_allclose(
        results.series.values, compute_series(ds, state.series_query).values, rtol=1e-12
    )


BAD = [
    {"bbox": (10.0, 1.0, 10.5, 1.5)},  # between cell centres: no cells
    {"start": "2030-01-01"},
    {"start": "1979-01-01", "end": "1979-06-01"},
    {"level": 500.0},
    {"baseline_start": "2030-01-01", "baseline_end": "2031-01-01"},
]


def _error(build) -> tuple[str, str] | None:
    try:
        build()
    except QueryError as exc:
        return exc.field, exc.message
    return None


@pytest.mark.parametrize("bad", BAD)
def test_check_query_says_what_the_real_graph_says(bad) -> None:
    ds = open_source("virtual:daily:400:4:0")
    query = Query(**({"dataset": "v", "var": "t2m", "bbox": (-30.0, -10.0, 30.0, 20.0)} | bad))

    def real() -> None:
        compute_map(ds, query.replace(bbox=None, point=None))
        compute_series(ds, query.replace(time=None))

    expected = _error(real)
    assert expected is not None
    assert _error(lambda: query_checks.check_query(ds, query)) == expected


def test_check_query_on_a_terabyte_record_is_quick() -> None:
    ds = open_source("virtual:hourly:350640:0.25:0")
    query = Query(dataset="v", var="t2m", bbox=(-180.0, -90.0, 180.0, 90.0))
    started = time.perf_counter()
    query_checks.check_query(ds, query)
    # building the real series graph took 10-15 s here (700k tasks); the check builds ~10
    assert time.perf_counter() - started < 5.0
