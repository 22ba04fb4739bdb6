"""Link previews and embedding: a permalink's page points at its own map PNG.

`add_link_preview` puts Open Graph and Twitter card tags in the head of a served
dashboard page (through the Bokeh document's template, the one place Panel renders
the page head from), so a link pasted in a chat or a post shows the map: ``og:image``
is ``/api/v1/map.png`` with the page's own (normalised) permalink query. `embed_snippet`
is the ``<img>`` / ``<iframe>`` HTML the dashboard's "Embed" box offers.
"""

from __future__ import annotations

from html import escape
from typing import Any

from app.api.handlers import API_ROOT

__all__ = ["add_link_preview", "embed_snippet", "preview_tags"]

#: A block of Panel's page template (Panel prepends ``{% extends base %}`` to a string
#: template): the tags go at the end of <head>.
_TEMPLATE = "{% block postamble %}{{ gridscope_head }}{% endblock %}"


def preview_tags(title: str, page_url: str, image_url: str) -> str:
    """Open Graph and Twitter card ``<meta>`` tags (every value HTML-escaped)."""
    description = f"{title}. Interactive map and time series in gridscope."
    tags = [
        ("property", "og:type", "website"),
        ("property", "og:site_name", "gridscope"),
        ("property", "og:title", title),
        ("property", "og:description", description),
        ("property", "og:url", page_url),
        ("property", "og:image", image_url),
        ("property", "og:image:type", "image/png"),
        ("property", "og:image:alt", f"Map: {title}"),
        ("name", "twitter:card", "summary_large_image"),
        ("name", "twitter:title", title),
        ("name", "twitter:description", description),
        ("name", "twitter:image", image_url),
        ("name", "description", description),
    ]
    return "\n".join(
        f'<meta {kind}="{escape(key)}" content="{escape(value)}">' for kind, key, value in tags
    )


def _origin_and_path(request: Any) -> tuple[str, str]:
    """``("https://host", "/prefix/")`` of the page request (forwarded headers first)."""
    headers = getattr(request, "headers", {}) or {}
    proto = str(headers.get("X-Forwarded-Proto") or getattr(request, "protocol", "http") or "http")
    host = str(
        headers.get("X-Forwarded-Host") or headers.get("Host") or getattr(request, "host", "")
    )
    path = str(getattr(request, "path", "/") or "/")
    proto = proto.split(",")[0].strip()
    host = host.split(",")[0].strip()
    return (f"{proto}://{host}" if host else ""), path


def api_base(page_base: str) -> str:
    """The API's URL for a dashboard page URL without its query (``…/`` -> ``…/api/v1``)."""
    return page_base.split("?", 1)[0].split("#", 1)[0].rstrip("/") + API_ROOT


def add_link_preview(doc: Any, state: Any, request: Any) -> None:
    """Give the page of ``doc`` the preview tags of the view ``state`` restored from its link.

    The query is the state's own permalink (what the page shows, after a bad link was
    corrected), so the preview image is always an answerable `/api/v1/map.png` query.
    """
    from urllib.parse import urlencode

    from app.labels import for_state

    query_string = urlencode(state.to_url_params(), safe=",:")
    origin, path = _origin_and_path(request)
    page = f"{origin}{path}"
    from markupsafe import Markup

    tags = preview_tags(
        for_state(state).title(),
        f"{page}?{query_string}",
        f"{origin}{api_base(path)}/map.png?{query_string}",
    )
    doc.template = _TEMPLATE
    doc.template_variables["gridscope_head"] = Markup(tags)


def embed_snippet(page_base: str, query_string: str, title: str = "gridscope map") -> str:
    """HTML that embeds the view elsewhere: the map as an image, and the live dashboard."""
    page = page_base.split("?", 1)[0].split("#", 1)[0]
    image = f"{api_base(page)}/map.png?{query_string}"
    alt = escape(title)
    return (
        f'<img src="{escape(image)}" alt="{alt}" width="1000">\n'
        f'<iframe src="{escape(page)}?{escape(query_string)}" title="{alt}" width="1200" '
        'height="800" style="border:0" loading="lazy"></iframe>'
    )
