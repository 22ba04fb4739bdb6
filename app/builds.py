"""Builds of derived stores started from the dashboard, shared by all sessions.

One build per dataset per server process runs in a background thread that drives
`pipelines.build.build_derived`: its units run on the app's Dask cluster (the same
client as the maps), and it resumes whatever an earlier build left. The planner
picks up each derived level as soon as its manifest entry is written, so open
sessions get faster without a restart. UI-free: the view polls `BuildJobs.progress`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from app.limits import user_message

__all__ = ["BuildJobs", "BuildProgress"]


@dataclasses.dataclass
class BuildProgress:
    """Where one dataset's build stands (read by the views, written by the build thread)."""

    dataset: str
    state: str = "running"  # running | done | failed
    stage: str = "starting"
    done: int = 0
    total: int = 0
    rate_mb_s: float = 0.0
    message: str = ""
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def describe(self) -> str:
        if self.state == "done":
            return f"Fast-access stores built for {self.dataset}: {self.message}"
        if self.state == "failed":
            return f"Build of {self.dataset} failed: {self.message}"
        rate = f", {self.rate_mb_s:.0f} MB/s" if self.rate_mb_s else ""
        return f"Building {self.dataset}: {self.stage} {self.done}/{self.total}{rate}"


class BuildJobs:
    """At most one background build per dataset; progress kept for every session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: dict[str, BuildProgress] = {}

    def progress(self, dataset: str) -> BuildProgress | None:
        with self._lock:
            return self._progress.get(dataset)

    def start(self, dataset: str, client: Any = None, **build_options: Any) -> BuildProgress:
        """Start building ``dataset`` unless a build of it is already running.

        ``client``: the app's `distributed.Client` (units run on its cluster, through
        the client itself: a Gateway cluster's address alone is not enough to connect);
        one closed since gives way to the app's current client (`_live_client`).
        Without a client the build runs in the background thread itself.
        """
        with self._lock:
            current = self._progress.get(dataset)
            if current is not None and current.state == "running":
                return current
            progress = BuildProgress(dataset)
            self._progress[dataset] = progress
        thread = threading.Thread(
            target=self._run,
            args=(progress, _live_client(client), build_options),
            name=f"build-{dataset}",
            daemon=True,
        )
        thread.start()
        return progress

    @staticmethod
    def _run(progress: BuildProgress, client: Any, options: dict[str, Any]) -> None:
        from pipelines.locations import build_derived_at

        def report(stage: str, done: int, total: int, rate: float) -> None:
            progress.stage, progress.done, progress.total, progress.rate_mb_s = (
                stage,
                done,
                total,
                rate,
            )

        where = {"client": client} if client is not None else {"scheduler": "synchronous"}
        try:
            # a local folder, or an fsspec URL (built in local staging, then uploaded)
            folder = build_derived_at(progress.dataset, progress=report, **where, **options)
        except Exception as exc:  # shown in the page; the server keeps serving
            progress.state, progress.message = "failed", user_message(exc, progress.dataset)
            return
        seconds = time.monotonic() - progress.started
        # a build with no variable to build raises (the message above), so some were built
        _, left_out = _variables_built(progress.dataset, folder)
        name = str(folder).rstrip("/").rsplit("/", 1)[-1]
        progress.state, progress.message = "done", f"{name} in {seconds:.0f} s"
        if left_out:
            progress.message += f"; not built: {left_out} (read from the raw data)"


def _variables_built(source: str, folder: Any) -> tuple[list[str], str]:
    """The variables the stores in ``folder`` hold, and those of ``source`` with a time
    axis that they leave out, in words (the stores hold variables on time and the grid,
    a variable with a vertical level once per level: ``var@level=<value>``)."""
    import json

    from pipelines.build import open_source
    from pipelines.derived import split_store_name
    from pipelines.locations import join, read_text
    from pipelines.reductions import spatial_dims

    try:
        built = list(json.loads(read_text(join(folder, "manifest.json"))).get("variables", {}))
        ds = open_source(source)
        grid = {"time", *spatial_dims(ds)}
    except Exception:  # noqa: BLE001  (the build itself succeeded; say nothing more)
        return [], ""
    words = []
    for name, var in ds.data_vars.items():
        if "time" in var.dims and str(name) not in {split_store_name(b)[0] for b in built}:
            extra = [str(d) for d in var.dims if d not in grid]
            words.append(f"{name} (it has dimension {', '.join(extra)})")
    return built, ", ".join(words)


def _live_client(client: Any) -> Any:
    """``client``, or the app's current client when ``client`` was closed since.

    A view keeps the client it was made with; after the cluster was lost and found
    again the runtime's cluster (`app.cluster_health`) works on a new client and closes the old one.
    """
    if client is not None and getattr(client, "status", "running") in ("closing", "closed"):
        from app.cluster_health import current_client

        return current_client()
    return client
