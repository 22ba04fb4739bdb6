"""Range maps stay exact next to an outlier outside the range.

A range that starts or ends inside an aggregate block can be read as the block less its
steps outside the range. That is exact for a mean (float64 sums of float32 values
subtract without loss), but a std's stored sums of squares are float32: taking out a
step that dwarfs the range's own variance (a storm day next to calm days, a melt step
next to constant sea ice) leaves the rounding of the block's sum as the answer. The
planner must not answer such a std from a difference, so these maps are checked against
float64 numpy on data built to have exactly that shape.
"""

from __future__ import annotations

import numpy as np
import pytest

from data_catalog import open_dataset
from pipelines import Query
from pipelines.build import BuildConfig, build_derived
from pipelines.planner import plan_map
from tests.pipelines_data import write_daily_source

NT = 32
CONFIG = BuildConfig(max_level=0, ts_max_level=2, base_block=4, unit_steps=8)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("outliers")
    rng = np.random.default_rng(5)
    lat, lon = np.arange(-87.5, 90.0, 5.0), np.arange(-177.5, 180.0, 5.0)
    # calm: 5 +- 0.01, with a storm of 5000 opening every other 4-step block (steps 4,
    # 12, 20, 28); step 0 is calm, so each cell's shift (its first value) is near the calm
    x = 5.0 + 0.01 * rng.standard_normal((NT, lat.size, lon.size))
    x[4::8] = 5000.0
    path = write_daily_source(root / "src.zarr", {"pr": x.astype("float32")}, lat, lon, "mm")
    build_derived(str(path), out=root, scheduler="synchronous", config=CONFIG, progress=False)
    return open_dataset(str(path))


# ranges that start inside a block just after its storm (steps 5..7, 5..11, 13..18):
# the calm steps alone, their variance ~1e-4 against the storm's ~2e7; and ranges that
# hold a storm (5..14) or a whole block (0..3)
RANGES = [
    ("2000-01-06", "2000-01-08"),
    ("2000-01-06", "2000-01-12"),
    ("2000-01-14", "2000-01-19"),
    ("2000-01-06", "2000-01-15"),
    ("2000-01-01", "2000-01-04"),
]


@pytest.mark.parametrize("start, end", RANGES)
@pytest.mark.parametrize("agg", ["mean", "std"])
def test_range_maps_next_to_outliers_equal_brute_force(built, agg, start, end) -> None:
    query = Query(dataset="o", var="pr", start=start, end=end, agg=agg)
    got = plan_map(built, query).compute().values
    t = built["time"].values
    steps = (t >= np.datetime64(start)) & (t <= np.datetime64(end))
    x = np.asarray(built["pr"].values[steps], "float64")
    want = (np.mean if agg == "mean" else np.std)(x, axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)
