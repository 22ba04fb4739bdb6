"""Pure, lazy xarray -> xarray computation for gridscope.

Selection, area-weighted reductions, anomalies, and the `Query` that names a view.
Never imports a UI library (panel, holoviews, bokeh, hvplot, datashader): the app
and the CLI call in here, never the other way round.
"""

from pipelines.evaluate import compute_map, compute_series
from pipelines.query import AGGREGATIONS, Query, QueryError

__all__ = ["AGGREGATIONS", "Query", "QueryError", "compute_map", "compute_series"]
