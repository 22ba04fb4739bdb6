"""How many pyramid / aggregate levels a default build stores (`pipelines.pyramid.levels_needed`):
levels down to the first one of at most `LEVEL_CELLS` cells, and none for a grid that small."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import pipelines.pyramid as pyramid
from app.cli import main
from pipelines import Query
from pipelines.build import BuildConfig, build_derived, open_source
from pipelines.cell_stores import pyramid_shapes
from pipelines.derived import DerivedStores
from pipelines.evaluate import compute_map
from pipelines.planner import plan_map
from pipelines.pyramid import level_dataset
from pipelines.synthetic_grids import write_grid_store


def _regular(ny: int, nx: int, nt: int = 2) -> xr.Dataset:
    lat = np.linspace(-90.0, 90.0, ny)
    lon = -180.0 + (np.arange(nx) + 0.5) * 360.0 / nx
    rng = np.random.default_rng(ny)
    return xr.Dataset(
        {"sst": (("time", "lat", "lon"), rng.normal(290.0, 5.0, (nt, ny, nx)).astype("f4"))},
        coords={"time": pd.date_range("2001-01-01", periods=nt, freq="D"), "lat": lat, "lon": lon},
    )


def _first_small(counts: list[int], limit: int) -> int:
    return next((i for i, n in enumerate(counts) if n <= limit), len(counts) - 1)


@pytest.mark.parametrize("ny, nx", [(721, 1440), (1801, 3600), (4321, 8640), (73, 144)])
def test_regular_grids_get_levels_down_to_one_of_a_million_cells(ny, nx) -> None:
    ds = _regular(ny, nx, nt=1)
    counts = [math.ceil(ny / 2**k) * math.ceil(nx / 2**k) for k in range(9)]
    want = _first_small(counts, 2**20)
    assert BuildConfig().for_grid(ds).max_level == want
    assert counts[want] <= 2**20 and (want == 0 or counts[want - 1] > 2**20)
    # an explicit level is kept as given
    assert BuildConfig(max_level=3).for_grid(ds).max_level == 3


def test_a_quarter_degree_global_grid_needs_no_coarser_level() -> None:
    """721 x 1440 = 1,038,240 cells: a screen-sized frame of it is already within the
    targets, so a default build stores no level above it."""
    assert BuildConfig().for_grid(_regular(721, 1440, nt=1)).max_level == 0


def test_cell_stores_count_their_own_levels(tmp_path, monkeypatch) -> None:
    path = write_grid_store("curvilinear", tmp_path / "c.zarr", 3, shape=(60, 120), progress=False)
    from data_catalog.grid import grid_of

    ds = open_source(str(path))
    area = grid_of(ds).area
    counts = [area.size] + [2 * n * n for n in pyramid_shapes(area, 8)]
    for limit in (counts[0], counts[1] - 1, 0):
        monkeypatch.setattr(pyramid, "LEVEL_CELLS", limit)
        assert BuildConfig().for_grid(ds).max_level == _first_small(counts, limit)


def test_a_default_build_stores_only_the_levels_needed_and_answers_exactly(
    tmp_path, monkeypatch
) -> None:
    """With the limit between level 1 and level 0 of a 96 x 192 grid, a default build
    stores level 1 and nothing coarser, records it (so an append resolves to the same
    configuration), and answers a small screen from level 1 exactly."""
    ds = _regular(96, 192, nt=16)
    source = tmp_path / "src.zarr"
    ds.to_zarr(source, mode="w")
    monkeypatch.setattr(pyramid, "LEVEL_CELLS", 48 * 96)
    config = BuildConfig(base_block=4, unit_steps=8, ts_max_level=2)
    folder = build_derived(str(source), out=tmp_path / "d", scheduler="synchronous",
                           config=config, progress=False)  # fmt: skip
    stores = DerivedStores(folder)
    manifest = stores.manifest()
    assert manifest["config"]["max_level"] == 1
    assert manifest["variables"]["sst"]["max_level"] == 1
    levels = zarr.open_group(stores.data_folder / "pyramid.zarr", mode="r")["sst"]
    assert sorted(name for name, _ in levels.groups()) == ["L1"]

    opened = open_source(str(source))
    query = Query(dataset="src", var="sst", time=str(ds.time.values[3])[:10])
    got = plan_map(opened, query, screen=(60, 30)).compute()
    assert got.sizes["lat"] == 48, "answered at level 1"
    want = compute_map(level_dataset(opened.load(), 1, "mean"), query)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-6)

    # the source grows: the same default configuration appends instead of rebuilding
    more = _regular(96, 192, nt=24).isel(time=slice(16, 24))
    more.to_zarr(source, append_dim="time")
    again = build_derived(str(source), out=tmp_path / "d", scheduler="synchronous",
                          config=config, progress=False)  # fmt: skip
    assert DerivedStores(again).manifest()["last_build"].get("appended_from") == 16


def test_the_build_command_takes_auto_or_a_level(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--levels", "nine", "somewhere"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'nine': give 'auto' or a level from 0 to 8" in err
