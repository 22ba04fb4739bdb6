"""gridscope's thin Panel UI: the dashboard, its state and the CLI.

``import app`` stays light (the CLI imports ``app.cli``): `Explorer` and the Panel
views are imported on first use.
"""

__all__ = ["Explorer", "ExplorerState"]


def __getattr__(name: str):
    if name == "Explorer":
        from app.explorer import Explorer

        return Explorer
    if name == "ExplorerState":
        from app.state import ExplorerState

        return ExplorerState
    raise AttributeError(f"module 'app' has no attribute {name!r}")
