"""The Query value: validation messages and round trips through URL, JSON."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines import Query, QueryError


def test_defaults_and_minimal_url():
    q = Query("coads", "SST")
    assert q.agg == "mean" and q.time is None and q.bbox is None
    assert q.to_query_string() == "dataset=coads&var=SST"


def test_url_keeps_commas_and_negative_numbers_readable():
    q = Query("coads", "SST", bbox=(-80, 0, -10, 60), start="1982-01", end="1985")
    text = q.to_query_string()
    assert "bbox=-80,0,-10,60" in text
    assert Query.from_query_string(text) == q
    assert Query.from_query_string("?" + text) == q


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"bbox": "1,2,3"}, "bbox", "4 comma-separated numbers"),
        ({"bbox": "0,-95,10,10"}, "bbox", "[-90, 90]"),
        ({"bbox": "nan,0,10,10"}, "bbox", "finite"),
        ({"bbox": "inf,0,10,10"}, "bbox", "finite"),
        ({"bbox": "0,1e308,10,10"}, "bbox", "out of range"),
        ({"bbox": "0,20,10,10"}, "bbox", "north of north"),
        ({"bbox": "a,b,c,d"}, "bbox", "not a number"),
        ({"point": "-140"}, "point", "2 comma-separated"),
        ({"point": "0,91"}, "point", "[-90, 90]"),
        ({"point": "400,0"}, "point", "[-180, 360]"),
        ({"point": "0,0", "bbox": "0,0,1,1"}, "point", "not both"),
        ({"start": "1985", "end": "1984-12"}, "end", "before"),
        ({"start": "1985-13"}, "start", "month 13"),
        ({"start": "1985-02-31"}, "start", "no day 31"),  # Feb 30: 360_day calendars
        ({"time": "yesterday"}, "time", "not a date"),
        ({"time": "1985", "start": "1984"}, "time", "not both"),
        ({"agg": "median"}, "agg", "mean, min, max, std"),
        ({"baseline_start": "1982"}, "baseline_start", "both"),
        ({"level": "deep"}, "level", "not a number"),
        ({"var": ""}, "var", "required"),
        ({"var": "x" * 500}, "var", "too long"),
        ({"var": "a\x00b"}, "var", "control characters"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_invalid_values_name_the_field(fields, field, words):
    values = {"dataset": "coads", "var": "SST", **fields}
    with pytest.raises(QueryError) as info:
        Query.from_url_params(values)
    assert info.value.field == field
    assert words in str(info.value)
    assert str(info.value).startswith(f"{field}:")


def test_partial_end_covers_its_whole_period():
    Query("d", "v", start="1985-06", end="1985")  # same year: allowed
    with pytest.raises(QueryError):
        Query("d", "v", start="1986-01", end="1985")


def test_repeated_url_parameter_is_rejected():
    with pytest.raises(QueryError, match="more than once"):
        Query.from_query_string("dataset=a&var=b&var=c")


def test_json_round_trip_and_errors():
    q = Query("navy-winds", "UWND", point=(-140, 0), start="1982", end="1992", agg="std")
    assert Query.from_json(q.to_json()) == q
    with pytest.raises(QueryError, match="not valid JSON"):
        Query.from_json("{")
    with pytest.raises(QueryError, match="object"):
        Query.from_json("[1, 2]")


_lon = st.floats(-180, 360, allow_nan=False)
_lat = st.floats(-90, 90, allow_nan=False)
_labels = st.sampled_from(["1982", "1983-04", "1990-12-31", "2001-02-03T04:05", None])


@given(w=_lon, s=_lat, e=_lon, n=_lat, start=_labels, agg=st.sampled_from(["mean", "max", "std"]))
def test_any_valid_query_round_trips_through_url_and_json(w, s, e, n, start, agg):
    s, n = min(s, n), max(s, n)
    q = Query("ds", "v", bbox=(w, s, e, n), start=start, agg=agg, level=500.25)
    assert Query.from_query_string(q.to_query_string()) == q
    assert Query.from_json(q.to_json()) == q
    assert all(math.isfinite(x) for x in q.bbox)
