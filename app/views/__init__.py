"""Panel views of the dashboard (`pn.viewable.Viewer` classes)."""

__all__ = ["ClusterView", "Dashboard", "MapView", "SeriesView", "Sidebar", "ViewResults"]


def __getattr__(name: str):  # lazy: importing app.views does not load panel
    import importlib

    modules = {
        "ClusterView": "app.views.cluster_view",
        "Dashboard": "app.views.dashboard",
        "MapView": "app.views.map_view",
        "SeriesView": "app.views.series_view",
        "Sidebar": "app.views.sidebar",
        "ViewResults": "app.views.results",
    }
    if name in modules:
        return getattr(importlib.import_module(modules[name]), name)
    raise AttributeError(name)
