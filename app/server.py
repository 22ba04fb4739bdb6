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

__all__ = ["create_session", "serve"]

log = logging.getLogger("gridscope.server")


def _session_params() -> dict[str, str]:
    import panel as pn

    args = pn.state.session_args or {}
    params: dict[str, str] = {}
    for key, values in args.items():
        if not values:
            continue
        value = values[-1]
        params[str(key)] = unquote(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
    return params


def create_session(sources: DatasetSources, client: Any = None) -> Any:
    """Build the page of one browser session, restored from the URL query."""
    import panel as pn

    from app.state import ExplorerState
    from app.views.dashboard import Dashboard

    state = ExplorerState(sources)
    try:
        state.from_url(_session_params())
    except Exception as exc:  # never an error page for a bad link
        log.exception("could not restore a link")
        state.reset()
        state.message = f"Could not open this link ({type(exc).__name__}); showing the default view."
    try:
        return pn.Column(Dashboard(state, client=client), sizing_mode="stretch_width")
    except Exception as exc:  # words in the page, the traceback in the server log
        log.exception("could not build the dashboard")
        return pn.pane.Alert(
            f"gridscope could not build this page: {type(exc).__name__}: {exc}", alert_type="danger"
        )


def serve(
    sources: DatasetSources,
    *,
    client: Any = None,
    port: int = 5006,
    address: str = "127.0.0.1",
    websocket_origins: Sequence[str] = (),
    prefix: str = "",
    show: bool = False,
) -> None:
    """Run the Panel server until interrupted."""
    import panel as pn

    from app import compute

    pn.extension(notifications=True, sizing_mode="stretch_width")
    compute.use_client(client)
    origins = list(websocket_origins) or [f"localhost:{port}", f"127.0.0.1:{port}"]
    kwargs: dict[str, Any] = {}
    if prefix:
        kwargs["prefix"] = prefix
    pn.serve(
        {"/": lambda: create_session(sources, client)},
        port=port,
        address=address,
        websocket_origin=origins,
        show=show,
        title="gridscope",
        liveness=True,
        threaded=False,
        **kwargs,
    )
