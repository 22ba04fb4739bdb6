"""API failures as HTTP status codes and one-line JSON bodies, never a traceback.

Every error body is ``{"field": ..., "message": ...}``: ``field`` names the query
parameter at fault (or ``"dataset"``, ``"query"``, ``"cluster"``, ``"server"``) and the
message says what was wrong and what is allowed (`app.limits.user_message`, scrubbed of
paths). The codes:

=====  ==================================================================================
400    a malformed or impossible query (a `pipelines.QueryError` of any field)
404    an unknown dataset or endpoint
413    over the per-request byte budget, or a ``map.json`` larger than its cell limit
429    the queue of computations waiting for a slot (``--max-concurrent``) is full
503    the computation ran past ``--request-timeout``, was cancelled, the Dask
       cluster is unavailable, or the dataset cannot be opened now (a remote store
       out of reach)
500    anything else (logged on the server; the body says only what failed, in words)
=====  ==================================================================================
"""

from __future__ import annotations

import json

from app.limits import (
    ClusterUnavailable,
    JobCancelled,
    RequestTimeout,
    RequestTooLarge,
    user_message,
)
from pipelines.query import QueryError

__all__ = ["ApiError", "error_body", "status_for"]


class ApiError(Exception):
    """An answer the API refuses, with its HTTP status (raised by the API itself)."""

    def __init__(self, status: int, field: str, message: str, *, retry_after: int | None = None):
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message
        self.retry_after = retry_after


def _too_large_types() -> tuple[type[BaseException], ...]:
    try:
        from pipelines.planner import PlanBudgetError
    except ImportError:  # pragma: no cover
        return (RequestTooLarge,)
    return (RequestTooLarge, PlanBudgetError)


def status_for(exc: BaseException, dataset: str | None = None) -> tuple[int, str, str]:
    """``(status, field, message)`` for an exception raised while answering a request."""
    if isinstance(exc, ApiError):
        return exc.status, exc.field, exc.message
    if isinstance(exc, _too_large_types()):
        return 413, "query", user_message(exc)
    if isinstance(exc, (RequestTimeout, ClusterUnavailable)):
        return 503, exc.field, user_message(exc)
    if isinstance(exc, JobCancelled):
        return 503, "query", "the computation was cancelled on the server; try again"
    if isinstance(exc, QueryError):
        return (503 if exc.field == "cluster" else 400), exc.field, user_message(exc)
    from data_catalog.errors import DatasetOpenError

    if isinstance(exc, DatasetOpenError):  # e.g. a remote store out of reach: try later
        return 503, "dataset", user_message(exc, dataset)
    return 500, "server", user_message(exc, dataset)


def error_body(field: str, message: str) -> bytes:
    """The JSON body of an error answer."""
    return json.dumps({"field": field, "message": message}).encode()
