"""Property test: normalisation only re-indexes the field, exactly as brute force says.

For random longitude offsets and spacings (global grids, with or without a repeated
wrap-around column, and regional grids, possibly crossing the antimeridian) and either
latitude order, the normalised field must equal the raw field taken at the raw index
found by exhaustive search for every output (lat, lon).
"""

import numpy as np
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_catalog import normalise_dataset

# Respect the active hypothesis profile, but never run more than 50 examples here.
PROPERTY_SETTINGS = settings(
    max_examples=min(50, settings.default.max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def raw_grids(draw):
    global_grid = draw(st.booleans())
    if global_grid:
        n_lon = draw(st.sampled_from([4, 6, 8, 12, 24, 36, 72, 144]))
        spacing = 360.0 / n_lon
    else:
        spacing = draw(st.floats(0.25, 40.0))
        n_lon = draw(st.integers(2, max(2, min(60, int(359.0 // spacing)))))
    offset = draw(st.floats(-360.0, 360.0, allow_nan=False))
    lon = offset + spacing * np.arange(n_lon)
    if global_grid and draw(st.booleans()):
        lon = np.append(lon, lon[0] + 360.0 + draw(st.floats(-1e-6, 1e-6)))  # etopo-like
    n_lat = draw(st.integers(1, 7))
    lat_spacing = draw(st.floats(0.5, 180.0 / max(n_lat, 1)))
    lat_start = draw(st.floats(-90.0, 90.0 - lat_spacing * (n_lat - 1)))
    lat = lat_start + lat_spacing * np.arange(n_lat)
    if draw(st.booleans()):
        lat = lat[::-1]
    seed = draw(st.integers(0, 2**32 - 1))
    chunked = draw(st.booleans())
    return lon, lat, seed, chunked


def brute_force_lon_index(raw_lon, out_lon):
    spacing = np.min(np.abs(np.diff(raw_lon))) if raw_lon.size > 1 else 360.0
    index = []
    for value in out_lon:
        distance = np.abs((raw_lon - value + 180.0) % 360.0 - 180.0)
        index.append(int(np.flatnonzero(distance < spacing / 4)[0]))
    return np.array(index)


def distinct_longitudes(raw_lon):
    spacing = np.min(np.abs(np.diff(raw_lon))) if raw_lon.size > 1 else 360.0
    distinct: list[float] = []
    for value in raw_lon:
        if all(abs((value - d + 180.0) % 360.0 - 180.0) >= spacing / 4 for d in distinct):
            distinct.append(value)
    return len(distinct)


@PROPERTY_SETTINGS
@given(raw_grids())
def test_normalised_field_is_raw_field_reindexed(grid):
    raw_lon, raw_lat, seed, chunked = grid
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(2, raw_lat.size, raw_lon.size)).astype(np.float32)
    raw = xr.Dataset(
        {"field": (("time", "y", "x"), data, {"units": "1", "long_name": "field"})},
        coords={
            "x": ("x", raw_lon, {"units": "degrees_east"}),
            "y": ("y", raw_lat, {"units": "degrees_north"}),
            "time": ("time", [0.0, 1.0], {"units": "days since 1990-01-01"}),
        },
    )
    if chunked:
        raw = raw.chunk({"x": max(1, raw_lon.size // 3)})

    out = normalise_dataset(raw, "property")

    lon, lat = out["lon"].values, out["lat"].values
    assert np.all(np.diff(lon) > 0)
    assert lon[0] >= -180.0 and lon[-1] < 180.0
    assert lon.size == distinct_longitudes(raw_lon)
    assert np.all(np.diff(lat) > 0)
    assert out["field"].dtype == np.float32
    assert chunked == (out["field"].chunks is not None)

    x_index = brute_force_lon_index(raw_lon, lon)
    y_index = np.array([int(np.argmin(np.abs(raw_lat - value))) for value in lat])
    expected = data[:, y_index, :][:, :, x_index]
    np.testing.assert_array_equal(out["field"].values, expected)
    circular_error = np.abs((lon - raw_lon[x_index] + 180.0) % 360.0 - 180.0)
    np.testing.assert_allclose(circular_error, 0, atol=1e-6)
    if raw_lat.size > 1:  # a single row has no spacing to infer its extent from
        assert np.all(out["cell_area"].values > 0)
        # equal cells along a row; a row of a regular grid never exceeds the full band
        area = out["cell_area"].values
        np.testing.assert_allclose(area, area[:, :1] * np.ones_like(area), rtol=1e-6)
        band = 2 * np.pi * 6371008.8**2 * 2
        assert area.sum(axis=1).max() <= band * (1 + 1e-9)
    else:
        assert np.all(np.isnan(out["cell_area"].values))
