"""The dashboard's state: one `param.Parameterized` that holds a `pipelines.Query`.

`ExplorerState` is everything a view shows: the Query fields (dataset, var, time or
range, agg, baseline, region, level) plus view-only fields (colour map, colour range,
viewport). Widgets are built from its parameters, the URL is `to_url_params()`, and
`from_url()` restores it, turning every bad value into a message and a default
rather than an exception (a stale link must still open a page).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import param

from app.regions import CUSTOM_BOX, POINT, REGION_PRESETS, preset_for_bbox
from app.sources import DatasetSources
from pipelines import AGGREGATIONS, Query, QueryError
from pipelines.selection import level_index

__all__ = [
    "DIVERGING_CMAPS",
    "MAP_CENTRES",
    "check_colour_range",
    "SEQUENTIAL_CMAPS",
    "VIEW_PARAMS",
    "ExplorerState",
]

SEQUENTIAL_CMAPS = ("rainbow4", "fire", "bmy", "bgy", "kbc", "blues", "gray")
DIVERGING_CMAPS = ("coolwarm", "bwy", "bky", "gwv")
#: URL parameters that are not Query fields: they change the picture, not the numbers.
VIEW_PARAMS = ("region", "cmap", "clim", "x_range", "y_range", "centre")
#: Central longitudes the map offers, by label (a view setting, ``centre`` in the link).
MAP_CENTRES = {
    "0° (Atlantic)": 0.0, "180° (Pacific)": 180.0, "90°W (Americas)": -90.0, "90°E (Asia)": 90.0,
}  # fmt: skip

log = logging.getLogger("gridscope.state")

_QUERY_FIELDS = (
    "dataset", "var", "time", "start", "end", "agg",
    "baseline_start", "baseline_end", "bbox", "point", "level",
)  # fmt: skip


class ExplorerState(param.Parameterized):
    """What the dashboard shows, as parameters; ``.query`` is the `Query` of the view."""

    dataset = param.Selector(
        default=None, objects=[], allow_None=True, doc="Catalog id of the dataset shown."
    )
    var = param.Selector(default=None, objects=[], allow_None=True, doc="Data variable shown.")
    time_mode = param.Selector(
        default="step", objects=["step", "range"],
        doc="'step': one time step; 'range': an aggregation over start..end.",
    )  # fmt: skip
    time = param.Selector(
        default=None, objects=[], allow_None=True, doc="Time step shown in 'step' mode."
    )
    start = param.Selector(
        default=None, objects=[], allow_None=True, doc="First step of the range."
    )
    end = param.Selector(default=None, objects=[], allow_None=True, doc="Last step of the range.")
    agg = param.Selector(
        default="mean", objects=list(AGGREGATIONS), doc="Reduction over the time range."
    )
    anomaly = param.Boolean(
        default=False, doc="Show departures from the baseline's monthly climatology."
    )
    baseline_start = param.Selector(
        default=None, objects=[], allow_None=True, doc="First step of the baseline."
    )
    baseline_end = param.Selector(
        default=None, objects=[], allow_None=True, doc="Last step of the baseline."
    )
    region = param.Selector(
        default="Global", objects=[*REGION_PRESETS, CUSTOM_BOX, POINT],
        doc="Region of the time series: a named preset, a drawn box or a clicked point.",
    )  # fmt: skip
    bbox = param.NumericTuple(
        default=REGION_PRESETS["Global"],
        length=4,
        allow_None=True,
        doc="Box (W,S,E,N); W>E crosses the antimeridian.",
    )
    point = param.NumericTuple(
        default=None, length=2, allow_None=True, doc="Point (lon, lat) for a point series."
    )
    level = param.Selector(
        default=None,
        objects=[None],
        allow_None=True,
        doc="Vertical level, when the variable has one.",
    )
    cmap = param.Selector(
        default="rainbow4",
        objects=[*SEQUENTIAL_CMAPS, *DIVERGING_CMAPS],
        doc="Colour map (colorcet).",
    )
    clim_mode = param.Selector(
        default="auto", objects=["auto", "fixed"], doc="Colour range from the data or fixed."
    )
    clim = param.NumericTuple(default=(0.0, 1.0), length=2, doc="Fixed colour range (low, high).")
    x_range = param.NumericTuple(default=(-180.0, 180.0), length=2, doc="Map viewport longitudes.")
    y_range = param.NumericTuple(default=(-90.0, 90.0), length=2, doc="Map viewport latitudes.")
    centre = param.Selector(
        default=0.0, objects=list(MAP_CENTRES.values()),
        doc="Central longitude of the map: its x axis runs centre-180..centre+180 (180: 0..360).",
    )  # fmt: skip
    message = param.String(default="", doc="Message for the user (bad link, failed computation).")

    def __init__(self, sources: DatasetSources, **params: Any):
        self.sources = sources
        super().__init__()
        self.param.watch(self._on_dataset, "dataset")
        self.param.watch(self._on_var, "var")
        self.param.watch(self._on_region, "region")
        self.param.watch(self._on_point, "point")
        self.param.watch(self._on_clim, "clim")
        self.param.watch(self._on_time_axis_only, ["anomaly", "time_mode"])
        self.param.watch(self._on_anomaly, "anomaly")
        self.param.dataset.objects = {sources.title(i): i for i in sources.ids}
        self.dataset = params.pop("dataset", None) or sources.ids[0]
        if params:
            self.param.update(**params)

    def reset(self) -> None:
        """Back to the defaults: first dataset, first variable and step, Global region."""
        defaults = {
            name: p.default
            for name, p in self.param.objects("existing").items()
            if name
            not in (
                "name",
                "dataset",
                "var",
                "time",
                "start",
                "end",
                "baseline_start",
                "baseline_end",
                "level",
            )
        }
        # no step, range or level to keep: _on_dataset picks the first dataset's defaults
        self.param.update(**defaults, var=None, time=None, start=None, end=None,
                          baseline_start=None, baseline_end=None, level=None)  # fmt: skip
        first = self.sources.ids[0]
        if self.dataset == first:
            self._on_dataset(
                param.parameterized.Event(
                    what="value",
                    name="dataset",
                    obj=self,
                    cls=type(self),
                    old=first,
                    new=first,
                    type="set",
                )
            )
        else:
            self.dataset = first

    # --- keeping the choices consistent --------------------------------------------
    def _on_dataset(self, event: param.parameterized.Event) -> None:
        """Offer the new dataset's choices; keep each setting that is valid there.

        A setting that does not fit the new dataset (a step it does not have, a level
        on another vertical axis, a range without a time axis) is reset quietly to the
        new dataset's default. Everything changes in one update, so the map and series
        are never asked for a mix of the old and new dataset's settings.
        """
        try:
            info = self.sources.info(event.new)
        except Exception as exc:  # a broken dataset: say which and why, keep the others
            self._dataset_failed(event.new, event.old, exc)
            return
        old_variable = self._variable_info(event.old, self.var)
        self.param.var.objects = {v.label: v.name for v in info.variables.values()}
        times = list(info.times)
        for name in ("time", "start", "end", "baseline_start", "baseline_end"):
            self.param[name].objects = times
        var = self.var if self.var in info.variables else next(iter(info.variables), None)
        variable = info.variables.get(var)
        updates: dict[str, Any] = {"var": var, "level": self._kept_level(variable, old_variable)}
        updates.update(
            self._kept_times(times, bool(times) and bool(variable and variable.has_time))
        )
        self.param.update(**updates)
        self._on_var(None)

    def _variable_info(self, dataset: Any, var: Any) -> Any:
        """The `VariableInfo` of ``var`` in ``dataset``, or None."""
        if dataset is None or var is None:
            return None
        try:
            return self.sources.info(dataset).variables.get(var)
        except Exception:  # noqa: BLE001  (a dataset that failed to open has no variables)
            return None

    def _kept_level(self, variable: Any, previous: Any = None) -> float | None:
        """The level to show for ``variable``; sets the level choices, with units.

        The current level is kept when the variable has it on the same kind of axis
        (same units); 1000 hPa never becomes 1000 m.
        """
        from app.labels import level_text

        levels = list(variable.levels) if variable is not None else []
        units = variable.level_units if variable is not None else ""
        self.param.level.objects = {level_text(v, units): v for v in levels} if levels else [None]
        previous_units = previous.level_units if previous is not None else units
        if self.level in levels and previous_units == units:
            return self.level
        return levels[0] if levels else None

    def _kept_times(self, times: list[str], has_time: bool) -> dict[str, Any]:
        """Time settings valid for ``times``: the current ones where they fit, else defaults."""
        if not has_time:
            return {"time_mode": "step", "anomaly": False, "time": times[0] if times else None,
                    "start": None, "end": None, "baseline_start": None, "baseline_end": None}  # fmt: skip
        out: dict[str, Any] = {"time": self.time if self.time in times else times[0]}
        for first, last in (("start", "end"), ("baseline_start", "baseline_end")):
            a, b = getattr(self, first), getattr(self, last)
            if a in times and b in times and times.index(a) <= times.index(b):
                out.update({first: a, last: b})
            else:
                out.update({first: times[0], last: times[-1]})
        return out

    def _dataset_failed(self, bad: Any, previous: Any, exc: Exception) -> None:
        from app.limits import user_message

        log.warning("dataset %r cannot be opened: %s", bad, type(exc).__name__)
        self.message = f"{user_message(exc, bad)} Other datasets are not affected."
        candidates = [previous] if previous not in (None, bad) else []
        candidates += [i for i in self.sources.ids if i not in (bad, previous)]
        for candidate in candidates:
            try:
                self.sources.info(candidate)
            except Exception:  # noqa: BLE001  (try the next one)
                continue
            self.dataset = candidate
            return
        raise exc  # nothing can be shown at all: the page says so (app.server)

    def _on_var(self, event: param.parameterized.Event | None) -> None:
        info = self.sources.info(self.dataset)
        variable = info.variables.get(self.var)
        previous = info.variables.get(event.old) if event is not None else None
        updates: dict[str, Any] = {"level": self._kept_level(variable, previous)}
        if variable is not None and not variable.has_time:
            updates.update(time_mode="step", anomaly=False)
        self.param.update(**{k: v for k, v in updates.items() if getattr(self, k) != v})

    def _on_region(self, event: param.parameterized.Event) -> None:
        if event.new in REGION_PRESETS:
            self.param.update(bbox=REGION_PRESETS[event.new], point=None)

    def _on_point(self, event: param.parameterized.Event) -> None:
        """A point moves to the centre of the grid cell its series is taken from.

        The map's hover shows the cell under the pointer and the series the cell
        nearest to the point (`pipelines.selection.nearest_cell`); at a cell's edge or
        corner the two could differ. On the cell's centre they are the same cell.
        """
        centre = self.cell_centre(event.new)
        if centre is not None and centre != tuple(event.new):
            self.point = centre

    def cell_centre(self, point: Any) -> tuple[float, float] | None:
        """Centre ``(lon, lat)`` of the grid cell whose series a point gives; None if unknown.

        The map sets a tapped point to this at once (one update, one series).
        """
        from pipelines.selection import nearest_cell

        if point is None or self.dataset is None:
            return None
        try:
            ds = self.sources.open(self.dataset)
            lon, lat = ds["lon"], ds["lat"]
        except Exception:  # noqa: BLE001  (nothing to snap to: keep the point as given)
            return None
        if lon.dims != ("lon",) or lat.dims != ("lat",):
            return None  # not a regular lon/lat grid: the point stays as given
        i, j = nearest_cell(ds, (float(point[0]), float(point[1])))
        return (float(lon.values[j]), float(lat.values[i]))

    def _on_clim(self, event: param.parameterized.Event) -> None:
        """A reversed or empty fixed colour range is refused with a message."""
        try:
            check_colour_range(event.new)
        except QueryError as exc:
            self.message = f"Colour range: {exc.message}."
            self.clim = event.old

    def _on_time_axis_only(self, *events: param.parameterized.Event) -> None:
        """Range and anomaly need a time axis: without one they are switched back off."""
        for event in events:
            if event.new not in (False, "step") and self.dataset is not None and not self.has_time:
                setattr(self, event.name, event.old)

    def _on_anomaly(self, event: param.parameterized.Event) -> None:
        if event.new and not (self.dataset is None or self.has_time):
            return  # refused by _on_time_axis_only: the colour map stays
        if event.new and self.cmap not in DIVERGING_CMAPS:
            self.cmap = DIVERGING_CMAPS[0]
        elif not event.new and self.cmap in DIVERGING_CMAPS:
            self.cmap = SEQUENTIAL_CMAPS[0]

    # --- the Query -------------------------------------------------------------------
    @property
    def has_time(self) -> bool:
        info = self.sources.info(self.dataset)
        variable = info.variables.get(self.var)
        return bool(info.times) and (variable is None or variable.has_time)

    @property
    def query(self) -> Query:
        """The full `Query` of the view (what ``gridscope export`` would take)."""
        fields: dict[str, Any] = {"dataset": self.dataset, "var": self.var}
        if self.has_time:
            if self.time_mode == "step":
                fields["time"] = self.time
            else:
                fields.update(start=self.start, end=self.end, agg=self.agg)
            if self.anomaly:
                fields.update(baseline_start=self.baseline_start, baseline_end=self.baseline_end)
        if self.region == POINT and self.point is not None:
            fields["point"] = tuple(self.point)
        elif self.bbox is not None:
            fields["bbox"] = tuple(self.bbox)
        if self.level is not None:
            fields["level"] = float(self.level)
        return Query(**fields)

    @property
    def map_query(self) -> Query:
        """The query of the map on screen: the whole globe (the region is outlined)."""
        return self.query.replace(bbox=None, point=None)

    @property
    def series_query(self) -> Query | None:
        """The query of the time series panel, or None when there is nothing to plot."""
        if not self.has_time:
            return None
        query = self.query
        if query.bbox is None and query.point is None:
            return None
        if query.time is not None:
            query = query.replace(time=None)
        return query

    @property
    def is_diverging(self) -> bool:
        return self.anomaly or self.cmap in DIVERGING_CMAPS

    # --- URL -------------------------------------------------------------------------
    def to_url_params(self) -> dict[str, str]:
        """Query fields (their own names) plus the view-only fields of `VIEW_PARAMS`."""
        params = self.query.to_url_params()
        if self.region in REGION_PRESETS:
            params["region"] = self.region
        params["cmap"] = self.cmap
        if self.clim_mode == "fixed":
            params["clim"] = _join(self.clim)
        if self.centre:
            params["centre"] = f"{self.centre:g}"
        home = (self.centre - 180.0, self.centre + 180.0)
        if tuple(self.x_range) != home or tuple(self.y_range) != (-90.0, 90.0):
            params["x_range"] = _join(self.x_range)
            params["y_range"] = _join(self.y_range)
        return params

    def from_url(self, params: Mapping[str, str]) -> list[str]:
        """Restore the state from URL parameters; returns messages for what was ignored.

        Never raises for bad input: each bad value is replaced by a default and
        described in one message (also stored in ``self.message``).
        """
        messages: list[str] = []
        self.reset()
        params = {str(k): str(v) for k, v in params.items() if v not in (None, "")}
        for key in sorted(set(params) - set(_QUERY_FIELDS) - set(VIEW_PARAMS)):
            messages.append(f"Ignored unknown link parameter {key!r}.")
        self._restore_dataset(params, messages)
        self._restore_var(params, messages)
        self._restore_times(params, messages)
        self._restore_region(params, messages)
        self._restore_level(params, messages)
        self._restore_view(params, messages)
        self._check_against_data(messages)
        self.message = " ".join(messages)
        return messages

    def _restore_dataset(self, params: dict[str, str], messages: list[str]) -> None:
        wanted = params.get("dataset")
        if wanted is None:
            return
        if wanted in self.sources.ids:
            self.message = ""
            self.dataset = wanted
            if self.dataset != wanted and self.message:  # it could not be opened
                messages.append(self.message)
        else:
            messages.append(
                f"Unknown dataset {wanted[:80]!r}; showing {self.sources.title(self.dataset)!r} instead."
            )

    def _restore_var(self, params: dict[str, str], messages: list[str]) -> None:
        wanted = params.get("var")
        if wanted is None:
            return
        info = self.sources.info(self.dataset)
        if wanted in info.variables:
            self.var = wanted
        else:
            messages.append(
                f"Variable {wanted[:80]!r} is not in this dataset; showing {self.var!r} "
                f"(available: {', '.join(info.variables)})."
            )

    def _restore_times(self, params: dict[str, str], messages: list[str]) -> None:
        from app.query_checks import resolve_time_labels

        info = self.sources.info(self.dataset)
        names = ("time", "start", "end", "baseline_start", "baseline_end", "agg")
        if not info.times:
            for name in names:
                if name in params and name != "agg":
                    messages.append(f"This dataset has no time axis; ignored {name}.")
            return
        ds = self.sources.open(self.dataset)
        try:
            probe = Query.from_url_params(
                {"dataset": self.dataset, "var": self.var}
                | {k: params[k] for k in names if k in params}
            )
        except QueryError as exc:
            probe = None
            messages.append(f"Ignored the link's time settings: {exc.message} ({exc.field}).")
        if probe is None:
            return
        try:
            resolved = resolve_time_labels(ds, probe, info.times)
        except QueryError as exc:
            messages.append(f"Ignored the link's time settings: {exc.message} ({exc.field}).")
            return
        updates: dict[str, Any] = {}
        if probe.time is not None:
            updates.update(time_mode="step", time=resolved["time"])
        elif probe.start is not None or probe.end is not None or "agg" in params:
            updates.update(
                time_mode="range", start=resolved["start"], end=resolved["end"], agg=probe.agg
            )
        if probe.baseline_start is not None:
            updates.update(
                anomaly=True,
                baseline_start=resolved["baseline_start"],
                baseline_end=resolved["baseline_end"],
            )
        self.param.update(**updates)

    def _restore_region(self, params: dict[str, str], messages: list[str]) -> None:
        name = params.get("region")
        fields = {k: params[k] for k in ("bbox", "point") if k in params}
        try:
            probe = Query.from_url_params({"dataset": "x", "var": "x"} | fields)
        except QueryError as exc:
            messages.append(f"Ignored the link's region: {exc.message} ({exc.field}).")
            probe = None
        if probe is not None and probe.point is not None:
            self.param.update(region=POINT, point=probe.point, bbox=None)
            return
        if probe is not None and probe.bbox is not None:
            preset = preset_for_bbox(probe.bbox)
            self.param.update(region=preset or CUSTOM_BOX, bbox=probe.bbox, point=None)
            return
        if name is not None:
            if name in REGION_PRESETS:
                self.param.update(region=name, bbox=REGION_PRESETS[name], point=None)
            else:
                messages.append(f"Unknown region {name[:80]!r}; showing Global.")

    def _restore_level(self, params: dict[str, str], messages: list[str]) -> None:
        text = params.get("level")
        if text is None:
            return
        levels = [v for v in self.param.level.objects if v is not None]
        try:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
        except ValueError:
            messages.append(f"Ignored level {text[:40]!r}: not a number.")
            return
        if not levels:
            messages.append("This variable has no vertical levels; ignored level.")
            return
        variable = self.sources.info(self.dataset).variables.get(self.var)
        units = variable.level_units if variable is not None else ""
        try:
            self.level = levels[level_index(levels, value, units)]
        except QueryError as exc:
            messages.append(f"Ignored the link's level: {exc.message} ({exc.field}).")

    def _restore_view(self, params: dict[str, str], messages: list[str]) -> None:
        cmap = params.get("cmap")
        if cmap is not None:
            if cmap in self.param.cmap.objects:
                self.cmap = cmap
            else:
                messages.append(f"Unknown colour map {cmap[:40]!r}; using {self.cmap!r}.")
        centre = params.get("centre")
        if centre is not None:
            try:
                value = float(centre)
            except ValueError:
                value = math.nan
            if value in self.param.centre.objects:
                self.param.update(centre=value, x_range=(value - 180.0, value + 180.0))
            else:
                allowed = ", ".join(f"{c:g}" for c in self.param.centre.objects)
                messages.append(f"Ignored centre {centre[:40]!r}: the map centres are {allowed}.")
        for name, lo, hi in (
            ("clim", -math.inf, math.inf),
            ("x_range", -540, 540),
            ("y_range", -90, 90),
        ):
            text = params.get(name)
            if text is None:
                continue
            pair = _parse_pair(text, lo, hi)
            if pair is None:
                messages.append(f"Ignored {name} {text[:40]!r}: expected two increasing numbers.")
            elif name == "clim":
                self.param.update(clim=pair, clim_mode="fixed")
            else:
                setattr(self, name, pair)

    def _check_against_data(self, messages: list[str]) -> None:
        """Build the lazy map and series once so data-dependent errors show up now."""
        from app.query_checks import check_query

        for _ in range(3):
            try:
                check_query(self.sources.open(self.dataset), self.query)
                return
            except QueryError as exc:
                messages.append(f"{exc.message} ({exc.field}); using the default instead.")
                if exc.field in ("bbox", "point"):
                    self.region = "Global"
                    self.bbox = REGION_PRESETS["Global"]
                elif exc.field == "level":
                    self.level = None
                else:
                    self.time_mode = "step"
                    self.anomaly = False
                    self.time = self.param.time.objects[0] if self.param.time.objects else None


def check_colour_range(values: Any) -> tuple[float, float]:
    """A fixed colour range ``(low, high)`` as two finite floats with low < high.

    Raises
    ------
    QueryError
        With field ``clim`` and a message saying what is allowed.
    """
    if isinstance(values, str):
        values = [v for v in values.replace("(", "").replace(")", "").split(",") if v.strip()]
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        raise QueryError("clim", "expected two numbers, low and high, such as -2, 30") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise QueryError("clim", "low and high must be finite numbers")
    if not low < high:
        raise QueryError(
            "clim", f"low ({low:g}) must be below high ({high:g}); for example {high:g}, {low:g}"
        )
    return (low, high)


def _join(values: Any) -> str:
    return ",".join(f"{float(v):.6g}" for v in values)


def _parse_pair(text: str, lo: float, hi: float) -> tuple[float, float] | None:
    parts = text.split(",")
    if len(parts) != 2:
        return None
    try:
        a, b = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not (math.isfinite(a) and math.isfinite(b)) or not lo <= a < b <= hi:
        return None
    return (a, b)
