"""The cluster panel: how many Dask workers there are and where their dashboard is."""

from __future__ import annotations

from typing import Any

import panel as pn

from app import cluster_health
from pipelines.cluster import describe

__all__ = ["ClusterView", "describe_cluster"]


def describe_cluster(client: Any) -> str:
    """Markdown describing the Dask cluster the app computes on."""
    if client is None:
        return "**Dask**: no cluster (computing in-process)"
    status = cluster_health.cluster_status()
    if client is cluster_health.current_client() and not status["available"]:
        return ("**Dask**: cluster unavailable, reconnecting; small views are computed "
                "in-process meanwhile")  # fmt: skip
    if getattr(client, "status", "running") != "running":  # never block on a lost scheduler
        return "**Dask**: cluster unavailable, reconnecting"
    try:
        info = describe(client)
    except Exception as exc:  # a lost scheduler is shown, not raised
        return f"**Dask**: scheduler unreachable ({type(exc).__name__})"
    if info["status"] != "connected":
        return "**Dask**: scheduler unreachable"
    workers = info["workers"]
    text = f"**Dask**: {workers} worker{'s' if workers != 1 else ''}, {info['threads']} threads"
    if info["dashboard"]:
        text += f" · [Dask dashboard]({info['dashboard']})"
    return text


class ClusterView(pn.viewable.Viewer):
    """Workers and Dask dashboard link, refreshed every few seconds while served."""

    def __init__(self, client: Any = None, **params: Any):
        super().__init__(**params)
        self._fixed = client
        self.client = client if client is not None else cluster_health.current_client()
        self.pane = pn.pane.Markdown(describe_cluster(self.client), css_classes=["gs-cluster"])
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self._refresh, period=5000)

    def _refresh(self) -> None:
        self.client = self._fixed if self._fixed is not None else cluster_health.current_client()
        self.pane.object = describe_cluster(self.client)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.pane
