"""Checks of a query against its data that compute nothing: errors, and times in a URL.

`check_query` raises the `QueryError` computing a query would raise, from lazy graphs
over one-chunk stand-ins of the data; `resolve_time_labels` snaps the times written in
a link onto the dataset's steps (the one rule of `pipelines.selection`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import xarray as xr

from pipelines import Query, compute_map, compute_series

__all__ = ["check_query", "resolve_time_labels"]


def check_query(ds: xr.Dataset, query: Query) -> None:
    """Raise the `QueryError` that computing ``query`` would raise (builds lazily only).

    The lazy map and series are built over `_metadata_only` (one chunk per variable):
    the errors depend on coordinates and attributes only, and building a series graph
    over a record of 350k one-step chunks costs seconds of CPU per call.
    """
    ds = _metadata_only(ds)
    compute_map(ds, query.replace(bbox=None, point=None))
    if query.bbox is not None or query.point is not None:
        if "time" in ds.dims and "time" in ds[query.var].dims:
            compute_series(ds, query.replace(time=None))
        elif query.bbox is not None:
            compute_map(ds, query)


def _metadata_only(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with each many-chunked data variable as one lazy chunk of zeros.

    Same dimensions, coordinates, dtypes and attributes (so the same errors),
    but any lazy graph built on it has a handful of tasks. Variables in a few chunks
    (the bundled samples) are kept: their graphs are small already.
    """
    import dask.array as dsa

    replaced = {
        name: var.copy(deep=False, data=dsa.zeros(var.shape, dtype=var.dtype, chunks=var.shape))
        for name, var in ds.data_vars.items()
        if var.chunks is not None and math.prod(len(c) for c in var.chunks) > 64
    }
    return ds.assign(replaced) if replaced else ds


def resolve_time_labels(
    ds: xr.Dataset, query: Query, labels: Sequence[str]
) -> dict[str, str | None]:
    """Map the time labels of ``query`` onto the dataset's step ``labels``.

    ``time`` goes to the step `pipelines.selection.step_index` selects (the one rule
    for a single time); ``start``/``baseline_start`` to the first step of the range and
    ``end``/``baseline_end`` to its last step, so a link written with
    ``start=1985&end=1986`` lands on the steps it covers.
    """
    from pipelines.evaluate import field_for
    from pipelines.selection import range_indices, step_index

    da = field_for(ds, query)
    out: dict[str, str | None] = {}
    if query.time is not None:
        out["time"] = labels[step_index(da, query.time)]
    for first, last, field in (
        ("start", "end", "start"),
        ("baseline_start", "baseline_end", "baseline_start"),
    ):
        a, b = getattr(query, first), getattr(query, last)
        if a is None and b is None:
            out[first] = out[last] = None
            continue
        begin, stop = range_indices(da, a, b, field)
        out[first], out[last] = labels[begin], labels[stop - 1]
    return out
