"""The whole page: sidebar, map, series, messages, permalink, exports, cluster.

`Dashboard` is used both by the server (one per browser session, restored from and
written back to the URL) and by `app.explorer.Explorer` in a notebook.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlencode

import panel as pn
import param

from app import exports, labels, limits
from app.api.previews import embed_snippet
from app.state import ExplorerState
from app.views.build_view import BuildView
from app.views.cluster_view import ClusterView
from app.views.map_view import MapView, colour_range
from app.views.page_weight import without_tooltips
from app.views.results import ViewResults
from app.views.series_view import SeriesView
from app.views.sidebar import Sidebar

__all__ = ["Dashboard"]

_REGION_ONLY = "Map netCDF: region only"

_CSS = """
.gs-title h1 { font-size: 1.3em; margin: 0.2em 0; }
"""


class Dashboard(pn.viewable.Viewer):
    """Linked map and time series over an `ExplorerState`."""

    link = param.String(default="", doc="Permalink of the current view.")
    embed = param.String(default="", doc="HTML embedding the view: its map image and the page.")

    def __init__(
        self,
        state: ExplorerState,
        *,
        client: Any = None,
        results: ViewResults | None = None,
        **params: Any,
    ):
        super().__init__(**params)
        self.state = state
        self.results = results or ViewResults(state)
        if self.results.field is None:
            self.results.start()  # off the event loop in a served page (cheap maps at once)
        self.sidebar = Sidebar(state)
        self.map = MapView(state, self.results)
        self.series = SeriesView(state, self.results)
        self.cluster = ClusterView(client)
        self.build = BuildView(state, client)
        self.message = pn.pane.Alert(
            state.param.message, alert_type="warning", css_classes=["gs-message"],
            visible=state.param.message.rx().rx.pipe(bool), sizing_mode="stretch_width",
        )  # fmt: skip
        self.error = pn.pane.Alert(
            self.results.param.error, alert_type="danger", css_classes=["gs-error"],
            visible=self.results.param.error.rx().rx.pipe(bool), sizing_mode="stretch_width",
        )  # fmt: skip
        self.link_input = pn.widgets.TextInput.from_param(
            self.param.link, name="Link to this view", disabled=False, css_classes=["gs-link"],
            sizing_mode="stretch_width",
        )  # fmt: skip
        without_tooltips(self.link_input)
        self.copy_button = pn.widgets.Button(name="Copy link", button_type="primary", width=100)
        self.copy_button.js_on_click(
            args={"link": self.link_input},
            code="navigator.clipboard && navigator.clipboard.writeText(link.value)",
        )
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(self._forget_js_callbacks)
        self.code = pn.pane.Markdown(
            self._code_markdown(), css_classes=["gs-code"], sizing_mode="stretch_width"
        )
        self.status = pn.pane.Markdown("", css_classes=["gs-status"], margin=(0, 10))
        # small spinners rather than Panel's `loading` overlay on the plots: toggling the
        # overlay re-lays out the whole Bokeh plot (measured: +4 s per map update in Chromium)
        busy = self.results.param.map_busy.rx() | self.results.param.series_busy.rx()
        # shown only while something runs: an idle spinner is an empty circle
        self.spinner = pn.indicators.LoadingSpinner(value=busy, visible=busy, size=20,
                                                    css_classes=["gs-busy"])  # fmt: skip
        self.region_only = pn.widgets.CheckBoxGroup(
            options=[_REGION_ONLY], value=[], css_classes=["gs-region-only"], margin=(5, 10),
        )  # fmt: skip
        state.param.watch(self._on_state, list(state.param))
        self.results.param.watch(self._on_result, ["map_version", "series_version", "queued"])
        self._update_link()
        self._on_result()
        if pn.state.location is not None:
            pn.state.location.param.watch(lambda *_: self._update_link(), ["href"])
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.onload(self._write_address_bar)

    def _forget_js_callbacks(self, session_context: Any) -> None:
        """Drop the copy button's JS callback when the session ends.

        Panel's `Callback.registry` is keyed weakly by the button, but its value holds
        the link input, whose watchers hold this dashboard, which holds the button: the
        entry would keep every closed session alive (measured: ~5 MB per session).
        """
        from panel.links import Callback

        Callback.registry.pop(self.copy_button, None)

    # --- permalink ----------------------------------------------------------------------
    def _page_base(self) -> str:
        loc = pn.state.location
        href = getattr(loc, "href", "") if loc is not None else ""
        return href.split("?", 1)[0].split("#", 1)[0] if href else ""

    def _update_link(self) -> None:
        try:
            query_string = urlencode(self.state.to_url_params(), safe=",:")
        except Exception:  # an inconsistent intermediate state: keep the last link
            return
        self.link = f"{self._page_base()}?{query_string}"
        self.embed = embed_snippet(
            self._page_base(), query_string, f"{self.state.dataset}: {self.state.var}"
        )
        loc = pn.state.location
        if (
            loc is not None
            and pn.state.curdoc is not None
            and pn.state.curdoc.session_context is not None
        ):
            loc.search = f"?{query_string}"

    def _write_address_bar(self) -> None:
        """The full state in the address bar from the first load.

        The browser reports its own (bare) address once the page is up; Panel then
        holds the location's ``search`` equal to what we set, so nothing was sent back
        until a setting changed. Clearing it first makes the full one a change.
        """
        loc = pn.state.location
        if loc is None:
            return
        wanted = loc.search
        self._update_link()
        wanted = loc.search or wanted
        if wanted:
            loc.search = ""
            loc.search = wanted

    def _on_state(self, *events: param.parameterized.Event) -> None:
        if any(e.name != "message" for e in events):
            self._update_link()
            self.code.object = self._code_markdown()

    def _on_result(self, *events: param.parameterized.Event) -> None:
        if self.results.queued:
            self.status.object = (
                "Queued: the server is busy; this view starts as soon as a slot is free."
            )
            return
        field = self.results.field
        if field is None:
            self.status.object = "No map computed."
            return
        plan = str(field.attrs.get("gridscope_plan", ""))
        source = labels.source_text(self.results.map_where or "in-process", plan)
        shape = "x".join(str(n) for n in field.shape)
        self.status.object = f"Map {shape} cells, {source}."

    # --- exports ------------------------------------------------------------------------
    def _code_markdown(self) -> str:
        try:
            text = exports.code_snippet(self.state.query, series=self.state.series_query)
        except Exception as exc:
            text = f"# no code for an invalid view: {limits.scrub(str(exc))}"
        return f"```python\n{text}```"

    async def _png(self) -> io.BytesIO:
        """The map shown, as PNG, drawn in a thread (never on the server's event loop)."""
        import asyncio

        field = self.results.field
        words = labels.for_state(self.state)
        clim = colour_range(field.values, self.state)

        def draw() -> io.BytesIO:
            buffer = io.BytesIO()
            exports.map_to_png(field, buffer, cmap=self.state.cmap, clim=clim,
                               title=words.title(), label=words.quantity, centre=self.state.centre)  # fmt: skip
            buffer.seek(0)
            return buffer

        return await asyncio.get_running_loop().run_in_executor(None, draw)

    def netcdf_query(self) -> Any:
        """The Query of "Map netCDF": the map shown (the globe), or only the region's box
        when "region only" is ticked (a point region has no box: the map shown)."""
        query = self.state.map_query
        if _REGION_ONLY in self.region_only.value and self.state.query.bbox is not None:
            query = query.replace(bbox=self.state.query.bbox)
        return query

    async def _netcdf(self) -> io.BytesIO:
        """The map shown at full resolution, as netCDF, computed under the server's limits.

        Like the views' own jobs it is costed before it starts, waits for a slot behind
        ``--max-concurrent`` (the status line says "Queued") and is cancelled after
        ``--request-timeout``; a refusal is shown in words above the map.
        """
        import asyncio

        from app import answers, jobs

        query = self.netcdf_query()
        dataset = self.state.dataset
        try:
            # opened and planned in a thread
            ds = await asyncio.get_running_loop().run_in_executor(
                None, self.state.sources.open, dataset
            )
            job = await asyncio.get_running_loop().run_in_executor(
                None, answers.start_map, ds, query
            )
            field = await jobs.run_job(
                job,
                on_queued=lambda queued: setattr(self.results, "queued", queued),
            )
        except Exception as exc:
            self.state.message = f"Map netCDF: {limits.user_message(exc, self.state.dataset)}"
            raise
        words = labels.for_state(self.state, query)
        # a non-regular grid keeps its cells' bounds and its grid-mapping variable
        return io.BytesIO(exports.map_to_netcdf(field, query=query, words=words, ds=ds))

    def _csv(self) -> io.BytesIO:
        series = self.results.series
        if series is None:
            return io.BytesIO(b"")
        return io.BytesIO(exports.series_to_csv(series, var=self.state.var).encode())

    def _downloads(self) -> pn.Row:
        name = f"{self.state.dataset}_{self.state.var}"
        return pn.Row(
            pn.widgets.FileDownload(callback=self._png, filename=f"{name}.png", label="Map PNG", button_type="light"),
            pn.widgets.FileDownload(callback=self._netcdf, filename=f"{name}.nc", label="Map netCDF", button_type="light"),
            pn.widgets.FileDownload(callback=self._csv, filename=f"{name}_series.csv", label="Series CSV", button_type="light"),
            self.region_only,
        )  # fmt: skip

    # --- layout --------------------------------------------------------------------------
    def _embed_card(self) -> pn.Card:
        """The "Embed" card; its text box is built when the card is first opened.

        A collapsed card's contents are still Bokeh models of the page: every session
        built and sent them for the few that open it (`app.views.page_weight`).
        """
        card = pn.Card(title="Embed", collapsed=True, sizing_mode="stretch_width")

        def fill(*_: Any) -> None:
            if not card.collapsed and not card.objects:
                box = pn.widgets.TextAreaInput.from_param(
                    self.param.embed, name="", height=90, css_classes=["gs-embed"],
                    sizing_mode="stretch_width",
                )  # fmt: skip
                without_tooltips(box)
                card.objects = [box]

        card.param.watch(fill, "collapsed")
        return card

    def __panel__(self) -> pn.viewable.Viewable:
        header = pn.pane.Markdown(
            "# gridscope", css_classes=["gs-title"], stylesheets=[_CSS], margin=(0, 10)
        )
        side = pn.Column(header, self.sidebar, self.cluster, self.build, width=320)
        main = pn.Column(
            self.message, self.error,
            self.map, pn.Row(self.spinner, self.status), self.series,
            pn.Row(self.link_input, self.copy_button, sizing_mode="stretch_width"),
            self._downloads(),
            pn.Card(self.code, title="Show code", collapsed=True, sizing_mode="stretch_width"),
            self._embed_card(),
            sizing_mode="stretch_width",
        )  # fmt: skip
        return pn.Row(side, main, sizing_mode="stretch_width")
