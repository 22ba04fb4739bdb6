"""Fuzz the CLI: any flag value gets a one-line message (exit 2) or works; no traceback.

Runs `app.cli.main` in-process (fast) on hostile values: NaN/inf/huge numbers,
reversed dates, unicode and very long strings, ``../`` paths, unknown names.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main

_HOSTILE = ["nan", "inf", "-inf", "1e400", "", " ", "../../etc/passwd", "/etc/passwd", "SST\x00",
            "🌊", "x" * 5000, "1985-02-30", "1985-13", "0000-00", "-1", "99999", "mean; rm -rf /",
            "nan,nan,nan,nan", "-80,0,-10", "1,2,3,4,5", "-180,-90,180,90", "170,-10,-170,10",
            "0,95,10,10", "-140,0", "Jan", "December", "1e308,0"]  # fmt: skip
_hostile_text = st.one_of(st.sampled_from(_HOSTILE), st.text(max_size=40))


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, err.getvalue()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flag=st.sampled_from(
        ["--var", "--time", "--start", "--end", "--agg", "--bbox", "--level", "--baseline-start"]
    ),
    value=_hostile_text,
    source=st.sampled_from(["coads", "navy-winds", "etopo20", "../secret", "nope", "/dev/null"]),
)
def test_export_map_flags(tmp_path, flag, value, source):
    argv = ["export", "map", source, "--var", "SST", flag, value, "-o", str(tmp_path / "m.nc")]
    code, err = _run(argv)
    assert "Traceback" not in err
    if code != 0:
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("gridscope: error:")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(point=_hostile_text, start=_hostile_text)
def test_export_series_flags(tmp_path, point, start):
    argv = ["export", "series", "coads", "--var", "SST", "--point", point, "--start", start,
            "-o", str(tmp_path / "s.csv")]  # fmt: skip
    code, err = _run(argv)
    assert "Traceback" not in err
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1


_CLUSTER_FLAGS = ["--scheduler", "--gateway", "--kubernetes", "--adapt", "--workers"]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flag=st.sampled_from(_CLUSTER_FLAGS),
    value=_hostile_text,
    source=st.sampled_from(["etopo20", "../secret", "nope", "/dev/null", "virtual:x"]),
)
def test_build_cluster_flags(tmp_path, flag, value, source):
    """Every source here fails before a cluster is started (etopo20 has no time axis)."""
    code, err = _run(["build", source, "--out", str(tmp_path), flag, value])
    assert "Traceback" not in err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("gridscope: error:"), err


@pytest.mark.parametrize("address", _HOSTILE)
def test_build_scheduler_address(tmp_path, address):
    """A buildable source: the hostile address itself must be refused, without a
    connection attempt (none of these has a port)."""
    code, err = _run(["build", "virtual:daily:8:30:0", "--out", str(tmp_path),
                      "--scheduler", address])  # fmt: skip
    assert "Traceback" not in err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("gridscope: error:"), err


def test_valid_call_still_works_after_garbage(tmp_path):
    assert (
        _run(
            [
                "export",
                "map",
                "coads",
                "--var",
                "SST",
                "--bbox",
                "nan,0,1,1",
                "-o",
                str(tmp_path / "a.nc"),
            ]
        )[0]
        == 2
    )
    code, err = _run(
        ["export", "map", "coads", "--var", "SST", "--time", "Jul", "-o", str(tmp_path / "a.nc")]
    )
    assert code == 0, err
    assert (tmp_path / "a.nc").stat().st_size > 0


@pytest.mark.parametrize(
    "argv", [["catalog", "list", "--catalog", "/nonexistent.yaml"], ["export"], []]
)
def test_other_commands_fail_in_one_line(argv):
    code, err = _run(argv)
    assert code == 2 and "Traceback" not in err
