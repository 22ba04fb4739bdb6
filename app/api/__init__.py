"""The HTTP API beside the dashboard: every view's answers at a URL of their own.

``/api/v1/map.png|nc|json``, ``/api/v1/series.csv|json``, ``/api/v1/datasets``,
``/api/v1/query`` and ``/api/v1/openapi.json`` are served by ``gridscope serve`` on the
dashboard's port; their query string is the dashboard's permalink query. Modules:

- `app.api.params`: the query string, read strictly (400 naming the field);
- `app.api.answers`: what each endpoint answers, from the dashboard's and the CLI's
  functions, under the server's limits; store versions and ETags;
- `app.api.cache`: a finished answer (kept in the one answer cache, `app.answer_cache`);
- `app.api.errors`: exceptions to status codes and ``{field, message}`` bodies;
- `app.api.handlers`: the Tornado handlers and `api_patterns`;
- `app.api.openapi`: the OpenAPI 3 description;
- `app.api.previews`: Open Graph / Twitter card tags and the embed snippet.
"""

from __future__ import annotations

from typing import Any

__all__ = ["api_patterns_for"]


def api_patterns_for(sources: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """The API's Tornado routes over ``sources`` (settings and cache: the current runtime)."""
    from app.api.answers import ApiContext
    from app.api.handlers import api_patterns

    return api_patterns(ApiContext.from_runtime(sources))
