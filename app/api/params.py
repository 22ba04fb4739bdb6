"""The API's query string: the dashboard's permalink query, read strictly.

A permalink holds the `pipelines.Query` fields (``dataset``, ``var``, ``time``, ...)
plus the dashboard's view fields (`app.state.VIEW_PARAMS`: ``region``, ``cmap``,
``clim``, ``x_range``, ``y_range``); the map endpoints also take the plot size
(``width``, ``height`` in pixels). The dashboard forgives a bad link (it shows a
default and says why); the API answers 400 naming the field instead, because a client
asked for exactly these numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from urllib.parse import parse_qsl, urlencode

from app.state import DIVERGING_CMAPS, SEQUENTIAL_CMAPS, VIEW_PARAMS
from pipelines.query import Query, QueryError

__all__ = ["MAX_SCREEN", "SCREEN_PARAMS", "ApiParams", "parse_params"]

#: Plot size parameters of the map endpoints (pixels).
SCREEN_PARAMS = ("width", "height")
#: Largest plot side in pixels.
MAX_SCREEN = 4096

_QUERY_FIELDS = tuple(f.name for f in dataclasses.fields(Query))
_CMAPS = (*SEQUENTIAL_CMAPS, *DIVERGING_CMAPS)


@dataclasses.dataclass(frozen=True)
class ApiParams:
    """One API request's query and view.

    Attributes
    ----------
    query
        The `Query` (validated syntax; data checks happen when it is computed).
    viewport
        ``(x0, x1, y0, y1)`` in degrees from ``x_range`` / ``y_range``, or None.
    screen
        ``(width, height)`` in pixels, or None (full resolution).
    cmap, clim
        Colour map and fixed colour range of the PNG (None: from the data).
    region
        The dashboard's region name (kept in the permalink; no effect on numbers).
    """

    query: Query
    viewport: tuple[float, float, float, float] | None = None
    screen: tuple[int, int] | None = None
    cmap: str | None = None
    clim: tuple[float, float] | None = None
    region: str | None = None

    def key(self) -> str:
        """Normal form of everything that changes an answer (JSON, sorted keys)."""
        return json.dumps(
            {"query": self.query.to_dict(), "viewport": self.viewport, "screen": self.screen,
             "cmap": self.cmap, "clim": self.clim},
            sort_keys=True,
        )  # fmt: skip

    def to_url_params(self) -> dict[str, str]:
        """The normalised permalink parameters (the dashboard's names and formats)."""
        params = self.query.to_url_params()
        if self.region is not None:
            params["region"] = self.region
        if self.cmap is not None:
            params["cmap"] = self.cmap
        if self.clim is not None:
            params["clim"] = _join(self.clim)
        if self.viewport is not None:
            params["x_range"] = _join(self.viewport[:2])
            params["y_range"] = _join(self.viewport[2:])
        if self.screen is not None:
            params["width"], params["height"] = (str(v) for v in self.screen)
        return params

    def to_query_string(self) -> str:
        return urlencode(self.to_url_params(), safe=",:")


def parse_params(text: str, *, screen: bool = True) -> ApiParams:
    """Read an API query string; `QueryError` naming the field when anything is wrong.

    Parameters
    ----------
    text
        The URL query string (with or without the leading ``?``).
    screen
        Whether ``width`` / ``height`` are allowed (map endpoints).
    """
    seen: dict[str, str] = {}
    for key, value in parse_qsl(text.lstrip("?"), keep_blank_values=True):
        if key in seen:
            raise QueryError(key[:40], "given more than once")
        seen[key] = value
    allowed = (*_QUERY_FIELDS, *VIEW_PARAMS, *(SCREEN_PARAMS if screen else ()))
    for key in seen:
        if key not in allowed:
            raise QueryError(key[:40], f"unknown parameter; allowed: {', '.join(allowed)}")
    query = Query.from_url_params({k: v for k, v in seen.items() if k in _QUERY_FIELDS})
    view = {k: v for k, v in seen.items() if k not in _QUERY_FIELDS and v != ""}
    cmap = view.get("cmap")
    if cmap is not None and cmap not in _CMAPS:
        raise QueryError("cmap", f"{cmap[:40]!r} is not a colour map; allowed: {', '.join(_CMAPS)}")
    region = view.get("region")
    if region is not None:
        from app.regions import CUSTOM_BOX, POINT, REGION_PRESETS

        names = (*REGION_PRESETS, CUSTOM_BOX, POINT)
        if region not in names:
            raise QueryError(
                "region", f"{region[:40]!r} is not a region; allowed: {', '.join(names)}"
            )
    clim = _pair(view, "clim", -math.inf, math.inf, "two increasing numbers such as 270,305")
    viewport = None
    if "x_range" in view or "y_range" in view:
        x = _pair(view, "x_range", -360, 360, "west,east longitudes such as -80,-10")
        y = _pair(view, "y_range", -90, 90, "south,north latitudes such as 0,60")
        viewport = (*(x or (-180.0, 180.0)), *(y or (-90.0, 90.0)))
    size = None
    if "width" in view or "height" in view:
        size = (_pixels(view, "width"), _pixels(view, "height"))
    return ApiParams(query, viewport, size, cmap, clim, region)


def _join(values: tuple[float, ...]) -> str:
    return ",".join(f"{float(v):.6g}" for v in values)


def _pair(
    view: dict[str, str], name: str, lo: float, hi: float, what: str
) -> tuple[float, float] | None:
    text = view.get(name)
    if text is None:
        return None
    parts = text.split(",")
    try:
        a, b = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        a = b = math.nan
    if not (math.isfinite(a) and math.isfinite(b) and lo <= a < b <= hi):
        raise QueryError(name, f"{text[:40]!r}: expected {what}, within {lo:g}..{hi:g}")
    return (a, b)


def _pixels(view: dict[str, str], name: str) -> int:
    text = view.get(name)
    if text is None:
        raise QueryError(name, "width and height are given together (plot size in pixels)")
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_SCREEN:
        raise QueryError(name, f"{text[:40]!r}: expected a whole number of pixels, 1..{MAX_SCREEN}")
    return value
