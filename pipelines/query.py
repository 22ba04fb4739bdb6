"""The `Query`: one value that describes one view of one dataset.

The same `Query` is the URL query string of the dashboard, the flags of
``gridscope export`` and the input of the planner, so what the browser shows and
what ``export`` writes are computed from the same value. Field names are the CLI
flag names with ``-`` replaced by ``_`` (``--baseline-start`` <-> ``baseline_start``).

Only checks that need no data live here (syntax, ranges, ordering). Checks against
a dataset (unknown variable, time outside the record, level not present) live in
`pipelines.selection`, which raises the same `QueryError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

__all__ = [
    "AGGREGATIONS",
    "Query",
    "QueryError",
    "is_step_value",
    "parse_step_value",
    "parse_time_label",
]

AGGREGATIONS = ("mean", "min", "max", "std")
Aggregation = Literal["mean", "min", "max", "std"]

_MAX_TEXT = 200
_TIME_RE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2}))?)?)?)?)?$"
)
_MONTHS = (
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
)  # fmt: skip
# February 30 exists in the 360_day calendar; the dataset's calendar decides the rest.
_DAYS_IN_MONTH = (31, 30, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


class QueryError(ValueError):
    """A query value is invalid; ``field`` names the offending Query field.

    The message is meant for the user as it is: it says what was wrong and what is
    allowed, in one line.
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_time_label(field: str, text: str) -> tuple[int, ...]:
    """Parse an ISO-like time label into its numeric fields.

    Accepts ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, ``YYYY-MM-DDTHH[:MM[:SS]]`` (year 0
    allowed, as used by climatological axes) and month names (``Jan``, ``March``) for
    climatologies, which are returned as ``(0, month)``.

    Returns
    -------
    tuple of int
        The fields present, most significant first.

    Raises
    ------
    QueryError
        When ``text`` is not such a label or a field is out of range.
    """
    if not isinstance(text, str) or not text.strip():
        raise QueryError(field, "expected a date such as 1985-03 or 1985-03-15")
    text = text.strip()
    if len(text) > 40:
        raise QueryError(field, "date is too long; expected e.g. 1985-03-15")
    low = text.lower()
    if len(low) >= 3 and low[:3] in _MONTHS and low.isalpha():
        month = _MONTHS.index(low[:3]) + 1
        return (0, month)
    match = _TIME_RE.match(text)
    if match is None:
        raise QueryError(
            field,
            f"{text!r} is not a date; use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM "
            "(a month name for climatologies, a number on a numbered step axis)",
        )
    parts = tuple(int(v) for v in match.groups() if v is not None)
    limits = ((0, 9999), (1, 12), (1, 31), (0, 23), (0, 59), (0, 59))
    for value, (lo, hi), name in zip(
        parts, limits, ("year", "month", "day", "hour", "minute", "second"), strict=False
    ):
        if not lo <= value <= hi:
            raise QueryError(field, f"{text!r} has {name} {value}, allowed {lo}..{hi}")
    if len(parts) >= 3 and parts[2] > _DAYS_IN_MONTH[parts[1] - 1]:
        raise QueryError(field, f"{text!r}: month {parts[1]} has no day {parts[2]}")
    return parts


def is_step_value(text: str) -> bool:
    """Whether ``text`` is written as a plain number (a step of a numeric time axis)."""
    return isinstance(text, str) and bool(_NUMBER_RE.match(text.strip()))


def parse_step_value(field: str, text: str) -> float:
    """A time label on a numeric step axis (no dates: e.g. units "Month"): a number.

    Raises
    ------
    QueryError
        When ``text`` is not a plain finite number such as ``3`` or ``3.5``.
    """
    if not is_step_value(text) or len(text) > 40:
        raise QueryError(
            field, f"{str(text)[:40]!r} is not a step value; expected a number such as 3"
        )
    value = float(text)
    if not math.isfinite(value):
        raise QueryError(field, f"{text!r} is too large; expected a step value such as 3")
    return value


def check_time_label(field: str, text: str) -> None:
    """Syntax check of a time label without the dataset: a date label or a number.

    Which of the two a dataset takes depends on its time axis; `pipelines.selection`
    says so when the kind does not fit.
    """
    if is_step_value(text) and not _TIME_RE.match(text.strip()):
        parse_step_value(field, text)
    else:
        parse_time_label(field, text)


def _period_bounds(parts: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """First and last instant (as comparable tuples) of the period a label names."""
    lows = (0, 1, 1, 0, 0, 0)
    highs = (9999, 12, 31, 23, 59, 59)
    first = parts + lows[len(parts) :]
    last = parts + highs[len(parts) :]
    return first, last


def _parse_float(field: str, text: Any, lo: float, hi: float, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise QueryError(field, f"{text!r} is not a number; expected {what}") from None
    if not math.isfinite(value):
        raise QueryError(field, f"{text!r} is not a finite number; expected {what}")
    if not lo <= value <= hi:
        raise QueryError(field, f"{value:g} is out of range; expected {what}")
    return value


def _parse_numbers(field: str, value: Any, count: int, example: str) -> tuple[float, ...]:
    if isinstance(value, str):
        items: list[Any] = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise QueryError(field, f"expected {count} comma-separated numbers such as {example}")
    if len(items) != count:
        raise QueryError(
            field, f"expected {count} comma-separated numbers such as {example}, got {len(items)}"
        )
    return tuple(items)


def _format_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@dataclasses.dataclass(frozen=True)
class Query:
    """One view: what to compute from which dataset.

    Parameters
    ----------
    dataset
        Catalog id (or, outside public mode, a path or URL).
    var
        Data variable name.
    time
        A single time step, by the rule of `pipelines.selection.step_index`: a step's
        own label selects it, a partial date the first step in its period, a moment
        between steps the nearest. A number on a numbered step axis. Mutually
        exclusive with ``start``/``end``.
    start, end
        Time range, both ends included; partial labels cover their whole period
        (``end="1985"`` includes all of 1985); on a numbered step axis, numbers
        (steps with ``start <= value <= end``). Either may be omitted to mean the
        start/end of the record. No time at all means the whole record.
    agg
        Reduction over the time range: mean, min, max or std (population, ddof=0).
    baseline_start, baseline_end
        When set, values are anomalies against the baseline period's monthly
        climatology before the reduction over time.
    bbox
        ``(W, S, E, N)`` in degrees; ``W > E`` crosses the antimeridian. A cell is in
        the box when its centre is inside, edges included.
    point
        ``(lon, lat)``: the nearest cell.
    level
        Vertical level: one of the variable's levels (`pipelines.selection.level_index`);
        any other value is an error, never the nearest level.
    """

    dataset: str
    var: str
    time: str | None = None
    start: str | None = None
    end: str | None = None
    agg: Aggregation = "mean"
    baseline_start: str | None = None
    baseline_end: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    point: tuple[float, float] | None = None
    level: float | None = None

    def __post_init__(self) -> None:
        for name in ("dataset", "var"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise QueryError(name, "must not be empty")
            if len(value) > _MAX_TEXT:
                raise QueryError(
                    name, f"is too long ({len(value)} characters, at most {_MAX_TEXT})"
                )
            if any(ord(c) < 32 for c in value):
                raise QueryError(name, "contains control characters")
        if self.agg not in AGGREGATIONS:
            raise QueryError("agg", f"{self.agg!r} is not one of {', '.join(AGGREGATIONS)}")
        if self.time is not None and (self.start is not None or self.end is not None):
            raise QueryError("time", "give either a single time or a start/end range, not both")
        for name in ("time", "start", "end", "baseline_start", "baseline_end"):
            value = getattr(self, name)
            if value is not None:
                check_time_label(name, value)
        self._check_order("start", "end")
        if (self.baseline_start is None) != (self.baseline_end is None):
            raise QueryError(
                "baseline_start", "a baseline needs both baseline_start and baseline_end"
            )
        self._check_order("baseline_start", "baseline_end")
        if self.bbox is not None:
            w, s, e, n = _parse_numbers("bbox", self.bbox, 4, "-80,0,-10,60 (W,S,E,N)")
            box = (
                _parse_float("bbox", w, -180, 360, "west longitude in [-180, 360]"),
                _parse_float("bbox", s, -90, 90, "south latitude in [-90, 90]"),
                _parse_float("bbox", e, -180, 360, "east longitude in [-180, 360]"),
                _parse_float("bbox", n, -90, 90, "north latitude in [-90, 90]"),
            )
            if box[1] > box[3]:
                raise QueryError("bbox", f"south {box[1]:g} is north of north {box[3]:g}")
            object.__setattr__(self, "bbox", box)
        if self.point is not None:
            lon, lat = _parse_numbers("point", self.point, 2, "-140,0 (lon,lat)")
            object.__setattr__(
                self,
                "point",
                (
                    _parse_float("point", lon, -180, 360, "longitude in [-180, 360]"),
                    _parse_float("point", lat, -90, 90, "latitude in [-90, 90]"),
                ),
            )
        if self.bbox is not None and self.point is not None:
            raise QueryError("point", "give either a point or a bbox, not both")
        if self.level is not None:
            level = _parse_float("level", self.level, -1e12, 1e12, "a level value such as 500")
            object.__setattr__(self, "level", level)

    def _check_order(self, first: str, last: str) -> None:
        a, b = getattr(self, first), getattr(self, last)
        if a is None or b is None:
            return
        try:
            start_first, _ = _period_bounds(parse_time_label(first, a))
            _, end_last = _period_bounds(parse_time_label(last, b))
            reversed_ = end_last < start_first
        except QueryError:  # numbers (a numbered step axis), or a number against a date
            if not (is_step_value(a) and is_step_value(b)):
                return  # the dataset says which kind it takes
            reversed_ = float(b) < float(a)
        if reversed_:
            raise QueryError(last, f"{b!r} is before {first} {a!r}")

    # --- conversions -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Fields that differ from their defaults, as plain JSON-able values."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value == field.default and field.name not in ("dataset", "var"):
                continue
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Query:
        """Build a Query from a mapping, rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise QueryError(unknown[0], f"unknown field; allowed: {', '.join(sorted(known))}")
        for required in ("dataset", "var"):
            if not values.get(required):
                raise QueryError(required, "is required")
        return cls(**dict(values))

    def to_json(self) -> str:
        """JSON object with the same field names as the URL and the CLI."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Query:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise QueryError("query", f"not valid JSON ({exc.msg})") from None
        if not isinstance(values, dict):
            raise QueryError("query", "JSON must be an object of query fields")
        return cls.from_dict(values)

    def to_url_params(self) -> dict[str, str]:
        """URL query parameters as strings (bbox and point comma-separated)."""
        params: dict[str, str] = {}
        for key, value in self.to_dict().items():
            if isinstance(value, list):
                params[key] = ",".join(_format_number(v) for v in value)
            elif isinstance(value, float):
                params[key] = _format_number(value)
            else:
                params[key] = str(value)
        return params

    def to_query_string(self) -> str:
        return urlencode(self.to_url_params(), safe=",:")

    @classmethod
    def from_url_params(cls, params: Mapping[str, str]) -> Query:
        """Inverse of `to_url_params`; empty values count as absent."""
        return cls.from_dict({k: v for k, v in params.items() if v not in ("", None)})

    @classmethod
    def from_query_string(cls, text: str) -> Query:
        pairs = parse_qsl(text.lstrip("?"), keep_blank_values=True)
        seen: dict[str, str] = {}
        for key, value in pairs:
            if key in seen:
                raise QueryError(key, "given more than once")
            seen[key] = value
        return cls.from_url_params(seen)

    def replace(self, **changes: Any) -> Query:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def is_anomaly(self) -> bool:
        return self.baseline_start is not None
