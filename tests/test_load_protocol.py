"""The headless load client's reading of Bokeh messages (tests/load/protocol.py), no server.

What the load benchmark counts as an update must be the answer's data arriving, not any
patch: a document and patches shaped as Bokeh 3 serialises them (the shapes seen from a
real ``gridscope serve``) are fed to a `ProtocolSession`. The distinct cold API queries
are checked too (a repeated one would be a cache hit counted as cold).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from tests.load.api import cold_queries
from tests.load.protocol import ProtocolSession


def _model(id_: str, name: str, **attributes) -> dict:
    return {"type": "object", "name": name, "id": id_, "attributes": attributes}


def _source(id_: str, *columns: str) -> dict:
    return _model(id_, "ColumnDataSource",
                  data={"type": "map", "entries": [[c, []] for c in columns]})  # fmt: skip


DOC = {
    "roots": [
        _model("w1", "CustomSelect", css_classes=["gs-time"], value="Jan",
               options=["Jan", "Feb", "Mar"]),
        _model("w2", "CustomSelect", css_classes=["gs-var"], value="SST",
               options=[["SST", "sea"], ["AIRT", "air"]]),
        _model("w3", "CustomSelect", css_classes=["gs-region"], value="Global",
               options=[["Global", "Global"], ["Tropics", "Tropics"], ["Point", "Point"],
                        ["Custom box", "Custom box"]]),
        _model("e1", "HTML", css_classes=["markdown", "gs-error"], text=""),
        _model("f1", "Figure", renderers=[_source("s_outline", "lon", "lat"),
                                          _source("s_map", "x", "y", "dw", "dh", "image")]),
        _model("f2", "Figure", renderers=[_source("s_series", "time", "value")]),
    ]
}  # fmt: skip


def _session() -> ProtocolSession:
    session = ProtocolSession("http://127.0.0.1:1", 0)
    session._learn(DOC)
    return session


def test_document_gives_widgets_sources_and_error_box() -> None:
    s = _session()
    assert s.widgets == {"time": "w1", "variable": "w2", "region": "w3"}
    assert s.targets == {"map": "s_map", "series": "s_series"}
    assert s.options["w2"] == ["SST", "AIRT"] and s.values["w1"] == "Jan"
    assert s.error_box == "e1"


def test_only_the_answers_data_counts_as_an_update() -> None:
    s = _session()
    s._apply({"events": [
        {"kind": "ModelChanged", "model": {"id": "s_map"}, "attr": "selected", "new": {}},
        {"kind": "ColumnDataChanged", "model": {"id": "s_outline"}, "attr": "data", "cols": ["lon"]},
        {"kind": "ModelChanged", "model": {"id": "w1"}, "attr": "value", "new": "Mar"},
    ]})  # fmt: skip
    assert s.changes == {"map": 0, "series": 0} and s.values["w1"] == "Mar"
    s._apply({"events": [{"kind": "ColumnDataChanged", "model": {"id": "s_map"}, "attr": "data",
                          "cols": ["image"]}]})  # fmt: skip
    s._apply({"events": [{"kind": "ModelChanged", "model": {"id": "s_series"}, "attr": "data",
                          "new": {}}]})  # fmt: skip
    assert s.changes == {"map": 1, "series": 1}
    s._apply({"events": [{"kind": "ModelChanged", "model": {"id": "w3"}, "attr": "options",
                          "new": [["Arctic", "Arctic"]]}]})  # fmt: skip
    assert s.options["w3"] == ["Arctic"]


def test_text_in_the_error_box_is_an_error() -> None:
    s = _session()
    s._apply(
        {"events": [{"kind": "ModelChanged", "model": {"id": "e1"}, "attr": "text", "new": ""}]}
    )
    assert s.stats.errors == []
    s._apply({"events": [{"kind": "ModelChanged", "model": {"id": "e1"}, "attr": "text",
                          "new": "Could not compute"}]})  # fmt: skip
    assert len(s.stats.errors) == 1 and "Could not compute" in s.stats.errors[0]


def test_cold_queries_are_distinct_and_cover_each_endpoint() -> None:
    paths = cold_queries(90, seed=3)
    assert len(set(paths)) == 90
    endpoints = [p.split("?")[0].rsplit("/", 1)[-1] for p in paths]
    assert {e: endpoints.count(e) for e in set(endpoints)} == {
        "map.json": 30, "map.png": 30, "series.json": 30,
    }  # fmt: skip
    for path in paths:
        params = dict(parse_qsl(path.split("?")[1]))
        assert params["dataset"] == "coads"
        assert ("point" in params) == path.startswith("/api/v1/series.json")
    assert cold_queries(90, seed=3) == paths  # seeded


def test_region_choices_are_presets_with_an_answer_of_their_own() -> None:
    """'Point' and 'Custom box' wait for a click or a box: no series comes by itself."""
    import asyncio

    s = _session()
    sent = []

    async def send(msgtype, content):
        sent.append(content["events"][0]["new"])
        s._apply({"events": [{"kind": "ColumnDataChanged", "model": {"id": "s_series"},
                              "attr": "data", "cols": ["value"]}]})  # fmt: skip

    s._send = send
    loop = asyncio.new_event_loop()
    try:
        s._reader = loop.create_future()  # a reader that is running
        for _ in range(20):
            assert loop.run_until_complete(s.act("region")) is not None
    finally:
        loop.close()
    assert set(sent) <= {"Global", "Tropics"} and s.stats.errors == []
