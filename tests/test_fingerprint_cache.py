"""The fingerprint's total cell area is summed once per area array, not per frame."""

from __future__ import annotations

import numpy as np
import pytest

from data_catalog.normalise import normalise_dataset
from pipelines import derived
from pipelines.synthetic_grids import curvilinear_dataset


@pytest.fixture
def count_nansum(monkeypatch):
    calls = []
    real = np.nansum

    def counting(*args, **kwargs):
        calls.append(np.shape(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "nansum", counting)
    return calls


def test_area_sum_is_computed_once_per_dataset(count_nansum) -> None:
    ds = normalise_dataset(curvilinear_dataset(40, 30, 6, seed=1), "mem://curvi")
    area_shape = ds["cell_area"].shape
    first = derived.fingerprint(ds)
    # independent sum of the areas, in float64
    expected = float(np.add.reduce(ds["cell_area"].values.astype(np.float64).ravel()))
    assert first["area_sum"] == pytest.approx(expected, rel=1e-8)
    for _ in range(5):  # frames: the same dataset, and selections of it in time
        assert derived.fingerprint(ds) == first
        derived.find_derived(ds)
        assert derived.fingerprint(ds.isel(time=slice(0, 3)))["area_sum"] == first["area_sum"]
    assert count_nansum.count(area_shape) == 1


def test_fingerprint_changes_with_the_areas(count_nansum) -> None:
    ds = normalise_dataset(curvilinear_dataset(40, 30, 6, seed=1), "mem://curvi")
    first = derived.fingerprint(ds)
    scaled = ds.assign_coords(cell_area=ds["cell_area"] * 1.001)
    assert derived.fingerprint(scaled)["area_sum"] == pytest.approx(
        first["area_sum"] * 1.001, rel=1e-8
    )
    # a spatial subset is a view of the same memory with another shape: its own sum
    sub = ds.isel({ds["cell_area"].dims[0]: slice(0, 10)})
    want = float(np.add.reduce(sub["cell_area"].values.ravel()))
    assert derived.fingerprint(sub)["area_sum"] == pytest.approx(want, rel=1e-8)
    # an array freed and another made in its place is never taken for it
    for seed in range(3):
        other = normalise_dataset(curvilinear_dataset(40, 30, 6, seed=seed), "mem://c")
        areas = other["cell_area"].values
        other = other.assign_coords(cell_area=(other["cell_area"].dims, areas * (seed + 2)))
        want = float(np.add.reduce(other["cell_area"].values.ravel()))
        assert derived.fingerprint(other)["area_sum"] == pytest.approx(want, rel=1e-8)
        del other, areas
