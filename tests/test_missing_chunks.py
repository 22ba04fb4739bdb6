"""Deleted chunk files of derived stores: named in words, never read as fill values.

zarr reads a missing chunk file as the array's fill value, so a deleted chunk of a
built store would silently give wrong maps and series. Each test damages a copy of
one small build (4-degree demo store, 100 daily steps), checks that the planner still
answers exactly like brute force on the raw data (or on the level-L dataset for a
level-L map; tolerances as in tests/properties/test_planner_properties.py), that the
problem names the variable and the array, and that on the undamaged copy the same
query does use the damaged array (so the check can fail).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipelines import Query, compute_map, compute_series
from pipelines.aggregates import BlockTable, layout_steps_for
from pipelines.build import BuildConfig, build_derived
from pipelines.derived import DerivedStores, find_derived
from pipelines.planner import plan_map, plan_series
from pipelines.pyramid import level_dataset
from pipelines.synthetic import SyntheticSpec, write_demo_store

CONFIG = BuildConfig(max_level=2, ts_max_level=3, base_block=4, unit_steps=16, variables=("sst",))
NSTEPS = 100
#: steps 4..79: blocks 4@1, 8@1, 16@1, 32@1 (steps 32..63), 8@8, 8@9
RANGE = Query(dataset="x", var="sst", start="1980-01-05", end="1980-03-20", agg="mean")
BOX = (-60.0, -20.0, 60.0, 40.0)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, xr.Dataset, xr.Dataset]:
    """(source path, pristine derived folder, lazy dataset, in-memory dataset)."""
    from data_catalog import open_dataset

    root = tmp_path_factory.mktemp("missing-chunks")
    source = root / "src.zarr"
    write_demo_store(SyntheticSpec(nsteps=NSTEPS, resolution=4.0, seed=5), source, progress=False)
    folder = build_derived(
        str(source), root / "pristine", scheduler="synchronous", config=CONFIG, progress=False
    )
    ds = open_dataset(str(source))
    return source, folder, ds, ds.load()


def _damaged_copy(built, tmp_path: Path, *chunks: str) -> tuple[Path, xr.Dataset]:
    """A copy of the build with ``chunks`` (paths under the folder) deleted, and the
    dataset pointing at it."""
    _, pristine, ds, _ = built
    folder = tmp_path / "damaged" / pristine.name
    shutil.copytree(pristine, folder)
    data = DerivedStores(folder).data_folder  # the published version's arrays
    for chunk in chunks:
        (data / chunk).unlink()
    return folder, ds.assign_attrs(gridscope_derived=str(folder))


def _pristine(built) -> xr.Dataset:
    return built[2].assign_attrs(gridscope_derived=str(built[1]))


def _problems(ds: xr.Dataset) -> list[str]:
    derived = find_derived(ds)
    assert derived is not None
    return derived.problems


def _assert_map_equal(got: xr.DataArray, ref: xr.DataArray) -> None:
    np.testing.assert_array_equal(got["lat"].values, ref["lat"].values)
    np.testing.assert_array_equal(got["lon"].values, ref["lon"].values)
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-5, atol=0)


def _row_of_16_block() -> int:
    """The flat row of the 16-step block of steps 64..79, which the range's plan reads."""
    layout = layout_steps_for(NSTEPS, CONFIG.base_block)  # the build's flat layout
    return BlockTable(NSTEPS, CONFIG.base_block, layout_steps=layout).flat_index(16, 4)


def test_deleted_aggregate_chunk_is_reported_and_the_map_stays_exact(
    built, tmp_path, caplog
) -> None:
    memory = built[3]
    reference = compute_map(memory, RANGE)
    before = plan_map(_pristine(built), RANGE)
    assert before.description.startswith("temporal aggregates level 0")
    # steps 4..79: blocks 0..63 and 64..79 less 0..3; 64..79's count chunk is deleted below
    assert "blocks [1x64, 1x16] - blocks [1x4]" in before.description
    _assert_map_equal(before.compute(), reference)

    row = _row_of_16_block()
    folder, ds = _damaged_copy(built, tmp_path, f"aggregates.zarr/sst/L0/count/c/{row}/0/0")
    with caplog.at_level(logging.WARNING, logger="pipelines.derived"):
        after = plan_map(ds, RANGE)
    assert after.description.startswith("brute force on the raw data")
    _assert_map_equal(after.compute(), reference)

    assert getattr(find_derived(ds), "folder", None) == folder
    (problem,) = _problems(ds)
    assert "variable 'sst'" in problem and "aggregates.zarr/sst/L0/count" in problem
    assert "1 of its" in problem and "temporal aggregates of level 0 are not used" in problem
    assert str(built[0]) in problem  # the dataset
    assert problem in caplog.text


def test_without_the_check_the_deleted_chunk_gives_wrong_numbers(built, tmp_path) -> None:
    """The hazard itself: a manifest without array records (an older build) is used
    unverified, and the same deletion then changes the answer."""
    row = _row_of_16_block()
    folder, ds = _damaged_copy(built, tmp_path, f"aggregates.zarr/sst/L0/count/c/{row}/0/0")
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["variables"]["sst"]["arrays"]
    (folder / "manifest.json").write_text(json.dumps(manifest))

    import zarr

    data = DerivedStores(folder).data_folder
    count = zarr.open_array(data / "aggregates.zarr", path="sst/L0/count", mode="r")
    assert not np.any(count[row])  # the deleted chunk reads as the fill value 0

    plan = plan_map(ds, RANGE)
    assert plan.description.startswith("temporal aggregates level 0")
    assert _problems(ds) == []
    got, ref = plan.compute().values, compute_map(built[3], RANGE).values
    valid = ~np.isnan(ref)
    assert not np.allclose(got[valid], ref[valid], rtol=1e-3)


def test_deleted_coarse_aggregate_chunk_falls_back_to_the_pyramid_level(built, tmp_path) -> None:
    screen = (40, 20)  # 90 x 45 cells: level 1 (45 x 23) is the coarsest with enough pixels
    before = plan_map(_pristine(built), RANGE, screen=screen)
    assert before.description.startswith("temporal aggregates level 1")
    reference = compute_map(level_dataset(built[3], 1, "mean"), RANGE)
    _assert_map_equal(before.compute(), reference)

    row = _row_of_16_block()
    _, ds = _damaged_copy(built, tmp_path, f"aggregates.zarr/sst/L1/sum/c/{row}/0/0")
    after = plan_map(ds, RANGE, screen=screen)
    assert after.description == "brute force on pyramid level 1 (mean field)"
    _assert_map_equal(after.compute(), reference)
    (problem,) = _problems(ds)
    assert "aggregates.zarr/sst/L1/sum" in problem and "level 1 are not used" in problem


def test_deleted_pyramid_chunk_caps_the_level(built, tmp_path) -> None:
    step = Query(dataset="x", var="sst", time="1980-01-10")  # step 9: level-2 chunk 9 // 4
    screen = (20, 10)
    before = plan_map(_pristine(built), step, screen=screen)
    assert before.level == 2 and before.description.startswith("pyramid level 2")

    _, ds = _damaged_copy(built, tmp_path, "pyramid.zarr/sst/L2/mean/c/2/0/0")
    after = plan_map(ds, step, screen=screen)
    assert after.level == 1 and after.description.startswith("pyramid level 1")
    reference = compute_map(level_dataset(built[3], 1, "mean"), step)
    np.testing.assert_array_equal(after.compute().values, reference.values)
    (problem,) = _problems(ds)
    assert "pyramid.zarr/sst/L2/mean" in problem and "levels 2 and coarser" in problem


#: a point inside the deleted values chunk below (lat index 35, lon index 10)
POINT = (-138.0, 52.0)


@pytest.mark.parametrize(
    ("chunk", "region_plan", "named"),
    [
        (
            "timeseries.zarr/sst/L2/mean/c/0/0/0",
            "time-series copy, ",
            "timeseries.zarr/sst/L2/mean",
        ),
        ("timeseries.zarr/sst/values/c/1/1/0", "brute force", "timeseries.zarr/sst/values"),
    ],
)
def test_deleted_timeseries_chunk_is_reported_and_the_series_stays_exact(
    built, tmp_path, chunk, region_plan, named
) -> None:
    region, point = RANGE.replace(bbox=BOX), RANGE.replace(point=POINT)
    before = plan_series(_pristine(built), region)
    # ts_max_level 3 stores level 2 (pipelines.timeseries_store.stored_levels)
    assert before.description.startswith("time-series copy") and "levels [0, 2]" in (
        before.description
    )
    assert plan_series(_pristine(built), point).description.startswith(
        "time-series copy, cell (35, 10)"
    )
    reference = compute_series(built[3], region)
    np.testing.assert_allclose(before.compute().values, reference.values, rtol=1e-6)

    _, ds = _damaged_copy(built, tmp_path, chunk)
    after = plan_series(ds, region)
    assert after.description.startswith(region_plan)
    if region_plan.startswith("time-series"):
        assert "levels [0]," in after.description  # level 2 not used
    np.testing.assert_allclose(after.compute().values, reference.values, rtol=1e-6)
    np.testing.assert_allclose(
        plan_series(ds, point).compute().values,
        compute_series(built[3], point).values,
        rtol=1e-6,
    )
    (problem,) = _problems(ds)
    assert named in problem and "variable 'sst'" in problem


def test_rebuild_restores_a_damaged_variable(built, tmp_path) -> None:
    row = _row_of_16_block()
    folder, ds = _damaged_copy(built, tmp_path, f"aggregates.zarr/sst/L0/count/c/{row}/0/0")
    assert _problems(ds)
    rebuilt = build_derived(
        str(built[0]), folder.parent, scheduler="synchronous", config=CONFIG, progress=False
    )
    assert rebuilt == folder
    assert _problems(ds) == []
    plan = plan_map(ds, RANGE)
    assert plan.description.startswith("temporal aggregates level 0")
    _assert_map_equal(plan.compute(), compute_map(built[3], RANGE))


def test_dashboard_names_the_damaged_array_without_paths(built, tmp_path) -> None:
    """The build panel shows the problem in words (scrubbed of paths); none when intact."""
    from app.sources import DatasetSources
    from app.state import ExplorerState
    from app.views.build_view import BuildView

    def panel_for(ds: xr.Dataset) -> BuildView:
        state = ExplorerState(DatasetSources.from_datasets({"demo": ds}))
        state.var = "sst"
        return BuildView(state)

    assert not panel_for(_pristine(built)).damage.visible
    row = _row_of_16_block()
    _, ds = _damaged_copy(built, tmp_path, f"aggregates.zarr/sst/L0/count/c/{row}/0/0")
    shown = panel_for(ds).damage
    assert shown.visible
    assert "variable 'sst'" in shown.object and "L0/count" in shown.object
    assert "gridscope build" in shown.object
    assert str(tmp_path) not in shown.object and str(built[0]) not in shown.object
