"""Tornado handlers of the HTTP API, served beside the dashboard on the same port.

`api_patterns` gives the routes for ``pn.serve(..., extra_patterns=...)`` (Bokeh adds
the server's ``--prefix``). Every handler is ``async``: opening, planning, computing and
drawing run in threads (`app.api.answers.in_thread`, `app.jobs.run_job`), so a slow
answer never blocks the dashboard's sessions. Each answer:

1. reads the query string strictly (`app.api.params.parse_params`; 400 naming the field);
2. finds the store version and the answer's strong ETag; ``If-None-Match`` with that
   ETag answers 304 at once, nothing computed;
3. looks the ETag up in the answer cache; else computes, caches and sends it with
   ``Cache-Control`` (public with a max-age for catalog datasets).

Errors are ``{"field", "message"}`` JSON with the codes of `app.api.errors`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.process
import tornado.web

from app.api import answers
from app.api.answers import MAP_FORMATS, SERIES_FORMATS, ApiContext, in_thread
from app.api.cache import Answer
from app.api.errors import ApiError, error_body, status_for
from app.api.params import ApiParams, parse_params

__all__ = ["API_ROOT", "api_patterns"]

log = logging.getLogger("gridscope.api")

#: Where the API lives under the server's prefix.
API_ROOT = "/api/v1"

_JSON = "application/json"


class _ApiHandler(tornado.web.RequestHandler):
    """Shared answering: ETag / 304, the answer cache, JSON errors in words."""

    ctx: ApiContext

    def initialize(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        if ctx.public:  # Tornado set the defaults before the context was known
            self._public_headers()

    def set_default_headers(self) -> None:
        if getattr(self, "ctx", None) is not None and self.ctx.public:
            self._public_headers()
        self.set_header("X-Content-Type-Options", "nosniff")
        # which server process answered (`gridscope serve --num-procs`: 0..N-1; else 0)
        self.set_header("X-Gridscope-Process", str(tornado.process.task_id() or 0))

    def _public_headers(self) -> None:
        self.set_header("Access-Control-Allow-Origin", "*")  # read-only public data

    async def head(self, *args: str) -> None:
        """Headers only (link checkers and crawlers ask so): Tornado drops the body."""
        await self.get(*args)  # type: ignore[attr-defined]

    def compute_etag(self) -> None:
        return None  # our own strong ETags (of the question, not of the body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (e.g. 405) as JSON too, never a traceback."""
        self.set_header("Content-Type", _JSON)
        self.set_header("Cache-Control", "no-store")
        self.finish(error_body("request", self._reason or "request refused"))

    def _fail(self, exc: BaseException, dataset: str | None = None) -> None:
        status, field, message = status_for(exc, dataset)
        if status >= 500 and not isinstance(exc, ApiError):
            log.warning(
                "API %s failed: %s", self.request.path, type(exc).__name__, exc_info=status == 500
            )
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", _JSON)
        self.set_header("Cache-Control", "no-store")
        retry = getattr(exc, "retry_after", None)
        if status == 429 or retry:
            self.set_header("Retry-After", str(retry or 2))
        self.finish(error_body(field, message))

    async def _answer(
        self,
        endpoint: str,
        key: str,
        dataset: str | None,
        content_type: str,
        make: Callable[[], Awaitable[bytes]],
        version: str | None = None,
    ) -> None:
        """Send the answer named by (endpoint, key, store version): 304, cached or computed."""
        started = time.perf_counter()
        if version is None:
            version = await answers.dataset_version(self.ctx, dataset)
        etag = answers.etag_for(endpoint, key, version)
        cache_control = self.ctx.cache_control(dataset)
        self.set_header("Etag", etag)
        self.set_header("Cache-Control", cache_control)
        if self.check_etag_header():
            self.set_status(304)
            self.finish()
            return
        cache_key = answers.cache_key(etag, version)
        answer = self.ctx.cache.get(cache_key)
        where = "hit"
        if answer is None:
            where = "miss"
            body = await make()
            answer = Answer(body, content_type, etag, cache_control)
            # kept off the event loop: the shared directory is written (and trimmed) too
            await answers.in_thread(self.ctx.cache.put, cache_key, answer)
        self.set_header("Content-Type", answer.content_type)
        self.set_header("X-Gridscope-Cache", where)
        self.set_header("Server-Timing", f"answer;dur={(time.perf_counter() - started) * 1000:.1f}")
        self.finish(answer.body)


def _map_request(text: str) -> tuple[ApiParams, str]:
    params = parse_params(text, screen=True)
    return params, params.key()


def _series_request(text: str) -> tuple[ApiParams, str]:
    params = parse_params(text, screen=False)
    return params, answers.series_query(params.query).to_json()


class MapHandler(_ApiHandler):
    """``GET /api/v1/map.{png,nc,json}?<permalink query>[&width=&height=]``."""

    async def get(self, fmt: str) -> None:
        dataset = None
        try:
            endpoint = f"map.{fmt}"
            params, key = self.ctx.request(endpoint, self.request.query, _map_request)
            dataset = params.query.dataset
            await self._answer(
                endpoint, key, dataset, MAP_FORMATS[fmt],
                lambda: answers.map_answer(self.ctx, fmt, params),
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001  (every failure is an answer in words)
            self._fail(exc, dataset)


class SeriesHandler(_ApiHandler):
    """``GET /api/v1/series.{csv,json}?<permalink query with a bbox or point>``."""

    async def get(self, fmt: str) -> None:
        dataset = None
        try:
            endpoint = f"series.{fmt}"
            params, key = self.ctx.request(endpoint, self.request.query, _series_request)
            dataset = params.query.dataset
            await self._answer(
                endpoint, key, dataset, SERIES_FORMATS[fmt],
                lambda: answers.series_answer(self.ctx, fmt, params),
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, dataset)


class DatasetsHandler(_ApiHandler):
    """``GET /api/v1/datasets``: the catalog with variables, units, times and grids."""

    async def get(self) -> None:
        try:
            if self.request.query:
                raise ApiError(400, "query", "datasets takes no parameters")
            versions = self.ctx.recent_version("") or await in_thread(
                answers.catalog_version, self.ctx
            )

            async def make() -> bytes:
                document = await in_thread(answers.datasets_document, self.ctx)
                return json.dumps(document, allow_nan=False).encode()

            await self._answer("datasets", "", None, _JSON, make, version=versions)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)


class QueryHandler(_ApiHandler):
    """``GET /api/v1/query?<permalink query>``: validity, cost estimate, normalised permalink."""

    async def get(self) -> None:
        dataset = None
        try:
            params, key = self.ctx.request("query", self.request.query, _map_request)
            dataset = params.query.dataset

            async def make() -> bytes:
                document = await in_thread(answers.query_document, self.ctx, params)
                return json.dumps(document, allow_nan=False).encode()

            await self._answer("query", key, dataset, _JSON, make)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, dataset)


class OpenApiHandler(_ApiHandler):
    """``GET /api/v1/openapi.json``: the OpenAPI 3 description of this API."""

    async def get(self) -> None:
        from app.api.openapi import openapi_document

        try:
            body = json.dumps(openapi_document(), sort_keys=True).encode()

            async def make() -> bytes:
                return body

            await self._answer("openapi", "", None, _JSON, make, version="static")
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)


class NotFoundHandler(_ApiHandler):
    """Any other ``/api/v1/...`` path: 404 naming the endpoints that exist."""

    async def get(self, path: str) -> None:
        from app.api.openapi import ENDPOINTS

        self._fail(
            ApiError(
                404, "endpoint", f"no endpoint {path[:60]!r}; endpoints: {', '.join(ENDPOINTS)}"
            )
        )


def api_patterns(
    ctx: ApiContext,
) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """Tornado routes of the API (``extra_patterns`` of the Panel / Bokeh server)."""
    kwargs = {"ctx": ctx}
    return [
        (rf"{API_ROOT}/map\.(png|nc|json)", MapHandler, kwargs),
        (rf"{API_ROOT}/series\.(csv|json)", SeriesHandler, kwargs),
        (rf"{API_ROOT}/datasets", DatasetsHandler, kwargs),
        (rf"{API_ROOT}/query", QueryHandler, kwargs),
        (rf"{API_ROOT}/openapi\.json", OpenApiHandler, kwargs),
        (rf"{API_ROOT}/(.*)", NotFoundHandler, kwargs),
    ]
