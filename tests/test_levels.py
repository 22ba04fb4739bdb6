"""A vertical level is one the variable has, through every door (URL, CLI, API).

A level the data does not have is an error naming the levels there are, never the
nearest level; the levels there are give the numbers of ``ds.sel(level=...)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
import xarray as xr

from app import cluster_health, limits
from app.answer_cache import AnswerCache
from app.api.answers import ApiContext
from app.cli import main
from app.limits import Limits
from app.sources import DatasetSources
from app.state import ExplorerState
from pipelines import Query, QueryError
from pipelines.evaluate import compute_map, compute_series
from pipelines.selection import level_index, levels_text
from tests.app_data import make_ds
from tests.test_api import _fetch_all

LEVELS = (1000.0, 850.0, 500.0)  # make_ds's ua, hPa
MISSING = ("600", "850.5", "1", "2000")


@pytest.fixture(autouse=True)
def _no_limits():
    limits.configure(Limits())
    cluster_health.use_client(None)
    yield
    limits.configure(Limits())


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return make_ds(0, chunked=False)


@pytest.fixture(scope="module")
def sources(ds: xr.Dataset) -> DatasetSources:
    return DatasetSources.from_datasets({"synth": ds})


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_gives_the_numbers_of_sel(ds: xr.Dataset, level: float) -> None:
    time = str(ds["time"].values[5])[:10]
    got = compute_map(ds, Query("synth", "ua", time=time, level=level))
    expect = ds["ua"].sel(level=level).isel(time=5)
    np.testing.assert_array_equal(got.values, expect.values)
    series = compute_series(ds, Query("synth", "ua", point=(-45.0, 25.0), level=level))
    raw = ds["ua"].sel(level=level, lon=-45.0, lat=25.0)
    np.testing.assert_array_equal(series.values, raw.values)


@pytest.mark.parametrize("text", MISSING)
def test_a_level_not_there_is_an_error_naming_the_levels(ds: xr.Dataset, text: str) -> None:
    with pytest.raises(QueryError) as info:
        compute_map(ds, Query("synth", "ua", time="2000-01-15", level=text))
    assert info.value.field == "level"
    assert "is not a level" in info.value.message
    assert info.value.message.endswith("its levels are 1000, 850, 500 hPa")


def test_a_float32_axis_matches_the_decimal_a_person_types() -> None:
    """A float32 sigma axis holds 0.995000..48 for 0.995: typing 0.995 finds it, and the
    value a link writes (the axis value itself) too; 0.99 is not a level."""
    axis = np.array([0.995, 0.97, 0.5], dtype="float32")
    assert float(axis[0]) != 0.995
    for i, value in enumerate(axis):
        assert level_index(axis, float(f"{value:g}")) == i
        assert level_index(axis, float(value)) == i
    with pytest.raises(
        QueryError, match="0.99 is not a level of this variable; its levels are 0.995, 0.97, 0.5$"
    ):
        level_index(axis, 0.99)


def test_a_long_axis_is_named_on_one_line() -> None:
    depths = np.arange(5.0, 5000.0, 10.0)
    text = levels_text(depths, "m")
    assert text == "its 500 levels are 5, 15, 25, 35, 45, 55, ..., 4975, 4985, 4995 m"
    assert levels_text([2.0], "m") == "its level is 2 m"


# --- the three doors ---------------------------------------------------------------------------
def test_every_level_a_link_writes_reopens_and_one_not_there_is_said(
    sources: DatasetSources,
) -> None:
    for level in LEVELS:
        state = ExplorerState(sources)
        state.var = "ua"
        state.level = level
        fresh = ExplorerState(sources)
        assert fresh.from_url(state.to_url_params()) == []
        assert fresh.level == level and fresh.query == state.query
    for text in MISSING:
        fresh = ExplorerState(sources)
        messages = fresh.from_url({"dataset": "synth", "var": "ua", "level": text})
        assert len(messages) == 1, messages
        assert "not a level" in messages[0] and "1000, 850, 500 hPa" in messages[0]
        assert fresh.level == LEVELS[0]  # the default level, said so: not the nearest


def _export(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["export", *args])
    return code, capsys.readouterr().err


def test_cli_export_refuses_a_level_not_there(
    ds: xr.Dataset, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "synth.nc"
    ds.drop_attrs(deep=False).to_netcdf(source)
    time = str(ds["time"].values[3])[:10]
    out = tmp_path / "map.nc"
    base = ["map", str(source), "--var", "ua", "--time", time, "-o", str(out)]
    code, err = _export([*base, "--level", "600"], capsys)
    assert code != 0 and not out.exists()
    assert "level" in err and "600 is not a level" in err and "1000, 850, 500 hPa" in err, err
    assert "Traceback" not in err
    code, err = _export([*base, "--level", "850"], capsys)
    assert code == 0, err
    with xr.open_dataset(out) as written:
        got = written["ua"].transpose("lat", "lon").values
    np.testing.assert_array_equal(got, ds["ua"].sel(level=850.0).isel(time=3).values)


def test_api_answers_400_for_a_level_not_there(sources: DatasetSources, ds: xr.Dataset) -> None:
    ctx = ApiContext(sources=sources, cache=AnswerCache(2**20))
    base = {"dataset": "synth", "var": "ua", "point": "-45,25"}
    bad_series, bad_map, good = _fetch_all(ctx, [
        "series.csv?" + urlencode(base | {"level": "600"}),
        "map.json?" + urlencode({"dataset": "synth", "var": "ua", "level": "850.5"}),
        "series.csv?" + urlencode(base | {"level": "500"}),
    ])  # fmt: skip
    for answer in (bad_series, bad_map):
        body = json.loads(answer.body)
        assert answer.code == 400 and body["field"] == "level", body
        assert "1000, 850, 500 hPa" in body["message"], body
    assert good.code == 200, good.body[:300]
    values = [float(line.split(",")[1]) for line in good.body.decode().splitlines()[1:]]
    expect = ds["ua"].sel(level=500.0, lon=-45.0, lat=25.0).values
    np.testing.assert_allclose(values, expect, rtol=1e-6)
