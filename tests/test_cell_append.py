"""gridscope build on a non-regular grid's source that gained time steps: the cell stores
(`pipelines.cell_stores`) are appended, byte-identical to a build from scratch, the work
growing with the new steps only; a source whose grid changed is rebuilt, and says so."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from data_catalog import open_dataset
from pipelines import Query
from pipelines.aggregates import BlockTable
from pipelines.build import BuildConfig, build_derived
from pipelines.derived import DerivedStores
from pipelines.evaluate import compute_map, compute_series
from pipelines.planner import plan_map, plan_series
from pipelines.synthetic_grids import write_grid_store

CONFIG = BuildConfig(max_level=2, ts_max_level=3, base_block=2, unit_steps=8)
N = 29
SHAPES = {"curvilinear": (24, 48), "mesh": (12,)}


@pytest.fixture(scope="module", params=sorted(SHAPES))
def full(request, tmp_path_factory) -> Path:
    kind = request.param
    path = tmp_path_factory.mktemp(kind) / f"{kind}.zarr"
    return write_grid_store(kind, path, N + 40, shape=SHAPES[kind], seed=3, progress=False)


def _build(source: Path, out: Path) -> Path:
    return build_derived(str(source), out, scheduler="synchronous", config=CONFIG,
                         progress=False)  # fmt: skip


def _files(folder: Path) -> dict[str, str]:
    """Every file of the derived arrays and of ``cells/``, and its checksum."""
    folder = DerivedStores(folder).data_folder  # the published version's arrays
    out = {}
    for store in ("pyramid.zarr", "aggregates.zarr", "timeseries.zarr", "cells"):
        for path in sorted((folder / store).rglob("*")):
            if not path.is_file():
                continue
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _grow(full: Path, path: Path, t0: int, t1: int) -> None:
    """Write (``t0 == 0``) or append steps ``[t0, t1)`` of ``full`` to ``path``: the
    time-long arrays grown and copied as stored (an xarray append would rewrite the
    group's attributes without the ``coordinates`` naming the mesh's vertex arrays)."""
    import zarr

    if t0 == 0:
        xr.open_zarr(full).isel(time=slice(t0, t1)).to_zarr(path, consolidated=False)
        return
    for name in ("time", "tos"):
        src = zarr.open_array(full / name, mode="r")
        dst = zarr.open_array(path / name, mode="r+")
        dst.resize((t1, *src.shape[1:]))
        dst[t0:t1] = src[t0:t1]
    grown, whole = xr.open_zarr(path), xr.open_zarr(full).isel(time=slice(0, t1))
    assert grown["time"].equals(whole["time"]) and grown["tos"].equals(whole["tos"])


@pytest.mark.parametrize("new", [6, 40], ids=["within-layout", "past-layout"])
def test_cell_append_equals_a_fresh_build_and_costs_the_new_steps(
    full: Path, tmp_path: Path, new: int
) -> None:
    grow = tmp_path / "grow.zarr"
    _grow(full, grow, 0, N)
    first = _build(grow, tmp_path / "a")
    assert _manifest(first)["variables"]["tos"]["layout"] == "cells"
    _grow(full, grow, N, N + new)
    appended = _build(grow, tmp_path / "a")
    same = tmp_path / "same.zarr"
    xr.open_zarr(grow).to_zarr(same, consolidated=False)
    fresh = _build(same, tmp_path / "b")

    files = _files(appended)
    assert len(files) > 100 and files == _files(fresh)
    manifest = _manifest(appended)
    assert manifest["fingerprint"] == _manifest(fresh)["fingerprint"]
    assert manifest["variables"] == _manifest(fresh)["variables"]

    # work: the units holding new steps (the old record's last, partial unit redone) and
    # the long blocks the new steps complete, per level (native cells and pyramid levels)
    u, total = CONFIG.unit_steps, N + new
    nlevels = 1 + manifest["variables"]["tos"]["max_level"]
    last = manifest["last_build"]
    assert last["appended_from"] == N
    assert last["units"] == math.ceil(total / u) - N // u
    assert _manifest(fresh)["last_build"]["units"] == math.ceil(total / u)
    units = sorted((DerivedStores(appended).data_folder / "progress" / "tos").glob("unit-*"))
    assert len(units) == math.ceil(total / u)
    sizes = [s for s in BlockTable(total, CONFIG.base_block).sizes if s > u]
    assert last["blocks_combined"] == nlevels * sum(total // s - N // s for s in sizes)

    # the planner answers the new steps from the appended stores, as xarray does
    ds = open_dataset(str(grow))
    labels = [str(t)[:10] for t in ds["time"].values]
    f64 = ds.assign(tos=ds["tos"].astype("float64"))
    for agg in ("mean", "max"):
        query = Query(dataset="g", var="tos", start=labels[N - 3], end=labels[-1], agg=agg)
        plan = plan_map(ds, query, viewport=(-60.0, 60.0, -40.0, 40.0), screen=(40, 20))
        assert plan.description.startswith("temporal aggregates of the native cells")
        got = plan.compute().values
        ref = compute_map(f64, query.replace(bbox=(-60.0, -40.0, 60.0, 40.0))).values
        assert got.shape == ref.shape and np.array_equal(np.isnan(got), np.isnan(ref))
        if agg == "max":
            assert np.array_equal(got, ref.astype("float32"), equal_nan=True)
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(ref)))
    query = Query(dataset="g", var="tos", point=(20.0, 10.0), start=labels[N - 2])
    plan = plan_series(ds, query)
    assert plan.description.startswith("time-series copy of the native cells")
    got = plan.compute().values
    assert got.size == total - N + 2
    assert np.array_equal(got, compute_series(ds, query).values, equal_nan=True)


def test_a_changed_grid_is_rebuilt_not_appended(
    full: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A source whose cells moved (here one centre, off the fingerprint's probes) is
    rebuilt whole, with a log line saying why, and equals a fresh build."""
    grow = tmp_path / "grow.zarr"
    _grow(full, grow, 0, N)
    folder = _build(grow, tmp_path / "a")
    ds = xr.open_zarr(full).isel(time=slice(0, N + 6)).load()
    lon = "lon" if "lon" in ds.coords else "clon"
    values = ds[lon].values.copy()
    values.flat[7] += 1e-3
    shutil.rmtree(grow)  # the source rewritten, with its grid moved and 6 more steps
    ds.assign_coords({lon: (ds[lon].dims, values, ds[lon].attrs)}).to_zarr(grow)
    with caplog.at_level(logging.WARNING, logger="pipelines.build"):
        rebuilt = _build(grow, tmp_path / "a")
    assert rebuilt == folder
    assert "rebuilding, not appending: the grid's cell centres changed" in caplog.text
    assert _manifest(rebuilt)["last_build"]["appended_from"] is None
    same = tmp_path / "same.zarr"
    xr.open_zarr(grow).to_zarr(same, consolidated=False)
    assert _files(rebuilt) == _files(_build(same, tmp_path / "b"))
