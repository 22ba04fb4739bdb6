"""``serve`` and ``build`` name their Dask cluster with the same flags and variables.

Gateway and Kubernetes clusters cannot run here: the flags are checked to parse into
the right `ClusterSpec`, and a Gateway that cannot be reached, or a missing optional
package, to end ``gridscope build`` with one line on stderr and exit status 2, quickly.
"""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import time
import types
from urllib.parse import urlsplit

import pytest

from app.cli import build_parser, main
from app.commands.cluster_flags import cluster_spec
from pipelines.cluster import ClusterSpec
from tests.ports import free_port

#: 16 daily steps on a 30-degree grid, computed on read: opening it costs nothing
SOURCE = "virtual:daily:16:30:0"


@pytest.mark.parametrize("command", ["serve", "build"])
@pytest.mark.parametrize(
    ("flags", "environ", "expected"),
    [
        ([], {}, ClusterSpec()),
        (["--workers", "3", "--adapt", "1,4"], {}, ClusterSpec(n_workers=3, adapt=(1, 4))),
        (["--scheduler", "tcp://10.0.0.5:8786"], {}, ClusterSpec(scheduler="tcp://10.0.0.5:8786")),
        (["--gateway", "https://hub/services/dask-gateway", "--adapt", "0,20"], {},
         ClusterSpec(gateway="https://hub/services/dask-gateway", adapt=(0, 20))),
        (["--kubernetes", "gridscope-dask"], {}, ClusterSpec(kubernetes="gridscope-dask")),
        ([], {"DASK_SCHEDULER_ADDRESS": "tcp://env:8786"}, ClusterSpec(scheduler="tcp://env:8786")),
        ([], {"DASK_GATEWAY__ADDRESS": "http://gw"}, ClusterSpec(gateway="http://gw")),
        (["--gateway", "http://flag"], {"DASK_SCHEDULER_ADDRESS": "tcp://env:8786"},
         ClusterSpec(gateway="http://flag")),
    ],
)  # fmt: skip
def test_flags_and_environment_name_the_same_cluster_for_serve_and_build(
    command, flags, environ, expected
):
    source = [SOURCE] if command == "build" else []
    args = build_parser().parse_args([command, *source, *flags])
    assert cluster_spec(args, environ) == expected


def _build(argv: list[str]) -> tuple[int, str, float]:
    """``gridscope build`` in this process: exit status, stderr, seconds taken."""
    err = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["build", *argv])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, err.getvalue(), time.monotonic() - started


def _assert_one_line_error(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("gridscope: error:"), err
    for text in expected:
        assert text in err, err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--scheduler", "tcp://10.0.0.5:8786", "--gateway", "http://gw"],
         "choose one cluster, not scheduler and gateway"),
        (["--gateway", "http://gw", "--kubernetes", "k"], "choose one cluster"),
        (["--adapt", "5,1"], "need 0 <= MIN <= MAX"),
        (["--adapt", "many"], "expected MIN,MAX"),
        (["--workers", "0"], "need at least 1"),
        (["--scheduler", ""], "without spaces"),
        (["--gateway", "http://gw\nx"], "without spaces"),
        (["--scheduler", "http://h:8786"], "is not a Dask scheduler address"),
        (["--scheduler", "tcp://h:99999"], "is not a Dask scheduler address"),
    ],
)  # fmt: skip
def test_bad_cluster_flags_fail_in_one_line(tmp_path, flags, expected):
    code, err, seconds = _build([SOURCE, "--out", str(tmp_path), *flags])
    _assert_one_line_error(code, err, expected)
    assert seconds < 10


@pytest.mark.parametrize(
    ("flags", "module", "package"),
    [(["--gateway", "http://gw"], "dask_gateway", "dask_gateway"),
     (["--kubernetes", "gridscope-dask"], "dask_kubernetes.operator", "dask_kubernetes")],
)  # fmt: skip
def test_missing_optional_package_is_named(tmp_path, monkeypatch, flags, module, package):
    for name in {package, module}:
        monkeypatch.setitem(sys.modules, name, None)  # import fails, installed or not
    code, err, seconds = _build([SOURCE, "--out", str(tmp_path), *flags])
    _assert_one_line_error(code, err, f"needs the {package} package")
    assert seconds < 10


class _Gateway:
    """Stands in for ``dask_gateway.Gateway`` (not installed here): creating a cluster
    opens a connection to the Gateway, which fails as dask-gateway's HTTP client does
    when nothing listens there (ConnectionRefusedError, an OSError)."""

    def __init__(self, address: str):
        self.address = address

    def new_cluster(self):
        url = urlsplit(self.address)
        with socket.create_connection((url.hostname, url.port), timeout=5):
            raise AssertionError(f"something listens at {self.address}")


@pytest.mark.parametrize("named_by", ["flag", "environment"])
def test_unreachable_gateway_is_one_line_quickly(tmp_path, monkeypatch, named_by):
    monkeypatch.setitem(sys.modules, "dask_gateway", types.SimpleNamespace(Gateway=_Gateway))
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    address = f"http://127.0.0.1:{free_port()}"
    flags = ["--gateway", address] if named_by == "flag" else []
    if named_by == "environment":
        monkeypatch.setenv("DASK_GATEWAY__ADDRESS", address)
    code, err, seconds = _build([SOURCE, "--out", str(tmp_path), "--adapt", "1,4", *flags])
    _assert_one_line_error(code, err, f"cannot reach the Dask cluster at {address}")
    assert seconds < 10
