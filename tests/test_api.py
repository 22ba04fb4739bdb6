"""The HTTP API's pieces in-process: query strings, errors to codes, queue and time limits,
ETags, the answer cache, the OpenAPI document, link previews and the embed snippet.

The real server (every endpoint over HTTP, 304, equality with the dashboard and
``gridscope export``) is tested in tests/test_api_server.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from urllib.parse import urlencode

import numpy as np
import pytest

from app import cluster_health, limits
from app.answer_cache import AnswerCache
from app.api import answers
from app.api.answers import ApiContext
from app.api.cache import Answer
from app.api.errors import ApiError, status_for
from app.api.params import parse_params
from app.limits import ClusterUnavailable, JobCancelled, Limits, RequestTimeout, RequestTooLarge
from app.sources import DatasetSources
from app.state import ExplorerState
from pipelines import Query, QueryError
from tests.app_data import make_ds
from tests.conftest import SAMPLES_DIR


@pytest.fixture(autouse=True)
def _no_limits():
    limits.configure(Limits())
    cluster_health.use_client(None)
    yield
    limits.configure(Limits())


def _ctx(**settings) -> ApiContext:
    sources = DatasetSources.from_datasets({"synth": make_ds(0)})
    return ApiContext(sources=sources, cache=AnswerCache(2**20), **settings)


# --- the query string ----------------------------------------------------------------------
def test_a_dashboard_permalink_is_an_api_query_string() -> None:
    state = ExplorerState(DatasetSources.from_datasets({"synth": make_ds(0)}))
    state.param.update(
        region="Niño 3.4", cmap="fire", x_range=(-100.0, 20.0), y_range=(-30.0, 50.0)
    )
    state.param.update(clim_mode="fixed", clim=(1.0, 20.0))
    params = parse_params(urlencode(state.to_url_params()))
    assert params.query == state.query
    assert params.viewport == (-100.0, 20.0, -30.0, 50.0)
    assert (params.cmap, params.clim, params.region) == ("fire", (1.0, 20.0), "Niño 3.4")
    # the normalised permalink reads back to the same request
    assert parse_params(params.to_query_string()) == params
    assert parse_params("dataset=synth&var=tas&width=300&height=200").screen == (300, 200)


@pytest.mark.parametrize(
    "text,field",
    [
        ("dataset=synth&var=tas&time=yesterday", "time"),
        ("dataset=synth&var=tas&var=ua", "var"),
        ("dataset=synth&var=tas&colour=red", "colour"),
        ("dataset=synth&var=tas&cmap=jet", "cmap"),
        ("dataset=synth&var=tas&region=Atlantis", "region"),
        ("dataset=synth&var=tas&x_range=10,-10", "x_range"),
        ("dataset=synth&var=tas&y_range=0,91", "y_range"),
        ("dataset=synth&var=tas&clim=a,b", "clim"),
        ("dataset=synth&var=tas&width=300", "height"),
        ("dataset=synth&var=tas&width=0&height=10", "width"),
        ("dataset=synth&var=tas&width=9999&height=10", "width"),
        ("var=tas", "dataset"),
        ("dataset=synth&var=tas&bbox=0,95,1,1", "bbox"),
    ],
)
def test_a_bad_parameter_is_named(text: str, field: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_params(text)
    assert info.value.field == field
    assert info.value.message and "Traceback" not in info.value.message


def test_series_endpoints_take_no_screen_size() -> None:
    with pytest.raises(QueryError, match="unknown parameter") as info:
        parse_params("dataset=synth&var=tas&width=3&height=3", screen=False)
    assert info.value.field == "width"


# --- failures to status codes -----------------------------------------------------------------
def test_every_failure_has_its_status_code_and_words() -> None:
    from data_catalog.errors import DatasetOpenError
    from pipelines.planner import PlanBudgetError

    cases = [
        (RequestTooLarge(5 * 10**9, 10**9), 413),
        (PlanBudgetError(5 * 10**9, 10**9, "raw"), 413),
        (RequestTimeout(30), 503),
        (ClusterUnavailable(10**9), 503),
        (JobCancelled(), 503),
        (QueryError("cluster", "Dask workers died repeatedly"), 503),
        (QueryError("time", "'2050' is after the record"), 400),
        (ApiError(404, "dataset", "unknown dataset"), 404),
        (ApiError(429, "query", "busy"), 429),
        (RuntimeError("boom in /srv/secret/data.nc"), 500),
        (DatasetOpenError("/srv/secret/x.zarr: cannot reach storage.example.org"), 503),
    ]
    for exc, status in cases:
        got, field, message = status_for(exc)
        assert got == status, exc
        assert field and message and "/srv/secret" not in message and "Traceback" not in message


def test_full_queue_answers_429_and_a_queued_request_past_its_time_limit_503() -> None:
    ctx = _ctx(max_queued=0)
    params = parse_params("dataset=synth&var=tas&start=2000&end=2001&agg=std")
    limits.configure(Limits(max_concurrent=1, request_timeout=0.3))
    slots = limits.slots()
    assert slots.try_acquire()  # another request holds the only slot
    try:
        with pytest.raises(ApiError) as info:
            asyncio.run(answers.map_answer(ctx, "json", params))
        assert status_for(info.value)[0] == 429 and info.value.retry_after
        ctx.max_queued = 5  # room to queue: it waits, then runs out of time
        with pytest.raises(RequestTimeout) as timeout:
            asyncio.run(answers.map_answer(ctx, "json", params))
        assert status_for(timeout.value)[0] == 503
    finally:
        slots.release()
    assert slots.queued == 0
    # the slot free again: the same request is answered
    body = json.loads(asyncio.run(answers.map_answer(ctx, "json", params)))
    expected = make_ds(0)["tas"].sel(time=slice("2000", "2001")).std("time").values
    np.testing.assert_allclose(np.array(body["values"], dtype=float), expected, rtol=1e-12)


def test_over_budget_is_refused_before_computing() -> None:
    ctx = _ctx()
    limits.configure(Limits(max_request_bytes=1000))
    with pytest.raises(RequestTooLarge) as info:
        asyncio.run(answers.map_answer(ctx, "nc", parse_params("dataset=synth&var=tas&agg=max")))
    assert status_for(info.value)[0] == 413


def test_map_json_refuses_large_maps_and_unknown_datasets_are_404() -> None:
    ctx = _ctx(max_json_cells=100)  # the grid has 18 x 36 cells
    with pytest.raises(ApiError) as info:
        asyncio.run(
            answers.map_answer(ctx, "json", parse_params("dataset=synth&var=tas&time=2000-01"))
        )
    assert info.value.status == 413 and "map.nc" in info.value.message
    small = "dataset=synth&var=tas&time=2000-01&width=4&height=2"  # coarsened to the screen
    assert json.loads(asyncio.run(answers.map_answer(ctx, "json", parse_params(small))))["values"]
    with pytest.raises(ApiError) as info:
        asyncio.run(answers.map_answer(ctx, "png", parse_params("dataset=/etc/passwd&var=x")))
    assert info.value.status == 404 and "synth" in info.value.message


# --- ETags and the answer cache ------------------------------------------------------------------
def test_etag_changes_with_the_query_and_the_store_version(tmp_path) -> None:
    from data_catalog import open_dataset

    path = tmp_path / "coads.nc"
    shutil.copy(SAMPLES_DIR / "coads_climatology.cdf", path)
    ds = open_dataset(str(path))
    version = answers.store_version(ds)
    assert str(path) in version  # hashed into the ETag, never sent as such
    a = answers.etag_for("map.png", parse_params("dataset=x&var=SST&time=Jan").key(), version)
    assert a == answers.etag_for(
        "map.png", parse_params("var=SST&time=Jan&dataset=x").key(), version
    )
    assert a.startswith('"') and a.endswith('"') and str(path) not in a
    assert a != answers.etag_for(
        "map.nc", parse_params("dataset=x&var=SST&time=Jan").key(), version
    )
    assert a != answers.etag_for(
        "map.png", parse_params("dataset=x&var=SST&time=Feb").key(), version
    )
    stat = path.stat()
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file was rewritten
    assert answers.store_version(ds) != version


def test_answer_cache_is_bounded_in_bytes_and_least_recently_used() -> None:
    cache = AnswerCache(1000)

    def answer(n: int) -> Answer:
        return Answer(b"x" * n, "text/plain", "e", "public")

    cache.put("a", answer(200))
    cache.put("b", answer(200))
    cache.put("c", answer(200))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", answer(200))
    cache.put("e", answer(240))  # 1040 bytes: the least recently used (b) goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.nbytes <= 1000
    cache.put("huge", answer(300))  # more than a quarter of the bound: not kept
    assert cache.get("huge") is None and cache.get("e") is not None
    assert cache.nbytes == sum(len(cache.get(k).body) for k in ("a", "c", "d", "e") if cache.get(k))


# --- the OpenAPI document ---------------------------------------------------------------------
def test_openapi_document_is_valid_and_lists_every_route() -> None:
    from openapi_spec_validator import validate

    from app.api.handlers import API_ROOT, api_patterns
    from app.api.openapi import ENDPOINTS, openapi_document

    document = openapi_document()
    validate(document)
    assert sorted(document["paths"]) == sorted(f"/{e}" for e in ENDPOINTS)
    import re

    for pattern, _handler, _kwargs in api_patterns(_ctx()):
        if pattern.endswith("(.*)"):
            continue  # the 404 of unknown endpoints
        routes = [p for p in document["paths"] if re.fullmatch(pattern, API_ROOT + p)]
        assert routes, f"{pattern} is not described"
    map_params = {p["name"] for p in document["paths"]["/map.png"]["get"]["parameters"]}
    assert {"dataset", "var", "time", "bbox", "x_range", "y_range", "width", "height"} <= map_params
    for path, item in document["paths"].items():
        assert "200" in item["get"]["responses"], path


# --- link previews and embedding ---------------------------------------------------------------------
def test_preview_tags_point_at_the_map_png_and_are_escaped() -> None:
    from types import SimpleNamespace

    from app.api.previews import add_link_preview, embed_snippet, preview_tags

    tags = preview_tags(
        '<script>alert("x")</script>', "http://h/?a=1&b=2", "http://h/api/v1/map.png?a=1"
    )
    assert "<script>" not in tags and "&lt;script&gt;" in tags and "a=1&amp;b=2" in tags
    state = ExplorerState(DatasetSources.from_datasets({"synth": make_ds(0)}))
    state.param.update(time_mode="range", start="2000-01-15", end="2000-12-15", agg="max")
    doc = SimpleNamespace(template=None, template_variables={})
    request = SimpleNamespace(
        headers={"Host": "maps.example.org:8080"}, protocol="https", path="/gs/"
    )
    add_link_preview(doc, state, request)
    head = str(doc.template_variables["gridscope_head"])
    query = urlencode(state.to_url_params(), safe=",:").replace("&", "&amp;")
    assert (
        f'property="og:image" content="https://maps.example.org:8080/gs/api/v1/map.png?{query}"'
        in head
    )
    title = head.split('property="og:title" content="', 1)[1].split('"', 1)[0]
    assert (
        "Synthetic monthly" in title and "air temperature (degC)" in title and "max 2000" in title
    )
    assert "gridscope_head" in doc.template and "extends" not in doc.template  # Panel adds it
    snippet = embed_snippet("http://h:5006/", "dataset=coads&var=SST")
    assert '<img src="http://h:5006/api/v1/map.png?dataset=coads&amp;var=SST"' in snippet
    assert '<iframe src="http://h:5006/?dataset=coads&amp;var=SST"' in snippet


def test_the_dashboard_offers_the_embed_snippet_of_its_view() -> None:
    from app.views.dashboard import Dashboard

    state = ExplorerState(DatasetSources.from_datasets({"synth": make_ds(0)}))
    dash = Dashboard(state)
    state.time = state.param.time.objects[3]
    query = urlencode(state.to_url_params(), safe=",:").replace("&", "&amp;")
    assert f'<img src="/api/v1/map.png?{query}"' in dash.embed
    assert f'<iframe src="?{query}"' in dash.embed
    assert (
        Query.from_query_string(urlencode(state.query.to_url_params()))
        == parse_params(urlencode(state.to_url_params())).query
    )


# --- the handlers over HTTP, in-process ---------------------------------------------------------
def _fetch_all(ctx: ApiContext, paths: list[str], headers: dict | None = None) -> list:
    """GET each path (``"HEAD path"``: a HEAD request) from a Tornado server of the API."""
    import tornado.httpclient
    import tornado.httpserver
    import tornado.testing
    import tornado.web

    from app.api.handlers import api_patterns

    async def run() -> list:
        sock, port = tornado.testing.bind_unused_port()
        server = tornado.httpserver.HTTPServer(tornado.web.Application(api_patterns(ctx)))
        server.add_sockets([sock])
        client = tornado.httpclient.AsyncHTTPClient()
        try:
            return [await client.fetch(f"http://127.0.0.1:{port}/api/v1/{p.removeprefix('HEAD ')}",
                                       method="HEAD" if p.startswith("HEAD ") else "GET",
                                       raise_error=False, request_timeout=60, headers=headers)
                    for p in paths]  # fmt: skip
        finally:
            server.stop()

    return asyncio.run(run())


def test_handlers_answer_429_and_503_as_json_and_private_servers_allow_no_other_origin() -> None:
    ctx = _ctx(max_queued=0)
    path = "map.json?dataset=synth&var=tas&start=2000&end=2001&agg=max"
    limits.configure(Limits(max_concurrent=1, request_timeout=0.3))
    slots = limits.slots()
    assert slots.try_acquire()
    try:
        (busy,) = _fetch_all(ctx, [path])
        ctx.max_queued = 5
        (late,) = _fetch_all(ctx, [path])
    finally:
        slots.release()
    assert busy.code == 429 and busy.headers["Retry-After"] and json.loads(busy.body)["field"]
    assert late.code == 503 and "longer than the 0.3 s" in json.loads(late.body)["message"]
    (ok,) = _fetch_all(ctx, [path])
    assert ok.code == 200 and "Access-Control-Allow-Origin" not in ok.headers
    ctx.public = True
    (ok,) = _fetch_all(ctx, [path])
    assert ok.code == 200 and ok.headers["Access-Control-Allow-Origin"] == "*"
    assert ok.headers["X-Gridscope-Cache"] == "hit"  # the answer of the private request, reused
    head, missing = _fetch_all(ctx, [f"HEAD {path}", "HEAD map.png?dataset=nope&var=x"])
    assert head.code == 200 and head.body == b"" and head.headers["Etag"] == ok.headers["Etag"]
    assert missing.code == 404
    (same,) = _fetch_all(ctx, [path], {"If-None-Match": ok.headers["Etag"]})
    assert same.code == 304 and same.body == b""


@pytest.mark.parametrize("kind,shape", [("curvilinear", (12, 24)), ("unstructured", (400,))])
def test_map_json_and_catalog_on_non_regular_grids(tmp_path, kind, shape) -> None:
    from data_catalog import open_dataset
    from pipelines import compute_map
    from pipelines.synthetic_grids import write_grid_store

    path = write_grid_store(kind, tmp_path / f"{kind}.zarr", 3, shape=shape, progress=False)
    ds = open_dataset(str(path))
    var = next(iter(ds.data_vars))
    ctx = ApiContext(sources=DatasetSources.from_datasets({"g": ds}), cache=AnswerCache(2**20))
    query = Query(dataset="g", var=var, agg="max")
    got = json.loads(
        asyncio.run(answers.map_answer(ctx, "json", parse_params(query.to_query_string())))
    )
    expected = compute_map(ds, query).compute()
    assert got["dims"] == list(expected.dims)
    np.testing.assert_array_equal(np.array(got["values"], dtype=float), expected.values)
    np.testing.assert_array_equal(np.array(got["lon"], dtype=float), expected["lon"].values)
    np.testing.assert_array_equal(np.array(got["lat"], dtype=float), expected["lat"].values)
    (entry,) = answers.datasets_document(ctx)["datasets"]
    assert entry["grid"]["kind"] == kind and tuple(entry["grid"]["shape"].values()) == shape


def test_a_dataset_out_of_reach_is_503_and_not_retried_on_every_request() -> None:
    from data_catalog.errors import DatasetOpenError

    calls = []

    def opener(key: str):
        calls.append(key)
        raise DatasetOpenError("gs://bucket/x.zarr: cannot reach storage.example.org")

    ctx = ApiContext(sources=DatasetSources({"far": "Far away"}, opener), cache=AnswerCache(2**20))
    first, second = _fetch_all(
        ctx, ["map.png?dataset=far&var=t2m", "series.csv?dataset=far&var=t2m&point=0,0"]
    )
    assert first.code == second.code == 503 and second.headers["Retry-After"]
    assert "cannot reach storage.example.org" in json.loads(second.body)["message"]
    assert calls == ["far"]
    (listing,) = _fetch_all(ctx, ["datasets"])
    assert listing.code == 200 and calls == ["far"]
    assert "cannot reach" in json.loads(listing.body)["datasets"][0]["error"]


def test_a_warm_request_reads_its_query_once_and_its_store_at_most_once_per_window(
    tmp_path, monkeypatch
) -> None:
    """A popular link costs lookups: its query string is read once, its store's files are
    looked at no more than once per ``version_check_seconds``, and a changed store is
    answered anew after that window (new ETag, computed again)."""
    import os

    from app.api import handlers
    from data_catalog import open_dataset

    path = tmp_path / "coads.nc"
    shutil.copy(SAMPLES_DIR / "coads_climatology.cdf", path)
    ds = open_dataset(str(path))
    ctx = ApiContext(
        sources=DatasetSources.from_datasets({"c": ds}),
        cache=AnswerCache(2**22),
        version_check_seconds=3600.0,
    )
    reads, looks = [], []
    parse, version = handlers.parse_params, answers.store_version
    monkeypatch.setattr(handlers, "parse_params", lambda *a, **k: reads.append(a) or parse(*a, **k))
    monkeypatch.setattr(answers, "store_version", lambda d: looks.append(1) or version(d))
    path_ = "map.json?dataset=c&var=SST&time=Jan"
    first, *again = _fetch_all(ctx, [path_] * 5)
    assert first.code == 200 and first.headers["X-Gridscope-Cache"] == "miss"
    assert all(r.code == 200 and r.headers["X-Gridscope-Cache"] == "hit" for r in again)
    assert {r.headers["Etag"] for r in again} == {first.headers["Etag"]}
    assert {r.body for r in again} == {first.body}
    (same,) = _fetch_all(ctx, [path_], {"If-None-Match": first.headers["Etag"]})
    assert same.code == 304 and same.headers["Etag"] == first.headers["Etag"]
    assert len(reads) == 1 and len(looks) == 1
    expected = ds["SST"].isel(time=0).values  # brute force: the January map itself
    got = np.array(json.loads(first.body)["values"], dtype=float)
    np.testing.assert_array_equal(got, expected)

    stat = path.stat()  # the file is rewritten: seen once the window has passed
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    ctx.version_check_seconds = 0.0
    (changed,) = _fetch_all(ctx, [path_])
    assert changed.code == 200 and changed.headers["Etag"] != first.headers["Etag"]
    assert changed.headers["X-Gridscope-Cache"] == "miss" and len(looks) == 2
