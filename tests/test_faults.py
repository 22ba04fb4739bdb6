"""Faults: broken catalog entries and corrupt chunks, a worker killed mid-query, a lost scheduler.

Every fault injected is counted in ``FAULTS`` (written to test-artifacts/faults.json).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import yaml

from app import answers, cluster_health, jobs, limits, runtime
from app.limits import Limits
from app.sources import DatasetSources
from app.state import ExplorerState
from app.views.results import ViewResults
from pipelines import Query, compute_map
from tests.app_data import make_ds
from tests.conftest import REPO_ROOT
from tests.ports import free_port

FAULTS: dict[str, int] = {}
BIN = Path(sys.executable).parent


def _count(kind: str) -> None:
    FAULTS[kind] = FAULTS.get(kind, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _report_faults():
    yield
    out = REPO_ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    path = out / "faults.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**old, **FAULTS}, indent=1))


@pytest.fixture(autouse=True)
def _reset():
    limits.configure(Limits())
    cluster_health.use_client(None)
    # answers about in-memory data are cached by id(ds): a new one may reuse a collected id
    runtime.current().cache.clear()
    yield
    cluster_health.use_client(None)


# --- bad data: a broken catalog entry, corrupt chunks, a missing store --------------------
@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    ds = make_ds(0).drop_vars("ua")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("good", "broken", "gone"):
            ds.to_zarr(root / f"{name}.zarr")
    chunk = sorted((root / "broken.zarr" / "tas" / "c").rglob("*"))
    chunk = [p for p in chunk if p.is_file()][1]
    chunk.write_bytes(os.urandom(chunk.stat().st_size))  # garbage in one chunk file
    _count("corrupt chunk file")
    import shutil

    shutil.rmtree(root / "gone.zarr")  # the whole store deleted after cataloguing
    _count("missing store")
    entries = [{"id": n, "title": f"{n.title()} data", "urlpath": f"{n}.zarr", "format": "zarr",
                "license": "CC0"}
               for n in ("good", "broken", "gone")]  # fmt: skip
    (root / "catalog.yaml").write_text(yaml.safe_dump({"entries": entries}))
    return root / "catalog.yaml"


def _no_path(text: str) -> None:
    assert "/tmp" not in text and str(REPO_ROOT) not in text and "Traceback" not in text, text


def test_corrupt_chunk_names_the_dataset_and_the_others_keep_working(catalog) -> None:
    sources = DatasetSources.from_catalog(str(catalog))
    state = ExplorerState(sources)
    results = ViewResults(state)
    results.refresh()
    assert state.dataset == "good" and results.field is not None and results.error == ""
    state.param.update(dataset="broken")
    state.param.update(
        time_mode="range", start=state.param.start.objects[0], end=state.param.end.objects[-1]
    )
    results.refresh()
    assert "'broken'" in results.error and "corrupt or unreadable" in results.error, results.error
    _no_path(results.error)
    # the same session, another dataset: works, and the message goes away
    state.dataset = "good"
    results.refresh()
    assert results.field is not None and results.error == ""
    assert np.isfinite(results.field.values).any()


def test_missing_store_names_the_dataset_and_the_session_keeps_a_working_one(catalog) -> None:
    sources = DatasetSources.from_catalog(str(catalog))
    state = ExplorerState(sources)
    state.dataset = "gone"  # what the dataset menu does
    assert state.dataset == "good"
    assert "'gone'" in state.message and "Other datasets are not affected" in state.message
    _no_path(state.message)
    messages = state.from_url({"dataset": "gone", "var": "tas"})  # and what a link does
    assert state.dataset == "good" and any("'gone'" in m for m in messages)
    assert state.from_url({"dataset": "good", "var": "tas", "time": "2001-03"}) == []
    results = ViewResults(state)
    results.refresh()
    assert results.field is not None and results.error == ""


def test_bad_catalog_yaml_is_a_clear_cli_error_at_start(catalog, tmp_path, capsys) -> None:
    from app.cli import main

    raw = yaml.safe_load(catalog.read_text())
    raw["entries"][1]["format"] = "spreadsheet"  # one bad field in one entry
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    _count("bad catalog field")
    assert main(["serve", "--catalog", str(bad), "--public"]) == 2
    err = capsys.readouterr().err
    assert "'broken'" in err and "format" in err and "Traceback" not in err, err
    bad.write_text("entries: [ {id: x, \n")  # not YAML at all
    _count("malformed catalog YAML")
    assert main(["serve", "--catalog", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "Traceback" not in err, err


# --- a real scheduler and workers ------------------------------------------------------------
def _slow(block: np.ndarray) -> np.ndarray:
    import time

    time.sleep(0.15)
    return block


# pytest imports this file as a top-level module the workers cannot import: ship _slow by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def slow_ds():
    """make_ds with a dask graph that takes ~0.15 s per time step (identity values)."""
    ds = make_ds(0).drop_vars("ua").chunk({"time": 1})
    ds["tas"] = ds["tas"].copy(data=ds["tas"].data.map_blocks(_slow, dtype=ds["tas"].dtype))
    return ds


RANGE = Query(dataset="synth", var="tas", start="2000-01", end="2002-12", agg="mean")


def _expected(query: Query) -> np.ndarray:
    return compute_map(make_ds(0).drop_vars("ua"), query).compute(scheduler="sync").values


_ENV = dict(os.environ)


def _scheduler(port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                             "--no-dashboard"], stdout=log.open("a"), stderr=subprocess.STDOUT, env=_ENV)  # fmt: skip


def _worker(address: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                             "--no-nanny", "--host", "127.0.0.1", "--memory-limit", "2GiB"],
                            stdout=log.open("a"), stderr=subprocess.STDOUT, env=_ENV)  # fmt: skip


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait(timeout=10)


def _connect(address: str, workers: int):
    from pipelines.cluster import ClusterSpec, connect

    client = connect(ClusterSpec(scheduler=address), timeout=30)
    client.wait_for_workers(workers, timeout=60)
    return client


def _kill_worker_running_a_task(client, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [addr for addr, keys in client.processing().items() if keys]
        if busy:
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.05)
    raise AssertionError("no worker ever ran the task")


def _in_thread(fn):
    box: dict[str, object] = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


@pytest.mark.cluster
def test_worker_killed_mid_query_is_recomputed_and_the_next_query_works(
    tmp_path, monkeypatch
) -> None:
    runtime.current().update_settings(inprocess_bytes=0)  # everything goes to the cluster
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = tmp_path / "dask.log"
    procs = [_scheduler(port, log)]
    try:
        time.sleep(0.5)
        procs += [_worker(address, log), _worker(address, log)]
        client = _connect(address, 2)
        cluster_health.use_client(client)
        ds = slow_ds()
        job = answers.start_map(ds, RANGE)
        assert job.where == "cluster"
        thread, box = _in_thread(lambda: job.result(timeout=60))
        pid = _kill_worker_running_a_task(client)
        _count("worker killed mid-query (SIGKILL)")
        assert pid in [p.pid for p in procs]
        thread.join(60)
        assert not thread.is_alive(), "the query hung"
        assert "error" not in box, box.get("error")
        np.testing.assert_allclose(
            box["value"].values, _expected(RANGE), rtol=1e-12, equal_nan=True
        )
        assert cluster_health.cluster_status()["available"]
        nxt = RANGE.replace(start="2001-01", end="2001-06", agg="max")
        job = answers.start_map(ds, nxt)
        assert job.where == "cluster"
        np.testing.assert_allclose(job.result(timeout=60).values, _expected(nxt), equal_nan=True)
        client.close()
    finally:
        _stop(procs)


@pytest.mark.cluster
def test_scheduler_lost_falls_back_says_so_and_reconnects(tmp_path, monkeypatch) -> None:
    runtime.current().update_settings(inprocess_bytes=0, reconnect_interval=0.5)
    from app.views.cluster_view import describe_cluster

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = tmp_path / "dask.log"
    procs = [_scheduler(port, log)]
    try:
        time.sleep(0.5)
        procs.append(_worker(address, log))
        client = _connect(address, 1)
        cluster_health.use_client(client)
        ds = slow_ds()
        # a query in flight when the scheduler dies: finished in-process, right numbers
        job = answers.start_map(ds, RANGE)
        assert job.where == "cluster"
        thread, box = _in_thread(lambda: job.result(timeout=60))
        _kill_worker_running_a_task(client)  # wait until it runs...
        _count("worker killed mid-query (SIGKILL)")
        procs[0].kill()  # ...then take the scheduler away too
        _count("scheduler killed mid-query (SIGKILL)")
        t0 = time.monotonic()
        thread.join(30)
        assert not thread.is_alive(), "a session hung on a lost scheduler"
        assert "error" not in box, box.get("error")
        np.testing.assert_allclose(
            box["value"].values, _expected(RANGE), rtol=1e-12, equal_nan=True
        )
        assert time.monotonic() - t0 < 20
        assert job.where == "in-process (cluster unavailable)"
        status = cluster_health.cluster_status()
        assert not status["available"] and status["lost"] == 1
        assert "unavailable" in describe_cluster(cluster_health.current_client())
        # while it is gone: small views in-process, too-large ones refused in words, no hang
        small = RANGE.replace(start="2000-01", end="2000-03")
        quick = jobs.Job(
            compute_map(make_ds(0).drop_vars("ua"), small), 10, cluster_health.current_client()
        )
        assert quick.where == "in-process (cluster unavailable)"
        np.testing.assert_allclose(
            quick.result(timeout=10).values, _expected(small), equal_nan=True
        )
        runtime.current().update_settings(fallback_bytes=1)
        sources = DatasetSources.from_datasets({"synth": ds})
        state = ExplorerState(sources)
        state.param.update(
            time_mode="range", start=state.param.start.objects[0], end=state.param.end.objects[5]
        )
        results = ViewResults(state)
        t0 = time.monotonic()
        results.refresh()
        assert time.monotonic() - t0 < 5
        assert "cluster is unavailable" in results.error, results.error
        runtime.current().update_settings(fallback_bytes=256 * 10**6)
        # the scheduler comes back on the same port: the app reconnects by itself
        procs.append(_scheduler(port, log))
        _count("scheduler restarted")
        time.sleep(0.5)
        procs.append(_worker(address, log))
        deadline = time.monotonic() + 45
        while not cluster_health.cluster_status()["available"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cluster_health.cluster_status()["available"], "did not reconnect"
        assert cluster_health.cluster_status()["reconnected"] == 1
        assert "1 worker" in describe_cluster(cluster_health.current_client())
        nxt = RANGE.replace(start="2002-01", end="2002-04", agg="min")
        job = answers.start_map(ds, nxt)
        assert job.where == "cluster"
        np.testing.assert_allclose(job.result(timeout=60).values, _expected(nxt), equal_nan=True)
        results.refresh()  # the session that was refused works again
        assert results.error == "" and results.map_where == "cluster"
    finally:
        current = cluster_health.current_client()
        cluster_health.use_client(None)
        for c in {id(current): current, id(client): client}.values():
            if c is not None:
                c.close(timeout=5)
        _stop(procs)
