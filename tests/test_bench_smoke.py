"""Run the benchmark once on tiny data so it cannot rot (the real one is `make bench`)."""

from __future__ import annotations

import json


def test_benchmark_runs_end_to_end_on_tiny_data(tmp_path) -> None:
    from tests.bench.run import main

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
    assert results["virtual"]["gridscope"]["map_frame"]["n"] == 2
