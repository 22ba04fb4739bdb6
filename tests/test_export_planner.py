"""gridscope export answers through the planner: derived stores after a build, the cost
estimate first on stderr, ``--max-bytes`` refusing before anything is read."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from app.cli import main
from pipelines.synthetic import SyntheticSpec, write_demo_store
from tests.dask_processes import tasks_done

BOX = (-61.0, -21.0, 59.0, 41.0)  # W, S, E, N: edges between the 4-degree cell centres
START, END = "1980-01-01", "1980-03-04"  # steps 0..63: whole aggregate blocks, no raw edge
RANGE = ["--start", START, "--end", END]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """A small source, the brute-force answers (xarray on the raw data) and its derived
    stores (next to it); then the raw t2m chunks are deleted, so only the derived stores
    can give the right numbers (zarr would read the missing chunks as NaN)."""
    from data_catalog import open_dataset

    source = tmp_path_factory.mktemp("export") / "src.zarr"
    write_demo_store(SyntheticSpec(nsteps=100, resolution=4.0, seed=3), source, progress=False)
    ds = open_dataset(str(source))
    t2m = ds["t2m"].sel(time=slice(START, END)).astype("float64").load()
    assert t2m.sizes["time"] == 64
    inside = t2m.sel(lat=slice(BOX[1], BOX[3]), lon=slice(BOX[0], BOX[2]))
    weights = ds["cell_area"].sel(lat=slice(BOX[1], BOX[3]), lon=slice(BOX[0], BOX[2]))
    valid = inside.notnull()
    expected = {
        "mean": t2m.mean("time").values,
        "max": t2m.max("time").values,
        "std": t2m.std("time").values,
        "box": (
            (inside.fillna(0) * weights).sum(("lat", "lon")) / (valid * weights).sum(("lat", "lon"))
        ).values,  # fmt: skip
        "point": ds["t2m"].sel(time=slice(START, END)).sel(lon=100.0, lat=-30.0).values,
        "lat": t2m["lat"].values,
        "lon": t2m["lon"].values,
    }
    code = main(["build", str(source), "--scheduler", "synchronous", "--levels", "2",
                 "--ts-levels", "3", "--base-block", "4", "--unit-steps", "16"])  # fmt: skip
    assert code == 0
    shutil.rmtree(source / "t2m" / "c")
    return source, expected


def _export(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["export", *args])
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("agg", ["mean", "max", "std"])
def test_range_map_comes_from_the_aggregates_and_equals_brute_force(
    built, tmp_path: Path, capsys: pytest.CaptureFixture, agg: str
) -> None:
    source, expected = built
    out = tmp_path / "map.nc"
    code, err = _export(["map", str(source), "--var", "t2m", *RANGE, "--agg", agg, "-o", str(out)],
                        capsys)  # fmt: skip
    assert code == 0, err
    assert err[0].startswith("gridscope export: reads about ")
    assert "temporal aggregates level 0" in err[0] and "+ 0 raw steps" in err[0]
    with xr.open_dataset(out) as written:
        values = written["t2m"].transpose("lat", "lon").values
        np.testing.assert_array_equal(written["lat"].values, expected["lat"])
        np.testing.assert_array_equal(written["lon"].values, expected["lon"])
        assert "gridscope_level" not in written["t2m"].attrs
    assert np.isfinite(values).all()
    if agg == "max":
        np.testing.assert_array_equal(values, expected[agg])
    else:
        np.testing.assert_allclose(values, expected[agg], rtol=1e-5)


@pytest.mark.parametrize("where", ["point", "box"])
def test_series_come_from_the_time_series_copy_and_equal_brute_force(
    built, tmp_path: Path, capsys: pytest.CaptureFixture, where: str
) -> None:
    source, expected = built
    out = tmp_path / "series.csv"
    region = ["--point", "100,-30"] if where == "point" else ["--bbox", ",".join(map(str, BOX))]
    code, err = _export(["series", str(source), "--var", "t2m", *RANGE, *region, "-o", str(out)],
                        capsys)  # fmt: skip
    assert code == 0, err
    assert err[0].startswith("gridscope export: reads about ")
    assert "time-series copy" in err[0]
    rows = out.read_text().splitlines()
    assert rows[0] == "time,t2m" and len(rows) == 65
    values = np.array([float(r.split(",")[1]) for r in rows[1:]])
    np.testing.assert_allclose(values, expected[where], rtol=1e-5)


def test_max_bytes_refuses_before_reading(built, tmp_path: Path, capsys) -> None:
    source, _ = built
    out = tmp_path / "map.nc"
    code, err = _export(["map", str(source), "--var", "t2m", "--agg", "mean", "--max-bytes", "2kB",
                         "-o", str(out)], capsys)  # fmt: skip
    assert code == 2 and not out.exists()
    assert err[0].startswith("gridscope export: reads about ")
    assert "more than the limit of 2.00 kB" in err[-1] and err[-1].startswith("gridscope: error:")
    with pytest.raises(SystemExit) as exit_:
        main(["export", "map", str(source), "--var", "t2m", "--max-bytes", "lots", "-o", str(out)])
    assert exit_.value.code == 2
    assert "expected a size such as 2GB" in capsys.readouterr().err


def test_unbuilt_source_is_brute_force_with_the_same_lines(tmp_path: Path, capsys) -> None:
    from data_catalog import open_dataset

    source = tmp_path / "raw.zarr"
    write_demo_store(SyntheticSpec(nsteps=20, resolution=6.0, seed=4), source, progress=False)
    out = tmp_path / "raw.nc"
    code, err = _export(
        ["map", str(source), "--var", "sst", "--agg", "min", "-o", str(out)], capsys
    )
    assert code == 0, err
    assert err[0].startswith("gridscope export: reads about ") and "brute force" in err[0]
    expected = open_dataset(str(source))["sst"].min("time").values
    with xr.open_dataset(out) as written:
        np.testing.assert_array_equal(written["sst"].transpose("lat", "lon").values, expected)


def test_env_budget_refuses_like_the_flag(built, tmp_path: Path, capsys, app_runtime) -> None:
    source, _ = built
    app_runtime.update_settings(max_bytes=1000)  # GRIDSCOPE_MAX_BYTES=1kB
    out = tmp_path / "s.csv"
    code, err = _export(
        ["series", str(source), "--var", "t2m", "--bbox", "-61,-21,59,41", "-o", str(out)], capsys
    )
    assert code == 2 and not out.exists()
    assert err[0].startswith("gridscope export: reads about ") and "time-series copy" in err[0]
    assert "more than the limit of 1.00 kB" in err[-1]


def test_a_large_plan_runs_on_the_named_cluster(
    built, tmp_path: Path, capsys, app_runtime, dask_processes, monkeypatch
) -> None:
    """Above the planner's local limit the plan's Dask graphs (here: the range's raw
    edge steps beside the stored blocks) run on the --scheduler cluster; same numbers."""
    import distributed

    import pipelines.planner
    from data_catalog import open_dataset

    source, _ = built
    monkeypatch.setattr(pipelines.planner, "LOCAL_BYTES", 0)  # every plan is "large"
    with distributed.Client(dask_processes, set_as_default=False) as client:
        before = tasks_done(client)  # the cluster is the test session's: count from here
    out = tmp_path / "cluster.nc"
    code, err = _export(["map", str(source), "--var", "sst", "--start", "1980-01-03",
                         "--end", "1980-02-11", "--agg", "mean", "--scheduler", dask_processes,
                         "-o", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    assert err[0].startswith("gridscope export: reads about ") and "raw steps" in err[0]
    assert f"computing on {dask_processes}" in err[1]
    with distributed.Client(dask_processes, set_as_default=False) as client:
        assert tasks_done(client) > before, "nothing ran on the cluster"
    sst = open_dataset(str(source))["sst"].sel(time=slice("1980-01-03", "1980-02-11"))
    with xr.open_dataset(out) as written:
        np.testing.assert_allclose(
            written["sst"].transpose("lat", "lon").values, sst.mean("time").values, rtol=1e-5
        )


def test_a_plan_under_the_planners_local_limit_starts_no_cluster(
    built, tmp_path: Path, capsys, app_runtime, monkeypatch
) -> None:
    """The planner computes a plan under `pipelines.planner.LOCAL_BYTES` on local
    threads whatever cluster there is, so export starts none for it, even with a cluster
    flag and a dashboard in-process limit it is above; same numbers as xarray."""
    import pipelines.cluster
    from data_catalog import open_dataset

    def no_cluster(*args, **kwargs):
        raise AssertionError("export started a cluster for a plan the planner runs locally")

    monkeypatch.setattr(pipelines.cluster, "connect", no_cluster)
    app_runtime.update_settings(inprocess_bytes=1)  # GRIDSCOPE_INPROCESS_BYTES: the dashboard's
    source, _ = built
    out = tmp_path / "local.nc"
    code, err = _export(["map", str(source), "--var", "sst", "--start", "1980-01-03",
                         "--end", "1980-02-11", "--agg", "mean", "--scheduler", "tcp://nowhere:1",
                         "-o", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    assert err[0].startswith("gridscope export: reads about ") and "raw steps" in err[0]
    assert err[1] == "gridscope export: computing in this process"
    sst = open_dataset(str(source))["sst"].sel(time=slice("1980-01-03", "1980-02-11"))
    with xr.open_dataset(out) as written:
        np.testing.assert_allclose(
            written["sst"].transpose("lat", "lon").values, sst.mean("time").values, rtol=1e-5
        )


@pytest.mark.parametrize("kind", ["curvilinear", "unstructured"])
def test_native_grid_export_is_the_same_file_after_a_build(
    tmp_path: Path, capsys, kind: str
) -> None:
    """On a non-regular grid the cell stores answer (the cells' temporal aggregates) and
    the file keeps the same native cells, bounds and values as the brute force."""
    from pipelines.synthetic_grids import write_grid_store

    shape = {"curvilinear": (24, 48), "unstructured": (3000,)}[kind]
    source = str(write_grid_store(kind, tmp_path / f"{kind}.zarr", 37, shape=shape,
                                  progress=False))  # fmt: skip
    args = ["map", source, "--var", "tos", "--bbox", "150,-40,-100,40", "--agg", "max"]
    written = []
    for name in ("raw", "built"):
        if name == "built":
            build = ["build", source, "--scheduler", "synchronous", "--unit-steps", "8",
                     "--base-block", "2", "--ts-levels", "3"]  # fmt: skip
            assert main(build) == 0
        code, err = _export([*args, "-o", str(tmp_path / f"{name}.nc")], capsys)
        assert code == 0, err
        assert ("temporal aggregates" in err[0]) == (name == "built"), err[0]
        with xr.open_dataset(tmp_path / f"{name}.nc") as f:
            written.append(f.load())
    raw, built = written
    assert list(built.variables) == list(raw.variables)
    assert ("lon_bounds" in raw) == (kind == "curvilinear")  # a point cloud has no polygons
    for name in ("lon", "lat", "lon_bounds", "lat_bounds"):
        if name in raw:
            np.testing.assert_array_equal(built[name].values, raw[name].values)
    assert np.isfinite(raw["tos"].values).sum() > 10
    np.testing.assert_array_equal(built["tos"].values, raw["tos"].values)
