"""The OpenAPI 3 description of the HTTP API (served at ``/api/v1/openapi.json``).

Built from the same names the API reads (the `pipelines.Query` fields, the dashboard's
view fields, the formats of `app.api.answers`), so a new field or format shows up here
without a second list to keep in step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from app.api.answers import MAP_FORMATS, SERIES_FORMATS, gridscope_version
from app.api.params import MAX_SCREEN
from pipelines.query import AGGREGATIONS, Query

__all__ = ["ENDPOINTS", "openapi_document"]

ENDPOINTS = (
    *(f"map.{fmt}" for fmt in MAP_FORMATS),
    *(f"series.{fmt}" for fmt in SERIES_FORMATS),
    "datasets",
    "query",
    "openapi.json",
)

_QUERY_DOCS = {
    "dataset": ("Catalog id of the dataset (see /datasets).", True, "coads"),
    "var": ("Data variable name.", True, "SST"),
    "time": (
        "One time step: a step's own date selects it, a period such as 1985-07 its first "
        "step, a moment between steps the nearest; a month name on a climatology, a number "
        "on a numbered step axis.",
        False,
        "Jan",
    ),
    "start": ("Range start (inclusive), e.g. 1982 or 1982-03; default: record start.", False, None),
    "end": ("Range end (inclusive), e.g. 1992; default: record end.", False, None),
    "agg": (f"Reduction over the range: {', '.join(AGGREGATIONS)}.", False, None),
    "baseline_start": ("Anomaly baseline start (with baseline_end).", False, None),
    "baseline_end": ("Anomaly baseline end.", False, None),
    "bbox": ("W,S,E,N in degrees (W > E crosses 180): crops a map; a series' region.", False, None),
    "point": ("lon,lat of a series' nearest cell.", False, None),
    "level": ("Vertical level: one the variable has (else 400).", False, None),
}
_VIEW_DOCS = {
    "region": "The dashboard's region name (kept in permalinks; no effect on numbers).",
    "cmap": "Colour map of the PNG (the dashboard's colorcet names).",
    "clim": "Fixed colour range of the PNG: low,high.",
    "x_range": "Map viewport longitudes west,east (the dashboard's view).",
    "y_range": "Map viewport latitudes south,north.",
}


def _parameter(name: str, description: str, required: bool = False, example: Any = None) -> dict:
    out: dict[str, Any] = {"name": name, "in": "query", "required": required,
                           "description": description, "schema": {"type": "string"}}  # fmt: skip
    if name == "agg":
        out["schema"] = {"type": "string", "enum": list(AGGREGATIONS), "default": "mean"}
    if example is not None:
        out["example"] = example
    return out


def _parameters(*, view: bool, screen: bool) -> list[dict]:
    fields = [f.name for f in dataclasses.fields(Query)]
    params = [_parameter(name, *_QUERY_DOCS[name]) for name in fields]
    if view:
        params += [_parameter(name, text) for name, text in _VIEW_DOCS.items()]
    if screen:
        for name in ("width", "height"):
            params.append({"name": name, "in": "query", "required": False,
                           "description": f"Plot {name} in pixels (with the other): the map at "
                                          "about screen resolution.",
                           "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SCREEN}})  # fmt: skip
    return params


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}  # fmt: skip


_ERRORS = {
    "400": _error("Bad query: the field and what is allowed."),
    "404": _error("Unknown dataset."),
    "413": _error("Over the per-request byte budget (or, for map.json, the cell limit)."),
    "429": _error("Too many computations waiting; retry after the Retry-After seconds."),
    "503": _error("Time limit reached, cancelled, Dask cluster or dataset out of reach."),
}
_NOT_MODIFIED = {"description": "Not modified (If-None-Match matched the ETag); no body."}
_HEADERS = {
    "ETag": {"description": "Strong ETag: query, store version, gridscope version.",
             "schema": {"type": "string"}},
    "Cache-Control": {"description": "public, max-age=N for catalog datasets; no-cache otherwise.",
                      "schema": {"type": "string"}},
}  # fmt: skip


def _ok(description: str, media: dict[str, dict]) -> dict:
    return {"description": description, "headers": _HEADERS, "content": media}


def _operation(summary: str, operation_id: str, ok: dict, parameters: list[dict],
               errors: tuple[str, ...] = ("400", "404", "413", "429", "503")) -> dict:  # fmt: skip
    responses = {"200": ok, "304": _NOT_MODIFIED} | {code: _ERRORS[code] for code in errors}
    return {"get": {"summary": summary, "operationId": operation_id,
                    "parameters": parameters, "responses": responses}}  # fmt: skip


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 document (paths relative to the ``/api/v1`` server URL)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    map_params = _parameters(view=True, screen=True)
    paths: dict[str, Any] = {
        "/map.png": _operation(
            "The map as a PNG (as the dashboard draws it: colour map, range, coastlines).",
            "mapPng", _ok("PNG image.", {"image/png": binary}), map_params),
        "/map.nc": _operation(
            "The map as netCDF (what `gridscope export map` writes).",
            "mapNetcdf", _ok("netCDF file.", {"application/x-netcdf": binary}), map_params),
        "/map.json": _operation(
            "The map's values and coordinates as JSON (small maps only).",
            "mapJson", _ok("Values, lat, lon.", {"application/json": {
                "schema": {"$ref": "#/components/schemas/Map"}}}), map_params),
        "/series.csv": _operation(
            "The time series (point or area-weighted box mean) as CSV: time,<var>.",
            "seriesCsv", _ok("CSV text.", {"text/csv": {"schema": {"type": "string"}}}),
            _parameters(view=True, screen=False)),
        "/series.json": _operation(
            "The time series as JSON.",
            "seriesJson", _ok("Times and values.", {"application/json": {
                "schema": {"$ref": "#/components/schemas/Series"}}}),
            _parameters(view=True, screen=False)),
        "/datasets": _operation(
            "The served datasets: variables, units, time range, grid.",
            "datasets", _ok("The catalog.", {"application/json": {
                "schema": {"$ref": "#/components/schemas/Datasets"}}}), [], errors=()),
        "/query": _operation(
            "Check a query against its data: cost estimate and normalised permalink.",
            "query", _ok("The checked query.", {"application/json": {
                "schema": {"$ref": "#/components/schemas/QueryCheck"}}}), map_params,
            errors=("400", "404")),
        "/openapi.json": _operation(
            "This document.", "openapi",
            _ok("OpenAPI 3 document.", {"application/json": {"schema": {"type": "object"}}}),
            [], errors=()),
    }  # fmt: skip
    number_or_null = {"type": "number", "nullable": True}
    schemas = {
        "Error": {"type": "object", "required": ["field", "message"],
                  "properties": {"field": {"type": "string"}, "message": {"type": "string"}}},
        "Map": {
            "type": "object",
            "required": ["dataset", "var", "dims", "lat", "lon", "values"],
            "description": (
                "A regular grid's map has dims [lat, lon] and 1-D lat / lon axes; other "
                "grids keep their own cells (dims [y, x] or [cell]) and give each cell's "
                "lat / lon shaped like values."
            ),
            "properties": {
                "dataset": {"type": "string"},
                "var": {"type": "string"},
                "long_name": {"type": "string"},
                "units": {"type": "string"},
                "query": {"type": "object"},
                "level": {"type": "integer"},
                "dims": {"type": "array", "items": {"type": "string"}},
                "lat": {"type": "array", "items": {}},
                "lon": {"type": "array", "items": {}},
                "values": {
                    "type": "array",
                    "description": "Nested by dims; null = missing.",
                    "items": {},
                },
            },
        },
        "Series": {"type": "object", "required": ["dataset", "var", "time", "values"],
                   "properties": {
                       "dataset": {"type": "string"}, "var": {"type": "string"},
                       "long_name": {"type": "string"}, "units": {"type": "string"},
                       "query": {"type": "object"},
                       "time": {"type": "array", "items": {"type": "string"}},
                       "values": {"type": "array", "items": number_or_null}}},
        "Datasets": {"type": "object", "required": ["datasets"],
                     "properties": {"gridscope_version": {"type": "string"},
                                    "datasets": {"type": "array", "items": {"type": "object"}}}},
        "QueryCheck": {"type": "object", "required": ["valid", "query", "permalink", "cost"],
                       "properties": {
                           "valid": {"type": "boolean"}, "query": {"type": "object"},
                           "permalink": {"type": "string"}, "cost": {"type": "object"},
                           "budget_bytes": {"type": "integer", "nullable": True},
                           "fits_budget": {"type": "boolean"},
                           "endpoints": {"type": "object"}}},
    }  # fmt: skip
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "gridscope API",
            "version": gridscope_version(),
            "description": (
                "Every dashboard view has its own URLs: the query string is the dashboard's "
                "permalink query. Answers carry strong ETags and Cache-Control; errors are "
                "{field, message} JSON."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {"schemas": schemas},
    }
