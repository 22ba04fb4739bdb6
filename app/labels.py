"""What a view shows, in words: the pieces of every title and export label.

`view_labels` turns a `pipelines.Query` and the dataset's `app.sources.DatasetInfo`
into `ViewLabels`: dataset, variable, units, time step or period with its
aggregation, anomaly baseline, level with units and region. The map title, the
series title, the PNG title and the netCDF attributes are all made from it, so the
page and every file it writes say the same thing about the same numbers.

Pure: no Panel, no data read (only the labels the dataset's info already holds).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = [
    "ViewLabels",
    "for_state",
    "level_text",
    "plan_text",
    "region_text",
    "source_text",
    "time_axis_text",
    "view_labels",
]

_SEP = " · "


@dataclasses.dataclass(frozen=True)
class ViewLabels:
    """The pieces of a view's title; empty strings for what does not apply.

    Attributes
    ----------
    dataset
        Dataset title (``"COADS monthly climatology (2°)"``).
    variable
        Variable long name; ``"... anomaly"`` for anomalies.
    units
        Units of the values shown (an anomaly keeps the variable's units).
    when
        The time step (``"Jul"``, ``"1983-01-16"``) or the period with its aggregation
        (``"std 1983-01..1985-12"``); empty without a time axis.
    baseline
        ``"anomaly vs 1983-01..1985-12 monthly climatology"`` or empty.
    level
        ``"500 hPa"`` or empty.
    region
        ``"box 120°E..100°W, 20°N..60°N"``, ``"point 150°W, 0°N"``, or empty (the globe).
    """

    dataset: str
    variable: str
    units: str
    when: str = ""
    baseline: str = ""
    level: str = ""
    region: str = ""

    @property
    def quantity(self) -> str:
        """Variable with units, as on a colour bar or a y axis: ``"SST (deg C)"``."""
        return f"{self.variable} ({self.units})" if self.units else self.variable

    def title(self, *, dataset: bool = True, region: bool = False) -> str:
        """One line: dataset · variable (units) · when · baseline · level [· region]."""
        pieces = [self.dataset if dataset else "", self.quantity, self.when, self.baseline,
                  self.level, self.region if region else ""]  # fmt: skip
        return _SEP.join(p for p in pieces if p)

    def series_title(self, *, dataset: bool = True) -> str:
        """Title of a time series: what, where (point, or area-weighted box mean), level."""
        if self.region.startswith("point"):
            where = f"at {self.region}"
        elif self.region:
            where = f"area-weighted mean over {self.region}"
        else:
            where = "area-weighted global mean"
        pieces = [self.dataset if dataset else "", self.quantity, self.level, self.baseline, where]
        return _SEP.join(p for p in pieces if p)

    def attrs(self) -> dict[str, str]:
        """The pieces as netCDF global attributes (``gridscope_*``), plus ``title``."""
        out = {"title": self.title(region=True)}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value:
                out[f"gridscope_{field.name}"] = value
        return out


def time_axis_text(step_units: str = "") -> str:
    """``"time (Month)"`` on a numbered step axis (``step_units``, "step" without units);
    ``"time"`` on an axis of dates. The series plot's x label and the CSV's time header."""
    return f"time ({step_units})" if step_units else "time"


def level_text(value: float | None, units: str = "") -> str:
    """``"500 hPa"``; ``"level 3"`` when the level axis has no units; ``""`` for None."""
    if value is None:
        return ""
    number = f"{float(value):g}"
    return f"{number} {units}".strip() if units else f"level {number}"


def _lon_text(lon: float) -> str:
    lon = ((float(lon) + 180.0) % 360.0) - 180.0 if not -180.0 <= lon <= 180.0 else float(lon)
    if lon in (0.0, 180.0, -180.0):
        return f"{abs(lon):g}°"
    return f"{abs(lon):g}°{'E' if lon > 0 else 'W'}"


def _lat_text(lat: float) -> str:
    lat = float(lat)
    return "0°" if lat == 0 else f"{abs(lat):g}°{'N' if lat > 0 else 'S'}"


def region_text(
    bbox: tuple[float, float, float, float] | None = None,
    point: tuple[float, float] | None = None,
) -> str:
    """A box or point in words; ``""`` for none or the whole globe."""
    if point is not None:
        return f"point {_lon_text(point[0])}, {_lat_text(point[1])}"
    if bbox is None:
        return ""
    w, s, e, n = (float(v) for v in bbox)
    if (e - w) % 360.0 == 0.0 and w != e and s <= -90.0 and n >= 90.0:
        return ""
    return f"box {_lon_text(w)}..{_lon_text(e)}, {_lat_text(s)}..{_lat_text(n)}"


def _is_monthly(times: tuple[str, ...]) -> bool:
    """Whether labels ``YYYY-MM-DD[THH:MM]`` step by a month (the day is then noise)."""
    if len(times) < 2 or len(times[0]) < 10 or len(times[1]) < 10:
        return False
    try:
        y0, m0 = int(times[0][:4]), int(times[0][5:7])
        y1, m1 = int(times[1][:4]), int(times[1][5:7])
    except ValueError:
        return False
    return (y1 - y0) * 12 + (m1 - m0) == 1


def _period(first: str | None, last: str | None, times: tuple[str, ...]) -> str:
    first = first or (times[0] if times else "")
    last = last or (times[-1] if times else "")
    if _is_monthly(times):  # a monthly record: 1983-01..1985-12, not 1983-01-16..1985-12-16
        first, last = (t[:7] if len(t) >= 10 else t for t in (first, last))
    return first if first == last else f"{first}..{last}"


def view_labels(query: Any, info: Any) -> ViewLabels:
    """The words for what ``query`` shows of the dataset described by ``info``.

    Parameters
    ----------
    query
        A `pipelines.Query` (the map's, the series' or an export's).
    info
        The dataset's `app.sources.DatasetInfo` (title, variables, time labels).

    Returns
    -------
    ViewLabels
        For a series (``query.time`` None and a region) ``when`` is the record or
        the range; for a map of a single step it is that step.
    """
    variable = info.variables.get(query.var)
    name = variable.long_name if variable is not None else query.var
    units = variable.units if variable is not None else ""
    times = tuple(info.times)
    has_time = bool(times) and (variable is None or variable.has_time)
    when = baseline = ""
    if has_time:
        if query.time is not None:
            when = query.time
        elif query.start is not None or query.end is not None:
            when = f"{query.agg} {_period(query.start, query.end, times)}"
        else:
            when = f"{query.agg} {_period(None, None, times)}"
        step_units = getattr(info, "time_units", "")
        if step_units:  # a numbered step axis: "step 7 (Month)", "mean 2..5 (Month)"
            when = f"{'step ' if query.time is not None else ''}{when} ({step_units})"
        if query.is_anomaly:
            name = f"{name} anomaly"
            baseline = (f"anomaly vs {_period(query.baseline_start, query.baseline_end, times)}"
                        " monthly climatology")  # fmt: skip
    level = ""
    if query.level is not None:
        level = level_text(query.level, variable.level_units if variable is not None else "")
    return ViewLabels(
        dataset=info.title,
        variable=name,
        units=units,
        when=when,
        baseline=baseline,
        level=level,
        region=region_text(query.bbox, query.point),
    )


def for_state(state: Any, query: Any = None) -> ViewLabels:
    """`view_labels` of an `app.state.ExplorerState`'s map (or of ``query``).

    A state caught between two consistent settings (its Query does not validate)
    still gets the dataset and variable, never an exception.
    """
    info = state.sources.info(state.dataset)
    try:
        return view_labels(query if query is not None else state.map_query, info)
    except ValueError:  # QueryError: an intermediate state
        variable = info.variables.get(state.var)
        name = variable.long_name if variable is not None else str(state.var)
        return ViewLabels(info.title, name, variable.units if variable is not None else "")


def plan_text(plan: str) -> str:
    """The planner's description of a read (``"temporal aggregates level 2 ..."``) in words."""
    plan = plan or ""
    if plan.startswith("brute force on the raw data"):
        return "computed from the full data"
    if "pyramid level" in plan and "step" in plan and not plan.startswith("brute"):
        return "from the fast-access stores (a coarser copy of the map)"
    if any(k in plan for k in ("temporal aggregates", "time-series copy", "pyramid level")):
        return "from the fast-access stores"
    return ""


def source_text(where: str, plan: str = "") -> str:
    """Where a result came from and how it was read, in plain words.

    ``where`` is `app.jobs.Job.where` (``cache``, ``in-process``, ``cluster``...),
    ``plan`` the planner's description (see `plan_text`).
    """
    if where == "cache":
        return "reused from a recent identical request"
    place = {"in-process": "on this server", "cluster": "on the Dask cluster",
             "in-process (cluster unavailable)": "on this server (the Dask cluster is unavailable)",
             }.get(where, "")  # fmt: skip
    how = plan_text(plan) or "computed"
    return " ".join(p for p in (how, place) if p)
