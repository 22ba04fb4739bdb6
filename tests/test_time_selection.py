"""One rule turns a time label into a step, everywhere (issue 11, point 1).

A step's own label selects that step; a partial date selects the first step inside its
period; a moment between steps selects the nearest (xarray's tie rule); a period with no
step is an error. Checked against brute force over the steps' own fields and against
xarray's ``sel`` on hourly, daily, monthly (1st and 16th), climatological (year 0),
noleap and 360_day axes made here, through the library, the CLI and the dashboard state.
"""

from __future__ import annotations

import datetime

import cftime
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from data_catalog.normalise import normalise_dataset
from pipelines import Query, QueryError, compute_map
from pipelines.selection import select_time_range, select_time_step, step_index, step_labels

# (units, calendar, step values): each axis as a file would store it
_AXES = {
    "hourly": ("hours since 1980-01-01", "standard", np.arange(0, 24 * 9, 1.0)),
    "daily": ("days since 1979-12-20", "standard", np.arange(0, 400, 1.0)),
    "monthly-1st": (
        "days since 1980-01-01",
        "standard",
        [
            (np.datetime64(f"{1980 + m // 12}-{m % 12 + 1:02d}-01") - np.datetime64("1980-01-01"))
            / np.timedelta64(1, "D")
            for m in range(30)
        ],
    ),  # fmt: skip
    "monthly-16th": (
        "days since 1980-01-01",
        "standard",
        [
            (np.datetime64(f"{1980 + m // 12}-{m % 12 + 1:02d}-16") - np.datetime64("1980-01-01"))
            / np.timedelta64(1, "D")
            for m in range(30)
        ],
    ),  # fmt: skip
    "climatology": (  # as COADS: mid-month in year 0
        "hours since 0000-01-01 00:00:00",
        "standard",
        [
            (
                cftime.DatetimeProlepticGregorian(0, m, 16, has_year_zero=True)
                - cftime.DatetimeProlepticGregorian(0, 1, 1, has_year_zero=True)
            ).total_seconds()
            / 3600
            for m in range(1, 13)
        ],
    ),  # fmt: skip
    "noleap": ("days since 1999-12-01", "noleap", np.arange(0, 120, 1.0)),
    "360_day": ("days since 2000-01-01", "360_day", np.arange(0, 100, 1.0)),
    "6-hourly-360": ("hours since 2000-02-25", "360_day", np.arange(0, 24 * 10, 6.0)),
}


def _dataset(kind: str) -> xr.Dataset:
    units, calendar, values = _AXES[kind]
    values = np.asarray(values, dtype="float64")
    rng = np.random.default_rng(len(kind))
    raw = xr.Dataset(
        {"t": (("time", "lat", "lon"), rng.normal(size=(values.size, 3, 4)).astype("float32"))},
        coords={
            "time": ("time", values, {"units": units, "calendar": calendar}),
            "lat": ("lat", [-10.0, 0.0, 10.0], {"units": "degrees_north"}),
            "lon": ("lon", [0.0, 10.0, 20.0, 30.0], {"units": "degrees_east"}),
        },
    )
    return normalise_dataset(raw, kind)


@pytest.fixture(scope="module", params=sorted(_AXES))
def ds(request) -> xr.Dataset:
    return _dataset(request.param)


def _field(ds: xr.Dataset) -> xr.DataArray:
    da = ds["t"]
    da.attrs["gridscope_climatology"] = int(bool(ds.attrs["gridscope_climatology"]))
    return da


def _fields(t) -> tuple[int, ...]:
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)


def test_every_step_label_selects_that_step(ds):
    da = _field(ds)
    labels = step_labels(ds.indexes["time"], bool(ds.attrs["gridscope_climatology"]))
    assert len(set(labels)) == len(labels)
    index = ds.indexes["time"]
    for i, (label, when) in enumerate(zip(labels, ds["time"].values, strict=True)):
        assert step_index(da, label) == index.get_loc(when) == i, label  # = ds.sel(time=when)
    for i in sorted({0, 1, len(labels) // 3, len(labels) - 1}):  # the fields themselves
        expect = ds["t"].sel(time=ds["time"].values[i])
        got = select_time_step(da, labels[i])
        xr.testing.assert_identical(got.drop_attrs(), expect.drop_attrs())
    # and through the Query, as the CLI and the dashboard ask
    label = labels[len(labels) // 2]
    got = compute_map(ds, Query("x", "t", time=label))
    np.testing.assert_array_equal(got.values, ds["t"].sel(time=ds["time"].values[len(labels) // 2]))


def test_full_iso_timestamp_of_a_step_selects_it(ds):
    da = _field(ds)
    for i, t in enumerate(ds.indexes["time"]):
        text = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}".format(*_fields(t))
        assert step_index(da, text) == i


def _first_in_period(index, parts: tuple[int, ...]) -> int | None:
    """Brute force: the first step whose leading fields equal ``parts``."""
    for i, t in enumerate(index):
        if _fields(t)[: len(parts)] == parts:
            return i
    return None


def test_partial_dates_select_the_first_step_in_their_period(ds):
    da = _field(ds)
    index = ds.indexes["time"]
    periods = {_fields(t)[:n] for t in index for n in (1, 2, 3, 4)}
    for parts in sorted(periods):
        label = "-".join(f"{p:04d}" if k == 0 else f"{p:02d}" for k, p in enumerate(parts[:3]))
        if len(parts) == 4:
            label += f"T{parts[3]:02d}"
        assert step_index(da, label) == _first_in_period(index, parts), label


def test_the_issue_examples_on_daily_and_hourly_data():
    daily = _field(_dataset("daily"))  # 1979-12-20 .. 1981-01-22
    picked = {
        label: str(daily["time"].values[step_index(daily, label)])[:10]
        for label in ("1980-01-05", "1980-01-01", "1980-02", "1980", "1981")
    }
    assert picked == {
        "1980-01-05": "1980-01-05",
        "1980-01-01": "1980-01-01",
        "1980-02": "1980-02-01",
        "1980": "1980-01-01",
        "1981": "1981-01-01",
    }
    hourly = _field(_dataset("hourly"))
    assert (
        str(hourly["time"].values[step_index(hourly, "1980-01-05T06")])[:16] == "1980-01-05T06:00"
    )
    monthly = _field(_dataset("monthly-16th"))
    assert str(monthly["time"].values[step_index(monthly, "1980-02")])[:10] == "1980-02-16"


def test_month_names_on_a_climatology():
    clim = _dataset("climatology")
    da = _field(clim)
    for month, name in enumerate(["Jan", "Feb", "Jul", "December"], start=0):
        number = [1, 2, 7, 12][month]
        assert clim.indexes["time"][step_index(da, name)].month == number
    with pytest.raises(QueryError, match="climatolog"):
        step_index(_field(_dataset("daily")), "Jul")


_MOMENT_KINDS = ("hourly", "daily", "monthly-1st", "noleap", "360_day", "6-hourly-360")


@pytest.mark.parametrize("kind", _MOMENT_KINDS)
@settings(max_examples=25, deadline=None)
@given(where=st.floats(0.0, 1.0), minute=st.integers(0, 59))
def test_moments_between_steps_select_the_nearest_as_xarray(kind, where, minute):
    ds = _CACHE.setdefault(kind, _dataset(kind))
    da = _field(ds)
    index = ds.indexes["time"]
    i = min(int(where * (len(index) - 1)), len(index) - 2)
    # a moment inside the gap after step i, at a whole minute, midpoints included
    a, b = index[i], index[i + 1]
    span_minutes = int((b - a).total_seconds() // 60)
    moment = a + datetime.timedelta(minutes=minute * span_minutes // 59)
    label = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}".format(*_fields(moment)[:5])
    expect = ds["t"].sel(time=_as_index_value(moment, index), method="nearest")
    got = select_time_step(da, label)
    assert got["time"].values == expect["time"].values, label


def test_a_midpoint_goes_to_the_later_step_as_in_xarray():
    hourly = _dataset("hourly")
    da = _field(hourly)
    got = select_time_step(da, "1980-01-05T06:30")
    assert str(got["time"].values)[:16] == "1980-01-05T07:00"
    assert (
        got["time"].values
        == hourly["t"].sel(time="1980-01-05T06:30", method="nearest")["time"].values
    )
    daily = _dataset("daily")
    got = select_time_step(_field(daily), "1980-01-05T12:00")
    assert str(got["time"].values)[:10] == "1980-01-06"


_CACHE: dict[str, xr.Dataset] = {}


def _as_index_value(moment, index):
    return moment if isinstance(index, xr.CFTimeIndex) else np.datetime64(moment)


@pytest.mark.parametrize(
    ("kind", "label", "words"),
    [
        ("daily", "1990", "outside the record"),
        ("daily", "1970-05", "outside the record"),
        ("hourly", "1980-02-01T03", "outside the record"),
        ("monthly-16th", "1990-03-02", "outside the record"),
        ("climatology", "1985-07", "climatology"),
        ("360_day", "2000-03-31", "not a valid date in this calendar"),
        ("noleap", "2000-02-29", "not a valid date in this calendar"),
    ],
)
def test_a_period_or_date_outside_the_record_is_an_error(kind, label, words):
    with pytest.raises(QueryError, match=words) as info:
        step_index(_field(_dataset(kind)), label)
    assert info.value.field == "time"


def test_a_period_with_no_step_inside_says_so():
    daily = _dataset("daily")
    gappy = _field(daily.drop_sel(time=np.datetime64("1980-01-05")))
    with pytest.raises(QueryError, match="no time step falls in 1980-01-05") as info:
        step_index(gappy, "1980-01-05")
    assert "1980-01-04 and 1980-01-06" in info.value.message
    assert "record spans 1979-12-20" in info.value.message
    # a moment inside the gap still finds the nearest step
    for label, day in (("1980-01-05T06:00", "1980-01-06"), ("1980-01-04T23:00", "1980-01-04")):
        assert str(gappy["time"].values[step_index(gappy, label)])[:10] == day
    # a range over the gap has the neighbours only
    assert select_time_range(gappy, "1980-01-04", "1980-01-06").sizes["time"] == 2


def test_a_number_on_a_date_axis_is_an_error_in_words():
    with pytest.raises(QueryError, match="is a number, but this dataset's time axis holds dates"):
        step_index(_field(_dataset("daily")), "3.5")


# --- the CLI and the dashboard state ---------------------------------------------------


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> str:
    from pipelines.synthetic import SyntheticSpec, write_demo_store

    path = tmp_path_factory.mktemp("demo") / "demo.zarr"
    write_demo_store(SyntheticSpec(nsteps=12, freq="daily", resolution=2.0), path, progress=False)
    return str(path)


def test_cli_exports_the_named_day(demo_store, tmp_path, capsys):
    from app.cli import main

    out = tmp_path / "x.nc"
    code = main(
        ["export", "map", demo_store, "--var", "t2m", "--time", "1980-01-05",
         "--bbox=9,44,11,46", "-o", str(out)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with xr.open_zarr(demo_store) as raw, xr.open_dataset(out) as written:
        assert str(written["time"].values)[:10] == "1980-01-05"
        day = raw["t2m"].sel(time="1980-01-05")
        box = day.where(
            (day["longitude"] >= 9) & (day["longitude"] <= 11) & (day["latitude"] >= 44)
            & (day["latitude"] <= 46), drop=True,
        )  # fmt: skip
        got = written["t2m"].sortby("lat")
        expect = box.sortby("latitude").values
        assert got.shape == expect.shape and got.size > 0
        np.testing.assert_array_equal(got.values, expect)
        # the next day differs, so the test can tell the two apart
        assert not np.array_equal(
            raw["t2m"].sel(time="1980-01-06").where(box.notnull()).values, day.values
        )


@pytest.mark.parametrize("kind", ["daily", "hourly", "monthly-16th", "climatology", "360_day"])
def test_a_link_reopens_on_the_same_step_five_times(kind):
    from app.sources import DatasetSources
    from app.state import ExplorerState

    ds = _dataset(kind)
    ds.attrs["title"] = kind
    state = ExplorerState(DatasetSources.from_datasets({kind: ds}))
    index = ds.indexes["time"]
    for i in (0, 4, len(index) - 1):
        t = index[i]
        first = (
            t.strftime("%b")
            if ds.attrs["gridscope_climatology"]
            else "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}".format(*_fields(t))
        )
        params = {"dataset": kind, "var": "t", "time": first}
        for _ in range(5):
            assert state.from_url(params) == []
            assert step_index(_field(ds), state.query.time) == i, (params, state.query.time)
            params = state.to_url_params()
        # the link carries the step's own label
        assert params["time"] == step_labels(index, bool(ds.attrs["gridscope_climatology"]))[i]


@st.composite
def _labels(draw) -> tuple[str, tuple[int, ...]]:
    """Random ISO labels from a year down to seconds, around every test axis's years."""
    year = draw(st.sampled_from([0, 1978, 1979, 1980, 1981, 1999, 2000, 2001]))
    parts = [year, draw(st.integers(1, 12)), draw(st.integers(1, 28)), draw(st.integers(0, 23)),
             draw(st.integers(0, 59)), draw(st.integers(0, 59))]  # fmt: skip
    n = draw(st.integers(1, 6))
    text = f"{parts[0]:04d}" + "".join(
        sep + f"{p:02d}" for sep, p in zip(["-", "-", "T", ":", ":"], parts[1:n], strict=False)
    )
    return text, tuple(parts[:n])


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(sorted(_AXES)), drawn=_labels())
def test_any_label_gives_the_rule_or_a_query_error(kind, drawn):
    """First step in the period; else, for a moment, xarray's nearest; else a QueryError."""
    text, parts = drawn
    ds = _CACHE.setdefault(kind, _dataset(kind))
    index = ds.indexes["time"]
    try:
        got = step_index(_field(ds), text)
    except QueryError:
        assert _first_in_period(index, parts) is None  # no step in the period
        return
    inside = _first_in_period(index, parts)
    if inside is not None:
        assert got == inside
    else:  # a moment between steps: the nearest, as xarray
        begin = _begin(index, parts)
        expect = ds["t"].sel(time=begin, method="nearest")["time"].values
        assert ds["time"].values[got] == expect


def _begin(index, parts):
    fields = parts + (1, 1, 0, 0, 0)[len(parts) - 1 :]
    if isinstance(index, xr.CFTimeIndex):
        return index.date_type(*fields, has_year_zero=index[0].has_year_zero)
    return np.datetime64("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}".format(*fields))
