"""The one answer cache (`app.answer_cache`): shared by the dashboard, the API and processes.

Real separate processes (subprocess) share one cache directory: the second gets the
first's answers without computing (its planner and brute force are made to fail), a map
the dashboard computed answers the API's map.json and the other way round, and the
values equal numpy's on the raw data. The directory stays within its byte bound, evicts
the least recently touched entries, and concurrent writers never give a reader a
partial entry.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from app.answer_cache import AnswerCache, answer_key, store_version
from app.api.cache import Answer
from tests.app_data import make_ds
from tests.conftest import REPO_ROOT

# One process's work: the dashboard's map of Q1 and the API's map.json of Q2, or (with
# "forbid") the API's map.json of Q1 and the dashboard's map of Q2 with computing refused.
_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys

    cache_dir, path, forbid = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    from app import answers
    from app.api.answers import ApiContext, map_answer
    from app.api.params import parse_params
    from app.runtime import Runtime, install
    from app.settings import Settings
    from app.sources import DatasetSources
    from data_catalog import open_dataset

    runtime = install(Runtime.from_settings(Settings(cache_dir=cache_dir)))
    if forbid:
        import pipelines.evaluate, pipelines.planner

        def refuse(*args, **kwargs):
            raise AssertionError("computed, but the answer was in the shared cache")

        pipelines.planner.Plan.compute = refuse
        pipelines.evaluate.compute_map = refuse
        answers.compute_map = refuse
    ds = open_dataset(path)
    sources = DatasetSources.from_datasets({"synth": ds})
    ctx = ApiContext.from_runtime(sources)
    q1 = "dataset=synth&var=tas&start=2000-03&end=2001-06&agg=mean"
    q2 = "dataset=synth&var=tas&start=2001-01&end=2002-12&agg=max"
    dashboard_q, api_q = (q2, q1) if forbid else (q1, q2)
    field = answers.full_map(ds, parse_params(dashboard_q).query)
    body = asyncio.run(map_answer(ctx, "json", parse_params(api_q)))
    values = [[None if v != v else float(v) for v in row] for row in field.values]
    print(json.dumps({"dashboard": values, "api": json.loads(body)["values"],
                      "disk_hits": runtime.cache.disk_hits, "misses": runtime.cache.misses}))
    """
)


def _file(path) -> str:
    """A small synthetic dataset written to ``path`` (an answer about a file is shared)."""
    ds = make_ds(3, chunked=False)
    ds.attrs.pop("gridscope_climatology")  # a bool: netCDF attributes cannot hold it
    ds.to_netcdf(path)
    return str(path)


def _run_worker(cache_dir: str, path: str, forbid: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, cache_dir, path, "1" if forbid else "0"],
        capture_output=True, text=True, timeout=240, cwd=REPO_ROOT, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _brute_force(raw: np.ndarray, times: np.ndarray, start: str, end: str, how) -> np.ndarray:
    months = times.astype("datetime64[M]")
    inside = (months >= np.datetime64(start, "M")) & (months <= np.datetime64(end, "M"))
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        return how(raw[inside], axis=0)


def _as_array(rows: list) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def test_a_second_process_gets_the_first_ones_answers_without_computing(tmp_path) -> None:
    ds = make_ds(3, chunked=False)
    path = _file(tmp_path / "synth.nc")
    cache_dir = str(tmp_path / "answers")
    first = _run_worker(cache_dir, path, forbid=False)
    assert first["disk_hits"] == 0
    second = _run_worker(cache_dir, path, forbid=True)  # computing raises in this one
    assert second["disk_hits"] >= 2
    raw, times = ds["tas"].values, ds["time"].values
    q1 = _brute_force(raw, times, "2000-03", "2001-06", np.nanmean)
    q2 = _brute_force(raw, times, "2001-01", "2002-12", np.nanmax)
    # Q1: the dashboard computed it in process 1, the API served it in process 2
    np.testing.assert_allclose(_as_array(first["dashboard"]), q1, rtol=1e-12)
    np.testing.assert_allclose(_as_array(second["api"]), q1, rtol=1e-12)
    # Q2: the other way round
    np.testing.assert_allclose(_as_array(first["api"]), q2, rtol=1e-12)
    np.testing.assert_allclose(_as_array(second["dashboard"]), q2, rtol=1e-12)


def _answer(n: int, fill: int = 0) -> Answer:
    return Answer(bytes([fill]) * n, "text/plain", f"e{n}", "public")


def test_the_directory_stays_within_its_byte_bound_and_keeps_the_recently_used(tmp_path) -> None:
    bound = 20_000
    writer = AnswerCache(0, str(tmp_path), bound)  # no memory tier: every get reads the disk
    keys = [f"k{i}" for i in range(40)]
    for i, key in enumerate(keys):
        writer.put(key, _answer(1000 + i, i))
        assert writer.disk_usage() <= bound
        if i == 5:
            assert writer.get(keys[0]) is not None  # touched: now recently used
    reader = AnswerCache(0, str(tmp_path), bound)  # another process's view of the directory
    kept = [k for k in keys if reader.get(k) is not None]
    assert 10 <= len(kept) < len(keys)
    assert keys[-1] in kept and keys[1] not in kept
    for key in kept:
        i = keys.index(key)
        assert reader.get(key) == _answer(1000 + i, i)
    assert reader.disk_usage() == sum(
        os.path.getsize(os.path.join(tmp_path, f)) for f in os.listdir(tmp_path)
    )
    reader.put("huge", _answer(bound // 2))  # more than a quarter of the bound: not kept
    assert AnswerCache(0, str(tmp_path), bound).get("huge") is None


def test_memory_tier_is_bounded_lru_and_local_keys_stay_in_memory(tmp_path) -> None:
    cache = AnswerCache(1000, str(tmp_path), 10**6)
    for key in ("a", "b", "c"):
        cache.put(f"local:{key}", _answer(200))
    assert cache.get("local:a") is not None  # a is now the most recently used
    cache.put("local:d", _answer(200))
    cache.put("local:e", _answer(240))  # over 1000 bytes: the least recently used (b) goes
    assert cache.get("local:b") is None and cache.get("local:a") is not None
    assert cache.nbytes <= 1000 and os.listdir(tmp_path) == []  # local: never on disk


def test_keys_name_the_data_version_and_in_memory_data_is_local(tmp_path) -> None:
    ds = make_ds(0)
    local = answer_key("map", store_version(ds), ['{"var": "tas"}'])
    assert local.startswith("local:")
    path = _file(tmp_path / "d.nc")
    from data_catalog import open_dataset

    opened = open_dataset(str(path))
    shared = answer_key("map", store_version(opened), ['{"var": "tas"}'])
    assert not shared.startswith("local:")
    assert answer_key("map", store_version(opened), ['{"var": "ua"}']) != shared
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # the file changed
    assert answer_key("map", store_version(opened), ['{"var": "tas"}']) != shared


_WRITER = textwrap.dedent(
    """
    import sys, time
    from app.answer_cache import AnswerCache
    directory, who, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    cache = AnswerCache(0, directory, 3_000_000)
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        for key in range(8):
            size = 10_000 + 37_000 * ((n + key + who) % 11)
            cache.put(f"k{key}", {"key": key, "who": who, "data": bytes([who]) * size})
        n += 1
    print(n)
    """
)


def test_concurrent_writers_never_give_a_reader_a_partial_entry(tmp_path, caplog) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(who), "4"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for who in (1, 2)
    ]
    reader = AnswerCache(0, str(tmp_path), 3_000_000)
    seen = 0
    with caplog.at_level(logging.WARNING, logger="gridscope.answer_cache"):
        while any(w.poll() is None for w in writers):
            for key in range(8):
                value = reader.get(f"k{key}")
                if value is None:
                    continue
                seen += 1
                assert value["key"] == key and value["who"] in (1, 2)
                assert value["data"] == bytes([value["who"]]) * len(value["data"])
                assert (len(value["data"]) - 10_000) % 37_000 == 0
    rounds = [int(w.communicate()[0].strip() or 0) for w in writers]
    assert all(w.returncode == 0 for w in writers) and min(rounds) > 0
    assert seen > 0 and not caplog.records, [r.getMessage() for r in caplog.records]
    assert reader.disk_usage() <= 3_000_000
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".writing-")]
