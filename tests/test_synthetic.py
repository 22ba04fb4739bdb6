"""The synthetic ERA5-like generator: deterministic, layout-independent, CF-shaped."""

from __future__ import annotations

import numpy as np
import pytest

from data_catalog import open_dataset
from pipelines.synthetic import (
    SyntheticSpec,
    parse_size,
    spec_for_size,
    synthetic_field,
    virtual_dataset,
    write_demo_store,
)


def test_values_depend_on_position_not_on_chunking() -> None:
    spec = SyntheticSpec(nsteps=10, resolution=2.0, seed=5)
    whole = synthetic_field(spec, "t2m", np.arange(10), spec.lat, spec.lon)
    part = synthetic_field(spec, "t2m", np.arange(3, 6), spec.lat[10:20], spec.lon[100:150])
    np.testing.assert_array_equal(whole[3:6, 10:20, 100:150], part)
    again = synthetic_field(spec, "t2m", np.arange(10), spec.lat, spec.lon)
    np.testing.assert_array_equal(whole, again)
    other_seed = synthetic_field(
        SyntheticSpec(nsteps=10, resolution=2.0, seed=6), "t2m", np.arange(10), spec.lat, spec.lon
    )
    assert not np.array_equal(whole, other_seed)


def test_fields_look_like_temperatures() -> None:
    spec = SyntheticSpec(nsteps=400, resolution=4.0, freq="daily")
    t2m = synthetic_field(spec, "t2m", np.array([15, 196]), spec.lat, spec.lon)
    assert 200 < np.nanmin(t2m) and np.nanmax(t2m) < 330
    north = spec.lat > 45
    assert t2m[1][north].mean() > t2m[0][north].mean() + 10  # July warmer than January
    sst = synthetic_field(spec, "sst", np.array([0]), spec.lat, spec.lon)
    land = np.isnan(sst[0])
    assert 0.1 < land.mean() < 0.5
    assert np.nanmin(sst) >= 271.35 - 1e-4


def test_demo_store_is_era5_layout_and_normalises_to_the_virtual_source(tmp_path) -> None:
    spec = SyntheticSpec(nsteps=6, resolution=2.0, seed=1)
    path = write_demo_store(spec, tmp_path / "demo.zarr", progress=False)
    import xarray as xr

    raw = xr.open_zarr(path)
    assert raw["latitude"].values[0] == 90 and raw["longitude"].values[0] == 0
    assert (
        raw["t2m"].attrs["units"] == "K"
        and raw["sst"].attrs["standard_name"] == "sea_surface_temperature"
    )
    ds = open_dataset(str(path))
    virtual = virtual_dataset(spec)
    for var in ("t2m", "sst"):
        np.testing.assert_array_equal(ds[var].values, virtual[var].values)
    np.testing.assert_allclose(ds["cell_area"].values, virtual["cell_area"].values, rtol=1e-12)


def test_demo_write_resumes(tmp_path) -> None:
    spec = SyntheticSpec(nsteps=40, resolution=4.0)
    calls: list[int] = []
    write_demo_store(
        spec, tmp_path / "d.zarr", batch_steps=16, progress=lambda d, t: calls.append(d)
    )
    assert calls == [16, 32, 40]
    calls.clear()
    write_demo_store(
        spec, tmp_path / "d.zarr", batch_steps=16, progress=lambda d, t: calls.append(d)
    )
    assert calls == []


def test_virtual_terabyte_source_is_lazy_and_cheap() -> None:
    ds = virtual_dataset(spec_for_size("1.4TB", freq="hourly"))
    assert ds["t2m"].nbytes > 6e11 and ds.sizes["time"] > 150_000
    step = ds["t2m"].isel(time=123_456).values
    assert step.shape == (721, 1440) and np.isfinite(step).all()


@pytest.mark.parametrize(
    "text,expected", [("1GB", 10**9), ("500MB", 5 * 10**8), ("1.4TB", 14 * 10**11)]
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_demo_cli(tmp_path, capsys) -> None:
    from app.cli import main

    assert (
        main(["demo", "--size", "2MB", "--resolution", "4", "--out", str(tmp_path / "c.zarr")]) == 0
    )
    assert (tmp_path / "c.zarr" / "zarr.json").exists()
    assert main(["demo", "--size", "huge", "--out", str(tmp_path / "x.zarr")]) == 2


@pytest.mark.parametrize(
    "source", ["virtual:x", "virtual:daily:0:1:0", "virtual:weekly:10:1:0", "virtual:daily:10:7:0",
               "virtual:daily:ten:1:0", "virtual:daily:10:1:0:extra", "virtual:"],
)  # fmt: skip
def test_bad_virtual_source_is_one_line_of_words(source, capsys) -> None:
    from app.cli import main

    with pytest.raises(ValueError, match="must be virtual:FREQ:NSTEPS:RES:SEED"):
        SyntheticSpec.from_source(source)
    assert main(["build", source, "--scheduler", "synchronous"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "virtual:FREQ:NSTEPS:RES:SEED" in err, err


def test_virtual_source_round_trips() -> None:
    spec = SyntheticSpec(350640, "hourly", 0.25, seed=3)
    ds = virtual_dataset(spec)
    assert SyntheticSpec.from_source(ds.attrs["gridscope_source"]) == spec
