"""Derived stores on an fsspec location (``memory://`` here; ``s3://`` / ``gs://`` alike):
built in a local staging folder, published data first and manifest last, read back
through fsspec by the planner with the same answers as xarray."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
import xarray as xr
import zarr

from data_catalog import open_dataset
from pipelines import Query
from pipelines import derived as derived_module
from pipelines.build import BuildConfig, build_derived
from pipelines.derived import _REGISTERED, derived_dir_for, find_derived
from pipelines.locations import build_to, staging_root, upload_version, write_remote_manifest
from pipelines.planner import plan_map, plan_series
from pipelines.synthetic import SyntheticSpec, write_demo_store

CONFIG = BuildConfig(max_level=2, ts_max_level=2, base_block=4, unit_steps=8, variables=("t2m",))
N, NEW = 40, 8


def _answers(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, str, str]:
    """A range map of the last 12 steps and a point series, through the planner."""
    times = ds["time"].values
    start, end = str(times[-12])[:13], str(times[-1])[:13]
    plan = plan_map(ds, Query(dataset="x", var="t2m", start=start, end=end, agg="mean"))
    lon, lat = float(ds["lon"].values[7]), float(ds["lat"].values[11])
    series = plan_series(ds, Query(dataset="x", var="t2m", point=(lon, lat)))
    return plan.compute().values, series.compute().values, plan.description, series.description


def _brute(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    t2m = ds["t2m"].load()
    return t2m.isel(time=slice(-12, None)).mean("time").values, t2m.isel(lat=11, lon=7).values


def _check(ds: xr.Dataset) -> None:
    got_map, got_series, map_desc, series_desc = _answers(ds)
    want_map, want_series = _brute(ds)
    assert map_desc.startswith("temporal aggregates") and series_desc.startswith("time-series")
    np.testing.assert_allclose(got_map, want_map, rtol=1e-5)
    np.testing.assert_array_equal(got_series, want_series)


@pytest.fixture
def remote_root(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDSCOPE_STAGING_DIR", str(tmp_path / "staging"))
    root = f"memory://gridscope-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("GRIDSCOPE_DERIVED_DIR", root)
    monkeypatch.setattr(derived_module, "MANIFEST_TTL_S", 0.0)
    yield root
    fsspec.filesystem("memory").rm(root.removeprefix("memory://"), recursive=True)


def test_build_publish_and_read_on_memory_url(tmp_path: Path, remote_root: str) -> None:
    full = write_demo_store(SyntheticSpec(nsteps=N + NEW, resolution=6.0, seed=3),
                            tmp_path / "full.zarr", progress=False)  # fmt: skip
    source = tmp_path / "grow.zarr"
    xr.open_zarr(full).isel(time=slice(0, N)).to_zarr(source)
    remote = derived_dir_for(str(source))
    assert isinstance(remote, str) and remote.startswith(remote_root + "/")
    build_to(str(source), remote, scheduler="synchronous", config=CONFIG, progress=False)
    _REGISTERED.pop(str(source), None)  # found through the URL alone, as another process would
    fs = fsspec.filesystem("memory")
    root = remote.removeprefix("memory://")
    manifest = json.loads(fs.cat_file(f"{root}/manifest.json"))
    assert fs.exists(f"{root}/{manifest['data']}/pyramid.zarr/t2m/L1/mean/zarr.json")
    assert not fs.exists(f"{root}/{manifest['data']}/progress")
    # the pyramid's GeoZarr multiscales attributes, read through fsspec by plain zarr
    pyramid = zarr.open_group(f"{remote}/{manifest['data']}/pyramid.zarr", path="t2m", mode="r")
    assert [e["asset"] for e in pyramid.attrs["multiscales"]["layout"]] == ["L1", "L2"]
    assert not list(tmp_path.glob("*.gridscope"))  # nothing beside the source

    old = open_dataset(str(source))
    stores = find_derived(old)
    assert stores is not None and stores.folder == remote
    old_version = stores.version
    _check(old)
    old_answers = _answers(old)

    # a second publish (an append): while its data is uploaded, readers see the old version
    xr.open_zarr(full).isel(time=slice(N, N + NEW)).to_zarr(source, append_dim="time")
    staging = build_derived(str(source), staging_root(remote), scheduler="synchronous",
                            config=CONFIG, progress=False)  # fmt: skip
    _REGISTERED.pop(str(source), None)
    new_manifest = upload_version(staging, remote)
    assert new_manifest["last_build"]["appended_from"] == N
    assert find_derived(old).version == old_version
    during = _answers(old)
    for a, b in zip(during[:2], old_answers[:2], strict=True):
        np.testing.assert_array_equal(a, b)
    grown = open_dataset(str(source))
    assert find_derived(grown) is None  # the new steps are not published yet
    write_remote_manifest(remote, new_manifest)
    # then the new version, whole
    stores = find_derived(grown)
    assert stores is not None and stores.version != old_version
    assert stores.manifest()["fingerprint"]["nsteps"] == N + NEW
    _check(grown)
    assert find_derived(old) is None  # a reader of the old record re-opens the source


def test_cell_stores_are_refused_at_a_url(tmp_path: Path) -> None:
    staging = tmp_path / "s"
    staging.mkdir()
    (staging / "manifest.json").write_text(
        json.dumps({"data": "data-1", "variables": {"tos": {"layout": "cells"}}})
    )
    with pytest.raises(ValueError, match="only be kept on a local disk"):
        upload_version(staging, "memory://refused")


def test_gridscope_build_out_url(tmp_path: Path, remote_root: str, capsys) -> None:
    """``gridscope build SOURCE --out URL`` publishes there; a dataset whose catalog entry
    names the URL is answered from it."""
    from app.cli import main

    source = write_demo_store(SyntheticSpec(nsteps=24, resolution=6.0, seed=4),
                              tmp_path / "src.zarr", progress=False)  # fmt: skip
    args = ["build", str(source), "--out", remote_root, "--scheduler", "synchronous"]
    assert main([*args, "--levels", "1", "--ts-levels", "1", "--unit-steps", "8",
                 "--base-block", "4", "--vars", "t2m"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    remote = derived_dir_for(str(source), remote_root)
    assert f"derived stores complete: {remote}" in out and "variables: t2m" in out
    _REGISTERED.pop(str(source), None)
    ds = open_dataset(str(source))
    ds.attrs["gridscope_derived"] = remote  # as a catalog entry's `derived: {folder: URL}`
    stores = find_derived(ds)
    assert stores is not None and stores.folder == remote
    _check(ds)
