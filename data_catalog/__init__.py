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
- lazy dask arrays (from :func:`open_dataset`): nothing is loaded but 1-D coordinates;
- ``attrs["gridscope_grid"]``: the horizontal grid's kind (:mod:`data_catalog.grid`),
  ``"regular"`` for the layout above (also a rotated pole at 90N, and ``lat(latitude)``,
  ``lon(longitude)`` variables).

Other grids (``"rotated"``, ``"projected"``, ``"curvilinear"``, ``"unstructured"``)
keep their native cells instead of ``lat``/``lon`` dims: spatial dims ``(y, x)`` (rotated
and projected grids keep their native axes as the ``y``/``x`` coordinates and their CF
grid mapping in ``attrs["gridscope_grid_mapping"]``) or ``(cell,)``; coordinates
``lon``, ``lat`` (geographic degrees, lon in [-180, 180)) and ``cell_area`` (m^2) on
those dims, and ``lon_bounds``/``lat_bounds`` (dims + ``nv``) where the cell polygons are
known. Data variables carry ``attrs["gridscope_grid"]`` too.
:func:`data_catalog.grid.grid_of` reads the grid back from any of them.
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
