"""A series CSV on a numbered step axis says what its steps count.

Files with time units without an epoch ("Month", "days") or none at all open as a
numeric step axis (`data_catalog.time_axis`); their CSV header names the units as the
series plot labels its x axis (``time (Month)``), and each step is written as the file's
raw value, compared here with the values read back with netCDF4 directly.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from app.cli import main
from app.exports import series_to_csv
from app.labels import time_axis_text
from data_catalog import open_dataset
from pipelines import Query, compute_series
from tests.test_time_axes import _write


@pytest.mark.parametrize(
    ("values", "attrs", "dim", "header"),
    [
        (np.arange(1.0, 13.0, dtype="float32"), {"units": "Month"}, "time", "time (Month)"),
        (np.array([0.5, 1.5, 2.25, 3.1]), {"units": "days"}, "time", "time (days)"),
        (np.arange(0, 6, dtype="int32"), {}, "timestep", "time (step)"),
    ],
)
def test_step_csv_names_the_units_and_writes_the_raw_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture, values, attrs, dim, header
) -> None:
    path = tmp_path / "steps.nc"
    data = _write(path, values, attrs, dim=dim)
    with netCDF4.Dataset(path) as f:
        steps = np.asarray(f[dim][:], dtype="float64")  # as the file holds them
    ds = open_dataset(str(path))
    text = series_to_csv(compute_series(ds, Query("x", "v", point=(30.0, 0.0))), var="v")
    capsys.readouterr()
    out = tmp_path / "s.csv"
    code = main(["export", "series", str(path), "--var", "v", "--point", "30,0", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert out.read_text() == text  # the CLI writes what the dashboard downloads
    rows = [line.split(",") for line in text.splitlines()]
    assert rows[0] == [header, "v"]
    np.testing.assert_array_equal([float(r[0]) for r in rows[1:]], steps)
    np.testing.assert_array_equal([float(r[1]) for r in rows[1:]], data[:, 1, 2])
    assert not any(r[0].endswith(".0") for r in rows[1:])  # "1", not "1.0"


def test_a_dated_axis_keeps_its_header(tmp_path: Path) -> None:
    path = tmp_path / "dates.nc"
    _write(path, np.arange(3.0), {"units": "days since 2000-01-01"})
    ds = open_dataset(str(path))
    text = series_to_csv(compute_series(ds, Query("x", "v", point=(30.0, 0.0))), var="v")
    assert text.splitlines()[0] == "time,v"
    assert text.splitlines()[1].startswith("2000-01-01")
    assert time_axis_text("") == "time"
