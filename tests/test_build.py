"""gridscope build: derived stores, manifest pickup without restart, resumability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines import Query
from pipelines.build import BuildConfig, build_derived
from pipelines.planner import plan_map, plan_series
from pipelines.synthetic import SyntheticSpec, write_demo_store
from tests.pipelines_data import store_checksums

CONFIG = BuildConfig(max_level=2, ts_max_level=3, base_block=4, unit_steps=16)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("build") / "src.zarr"
    write_demo_store(SyntheticSpec(nsteps=100, resolution=4.0, seed=2), path, progress=False)
    return path


def test_planner_uses_levels_once_built_without_restart(source: Path, tmp_path: Path) -> None:
    from data_catalog import open_dataset

    os.environ["GRIDSCOPE_DERIVED_DIR"] = str(tmp_path)
    try:
        ds = open_dataset(str(source))
        query = Query(dataset="x", var="t2m", start="1980-01-05", end="1980-03-20", agg="max")
        before = plan_map(ds, query)
        assert before.description.startswith("brute force")
        reference = before.compute()
        series_before = plan_series(
            ds, query.replace(agg="mean", bbox=(-60, -20, 60, 40))
        ).compute()
        folder = build_derived(str(source), scheduler="synchronous", config=CONFIG, progress=False)
        assert folder.parent == tmp_path and (folder / "manifest.json").exists()
        after = plan_map(ds, query)
        assert after.description.startswith("temporal aggregates level 0")
        assert after.estimated_bytes < before.estimated_bytes
        np.testing.assert_array_equal(after.compute().values, reference.values)
        series = plan_series(ds, query.replace(agg="mean", bbox=(-60, -20, 60, 40)))
        assert series.description.startswith("time-series copy")
        np.testing.assert_allclose(series.compute().values, series_before.values, rtol=1e-6)
    finally:
        del os.environ["GRIDSCOPE_DERIVED_DIR"]


def test_build_cli_with_dask_cluster(source: Path, tmp_path: Path) -> None:
    from app.cli import main

    assert (
        main(
            [
                "build",
                str(source),
                "--out",
                str(tmp_path),
                "--levels",
                "1",
                "--ts-levels",
                "2",
                "--base-block",
                "4",
                "--unit-steps",
                "32",
                "--vars",
                "sst",
            ]
        )
        == 0
    )
    manifest = next(tmp_path.glob("*/manifest.json")).read_text()
    assert '"pyramid": true' in manifest and '"sst"' in manifest and '"t2m"' not in manifest


def test_killed_build_resumes_to_identical_bytes(source: Path, tmp_path: Path) -> None:
    clean = build_derived(
        str(source), tmp_path / "clean", scheduler="synchronous", config=CONFIG, progress=False
    )
    code = (
        "import sys, time; from pipelines.build import BuildConfig, build_derived; "
        "import pipelines.build as b; orig = b._run_unit\n"
        "def slow(*a):\n    r = orig(*a); time.sleep(0.3); return r\n"
        "b._run_unit = slow\n"
        f"build_derived({str(source)!r}, {str(tmp_path / 'killed')!r}, scheduler='synchronous', "
        "config=BuildConfig(max_level=2, ts_max_level=3, base_block=4, unit_steps=16), progress=False)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent
    )
    progress = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list((tmp_path / "killed").glob("*/data-*/progress/t2m/*.done"))
        if len(found) >= 3:
            progress = found[0].parents[2]  # the data folder of the version being built
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert progress is not None, "the build made no progress before the kill"
    done_before = {p.name for p in progress.glob("progress/*/*.done")}
    assert 3 <= len(done_before) < 14
    marker_times = {p: p.stat().st_mtime_ns for p in progress.glob("progress/*/*.done")}
    resumed = build_derived(
        str(source), tmp_path / "killed", scheduler="synchronous", config=CONFIG, progress=False
    )
    assert all(p.stat().st_mtime_ns == t for p, t in marker_times.items()), (
        "completed units were redone"
    )
    assert store_checksums(resumed) == store_checksums(clean)
    assert len(store_checksums(clean)) > 50


def test_a_store_from_another_normalisation_or_other_areas_is_not_used(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store built before a fix to masking or areas must not keep serving old numbers."""
    import pipelines.derived as derived
    from data_catalog import open_dataset

    monkeypatch.setenv("GRIDSCOPE_DERIVED_DIR", str(tmp_path))
    ds = open_dataset(str(source))
    build_derived(str(source), scheduler="synchronous", config=CONFIG, progress=False)
    assert derived.find_derived(ds) is not None
    monkeypatch.setattr(derived, "NORMALISATION_VERSION", derived.NORMALISATION_VERSION + 1)
    assert derived.find_derived(ds) is None
    monkeypatch.undo()
    monkeypatch.setenv("GRIDSCOPE_DERIVED_DIR", str(tmp_path))
    assert derived.find_derived(ds) is not None
    other_areas = ds.assign_coords(cell_area=ds["cell_area"] * 1.001)
    assert derived.find_derived(other_areas) is None
    query = Query(dataset="x", var="t2m", start="1980-01-05", end="1980-03-20", agg="mean")
    assert plan_map(other_areas, query).description.startswith("brute force")
