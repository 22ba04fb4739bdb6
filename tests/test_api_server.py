"""The HTTP API of a real ``gridscope serve --public`` over HTTP.

Each endpoint on the bundled samples, checked against brute-force xarray on the raw
NOAA files (opened here without gridscope), against ``gridscope export`` for the same
query and against the dashboard's own results; ETags and 304; every error code a
request can reach (400, 404, 413; 429 and 503 are forced in-process in
tests/test_api.py); the OpenAPI document; the link preview of a permalink page.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import urllib.error
import urllib.request
from urllib.parse import urlencode

import numpy as np
import pytest
import xarray as xr

from app import cluster_health, exports, labels, limits, map_views
from app.cli import main as gridscope
from app.limits import Limits
from app.sources import DatasetSources
from app.state import ExplorerState
from app.views.results import ViewResults
from pipelines import Query
from tests.browser.conftest import start_server, stop_server
from tests.conftest import REPO_ROOT, SAMPLES_DIR

#: --max-request-bytes 4MB: steps, small ranges and point series fit; whole records do not
BUDGET = 4 * 10**6
JSON_CELLS = 100_000  # etopo20's 1080 x 540 map is too large for map.json


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    log = tmp_path_factory.mktemp("api") / "serve.log"
    proc, url = start_server(
        ["--public", "--workers", "1", "--max-request-bytes", "4MB", "--max-concurrent", "2",
         "--request-timeout", "60"],
        log, env={"GRIDSCOPE_API_JSON_CELLS": str(JSON_CELLS)},
    )  # fmt: skip
    try:
        yield url
    finally:
        stop_server(proc)
    text = log.read_text()  # no request failed in the server (Dask's shutdown noise aside)
    assert "Uncaught exception" not in text and "gridscope.api" not in text, text[-3000:]


@pytest.fixture(scope="module")
def sources() -> DatasetSources:
    return DatasetSources.from_catalog()


@pytest.fixture(autouse=True)
def _no_limits():
    limits.configure(Limits())
    cluster_health.use_client(None)
    yield


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _ok(url: str) -> tuple[dict[str, str], bytes]:
    status, headers, body = _get(url)
    assert status == 200, (url, body[:300])
    return headers, body


# --- brute force on the raw files (no gridscope code) ---------------------------------------
def _raw(name: str, var: str) -> xr.DataArray:
    ds = xr.open_dataset(SAMPLES_DIR / name, decode_times=name != "coads_climatology.cdf")
    prefix = "COADS" if "COADSX" in ds.dims else "FNOC"
    da = ds[var].load().rename({f"{prefix}X": "lon", f"{prefix}Y": "lat", "TIME": "time"})
    da = da.assign_coords(lon=((da["lon"] + 180.0) % 360.0) - 180.0).sortby("lon")
    return da.transpose("time", "lat", "lon")


def _file(body: bytes, tmp_path, name: str) -> xr.DataArray:
    path = tmp_path / name
    path.write_bytes(body)
    with xr.open_dataset(path) as ds:
        return ds[next(iter(ds.data_vars))].load()


def _export(tmp_path, *args: str) -> str:
    out = tmp_path / ("export" + args[-1])
    assert gridscope(["export", *args[:-1], "-o", str(out)]) == 0
    return str(out)


def _dashboard(sources: DatasetSources, params: dict[str, str]) -> ViewResults:
    state = ExplorerState(sources)
    assert state.from_url(params) == []
    results = ViewResults(state)
    results.refresh()
    assert results.error == ""
    return results


# --- maps ------------------------------------------------------------------------------
def test_map_json_and_nc_equal_brute_force_export_and_dashboard(api, sources, tmp_path) -> None:
    query = "dataset=coads&var=SST&time=Jan"
    _, body = _ok(f"{api}/api/v1/map.json?{query}")
    got = json.loads(body)
    values = np.array(got["values"], dtype=float)  # null -> nan
    raw = _raw("coads_climatology.cdf", "SST").isel(time=0)
    np.testing.assert_array_equal(got["lat"], raw["lat"].values)
    np.testing.assert_array_equal(got["lon"], raw["lon"].values)
    np.testing.assert_array_equal(values, raw.values.astype("float64"))
    assert got["units"] == "Deg C" and np.isnan(values).any()  # land is missing, not 0
    _, nc = _ok(f"{api}/api/v1/map.nc?{query}")
    api_nc = _file(nc, tmp_path, "api.nc")
    exported = xr.open_dataset(
        _export(tmp_path, "map", "coads", "--var", "SST", "--time", "Jan", ".nc")
    )
    np.testing.assert_array_equal(api_nc.values, exported["SST"].values)
    np.testing.assert_array_equal(api_nc.values.astype("float64"), values)
    dashboard = _dashboard(sources, {"dataset": "coads", "var": "SST", "time": "Jan"}).field
    np.testing.assert_array_equal(np.asarray(dashboard.values, dtype="float64"), values)


def test_range_statistic_map_equals_brute_force_and_export(api, tmp_path) -> None:
    query = "dataset=navy-winds&var=UWND&start=1985&end=1985&agg=std"
    _, nc = _ok(f"{api}/api/v1/map.nc?{query}")
    got = _file(nc, tmp_path, "api.nc")
    raw = _raw("monthly_navy_winds.cdf", "UWND").sel(time="1985")
    assert raw.sizes["time"] == 12
    expected = raw.astype("float64").std("time", ddof=0)
    np.testing.assert_allclose(got.values, expected.values, rtol=1e-5, atol=1e-6)
    path = _export(tmp_path, "map", "navy-winds", "--var", "UWND", "--start", "1985", "--end",
                   "1985", "--agg", "std", ".nc")  # fmt: skip
    np.testing.assert_allclose(got.values, xr.open_dataset(path)["UWND"].values, rtol=1e-12)


def test_map_png_is_the_dashboards_drawing_of_the_same_numbers(api, sources) -> None:
    query = Query(dataset="coads", var="SST", time="Jan")
    headers, png = _ok(f"{api}/api/v1/map.png?{query.to_query_string()}&cmap=fire&region=Global")
    assert headers["Content-Type"] == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"
    raw = _raw("coads_climatology.cdf", "SST").isel(time=0)
    finite = raw.values[np.isfinite(raw.values)]
    words = labels.view_labels(query, sources.info("coads"))
    expected = io.BytesIO()
    exports.map_to_png(raw, expected, cmap="fire", clim=(float(finite.min()), float(finite.max())),
                       title=words.title(), label=words.quantity)  # fmt: skip
    from matplotlib.image import imread

    np.testing.assert_array_equal(imread(io.BytesIO(png)), imread(io.BytesIO(expected.getvalue())))


def test_viewport_and_screen_give_the_dashboards_view(api, sources) -> None:
    view = {"x_range": "-30,40", "y_range": "30,70", "width": "140", "height": "80"}
    query = Query(dataset="etopo20", var="ROSE")
    _, body = _ok(f"{api}/api/v1/map.json?{query.to_query_string()}&{urlencode(view)}")
    got = json.loads(body)
    expected = map_views.map_for_view(sources.open("etopo20"), query, (-30, 40, 30, 70), (140, 80))
    assert len(got["lon"]) < 1080 // 2 and min(got["lon"]) > -32 and max(got["lat"]) < 72
    np.testing.assert_array_equal(got["lon"], expected["lon"].values)
    np.testing.assert_array_equal(got["lat"], expected["lat"].values)
    np.testing.assert_array_equal(np.array(got["values"], dtype=float), expected.values)


# --- series ------------------------------------------------------------------------------
def test_point_series_csv_is_the_export_and_the_raw_cell(api, tmp_path) -> None:
    query = "dataset=navy-winds&var=UWND&point=-140,0"
    headers, body = _ok(f"{api}/api/v1/series.csv?{query}")
    assert headers["Content-Type"].startswith("text/csv")
    exported = _export(
        tmp_path, "series", "navy-winds", "--var", "UWND", "--point", "-140,0", ".csv"
    )
    assert body.decode() == open(exported).read()
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["time", "UWND"]
    raw = _raw("monthly_navy_winds.cdf", "UWND").sel(lon=-140.0, lat=0.0)
    np.testing.assert_array_equal([float(v) for _, v in rows[1:]], raw.values.astype("float64"))


def test_box_series_json_is_the_area_weighted_mean_and_the_dashboards(api, sources) -> None:
    params = {"dataset": "coads", "var": "SST", "time": "Jan", "bbox": "-170,-5,-120,5",
              "region": "Niño 3.4"}  # fmt: skip
    _, body = _ok(f"{api}/api/v1/series.json?{urlencode(params)}")
    got = json.loads(body)
    raw = _raw("coads_climatology.cdf", "SST").sel(lat=slice(-5, 5), lon=slice(-170, -120))
    lat = np.radians(raw["lat"].values)
    band = np.sin(lat + np.radians(1.0)) - np.sin(lat - np.radians(1.0))
    weights = xr.DataArray(band, dims="lat") * xr.ones_like(raw.isel(time=0))
    valid = np.isfinite(raw)
    expected = (raw.fillna(0) * weights).sum(("lat", "lon")) / (weights * valid).sum(("lat", "lon"))
    assert len(got["time"]) == 12 and got["query"]["bbox"] == [-170.0, -5.0, -120.0, 5.0]
    np.testing.assert_allclose(got["values"], expected.values, rtol=1e-6)
    dashboard = _dashboard(sources, params).series
    np.testing.assert_allclose(got["values"], dashboard.values, rtol=1e-12)


# --- caching ------------------------------------------------------------------------------
def test_etag_cache_control_and_304_without_computing(api) -> None:
    from app.api import answers
    from app.api.params import parse_params
    from data_catalog import open_dataset

    url = f"{api}/api/v1/map.png?dataset=coads&var=AIRT&time=Mar"
    # the ETag of an answer never asked for, computed here from the same store version
    query = parse_params("dataset=coads&var=AIRT&time=Mar")
    etag = answers.etag_for("map.png", query.key(), answers.store_version(open_dataset("coads")))
    status, headers, body = _get(url, {"If-None-Match": etag})
    assert (status, body) == (304, b"") and headers["Etag"] == etag
    headers, body = _ok(url)
    assert (
        headers["Etag"] == etag and headers["X-Gridscope-Cache"] == "miss"
    )  # not computed by the 304
    assert headers["Cache-Control"] == "public, max-age=3600"
    assert headers["Access-Control-Allow-Origin"] == "*"  # public mode: any site may read it
    again, body2 = _ok(url)
    assert again["X-Gridscope-Cache"] == "hit" and body2 == body
    assert _get(url, {"If-None-Match": f'"other", {etag}'})[0] == 304
    assert _get(url, {"If-None-Match": '"other"'})[0] == 200
    other, _ = _ok(url.replace("Mar", "Apr"))
    assert other["Etag"] != etag


# --- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path,status,field",
    [
        ("map.png?dataset=coads&var=SST&time=yesterday", 400, "time"),
        ("map.json?dataset=coads&var=NOPE", 400, "var"),
        ("map.png?dataset=coads&var=SST&bogus=1", 400, "bogus"),
        ("series.csv?dataset=coads&var=SST", 400, "bbox"),
        ("map.png?dataset=nope&var=SST", 404, "dataset"),
        (f"map.png?dataset={SAMPLES_DIR / 'coads_climatology.cdf'}&var=SST", 404, "dataset"),
        ("nothing/here", 404, "endpoint"),
        ("map.png?dataset=navy-winds&var=UWND&agg=std", 413, "query"),  # 5.5 MB > 4 MB
        ("series.json?dataset=navy-winds&var=UWND&bbox=-180,-90,180,90", 413, "query"),
        ("map.json?dataset=etopo20&var=ROSE", 413, "query"),  # cells, not bytes
    ],
)
def test_errors_are_json_in_words_with_their_status(api, path, status, field) -> None:
    got, headers, body = _get(f"{api}/api/v1/{path}")
    assert got == status, body[:300]
    error = json.loads(body)
    assert error["field"] == field and error["message"]
    assert headers["Content-Type"] == "application/json" and headers["Cache-Control"] == "no-store"
    for leak in ("Traceback", str(REPO_ROOT), "site-packages"):
        assert leak not in body.decode()


# --- catalog, query checks, OpenAPI ------------------------------------------------------------------
def test_datasets_lists_variables_units_times_and_grids(api) -> None:
    _, body = _ok(f"{api}/api/v1/datasets")
    entries = {e["id"]: e for e in json.loads(body)["datasets"]}
    navy = entries["navy-winds"]
    raw = xr.open_dataset(SAMPLES_DIR / "monthly_navy_winds.cdf")
    assert {v["name"] for v in navy["variables"]} == set(raw.data_vars)
    assert {v["name"]: v["units"] for v in navy["variables"]}["UWND"] == raw["UWND"].attrs["units"]
    assert navy["time"]["steps"] == raw.sizes["TIME"]
    assert navy["time"]["first"].startswith("1982-01") and navy["time"]["last"].startswith(
        "1992-12"
    )
    assert navy["grid"] == {"kind": "regular", "shape": {"lat": 73, "lon": 144},
                            "lon": [-180.0, 177.5], "lat": [-90.0, 90.0]}  # fmt: skip
    assert entries["coads"]["time"]["climatology"] is True


def test_query_check_gives_cost_budget_and_normalised_permalink(api) -> None:
    params = {"var": "UWND", "dataset": "navy-winds", "agg": "std", "bbox": "-80,0,-10,60.0"}
    _, body = _ok(f"{api}/api/v1/query?{urlencode(params)}")
    got = json.loads(body)
    raw = _raw("monthly_navy_winds.cdf", "UWND").sel(lat=slice(0, 60), lon=slice(-80, -10))
    assert got["cost"]["series"]["bytes"] >= raw.size * 4  # float32 cells x steps, whole chunks
    assert got["budget_bytes"] == BUDGET and got["fits_budget"] is True
    assert Query.from_query_string(got["permalink"]) == Query.from_url_params(params)
    assert got["permalink"] == "?dataset=navy-winds&var=UWND&agg=std&bbox=-80,0,-10,60"
    whole = json.loads(_ok(f"{api}/api/v1/query?dataset=navy-winds&var=UWND&agg=std")[1])
    assert whole["cost"]["map"]["bytes"] == _raw("monthly_navy_winds.cdf", "UWND").size * 4
    assert whole["fits_budget"] is False
    # the charge is the one the series endpoint applies: over the budget there, over here
    box = "dataset=navy-winds&var=UWND&bbox=-180,-90,180,90"
    assert json.loads(_ok(f"{api}/api/v1/query?{box}")[1])["fits_budget"] is False
    assert _get(f"{api}/api/v1/series.json?{box}")[0] == 413
    assert _get(f"{api}/api/v1/query?dataset=navy-winds&var=UWND&time=2050")[0] == 400


def test_openapi_document_is_served_valid_and_lists_every_endpoint(api) -> None:
    from openapi_spec_validator import validate

    from app.api.openapi import ENDPOINTS

    _, body = _ok(f"{api}/api/v1/openapi.json")
    document = json.loads(body)
    validate(document)
    assert sorted(document["paths"]) == sorted(f"/{e}" for e in ENDPOINTS)
    for endpoint in ENDPOINTS:  # each one described is served
        status = _get(f"{api}/api/v1/{endpoint}?dataset=coads&var=SST&bbox=0,0,10,10")[0]
        assert status != 404, endpoint


# --- link previews --------------------------------------------------------------------------------
def test_permalink_page_has_a_link_preview_of_its_map(api) -> None:
    _ok(f"{api}/api/v1/datasets")  # every dataset open: the page is built at once, with its head
    _, page = _ok(f"{api}/?dataset=navy-winds&var=UWND&time=1985-07")
    text = page.decode()
    tags = dict(
        re.findall(r'<meta (?:property|name)="((?:og|twitter):[\w:]+)" content="([^"]*)"', text)
    )
    image = html.unescape(tags["og:image"])
    assert image.startswith(f"{api}/api/v1/map.png?") and "dataset=navy-winds" in image
    assert (
        tags["twitter:card"] == "summary_large_image" and tags["twitter:image"] == tags["og:image"]
    )
    assert "1985-07" in image and "1985-07" in html.unescape(tags["og:title"])
    assert "ZONAL WIND" in html.unescape(tags["og:title"])
    headers, png = _ok(image)
    assert headers["Content-Type"] == "image/png" and png[:4] == b"\x89PNG"
