"""gridscope data catalog: dataset descriptions, openers and CF normalisation.

Use :func:`open_dataset` with a catalog id (``"coads"``, ``"navy-winds"``,
``"etopo20"``...) or a path/URL, and :func:`load_catalog` to list what is available.
This package never imports UI libraries (panel, holoviews, bokeh, hvplot, datashader)
nor ``pipelines`` or ``app``.

The normalised-dataset contract
-------------------------------
Every dataset returned by :func:`open_dataset` (and by :func:`normalise_dataset`) has:

- dims ``lon`` (ascending, in [-180, 180), ``units: degrees_east``) and ``lat``
  (ascending, ``units: degrees_north``); ``time`` when present: ``datetime64`` or
  ``cftime`` objects, or, for units without an epoch (``"Month"``) or none, the file's
  numbers (a numbered step axis, see :mod:`data_catalog.time_axis`); ``level`` when present (``units`` and ``positive`` kept). Each of
  these coordinates records the file's name for it in ``attrs["original_name"]``;
- coordinate ``cell_area(lat, lon)``, float64, m^2 on a sphere of radius 6371008.8 m;
- data variables: only those with both ``lat`` and ``lon`` dims, float, NaN where the
  file had ``_FillValue``/``missing_value``, ``units``/``long_name`` attrs kept;
- ``attrs["gridscope_source"]``: the path, URL or catalog id it came from;
- ``attrs["gridscope_time_kind"]``: ``"dates"`` or ``"numeric"`` when there is a time axis;
- ``attrs["gridscope_climatology"]``: ``True`` when the time axis is climatological
  (e.g. monthly steps in year 0), ``False`` otherwise;
- lazy dask arrays (from :func:`open_dataset`): nothing is loaded but 1-D coordinates.
"""

from data_catalog.catalog import load_catalog
from data_catalog.errors import CatalogError, DatasetOpenError, UnknownDatasetError
from data_catalog.normalise import EARTH_RADIUS_M, normalise_dataset
from data_catalog.openers import VariableInfo, list_variables, open_dataset
from data_catalog.schema import Catalog, CatalogEntry

__all__ = [
    "EARTH_RADIUS_M",
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "DatasetOpenError",
    "UnknownDatasetError",
    "VariableInfo",
    "list_variables",
    "load_catalog",
    "normalise_dataset",
    "open_dataset",
]
