"""ExplorerState <-> Query <-> URL, without a browser."""

from __future__ import annotations

import pytest

from app.regions import REGION_PRESETS
from app.sources import DatasetSources
from app.state import ExplorerState
from pipelines import Query
from tests.app_data import make_clim_ds, make_ds


@pytest.fixture(scope="module")
def sources() -> DatasetSources:
    return DatasetSources.from_datasets({"synth": make_ds(), "clim": make_clim_ds()})


@pytest.fixture
def state(sources: DatasetSources) -> ExplorerState:
    return ExplorerState(sources)


def test_defaults_give_a_valid_query(state: ExplorerState) -> None:
    q = state.query
    assert q == Query(dataset="synth", var="tas", time="2000-01-15", bbox=REGION_PRESETS["Global"])
    assert state.map_query.bbox is None
    assert state.series_query == Query(dataset="synth", var="tas", bbox=REGION_PRESETS["Global"])


def test_variable_picker_shows_long_name_and_units(state: ExplorerState) -> None:
    assert state.param.var.names["air temperature (degC)"] == "tas"
    assert state.param.dataset.names["Synthetic climatology"] == "clim"


def test_range_anomaly_level_query(state: ExplorerState) -> None:
    state.var = "ua"
    state.param.update(time_mode="range", start="2001-01-15", end="2001-12-15", agg="std",
                       anomaly=True, baseline_start="2000-01-15", baseline_end="2000-12-15",
                       level=850.0, region="North Pacific")  # fmt: skip
    q = state.query
    assert (q.start, q.end, q.agg, q.level) == ("2001-01-15", "2001-12-15", "std", 850.0)
    assert (q.baseline_start, q.baseline_end) == ("2000-01-15", "2000-12-15")
    assert q.bbox == (120.0, 20.0, -100.0, 60.0)  # crosses the antimeridian
    assert state.cmap in ("coolwarm", "bwy", "bky", "gwv")  # anomalies: diverging


@pytest.mark.parametrize(
    "updates",
    [
        {"var": "tas", "time": "2001-06-15", "region": "Niño 3.4", "cmap": "fire"},
        {
            "var": "ua",
            "level": 500.0,
            "time_mode": "range",
            "start": "2000-03-15",
            "end": "2002-02-15",
            "agg": "max",
        },
        {"region": "Point", "point": (-140.5, 2.25), "clim_mode": "fixed", "clim": (-3.0, 7.5)},
        {
            "region": "Custom box",
            "bbox": (170.0, -10.0, -170.0, 10.0),
            "x_range": (-60.0, 30.0),
            "y_range": (-10.0, 50.0),
        },
        {
            "dataset": "clim",
            "time": "Jul",
            "anomaly": True,
            "baseline_start": "Jan",
            "baseline_end": "Dec",
        },
    ],
)
def test_url_round_trip(sources: DatasetSources, state: ExplorerState, updates: dict) -> None:
    if "dataset" in updates:
        state.dataset = updates.pop("dataset")
    if "var" in updates:
        state.var = updates.pop("var")
    state.param.update(**updates)
    params = state.to_url_params()
    # the Query part of the URL uses the Query's own field names and values
    assert (
        Query.from_url_params({k: v for k, v in params.items() if k in Query.__dataclass_fields__})
        == state.query
    )
    fresh = ExplorerState(sources)
    assert fresh.from_url(params) == []
    assert fresh.query == state.query
    assert fresh.to_url_params() == params
    for name in ("cmap", "clim_mode", "clim", "x_range", "y_range", "region"):
        assert getattr(fresh, name) == getattr(state, name), name


def test_link_with_partial_dates_lands_on_covered_steps(state: ExplorerState) -> None:
    assert state.from_url({"dataset": "synth", "var": "tas", "start": "2001", "end": "2001"}) == []
    assert (state.time_mode, state.start, state.end) == ("range", "2001-01-15", "2001-12-15")
    assert state.from_url({"dataset": "synth", "var": "tas", "time": "2002-03"}) == []
    assert state.time == "2002-03-15"


@pytest.mark.parametrize(
    ("params", "needle", "check"),
    [
        ({"dataset": "nope"}, "Unknown dataset 'nope'", lambda s: s.dataset == "synth"),
        ({"dataset": "synth", "var": "zz"}, "Variable 'zz'", lambda s: s.var == "tas"),
        (
            {"dataset": "synth", "var": "tas", "time": "1990-01"},
            "outside the record",
            lambda s: s.time == "2000-01-15",
        ),
        (
            {"dataset": "synth", "var": "tas", "time": "2001-13"},
            "month",
            lambda s: s.time == "2000-01-15",
        ),
        (
            {"dataset": "synth", "var": "tas", "start": "2002", "end": "2001"},
            "before",
            lambda s: s.time_mode == "step",
        ),
        (
            {"dataset": "synth", "var": "tas", "bbox": "0,50,10,40"},
            "region",
            lambda s: s.region == "Global",
        ),
        (
            {"dataset": "synth", "var": "tas", "bbox": "1,1,1.5,1.5"},
            "no grid cell",
            lambda s: s.region == "Global",
        ),
        ({"dataset": "synth", "var": "tas", "point": "abc,1"}, "region", lambda s: s.point is None),
        (
            {"dataset": "synth", "var": "tas", "level": "850"},
            "no vertical levels",
            lambda s: s.level is None,
        ),
        (
            {"dataset": "synth", "cmap": "<script>"},
            "Unknown colour map",
            lambda s: s.cmap == "rainbow4",
        ),
        ({"dataset": "synth", "clim": "5,1"}, "Ignored clim", lambda s: s.clim_mode == "auto"),
        (
            {"dataset": "synth", "x_range": "nan,3"},
            "Ignored x_range",
            lambda s: s.x_range == (-180.0, 180.0),
        ),
        ({"dataset": "synth", "evil": "1"}, "unknown link parameter 'evil'", lambda s: True),
        (
            {"dataset": "synth", "region": "Atlantis"},
            "Unknown region",
            lambda s: s.region == "Global",
        ),
    ],
)
def test_invalid_link_gives_message_and_default(
    state: ExplorerState, params: dict, needle: str, check
) -> None:
    messages = state.from_url(params)
    assert messages, "expected a message"
    assert needle.lower() in state.message.lower()
    assert check(state)
    assert state.query.dataset  # still a valid Query


def test_from_url_resets_previous_view(state: ExplorerState) -> None:
    state.var = "ua"
    state.param.update(time_mode="range", region="Arctic", cmap="fire")
    state.from_url({"dataset": "synth"})
    assert (state.var, state.time_mode, state.region, state.cmap) == (
        "tas",
        "step",
        "Global",
        "rainbow4",
    )


def test_changing_dataset_keeps_choices_consistent(state: ExplorerState) -> None:
    state.var = "ua"
    state.level = 500.0
    state.dataset = "clim"
    assert state.var == "tas" and state.level is None
    assert state.param.time.objects[0] == "Jan" and state.time == "Jan"
    assert state.query.time == "Jan"
