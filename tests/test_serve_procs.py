"""``gridscope serve --num-procs N``: several server processes on one port and one cluster.

A real ``gridscope serve --num-procs 2`` over a two-entry catalog of the bundled NOAA
samples: pages and ``/api/v1/map.json`` asked many times at once are answered by both
processes (the ``X-Gridscope-Process`` header), every map equals brute-force xarray on
the raw file, both processes are clients of the one LocalCluster, and stopping the
server stops every process it started. The flag's refusals are checked in-process.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr

from app.cli import main as gridscope
from tests.browser.conftest import start_server, stop_server
from tests.conftest import SAMPLES_DIR

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _catalog(tmp_path: Path) -> Path:
    entries = []
    for name, path in (
        ("coads", "coads_climatology.cdf"),
        ("navy-winds", "monthly_navy_winds.cdf"),
    ):
        entries.append(
            f"  - id: {name}\n    title: {name}\n    urlpath: {SAMPLES_DIR / path}\n"
            "    format: netcdf\n    license: Public domain\n"
        )
    path = tmp_path / "catalog.yaml"
    path.write_text("entries:\n" + "".join(entries))
    return path


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("procs")
    log = tmp / "serve.log"
    # the process count from the environment (the Helm chart's numProcs may set either)
    proc, url = start_server(
        ["--workers", "1", "--catalog", str(_catalog(tmp))], log, env={"GRIDSCOPE_NUM_PROCS": "2"}
    )
    try:
        yield proc, url, log
    finally:
        stop_server(proc)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _raw_sst() -> xr.DataArray:
    """COADS SST on (time, lat, lon), longitudes -180..180 ascending: no gridscope code."""
    with xr.open_dataset(SAMPLES_DIR / "coads_climatology.cdf", decode_times=False) as ds:
        da = ds["SST"].load().rename({"COADSX": "lon", "COADSY": "lat", "TIME": "time"})
    da = da.assign_coords(lon=((da["lon"] + 180.0) % 360.0) - 180.0).sortby("lon")
    return da.transpose("time", "lat", "lon")


def _server_processes(proc) -> list[psutil.Process]:
    """The forked server processes: the serving process's children running ``serve``."""
    return [
        child
        for child in psutil.Process(proc.pid).children()
        if "serve" in " ".join(child.cmdline())
        and "_hold_local_cluster" not in " ".join(child.cmdline())
    ]


def test_two_processes_answer_maps_equal_to_brute_force(two_procs) -> None:
    proc, url, log = two_procs
    raw = _raw_sst()
    asks = [MONTHS[i % 12] for i in range(48)]

    def ask(month: str) -> tuple[str, str]:
        status, headers, body = _get(f"{url}/api/v1/map.json?dataset=coads&var=SST&time={month}")
        assert status == 200, body[:300]
        got = json.loads(body)
        expected = raw.isel(time=MONTHS.index(month))
        np.testing.assert_array_equal(got["lat"], expected["lat"].values)
        np.testing.assert_array_equal(got["lon"], expected["lon"].values)
        np.testing.assert_array_equal(
            np.array(got["values"], dtype=float), expected.values.astype("float64")
        )
        return month, headers["X-Gridscope-Process"]

    answered: set[str] = set()
    deadline = time.monotonic() + 60  # the second process may still be warming up
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while len(answered) < 2 and time.monotonic() < deadline:
            answered |= {who for _, who in pool.map(ask, asks)}
    assert answered == {"0", "1"}, answered
    servers = _server_processes(proc)
    assert len(servers) == 2 and len({p.pid for p in servers}) == 2


def test_pages_from_both_processes(two_procs) -> None:
    proc, url, log = two_procs
    for _ in range(3):
        status, _, body = _get(f"{url}/?dataset=navy-winds&var=UWND&time=1985-06")
        assert status == 200
        assert re.search(rb"<title>\s*gridscope\s*</title>", body), body[:500]
    # every page was built by one of the two server processes, none failed
    assert "Traceback" not in log.read_text()


def test_every_process_is_a_client_of_the_one_cluster(two_procs) -> None:
    import distributed

    proc, url, log = two_procs
    found = re.search(r"Dask: (tcp://[\d.]+:\d+)", log.read_text())
    assert found, log.read_text()[-2000:]
    with distributed.Client(found.group(1), timeout=20, set_as_default=False) as client:
        clients = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.clients))
        others = set(clients) - {"fire-and-forget", client.id}
    # the cluster's own process holds one client; each server process one more
    assert len(others) == 1 + 2, clients


def test_num_procs_refusals(capsys, tmp_path) -> None:
    from app.commands.serve import _num_procs_problem
    from pipelines.cluster import ClusterSpec

    with pytest.raises(SystemExit):
        gridscope(["serve", "--num-procs", "0"])
    assert "--num-procs: '0': expected a whole number of at least 1" in capsys.readouterr().err
    catalog = str(_catalog(tmp_path))
    assert gridscope(["serve", "--catalog", catalog, "--num-procs", "2",
                      "--gateway", "http://gateway.invalid"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--num-procs 2 needs one scheduler address" in err and "not --gateway" in err
    assert gridscope(["serve", "--catalog", catalog, "--num-procs", "2",
                      "--scheduler", "tcp://127.0.0.1:9"]) == 2  # fmt: skip
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    problem = _num_procs_problem(3, ClusterSpec(), platform="win32")
    assert "Windows cannot" in problem
    assert _num_procs_problem(3, ClusterSpec()) == ""


def test_num_procs_from_the_environment(capsys, monkeypatch, tmp_path) -> None:
    """GRIDSCOPE_NUM_PROCS is used when --num-procs is absent; the flag wins; bad values are
    refused in words (the gateway refusal below names the count serve would have forked)."""
    catalog = str(_catalog(tmp_path))
    gateway = ["--catalog", catalog, "--gateway", "http://gateway.invalid"]
    monkeypatch.setenv("GRIDSCOPE_NUM_PROCS", "3")
    assert gridscope(["serve", *gateway]) == 2
    assert "--num-procs 3 needs one scheduler address" in capsys.readouterr().err
    assert gridscope(["serve", *gateway, "--num-procs", "2"]) == 2
    assert "--num-procs 2 needs one scheduler address" in capsys.readouterr().err
    for bad in ("0", "two", "1.5"):
        monkeypatch.setenv("GRIDSCOPE_NUM_PROCS", bad)
        assert gridscope(["serve", "--catalog", catalog]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"gridscope serve: error: GRIDSCOPE_NUM_PROCS={bad!r}: "
                       "expected a whole number of at least 1")  # fmt: skip


def test_stopping_the_server_stops_its_processes(two_procs) -> None:
    proc, url, log = two_procs  # the module's last use of the server
    started = psutil.Process(proc.pid).children(recursive=True)
    assert len(started) >= 4  # two server processes, the cluster's and its worker
    stop_server(proc)
    gone, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
