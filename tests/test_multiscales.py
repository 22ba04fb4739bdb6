"""The pyramid store carries GeoZarr ``multiscales`` attributes that other zarr readers
can use: every level present, its cell size and position, the CRS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from data_catalog import open_dataset
from pipelines.build import BuildConfig, build_derived
from pipelines.multiscales import multiscales_attrs
from pipelines.synthetic import SyntheticSpec, write_demo_store


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("multiscales")
    # 30 x 60 cells at 6 degrees: level 3 blocks of 8 leave partial blocks on both axes
    raw = write_demo_store(SyntheticSpec(nsteps=16, resolution=6.0), tmp / "r.zarr",
                           progress=False)  # fmt: skip
    config = BuildConfig(max_level=3, ts_max_level=2, base_block=4, unit_steps=8,
                         variables=("t2m",))  # fmt: skip
    folder = build_derived(str(raw), tmp / "d", scheduler="synchronous", config=config,
                           progress=False)  # fmt: skip
    return raw, folder


def test_pyramid_group_names_every_level_with_its_resolution(built) -> None:
    raw, folder = built
    data = folder / json.loads((folder / "manifest.json").read_text())["data"]
    group = zarr.open_group(data / "pyramid.zarr" / "t2m", mode="r")  # plain zarr, no gridscope
    attrs = group.attrs.asdict()
    present = sorted(name for name in group.group_keys())
    layout = attrs["multiscales"]["layout"]
    assert [e["asset"] for e in layout] == present == ["L1", "L2", "L3"]
    assert {c["name"] for c in attrs["zarr_conventions"]} == {"multiscales", "spatial:", "proj:"}
    assert attrs["proj:code"] == "EPSG:4326" and attrs["spatial:dimensions"] == ["lat", "lon"]

    ds = open_dataset(str(raw))
    lat, lon = ds["lat"].values, ds["lon"].values
    for k, entry in enumerate(layout, start=1):
        f = 2**k
        mean = group[entry["asset"]]["mean"]
        assert entry["spatial:shape"] == list(mean.shape[1:])
        assert entry["gridscope:resolution"] == [6.0 * f, 6.0 * f]
        if k > 1:
            assert entry["derived_from"] == f"L{k - 1}"
            assert entry["transform"]["scale"] == [2.0, 2.0]
        a, b, c, d, e, g = entry["spatial:transform"]
        assert b == d == 0 and a == e == 6.0 * f
        # the centre of each full block from the transform = the mean of its cells' centres
        nfull_y, nfull_x = lat.size // f, lon.size // f
        np.testing.assert_allclose(
            g + (np.arange(nfull_y) + 0.5) * e, lat[: nfull_y * f].reshape(-1, f).mean(1)
        )
        np.testing.assert_allclose(
            c + (np.arange(nfull_x) + 0.5) * a, lon[: nfull_x * f].reshape(-1, f).mean(1)
        )
        # and the level's values there are the area-weighted means of those cells
        block = ds["t2m"].isel(time=0).values[:f, :f].astype("float64")
        area = ds["cell_area"].values[:f, :f]
        ok = np.isfinite(block)
        if ok.any():
            want = (block[ok] * area[ok]).sum() / area[ok].sum()
            np.testing.assert_allclose(mean[0, 0, 0], want, rtol=1e-5)


def test_uneven_axis_is_refused() -> None:
    with pytest.raises(ValueError, match="lat is not evenly spaced"):
        multiscales_attrs(np.array([0.0, 1.0, 3.0]), np.arange(4.0), [1])
