"""Serving the dashboard: one `Dashboard` per browser session over a shared Dask client.

The Dask client comes from `pipelines.cluster` (LocalCluster, scheduler, Gateway or
operator: the same code ``gridscope build`` uses); `serve` runs the Panel server with
a ``/liveness`` endpoint and websocket origins limited to what was asked for
(``localhost:PORT`` by default).

Nothing slow runs on the server's event loop, so ``/liveness`` and every other session
answer while one session works: every page is sent at once as a short "Opening ..."
line and built once the browser has drawn it (its link restored in a thread unless its
dataset is small and opened already), a batch of Bokeh models at a time, the pages of
concurrent sessions taking turns (`create_session`, `_turn`); before the server listens, one throwaway page
is drawn (`warm_up_views`: imports, coastlines, rasterizer) and the datasets are opened
(`warm_up`, going on in the background past ``GRIDSCOPE_WARM_UP_SECONDS``); the views
plan and compute off the loop (`app.views.results`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import unquote

from app.sources import DatasetSources

__all__ = [
    "configure_panel",
    "create_session",
    "serve",
    "server_options",
    "warm_up",
    "warm_up_views",
]

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
    """Build the page of one browser session, restored from the URL query.

    A served page never holds up the server's other sessions: the session gets an
    "Opening ..." line now and its dashboard arrives piece by piece once the browser has
    drawn that line (`_page_when_open`); drawing a whole page's Bokeh models at once on
    the event loop took ~0.3 s, so 8 pages opened together stalled ``/liveness`` for
    17 s. A link on a small dataset opened already (the bundled samples, once
    `warm_up` has run) is restored at once (milliseconds) so that its head carries the
    link-preview tags; any other link is restored in a thread (its dataset may take
    seconds to open, its link a 350k-step record), and its page has no preview tags.
    """
    import panel as pn

    params = _session_params()
    served = pn.state.curdoc is not None and pn.state.curdoc.session_context is not None
    if served:
        pn.state.on_session_destroyed(release_memory)
        wanted = params.get("dataset") or sources.ids[0]
        if wanted in sources.ids and not _quick_to_restore(sources, wanted):
            return _page_when_open(sources, params, client, wanted)
    state = _restored_state(sources, params)
    if served:
        from app.api.previews import add_link_preview

        try:  # Open Graph / Twitter card tags: a pasted link shows its map
            add_link_preview(pn.state.curdoc, state, pn.state.curdoc.session_context.request)
        except Exception:  # noqa: BLE001  (a page without a preview, never an error page)
            log.warning("no link preview for this page", exc_info=True)
        return _page_when_open(sources, params, client, state.dataset, state)
    return _page(state, client)


def _quick_to_restore(sources: DatasetSources, dataset: str) -> bool:
    """Whether a page on ``dataset`` is built in milliseconds: opened already, small grid."""
    from app.map_views import is_small_grid

    return sources.is_loaded(dataset) and is_small_grid(sources.open(dataset))


def _restored_state(sources: DatasetSources, params: dict[str, str]) -> Any:
    """The state of a link (opens its dataset): a bad link gives the default view and words."""
    from app.state import ExplorerState

    state = ExplorerState(sources)
    try:
        state.from_url(params)
    except Exception as exc:  # never an error page for a bad link
        log.exception("could not restore a link")
        state.reset()
        state.message = (
            f"Could not open this link ({type(exc).__name__}); showing the default view."
        )
    return state


def _page(state: Any, client: Any) -> Any:
    """The dashboard of ``state``, or the reason it cannot be built, in words."""
    import panel as pn

    layout = _dashboard_layout(state, client)
    if isinstance(layout, pn.pane.Alert):
        return layout
    return pn.Column(layout, sizing_mode="stretch_width")


def _dashboard_layout(state: Any, client: Any) -> Any:
    """The layout of a new `Dashboard` of ``state``, or an alert saying why there is none."""
    import panel as pn

    from app.views.dashboard import Dashboard

    try:
        return Dashboard(state, client=client).__panel__()
    except Exception as exc:  # words in the page, the traceback in the server log
        from app.limits import user_message

        log.exception("could not build the dashboard")
        return pn.pane.Alert(
            f"gridscope could not build this page. {user_message(exc)}", alert_type="danger"
        )


def _page_when_open(
    sources: DatasetSources,
    params: dict[str, str],
    client: Any,
    dataset: str,
    state: Any = None,
) -> Any:
    """An "Opening ..." line now; the page once the dataset is open (off the event loop).

    ``state``: the link restored already (a quick one, `_quick_to_restore`); else it is
    restored in a thread.

    The page's parts are then added in a few batches, a loop turn apart (the map's
    first): drawing a whole dashboard's Bokeh models at once holds the event loop for a
    large part of a second, and each batch is one more update for the browser to lay out.
    """
    import asyncio

    import panel as pn

    shell = pn.Column(
        pn.pane.Markdown(f"Opening {sources.title(dataset)} ...", css_classes=["gs-opening"]),
        sizing_mode="stretch_width",
    )

    doc = pn.state.curdoc

    def closed() -> bool:  # the tab was closed meanwhile: build nothing more
        return bool(getattr(doc.session_context, "destroyed", False))

    async def build() -> None:
        turns = _turns_here()
        turns.pages += 1  # pages being drawn: while there are others, batches pause
        try:
            await draw()
        finally:
            turns.pages -= 1

    async def draw() -> None:
        try:
            restored = state or await asyncio.get_running_loop().run_in_executor(
                None, _restored_state, sources, params
            )
        except Exception as exc:  # noqa: BLE001  (nothing could be shown: say so)
            from app.limits import user_message

            log.exception("could not open the page's dataset")
            shell[:] = [pn.pane.Alert(f"gridscope could not build this page. "
                                      f"{user_message(exc, dataset)}", alert_type="danger")]  # fmt: skip
            return
        async with _turn():
            if closed():
                return
            layout = _dashboard_layout(restored, client)
        columns = [c for c in getattr(layout, "objects", []) if isinstance(c, pn.Column)]
        batches = []  # (column, children): the main column's top (the map) first
        for column in reversed(columns):
            children = list(column.objects)
            half = (len(children) + 1) // 2
            batches += [(column, children[:half]), (column, children[half:])]
            column.objects = []
        batches = batches[:1] + batches[2:] + batches[1:2]
        async with _turn():
            if closed():
                return
            shell[:] = [layout]
        for column, children in batches:
            await asyncio.sleep(0.01)  # other sessions and /liveness in between
            async with _turn():
                if closed():
                    return
                column.extend(children)

    pn.state.onload(build)
    return shell


class _Turns:
    """One event loop's pages being drawn (``pages``) and the lock a batch holds."""

    def __init__(self) -> None:
        import asyncio

        self.lock = asyncio.Lock()
        self.pages = 0


_turns: Any = None


def _turns_here() -> _Turns:
    """The `_Turns` of the running event loop."""
    import asyncio
    import weakref

    global _turns
    if _turns is None:
        _turns = weakref.WeakKeyDictionary()
    return _turns.setdefault(asyncio.get_running_loop(), _Turns())


@contextlib.asynccontextmanager
async def _turn() -> AsyncIterator[None]:
    """Draw one batch of a page on the event loop, one page at a time.

    Pages opened together would otherwise each draw a batch in the same turn of the
    loop, and the few turns one ``/liveness`` answer takes would each wait for all of
    them (measured: 6 pages held ``/liveness`` 2.5 s). While other pages are being
    drawn, a batch keeps the loop free afterwards as long as it held it (``/liveness``
    and every other session in between); a page opened alone is drawn without a pause.
    """
    import asyncio
    import time

    turns = _turns_here()
    async with turns.lock:
        started = time.monotonic()
        yield
        if turns.pages > 1:
            await asyncio.sleep(time.monotonic() - started)


def warm_up_views() -> None:
    """Draw one throwaway page of a tiny synthetic dataset, before the server listens.

    The first page of a process otherwise pays, on the event loop, for importing the
    plotting stack, loading the coastlines and compiling the rasterizer (seconds, during
    which ``/liveness`` and every other session wait).
    """
    import panel as pn

    from app.state import ExplorerState
    from app.views.dashboard import Dashboard
    from pipelines.synthetic import SyntheticSpec, virtual_dataset

    try:
        ds = virtual_dataset(SyntheticSpec(nsteps=4, resolution=10.0, seed=0))
        state = ExplorerState(DatasetSources.from_datasets({"warm-up": ds}))
        pn.Column(Dashboard(state)).get_root()
    except Exception:  # noqa: BLE001  (only a slower first page)
        log.warning("could not warm up the views", exc_info=True)


def warm_up(sources: DatasetSources) -> None:
    """Open and describe every dataset, one after the other (run in a background thread).

    A page on a dataset opened already is built at once; one that fails here is tried
    again (and explained) when a session asks for it.
    """
    for dataset in sources.ids:
        try:
            sources.info(dataset)
            if sources.open(dataset).attrs.get("gridscope_grid", "regular") != "regular":
                from app.rasterize import warm_up as warm_up_rasterizer

                warm_up_rasterizer()  # loads its numba kernels (compiles them on a new machine)
        except Exception as exc:  # noqa: BLE001  (a broken or unreachable dataset: its page says so)
            if dataset in getattr(sources, "remote_ids", ()):
                log.info("dataset %r could not be opened at start-up", dataset)
            else:  # a local file the operator named: say once, here too, what was wrong
                from app.limits import user_message

                log.warning("%s", user_message(exc, dataset))


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
    # a page that never connected (a link-preview crawler) still holds its "build when
    # loaded" callback, which holds the document (`_page_when_open`)
    if doc is not None:
        pn.state._onload.pop(doc, None)
    _schedule_trim(getattr(session_context, "server_context", None))


_trim_timer: Any = None


def _schedule_trim(server_context: Any = None, delay: float = 3.0) -> None:
    """Collect cycles and trim the heap `delay` seconds after the last session closed.

    Re-armed by every closing session, so a burst of closing sessions is collected
    once, after Bokeh and Panel have destroyed all of their documents.
    ``server_context``: the Bokeh server's, whose live sessions the log line counts.
    """
    global _trim_timer
    try:
        from tornado.ioloop import IOLoop

        loop = IOLoop.current()
    except RuntimeError:  # no event loop (outside a server): trim now
        _trim(server_context)
        return
    if _trim_timer is not None:
        loop.remove_timeout(_trim_timer)
    _trim_timer = loop.call_later(delay, _trim, server_context)


def _trim(server_context: Any = None) -> None:
    """Collect cycles, hand freed C heap back to the OS and log the live heap.

    Bokeh documents are large object graphs with cycles, collected here at once rather
    than whenever the collector's thresholds say. ``malloc_trim`` returns what the C
    allocator freed (arrays, large objects); CPython's own arenas that still hold one
    live object stay, so RSS after a burst of sessions stays near its peak (and is
    reused by the next burst): the logged `memory_report` says what is still live, and
    how many sessions Bokeh still holds (a closed tab's session lives on until Bokeh
    discards it, later while a callback of its page is still running).
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
    log.info("memory after sessions closed: %s", memory_report(server_context))


def memory_report(server_context: Any = None) -> str:
    """The server's live Python heap and resident memory, as ``key=value`` words.

    ``blocks`` (memory blocks the interpreter has allocated, of any size) and
    ``objects`` (objects tracked by the garbage collector) measure what is still
    referenced; ``rss_mib`` also counts memory the allocator keeps after a burst of
    sessions (freed, but in arenas that still hold a live object), which it reuses.
    ``sessions`` (given the Bokeh ``server_context``): the sessions the server still
    holds, open or closed but not yet discarded; a reading taken while a closed session
    is still held counts that whole page (~8 % of the heap) as if it had leaked.
    """
    import gc
    import sys

    import psutil

    rss = psutil.Process().memory_info().rss / 2**20
    words = f"blocks={sys.getallocatedblocks()} objects={len(gc.get_objects())} rss_mib={rss:.1f}"
    try:
        return words + f" sessions={len(server_context.sessions)}"
    except (AttributeError, TypeError):  # no server context: sessions unknown
        return words


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
    num_procs: int = 1,
    connect_process: Callable[[], tuple[Any, Any]] | None = None,
) -> None:
    """Run the Panel server until interrupted.

    ``limits``: an `app.limits.Limits` (per-request bytes, concurrency, time limit);
    ``options``: from `server_options` (origins, signed sessions, XSRF, session expiry);
    ``spec``: the `pipelines.cluster.ClusterSpec` to reconnect with when the cluster is lost.
    ``num_procs`` > 1: that many server processes forked on one listening socket
    (Bokeh's ``num_procs``: the kernel hands each connection to one of them); nothing
    that starts a thread may run before the fork, so each process then calls
    ``connect_process`` for its own ``(client, spec)`` on the shared cluster, and draws
    its warm-up page and opens the datasets itself (`_prepare_process`).
    """
    import panel as pn

    from app.runtime import Runtime, install

    configure_panel()
    # the process's runtime: settings read once, the answer cache, limits, the cluster
    install(Runtime.from_env(limits=limits))
    if num_procs == 1:
        _prepare_process(sources, client, spec)
    kwargs = (
        dict(options)
        if options is not None
        else server_options(port=port, websocket_origins=websocket_origins)
    )
    origins = kwargs.pop("websocket_origin")
    if prefix:
        kwargs["prefix"] = prefix
    from app.api import api_patterns_for

    if num_procs > 1:
        kwargs["num_procs"] = num_procs
    server = pn.serve(
        {"/": lambda: create_session(sources)},  # sessions use the runtime's client
        extra_patterns=api_patterns_for(sources),  # /api/v1/...: the HTTP API (app.api)
        port=port,
        address=address,
        websocket_origin=origins,
        show=show and num_procs == 1,
        title="gridscope",
        liveness=True,
        threaded=False,
        start=num_procs == 1,
        **kwargs,
    )
    if num_procs > 1:  # from here on in each forked server process (the parent waits on them)
        from tornado.process import task_id

        client, spec = connect_process() if connect_process is not None else (None, None)
        _prepare_process(sources, client, spec)
        if show and task_id() == 0:
            server.io_loop.add_callback(server.show, "/")
        server.start()
        server.io_loop.start()


def _prepare_process(sources: DatasetSources, client: Any, spec: Any) -> None:
    """Ready one server process: its Dask client, its warm-up page, the datasets opened."""
    import threading

    from app.runtime import current

    current().cluster.use(client, spec)
    warm_up_views()
    # datasets opened before the server listens (a 350k-step record's labels take a second
    # of the interpreter); whatever takes longer (a slow remote store) goes on meanwhile
    opening = threading.Thread(target=warm_up, args=(sources,), name="gridscope-warm-up",
                               daemon=True)  # fmt: skip
    opening.start()
    opening.join(timeout=current().settings.warm_up_seconds)
