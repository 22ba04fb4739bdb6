"""JupyterLab launcher entry: run ``gridscope serve`` behind jupyter-server-proxy.

Registered as the ``gridscope`` entry point of ``jupyter_serverproxy_servers`` in
pyproject.toml. jupyter-server-proxy calls `setup_gridscope` once, then starts
the command on a free port when a user opens ``<base_url>gridscope/``. The app is
served under that full prefix (``absolute_url``), so its websocket goes through
the same proxy, and the user's Jupyter authentication guards it.

Websocket origins: only the hub's own origin is allowed, never ``*``. It is taken
from ``GRIDSCOPE_ALLOW_WEBSOCKET_ORIGIN`` (comma-separated ``host[:port]``), else
from JupyterHub's ``JUPYTERHUB_PUBLIC_URL`` / ``JUPYTERHUB_HOST``, else the local
Jupyter defaults ``localhost:8888`` and ``127.0.0.1:8888``. A Dask cluster the user
already has is used through ``DASK_SCHEDULER_ADDRESS`` (read by ``gridscope serve``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["allowed_origins", "setup_gridscope"]

_ICON = Path(__file__).parent / "assets" / "gridscope-icon.svg"


def allowed_origins(environ: dict[str, str] | None = None) -> list[str]:
    """The ``host[:port]`` origins the proxied app accepts websockets from."""
    env = os.environ if environ is None else environ
    explicit = env.get("GRIDSCOPE_ALLOW_WEBSOCKET_ORIGIN", "")
    if explicit.strip():
        return [o.strip() for o in explicit.split(",") if o.strip()]
    for name in ("JUPYTERHUB_PUBLIC_URL", "JUPYTERHUB_HOST"):
        value = env.get(name, "").strip()
        if value:
            netloc = urlsplit(value if "//" in value else f"//{value}").netloc
            if netloc:
                return [netloc]
    return ["localhost:8888", "127.0.0.1:8888"]


def _command(port: int, base_url: str) -> list[str]:
    command = [
        sys.executable, "-m", "app.cli", "serve",
        "--port", str(port),
        "--address", "127.0.0.1",
        "--prefix", f"{base_url}gridscope",
        "--no-show",
    ]  # fmt: skip
    for origin in allowed_origins():
        command += ["--allow-websocket-origin", origin]
    return command


def setup_gridscope() -> dict:
    """jupyter-server-proxy configuration for the gridscope dashboard."""
    entry: dict = {"enabled": True, "title": "gridscope", "category": "Other"}
    if _ICON.exists():
        entry["icon_path"] = str(_ICON)
    return {
        "command": _command,
        "absolute_url": True,
        "timeout": 120,
        "new_browser_tab": False,
        "launcher_entry": entry,
    }
