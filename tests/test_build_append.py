"""gridscope build on a source that gained time steps: an append, byte-identical to a
build from scratch, whose work grows with the new steps only."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipelines import Query
from pipelines.aggregates import BlockTable
from pipelines.build import BuildConfig, build_derived
from pipelines.derived import DerivedStores
from pipelines.synthetic import SyntheticSpec, write_demo_store

CONFIG = BuildConfig(max_level=2, ts_max_level=3, base_block=4, unit_steps=16, variables=("t2m",))
N = 100


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("append") / "full.zarr"
    write_demo_store(SyntheticSpec(nsteps=N + 60, resolution=6.0, seed=5), path, progress=False)
    return path


def _files(folder: Path) -> dict[str, str]:
    """Every file of the derived arrays (data chunks and metadata) and its checksum."""
    folder = DerivedStores(folder).data_folder  # the published version's arrays
    out = {}
    for store in ("pyramid.zarr", "aggregates.zarr", "timeseries.zarr"):
        for path in sorted((folder / store).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("new", [20, 60], ids=["within-layout", "past-layout"])
def test_append_equals_a_fresh_build_and_costs_the_new_steps(
    full: Path, tmp_path: Path, new: int
) -> None:
    raw = xr.open_zarr(full)
    grow = tmp_path / "grow.zarr"
    raw.isel(time=slice(0, N)).to_zarr(grow)
    first = build_derived(str(grow), tmp_path / "a", scheduler="synchronous", config=CONFIG,
                          progress=False)  # fmt: skip
    assert _manifest(first)["fingerprint"]["nsteps"] == N
    raw.isel(time=slice(N, N + new)).to_zarr(grow, append_dim="time")
    appended = build_derived(str(grow), tmp_path / "a", scheduler="synchronous", config=CONFIG,
                             progress=False)  # fmt: skip
    same = tmp_path / "same.zarr"
    xr.open_zarr(grow).to_zarr(same)
    fresh = build_derived(str(same), tmp_path / "b", scheduler="synchronous", config=CONFIG,
                          progress=False)  # fmt: skip

    files = _files(appended)
    assert len(files) > 100 and files == _files(fresh)
    manifest = _manifest(appended)
    assert manifest["fingerprint"] == _manifest(fresh)["fingerprint"]
    assert manifest["variables"] == _manifest(fresh)["variables"]
    assert not [p for p in appended.rglob("*relayout*")]

    # work: the units holding new steps (the old record's last, partial unit redone) and
    # the long blocks the new steps complete, per variable and level
    u, nvars, nlevels = CONFIG.unit_steps, 1, CONFIG.max_level + 1
    total = N + new
    last = manifest["last_build"]
    assert last["appended_from"] == N
    assert last["units"] == nvars * (math.ceil(total / u) - N // u)
    assert _manifest(fresh)["last_build"]["units"] == nvars * math.ceil(total / u)
    sizes = [s for s in BlockTable(total, CONFIG.base_block).sizes if s > u]
    assert last["blocks_combined"] == nvars * nlevels * sum(total // s - N // s for s in sizes)


def test_appended_stores_answer_the_new_steps(full: Path, tmp_path: Path) -> None:
    """After an append the planner answers over the whole new record from the stores
    (exact vs xarray), under a new store version; the old record no longer matches."""
    from app.sources import DatasetSources
    from data_catalog import open_dataset
    from pipelines.derived import find_derived
    from pipelines.planner import plan_map

    raw = xr.open_zarr(full)
    grow = tmp_path / "grow.zarr"
    raw.isel(time=slice(0, N)).to_zarr(grow)
    build_derived(str(grow), scheduler="synchronous", config=CONFIG, progress=False)
    server = DatasetSources({str(grow): "growing"}, lambda key: open_dataset(key))
    before = server.open(str(grow))
    assert len(server.info(str(grow)).times) == N and server.open(str(grow)) is before
    version = find_derived(before).version
    raw.isel(time=slice(N, N + 28)).to_zarr(grow, append_dim="time")
    assert server.open(str(grow)) is before  # the stores do not hold the new steps yet
    build_derived(str(grow), scheduler="synchronous", config=CONFIG, progress=False)
    assert find_derived(before) is None  # the old record's dataset: brute force, exact
    after = server.open(str(grow))  # a running server re-opens the grown source
    assert after.sizes["time"] == N + 28 and len(server.info(str(grow)).times) == N + 28
    stores = find_derived(after)
    assert stores is not None and stores.version != version
    query = Query(dataset="x", var="t2m", agg="max")
    plan = plan_map(after, query)
    assert plan.description.startswith("temporal aggregates level 0")
    expected = after["t2m"].max("time").values
    np.testing.assert_array_equal(plan.compute().values, expected)


def test_an_interrupted_append_resumes_and_keeps_the_old_version_published(
    full: Path, tmp_path: Path
) -> None:
    """Killed part-way (here: stopped after one unit), the append left the published
    version as it was; the next run finishes it, byte-identical to a fresh build."""
    raw = xr.open_zarr(full)
    grow = tmp_path / "grow.zarr"
    raw.isel(time=slice(0, N)).to_zarr(grow)
    folder = build_derived(str(grow), tmp_path / "a", scheduler="synchronous", config=CONFIG,
                           progress=False)  # fmt: skip
    published = (folder / "manifest.json").read_bytes()
    raw.isel(time=slice(N, N + 60)).to_zarr(grow, append_dim="time")
    build_derived(str(grow), tmp_path / "a", scheduler="synchronous", config=CONFIG,
                  progress=False, stop_after_units=1)  # fmt: skip
    assert (folder / "manifest.json").read_bytes() == published
    assert (folder / "manifest.next.json").exists()
    build_derived(str(grow), tmp_path / "a", scheduler="synchronous", config=CONFIG,
                  progress=False)  # fmt: skip
    assert not (folder / "manifest.next.json").exists()
    assert _manifest(folder)["fingerprint"]["nsteps"] == N + 60
    same = tmp_path / "same.zarr"
    xr.open_zarr(grow).to_zarr(same)
    fresh = build_derived(str(same), tmp_path / "b", scheduler="synchronous", config=CONFIG,
                          progress=False)  # fmt: skip
    assert _files(folder) == _files(fresh)
