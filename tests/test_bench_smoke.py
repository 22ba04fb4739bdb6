"""Run the benchmark once on tiny data so it cannot rot (the real one is `make bench`)."""

from __future__ import annotations

import json


def test_benchmark_runs_end_to_end_on_tiny_data(tmp_path) -> None:
    from tests.bench.run import QUERIES, main

    out = tmp_path / "latest.json"
    code = main(
        [
            "--sizes",
            "1MB,10MB",
            "--virtual-size",
            "50MB",
            "--queries",
            "2",
            "--resolution",
            "4",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--scheduler",
            "synchronous",
            "--screen",
            "40,20",
            "--grid-shape",
            "20x40",
            "--grid-mesh",
            "12",
            "--grid-steps",
            "16,16",
            "--grid-ts-levels",
            "3",
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    for size in ("1MB", "10MB"):
        for side in ("gridscope", "naive"):
            assert set(results["sizes"][size][side]) == {
                "map_frame",
                "range_map",
                "point_series",
                "area_series",
            }
    for size in ("1MB", "10MB"):  # storage, build speed and append (issue 14's "done when")
        sec = results["sizes"][size]
        assert sec["raw_bytes"] > 0 and sec["derived_bytes"] > 0 and sec["build_fresh"]
        assert sec["build_mb_per_s"] > 0 and sec["append_seconds"] > 0
        assert sec["append_from"] + sec["append_steps"] == sec["nsteps"]
    assert results["virtual"]["gridscope"]["map_frame"]["n"] == 2
    # the non-regular grid rows (curvilinear, and an unstructured triangle mesh) with their
    # naive baselines
    assert {sec["kind"] for sec in results["grids"].values()} == {"curvilinear", "mesh"}
    for sec in results["grids"].values():
        assert sec["raw_bytes"] > 0 and sec["derived_bytes"] > 0 and sec["build_mb_per_s"] > 0
        for side in ("gridscope", "naive"):
            assert {"map_frame", "range_map", "point_series", "area_series"} <= set(sec[side])
            assert all(sec[side][q]["n"] == 2 for q in QUERIES)
