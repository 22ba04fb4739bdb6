"""Serving the dashboard: one `Dashboard` per browser session over a shared Dask client.

The Dask client comes from `pipelines.cluster` (LocalCluster, scheduler, Gateway or
operator: the same code ``gridscope build`` uses); `serve` runs the Panel server with
a ``/liveness`` endpoint and websocket origins limited to what was asked for
(``localhost:PORT`` by default).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from app.sources import DatasetSources

__all__ = ["configure_panel", "create_session", "serve", "server_options"]

log = logging.getLogger("gridscope.server")


def _session_params() -> dict[str, str]:
    import panel as pn

    args = pn.state.session_args or {}
    params: dict[str, str] = {}
    for key, values in args.items():
        if not values:
            continue
        value = values[-1]
        params[str(key)] = unquote(
            value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        )
    return params


def create_session(sources: DatasetSources, client: Any = None) -> Any:
    """Build the page of one browser session, restored from the URL query."""
    import panel as pn

    from app.state import ExplorerState
    from app.views.dashboard import Dashboard

    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        pn.state.on_session_destroyed(release_memory)
    state = ExplorerState(sources)
    try:
        state.from_url(_session_params())
    except Exception as exc:  # never an error page for a bad link
        log.exception("could not restore a link")
        state.reset()
        state.message = (
            f"Could not open this link ({type(exc).__name__}); showing the default view."
        )
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        from app.api.previews import add_link_preview

        try:  # Open Graph / Twitter card tags: a pasted link shows its map
            add_link_preview(pn.state.curdoc, state, pn.state.curdoc.session_context.request)
        except Exception:  # noqa: BLE001  (a page without a preview, never an error page)
            log.warning("no link preview for this page", exc_info=True)
    try:
        return pn.Column(Dashboard(state, client=client), sizing_mode="stretch_width")
    except Exception as exc:  # words in the page, the traceback in the server log
        from app.limits import user_message

        log.exception("could not build the dashboard")
        return pn.pane.Alert(
            f"gridscope could not build this page. {user_message(exc)}", alert_type="danger"
        )


def configure_panel() -> None:
    """Panel settings of a served dashboard (notifications: the error toasts)."""
    import panel as pn

    pn.extension(notifications=True, sizing_mode="stretch_width")


def release_memory(session_context: Any) -> None:
    """After a session ends: drop what Panel keeps of it, then return the memory.

    Panel 1.9 registers the page's notification area in ``pn.state._views`` but never
    removes it (its ``_server_destroy`` only knows documents it served), so every closed
    session's document and models stayed alive (measured: ~10 MB a session, 14 of 15
    sessions after a load test). The entries of this session's document are removed
    here; the collection and heap trim run once shortly afterwards, after Bokeh has
    destroyed the document (`_schedule_trim`).
    """
    import panel as pn

    doc = getattr(session_context, "_document", None)
    for ref, (view, root, view_doc, _comm) in list(pn.state._views.items()):
        if view_doc is doc:
            try:
                view._cleanup(root)
            except Exception:  # noqa: BLE001  (a half-built view: dropping it is enough)
                log.debug("cleanup of a closed session's view failed", exc_info=True)
            pn.state._views.pop(ref, None)
    _schedule_trim()


_trim_timer: Any = None


def _schedule_trim(delay: float = 3.0) -> None:
    """Collect cycles and trim the heap `delay` seconds after the last session closed.

    Re-armed by every closing session, so a burst of closing sessions is collected
    once, after Bokeh and Panel have destroyed all of their documents.
    """
    global _trim_timer
    try:
        from tornado.ioloop import IOLoop

        loop = IOLoop.current()
    except RuntimeError:  # no event loop (outside a server): trim now
        _trim()
        return
    if _trim_timer is not None:
        loop.remove_timeout(_trim_timer)
    _trim_timer = loop.call_later(delay, _trim)


def _trim() -> None:
    """Collect cycles, hand freed C heap back to the OS and log the live heap.

    Bokeh documents are large object graphs with cycles, collected here at once rather
    than whenever the collector's thresholds say. ``malloc_trim`` returns what the C
    allocator freed (arrays, large objects); CPython's own arenas that still hold one
    live object stay, so RSS after a burst of sessions stays near its peak (and is
    reused by the next burst): the logged `memory_report` says what is still live.
    """
    import ctypes
    import gc

    global _trim_timer
    _trim_timer = None
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
    log.info("memory after sessions closed: %s", memory_report())


def memory_report() -> str:
    """The server's live Python heap and resident memory, as ``key=value`` words.

    ``blocks`` (memory blocks the interpreter has allocated, of any size) and
    ``objects`` (objects tracked by the garbage collector) measure what is still
    referenced; ``rss_mib`` also counts memory the allocator keeps after a burst of
    sessions (freed, but in arenas that still hold a live object), which it reuses.
    """
    import gc
    import sys

    import psutil

    rss = psutil.Process().memory_info().rss / 2**20
    return f"blocks={sys.getallocatedblocks()} objects={len(gc.get_objects())} rss_mib={rss:.1f}"


def server_options(
    *,
    port: int,
    websocket_origins: Sequence[str] = (),
    public: bool = False,
    sign_sessions: bool | None = None,
    secret_key: str | None = None,
    xsrf_cookies: bool = False,
    unused_session_lifetime: float | None = None,
    check_unused_sessions: float | None = None,
    environ: Any = None,
) -> dict[str, Any]:
    """Keyword arguments of the Bokeh server for these settings (`ValueError` in words).

    Signed session ids: ``sign_sessions`` (default: on in public mode, else
    ``BOKEH_SIGN_SESSIONS``) with ``secret_key`` or ``BOKEH_SECRET_KEY``; in public mode
    without a key a random one is made for this process. Tracebacks are never served.
    """
    import os
    import secrets

    from app.limits import check_origins

    env = os.environ if environ is None else environ
    given = list(websocket_origins) + [
        o for o in env.get("BOKEH_ALLOW_WS_ORIGIN", "").split(",") if o.strip()
    ]
    origins = check_origins(given, public=public) or [f"localhost:{port}", f"127.0.0.1:{port}"]
    if sign_sessions is None:
        sign_sessions = public or env.get("BOKEH_SIGN_SESSIONS", "").lower() in ("1", "true", "yes")
    key = secret_key or env.get("BOKEH_SECRET_KEY") or None
    if sign_sessions and key is None:
        if not public:
            raise ValueError(
                "--sign-sessions needs a secret: set BOKEH_SECRET_KEY (32 random bytes or more)"
            )
        key = secrets.token_urlsafe(32)
    if sign_sessions and len(key.encode()) < 32:
        raise ValueError("BOKEH_SECRET_KEY is too short: use 32 random bytes or more")
    options: dict[str, Any] = {
        "websocket_origin": origins,
        "sign_sessions": bool(sign_sessions),
        "generate_session_ids": True,
        "xsrf_cookies": bool(xsrf_cookies),
        # never a traceback or a path in an error page
        "serve_traceback": False,
        "debug": False,
    }
    if sign_sessions:
        options["secret_key"] = key
    for name, value in (("unused_session_lifetime_milliseconds", unused_session_lifetime),
                        ("check_unused_sessions_milliseconds", check_unused_sessions)):  # fmt: skip
        if value is not None:
            if not value > 0:
                raise ValueError(
                    f"{name.split('_milli')[0].replace('_', '-')} must be a positive number of seconds"
                )
            options[name] = max(int(value * 1000), 1)
    return options


def serve(
    sources: DatasetSources,
    *,
    client: Any = None,
    port: int = 5006,
    address: str = "127.0.0.1",
    websocket_origins: Sequence[str] = (),
    prefix: str = "",
    show: bool = False,
    limits: Any = None,
    spec: Any = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Run the Panel server until interrupted.

    ``limits``: an `app.limits.Limits` (per-request bytes, concurrency, time limit);
    ``options``: from `server_options` (origins, signed sessions, XSRF, session expiry);
    ``spec``: the `pipelines.cluster.ClusterSpec` to reconnect with when the cluster is lost.
    """
    import os

    import panel as pn

    from app import compute
    from app import limits as app_limits

    configure_panel()
    compute.use_client(client, spec)
    if limits is not None:
        app_limits.configure(limits)
        if limits.max_request_bytes is not None:  # the planner refuses too (any code path)
            os.environ.setdefault("GRIDSCOPE_MAX_BYTES", str(limits.max_request_bytes))
    kwargs = (
        dict(options)
        if options is not None
        else server_options(port=port, websocket_origins=websocket_origins)
    )
    origins = kwargs.pop("websocket_origin")
    if prefix:
        kwargs["prefix"] = prefix
    from app.api import api_patterns_for

    pn.serve(
        {"/": lambda: create_session(sources)},  # sessions use compute.current_client()
        extra_patterns=api_patterns_for(sources),  # /api/v1/...: the HTTP API (app.api)
        port=port,
        address=address,
        websocket_origin=origins,
        show=show,
        title="gridscope",
        liveness=True,
        threaded=False,
        **kwargs,
    )
