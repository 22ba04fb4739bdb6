"""`Explorer`: the whole dashboard inline in a notebook, driven from Python too.

>>> from app import Explorer
>>> ex = Explorer("coads", var="SST", time="Jul", region="Niño 3.4")
>>> ex                      # renders the dashboard in the cell
>>> ex.query                # the pipelines.Query of the current view
>>> field, series = ex.data()
"""

from __future__ import annotations

from typing import Any

import panel as pn
import xarray as xr

from app import answers
from app.limits import user_message
from app.runtime import current, using
from app.sources import DatasetSources
from app.state import ExplorerState
from app.views.dashboard import Dashboard
from app.views.results import ViewResults
from data_catalog import DatasetOpenError
from pipelines import Query

__all__ = ["Explorer"]


class Explorer(pn.viewable.Viewer):
    """The dashboard as a notebook object.

    Parameters
    ----------
    source_or_query
        A catalog id, a path/URL, a `pipelines.Query`, or a URL query string
        (``"dataset=coads&var=SST&time=Jul"``). ``None``: the first catalog dataset.
    sources
        Datasets to offer; default: the bundled catalog plus ``source_or_query``'s dataset.
    client
        A `distributed.Client` this Explorer's heavy reductions run on (default: the
        process's, registered by ``serve`` or `app.cluster_health.use_client`); it is the
        client of this Explorer's `runtime` only.
    **state
        `ExplorerState` parameters or URL fields (``var="SST"``, ``region="Tropics"``...).

    Raises
    ------
    data_catalog.DatasetOpenError
        When the dataset named cannot be opened (its grid not understood, a missing
        file...), in one line naming the file and what was wrong.
    """

    def __init__(self, source_or_query: Any = None, *, sources: DatasetSources | None = None,
                 client: Any = None, **state: Any):  # fmt: skip
        super().__init__()
        params: dict[str, str] = {}
        if isinstance(source_or_query, Query):
            params = source_or_query.to_url_params()
        elif isinstance(source_or_query, str) and "=" in source_or_query:
            params = Query.from_query_string(source_or_query).to_url_params()
        elif isinstance(source_or_query, str):
            params = {"dataset": source_or_query}
        if sources is None:
            extra = [params["dataset"]] if "dataset" in params else []
            sources = DatasetSources.from_catalog()
            if extra and extra[0] not in sources.ids:
                sources = DatasetSources.from_catalog(extra=extra)
        # the process's runtime (made from the environment here in a notebook; the
        # server's own under ``gridscope serve``): its answer cache, limits and cluster;
        # with ``client``, a runtime of this Explorer's own that computes on it (the
        # process's client, and other Explorers', stay as they were)
        self.runtime = current() if client is None else current().with_client(client)
        self.state = ExplorerState(sources)
        view_params = {k: v for k, v in state.items() if k in self.state.param and k != "name"}
        url_params = {k: (",".join(map(str, v)) if isinstance(v, tuple | list) else str(v))
                      for k, v in state.items() if k not in view_params}  # fmt: skip
        messages = self.state.from_url(params | url_params)
        wanted = params.get("dataset")
        if wanted is not None and wanted in sources.ids and self.state.dataset != wanted:
            # the dataset asked for by name cannot be opened: say why, rather than show
            # another one (the dashboard falls back; a notebook asked for this one)
            try:
                sources.info(wanted)
            except Exception as exc:  # noqa: BLE001  (said in one line, as the page says it)
                raise DatasetOpenError(user_message(exc, wanted)) from None
        if view_params:
            self.state.param.update(**view_params)
        self.messages = messages
        self.results = ViewResults(self.state, runtime=self.runtime)
        self.results.refresh()
        self._dashboard: Dashboard | None = None

    @property
    def query(self) -> Query:
        """The `pipelines.Query` of the current view."""
        return self.state.query

    def data(self) -> tuple[xr.DataArray, xr.DataArray | None]:
        """``(map, series)`` of the current view as in-memory xarray objects."""
        with using(self.runtime):
            ds = self.state.sources.open(self.state.dataset)
            field = answers.full_map(ds, self.state.map_query)
            query = self.state.series_query
            series = answers.series_for(ds, query) if query is not None else None
        return field, series

    def __panel__(self) -> pn.viewable.Viewable:
        if self._dashboard is None:
            self._dashboard = Dashboard(self.state, results=self.results)
        return self._dashboard
