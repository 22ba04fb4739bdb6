"""What a view costs before it runs, and how that is said to the user.

`estimated_input_bytes` and `series_chunk_bytes` count the bytes a query reads;
`CostToConfirm` stops a series above ``GRIDSCOPE_ASK_BYTES`` until the user says go;
`ReadRate` remembers how fast recent large jobs read (the time a question quotes,
unless ``GRIDSCOPE_READ_RATE`` says); `format_bytes`, `format_duration` and
`progress_text` put sizes, durations and a running job's progress in words.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import xarray as xr

from pipelines import Query

__all__ = [
    "CostToConfirm",
    "ReadRate",
    "ask_first",
    "ask_limit",
    "done_fraction",
    "estimated_input_bytes",
    "format_bytes",
    "format_duration",
    "progress_text",
    "read_rate",
    "series_chunk_bytes",
]

log = logging.getLogger("gridscope.compute")


def estimated_input_bytes(ds: xr.Dataset, query: Query, *, series: bool = False) -> int:
    """Bytes of raw data the brute-force plan reads for ``query``."""
    from pipelines.evaluate import field_for
    from pipelines.reductions import spatial_dims
    from pipelines.selection import select_bbox, select_time_range

    da = field_for(ds, query)
    dims = spatial_dims(da)  # (lat, lon), (y, x) or (cell,): every grid kind
    cells = int(np.prod([da.sizes[d] for d in dims]))
    if series and query.bbox is not None:
        box = select_bbox(da, query.bbox)
        cells = int(np.prod([box.sizes[d] for d in dims]))
    elif series and query.point is not None:
        cells = 1
    steps = 1
    if "time" in da.dims:
        if query.time is not None and not series:
            steps = 1
        else:
            steps = select_time_range(da, query.start, query.end).sizes["time"]
        if query.is_anomaly:
            steps += select_time_range(
                da, query.baseline_start, query.baseline_end, "baseline_start"
            ).sizes["time"]
    return int(steps * cells * da.dtype.itemsize)


class CostToConfirm(Exception):
    """A job would read more than the dashboard starts on its own; nothing was started.

    ``message`` says how much it reads and about how long that takes, in words; the
    view offers to run it anyway (`start_series` with ``ask_above=None``).
    """

    def __init__(self, kind: str, estimated_bytes: int, raw: bool):
        self.kind, self.estimated_bytes, self.raw = kind, int(estimated_bytes), raw
        from app.runtime import current

        self.seconds = estimated_bytes / read_rate()
        where = "the cluster" if current().client is not None else "this server"
        source = "from the unbuilt record" if raw else "from the fast-access stores"
        self.message = (
            f"This {kind} reads {format_bytes(estimated_bytes)} {source} "
            f"(about {format_duration(self.seconds)} on {where})."
        )
        super().__init__(self.message)


def ask_limit() -> int:
    """Input bytes above which the dashboard asks before computing a series.

    ``GRIDSCOPE_ASK_BYTES`` (a size: ``1e9``, ``500MB``), by default 256 MB: what the
    server would compute in-process (``GRIDSCOPE_FALLBACK_BYTES``); a series above it is
    costed and waits for the user's go-ahead.
    """
    from app.runtime import current

    return current().settings.ask_bytes


def ask_first(kind: str, size: int, raw: bool, ask_above: int | None) -> None:
    """Raise `CostToConfirm` when ``size`` is above ``ask_above`` (None: never ask)."""
    if ask_above is not None and size > ask_above:
        raise CostToConfirm(kind, size, raw)


class ReadRate:
    """Bytes per second recent large jobs read (the last 8 of 16 MiB or more)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rates: list[float] = []

    def observe(self, nbytes: int, seconds: float) -> None:
        """Remember how fast a large job read its input."""
        if nbytes < 16 * 2**20 or seconds <= 0:
            return
        with self._lock:
            self._rates.append(nbytes / seconds)
            del self._rates[:-8]

    def median(self) -> float | None:
        """The median recent rate, or None before any large job."""
        with self._lock:
            return float(np.median(self._rates)) if self._rates else None


def read_rate() -> float:
    """Bytes per second a job reads: ``GRIDSCOPE_READ_RATE``, recent large jobs, or 100 MB/s."""
    from app.runtime import current

    runtime = current()
    if runtime.settings.read_rate is not None:
        return max(runtime.settings.read_rate, 1.0)
    observed = runtime.rates.median()
    return observed if observed is not None else 100e6


def format_duration(seconds: float) -> str:
    """``"40 s"``, ``"12 min"``, ``"4 h"``, ``"3 days"``: a rough duration in words."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def series_chunk_bytes(ds: xr.Dataset, query: Query) -> int:
    """Bytes of the stored chunks a brute-force series touches (whole chunks are read).

    A point series of a store chunked one step per chunk reads every step's whole field,
    not one value per step; the planner's cell count alone would call it cheap.
    """
    from pipelines.evaluate import field_for
    from pipelines.reductions import spatial_dims
    from pipelines.selection import (
        is_regular,
        native_bbox_indexer,
        nearest_cell_index,
        select_bbox,
        select_time_range,
    )

    da = field_for(ds, query)
    if da.chunks is None or "time" not in da.dims:
        return 0
    chunks = dict(zip(da.dims, da.chunks, strict=True))
    index: dict[str, np.ndarray] = {}
    if query.point is not None:  # any grid kind: the nearest cell's index per spatial dim
        index = {d: np.array([i]) for d, i in nearest_cell_index(da, query.point).items()}
    elif query.bbox is not None and not is_regular(da):
        selection, _ = native_bbox_indexer(da, query.bbox)
        index = {d: np.arange(da.sizes[d])[sel] for d, sel in selection.items()}
    elif query.bbox is not None:
        grid = xr.DataArray(
            np.zeros((da.sizes["lat"], da.sizes["lon"]), "int8"),
            dims=("lat", "lon"),
            coords={"lat": da["lat"].values, "lon": da["lon"].values,
                    "ilat": ("lat", np.arange(da.sizes["lat"])),
                    "ilon": ("lon", np.arange(da.sizes["lon"]))},
        )  # fmt: skip
        box = select_bbox(grid, query.bbox)
        index = {"lat": box["ilat"].values, "lon": box["ilon"].values}
    else:
        return 0

    def touched(dim: str, index: np.ndarray) -> int:
        sizes = np.asarray(chunks[dim])
        which = np.unique(np.searchsorted(np.cumsum(sizes), index, side="right"))
        return int(sizes[which].sum())

    if query.is_anomaly:
        steps = da.sizes["time"]
    else:
        # the variable, not its bare time coordinate: its attrs say e.g. "climatology"
        steps = select_time_range(da, query.start, query.end).sizes["time"]
    cells = int(np.prod([touched(d, index[d]) for d in spatial_dims(da)]))
    return cells * steps * da.dtype.itemsize


def done_fraction(start: tuple[int, int], now: tuple[int, int]) -> float | None:
    """Fraction of the work pending at ``start`` (or added since) that is finished ``now``."""
    total = max(start[1], now[1], 1)
    if start[1] == 0 and now[1] == 0:
        return None
    return min(max(1.0 - now[1] / total, 0.0), 1.0)


def format_bytes(n: float) -> str:
    """``"1.5 MB"``: a size in words (one decimal)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def progress_text(kind: str, job: Any, elapsed: float, done: float | None = None) -> str:
    """One line for a running `app.jobs.Job`: what it reads, where, how far, how long."""
    where = job.where.replace("in-process", "on the server")
    parts = [f"Computing the {kind} {where}: reading about {format_bytes(job.input_bytes)}"]
    if done is not None:
        parts.append(f"{done:.0%} of the cluster's tasks done")
    parts.append(f"{elapsed:.0f} s")
    return ", ".join(parts) + "."
