"""Start a build of the current dataset's fast-access stores and watch it progress.

Hidden in public mode (anonymous users never start builds). The build itself is
`app.builds`: one per dataset, shared by all sessions, on the app's Dask cluster.
Damaged stores (chunk files missing: `pipelines.derived.missing_chunks`) are named
here in words; the planner already leaves them out, so the numbers stay right.
"""

from __future__ import annotations

from typing import Any

import panel as pn

from app import builds, cluster_health, limits
from app.runtime import current
from app.state import ExplorerState

__all__ = ["BuildView"]


class BuildView(pn.viewable.Viewer):
    """A "Build fast-access stores" button with a progress bar and a status line."""

    def __init__(self, state: ExplorerState, client: Any = None, **params: Any):
        super().__init__(**params)
        self.state = state
        self.client = client if client is not None else cluster_health.current_client()
        self.button = pn.widgets.Button(
            name="Build fast-access stores", button_type="default", css_classes=["gs-build"],
            description="Precompute pyramids, time aggregates and a time-series copy of this "
            "dataset on the Dask cluster, so maps and series read only what is on screen.",
        )  # fmt: skip
        self.bar = pn.indicators.Progress(
            value=0, max=100, visible=False, sizing_mode="stretch_width"
        )
        self.status = pn.pane.Markdown("", css_classes=["gs-build-status"], margin=(0, 10))
        self.damage = pn.pane.Alert("", alert_type="warning", visible=False,
                                    css_classes=["gs-build-damage"], sizing_mode="stretch_width")  # fmt: skip
        self._last_state: str | None = None  # of this dataset's build, at the last refresh
        # the bar and the damage alert join the page when first shown (fewer models per page)
        self._column = pn.Column(self.button, self.status,
                                 visible=not limits.current().public)  # fmt: skip
        self.button.on_click(lambda _: self.start())
        state.param.watch(lambda _: self.refresh(), ["dataset"])
        state.param.watch(lambda _: self.check_stores(), ["dataset", "var"])
        self.refresh()
        self.check_stores()
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self.refresh, period=1000)

    def start(self) -> builds.BuildProgress | None:
        if limits.current().public:  # hidden in public mode, and refused even if clicked
            return None
        progress = current().builds.start(self.state.dataset, self.client)
        self.refresh()
        return progress

    def refresh(self) -> None:
        progress = current().builds.progress(self.state.dataset)
        state = progress.state if progress is not None else None
        if self._last_state == "running" and state != "running":
            self.check_stores()  # a build just ended: it may have repaired the stores
        self._last_state = state
        self.button.disabled = self.bar.visible = state == "running"
        self._place()
        if progress is None:
            self.status.object = ""
            return
        self.bar.value = int(100 * progress.fraction)
        self.status.object = progress.describe()

    def check_stores(self) -> None:
        """Name the current variable's damaged derived arrays (none: hidden)."""
        from pipelines.derived import find_derived, split_store_name

        try:
            ds = self.state.sources.open(self.state.dataset)
            stores = find_derived(ds)
            names = stores.manifest().get("variables", {}) if stores is not None else {}
            found = [
                stores.variable(name)  # the variable, or each of its vertical levels
                for name in names
                if split_store_name(name)[0] == self.state.var
            ]
            texts = [limits.scrub(p.text) for f in found if f is not None for p in f.problems]
        except Exception:  # noqa: BLE001  (a broken dataset is reported by the map)
            texts = []
        self.damage.object = "\n\n".join(texts)
        self.damage.visible = bool(texts)
        self._place()

    def _place(self) -> None:
        """The progress bar and the damage alert in the page once they are first shown."""
        column = getattr(self, "_column", None)
        if column is None:
            return
        if self.bar.visible and self.bar not in column.objects:
            column.insert(1, self.bar)  # under the button, as before the status line
        if self.damage.visible and self.damage not in column.objects:
            column.append(self.damage)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._column
