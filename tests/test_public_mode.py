"""Public mode: limits on bytes, concurrency and time; server settings; no paths in messages."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app import answers, cluster_health, jobs, limits, map_views, runtime
from app.limits import Limits, RequestTimeout, RequestTooLarge
from app.server import server_options
from app.sources import DatasetSources
from app.state import ExplorerState
from app.views.results import ViewResults
from pipelines import Query
from tests.app_data import make_ds


@pytest.fixture(autouse=True)
def _no_limits():
    limits.configure(Limits())
    cluster_health.use_client(None)
    yield
    limits.configure(Limits())


def _sources() -> DatasetSources:
    return DatasetSources.from_datasets({"synth": make_ds(0)})


# --- limits from flags and environment ---------------------------------------------------
def test_public_mode_has_every_limit_by_default_and_flags_win_over_env() -> None:
    lim = Limits.from_options(public=True, environ={})
    assert (lim.max_request_bytes, lim.max_concurrent, lim.request_timeout) == (2 * 10**9, 4, 60.0)
    assert Limits.from_options(environ={}) == Limits()  # private: unlimited unless asked
    env = {"GRIDSCOPE_MAX_REQUEST_BYTES": "500MiB", "GRIDSCOPE_MAX_CONCURRENT": "2",
           "GRIDSCOPE_REQUEST_TIMEOUT": "9"}  # fmt: skip
    lim = Limits.from_options(public=True, environ=env)
    assert (lim.max_request_bytes, lim.max_concurrent, lim.request_timeout) == (500 * 2**20, 2, 9.0)
    lim = Limits.from_options(
        max_request_bytes=10, max_concurrent=1, request_timeout=1.5, environ=env
    )
    assert (lim.max_request_bytes, lim.max_concurrent, lim.request_timeout) == (10, 1, 1.5)
    for bad in ({"GRIDSCOPE_MAX_REQUEST_BYTES": "lots"}, {"GRIDSCOPE_MAX_CONCURRENT": "x"},
                {"GRIDSCOPE_REQUEST_TIMEOUT": "-1"}, {"GRIDSCOPE_MAX_CONCURRENT": "0"}):  # fmt: skip
        with pytest.raises(ValueError):
            Limits.from_options(environ=bad)


@pytest.mark.parametrize(
    "text,value", [("2GB", 2 * 10**9), ("500 MiB", 500 * 2**20), ("1e9", 10**9), ("64kB", 64000)]
)
def test_parse_bytes(text, value) -> None:
    assert limits.parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "2 parsecs", "nan", "inf", "0"])
def test_parse_bytes_refuses_nonsense(text) -> None:
    with pytest.raises(ValueError):
        limits.parse_bytes(text)


# --- every request costed before it runs ---------------------------------------------------
def test_request_over_budget_is_refused_with_advice_and_never_started(monkeypatch) -> None:
    started = []
    real_job = jobs.Job

    def spy(*args, **kwargs):
        started.append(args)
        return real_job(*args, **kwargs)

    monkeypatch.setattr(answers, "Job", spy)
    monkeypatch.setattr(map_views, "Job", spy)
    state = ExplorerState(_sources())
    state.param.update(
        time_mode="range", start=state.param.start.objects[0], end=state.param.end.objects[-1]
    )
    one_step = 18 * 36 * 8  # bytes of one float64 step of the 10-degree grid
    limits.configure(Limits(max_request_bytes=one_step * 2))
    results = ViewResults(state)
    results.refresh()
    assert results.field is None and started == []
    assert "coarser view" in results.error and "shorter time range" in results.error
    assert "per request" in results.error
    # a single step fits: the next map of the same session works (its 36-step series does not)
    state.time_mode = "step"
    results.refresh()
    assert results.field is not None and "the map" not in results.error
    assert "Could not compute the series" in results.error


def test_a_cached_answer_over_budget_is_still_refused() -> None:
    """A link's fate never depends on who asked first: a series computed by an unlimited
    session (and cached) is refused the same under a budget, and answered again without it."""
    ds = make_ds(0)
    query = Query(dataset="synth", var="tas", bbox=(-180.0, -90.0, 180.0, 90.0))
    unlimited = answers.series_for(ds, query)  # computed and cached
    expected = ds["tas"].weighted(ds["cell_area"]).mean(("lat", "lon"))  # NaN cells left out
    np.testing.assert_allclose(unlimited.values, expected.values, rtol=1e-6)
    limits.configure(Limits(max_request_bytes=18 * 36 * 8))  # one float64 step
    with pytest.raises(RequestTooLarge):
        answers.start_series(ds, query)
    limits.configure(Limits())
    job = answers.start_series(ds, query)
    assert job.input_bytes == 0  # from the cache, not started again


def test_netcdf_download_is_queued_behind_the_limit_and_costed() -> None:
    """The "Map netCDF" button's full-resolution map runs under the same limits as views."""
    import xarray as xr

    from app.views.dashboard import Dashboard
    from pipelines import compute_map

    source = make_ds(0)
    state = ExplorerState(DatasetSources.from_datasets({"synth": source}))
    dash = Dashboard(state)
    limits.configure(Limits(max_concurrent=1))
    slots = limits.slots()
    assert slots.try_acquire()  # another session's computation holds the only slot
    runtime.current().cache.clear()  # the view's map is cached: the download must compute it again

    async def download_while_busy() -> bytes:
        task = asyncio.ensure_future(dash._netcdf())
        await asyncio.sleep(0.5)
        assert not task.done() and slots.queued == 1 and dash.results.queued
        slots.release()
        return (await asyncio.wait_for(task, 60)).getvalue()

    data = asyncio.run(download_while_busy())
    assert not dash.results.queued and slots.running == 0
    with xr.open_dataset(data) as got:
        expected = compute_map(source, state.query).values
        np.testing.assert_allclose(got[state.var].values, expected, rtol=1e-12)
    # over the per-request budget: refused in words, nothing downloaded
    runtime.current().cache.clear()
    limits.configure(Limits(max_request_bytes=10))
    with pytest.raises(RequestTooLarge):
        asyncio.run(dash._netcdf())
    assert state.message.startswith("Map netCDF:") and "coarser view" in state.message


def test_check_cost() -> None:
    limits.check_cost(10**12, Limits())
    limits.check_cost(100, Limits(max_request_bytes=100))
    with pytest.raises(RequestTooLarge, match="1.00 kB"):
        limits.check_cost(1000, Limits(max_request_bytes=100))


# --- concurrency: a global queue, and one computation per session --------------------------
def _slow_chain(seconds_per_task: float, tasks: int = 8):
    """A dask graph of ``tasks`` sequential steps (no parallelism to hide the time)."""
    import dask

    def step(value):
        time.sleep(seconds_per_task)
        return value + 1

    out = dask.delayed(0)
    for _ in range(tasks):
        out = dask.delayed(step)(out)
    return out


def test_global_limit_queues_the_rest() -> None:
    limits.configure(Limits(max_concurrent=1))
    events: list[tuple[str, bool]] = []
    running: list[int] = []

    def work(name: str):
        def run():
            running.append(limits.slots().running)
            time.sleep(0.3)
            return name

        return run

    async def main():
        a = jobs.Job(work("a"), 0)
        b = jobs.Job(work("b"), 0)
        return await asyncio.gather(
            jobs.run_job(a, on_queued=lambda q: events.append(("a", q))),
            jobs.run_job(b, on_queued=lambda q: events.append(("b", q))),
        )

    assert asyncio.run(main()) == ["a", "b"]
    assert events == [("b", True), ("b", False)]  # b waited, a did not
    assert max(running) == 1 and limits.slots().peak == 1
    assert limits.slots().running == 0 and limits.slots().queued == 0


def test_time_limit_cancels_the_computation_and_frees_the_slot() -> None:
    limits.configure(Limits(max_concurrent=1, request_timeout=0.6))
    job = jobs.Job(_slow_chain(0.25, tasks=12), 0)
    t0 = time.monotonic()
    with pytest.raises(RequestTimeout, match="longer than the 0.6 s"):
        asyncio.run(jobs.run_job(job))
    assert time.monotonic() - t0 < 2.5  # stopped at a task boundary, not after 3 s of work
    deadline = time.monotonic() + 3
    while limits.slots().running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert limits.slots().running == 0
    quick = jobs.Job(lambda: 42, 0)
    assert asyncio.run(jobs.run_job(quick)) == 42  # the next request works


def _assert_cancel_stops(job: jobs.Job) -> None:
    """``job`` (3 s of 0.2 s tasks), cancelled after 0.3 s, stops at its next task."""
    failures: list[BaseException] = []

    def run():
        try:
            job.result()
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    thread = threading.Thread(target=run)
    t0 = time.monotonic()
    thread.start()
    time.sleep(0.3)
    job.cancel()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - t0 < 1.5
    assert len(failures) == 1 and isinstance(failures[0], limits.JobCancelled)


def test_cancel_stops_inprocess_work_at_the_next_task() -> None:
    _assert_cancel_stops(jobs.Job(_slow_chain(0.2, tasks=15), 0))


def test_cancel_still_stops_work_after_concurrent_graphs_emptied_dasks_callbacks() -> None:
    """Two graphs computed at once on two threads (dask's `local_callbacks` entered and
    left interleaved) leave dask's global callbacks empty: jobs must still stop."""
    from dask.callbacks import Callback, local_callbacks

    jobs.Job(_slow_chain(0.0, tasks=2), 0).result()  # the hook is registered
    first, second = local_callbacks(), local_callbacks()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert Callback.active == set()
    _assert_cancel_stops(jobs.Job(_slow_chain(0.2, tasks=15), 0))  # a dask graph
    _assert_cancel_stops(jobs.Job(lambda: _slow_chain(0.2, tasks=15).compute(), 0))  # a plan


def test_a_new_request_of_a_session_cancels_the_old_one(monkeypatch) -> None:
    cancelled: list[jobs.Job] = []
    real_cancel = jobs.Job.cancel

    def spy(self):
        cancelled.append(self)
        real_cancel(self)

    monkeypatch.setattr(jobs.Job, "cancel", spy)
    state = ExplorerState(_sources())
    results = ViewResults(state)
    old = jobs.Job(_slow_chain(0.2), 0)
    results._jobs["map"] = old
    results._schedule("map")  # what a widget change does (synchronously outside a server)
    assert cancelled and cancelled[0] is old and old.cancelled.is_set()


# --- server settings -------------------------------------------------------------------------
def test_public_mode_refuses_any_origin() -> None:
    for origins, env in ((["*"], {}), (["*:5006"], {}), ([], {"BOKEH_ALLOW_WS_ORIGIN": "*"})):
        with pytest.raises(ValueError, match="explicit websocket origin"):
            server_options(port=5006, websocket_origins=origins, public=True, environ=env)
    options = server_options(port=5006, websocket_origins=["maps.example.org", "*.example.org"],
                             public=True, environ={})  # fmt: skip
    assert options["websocket_origin"] == ["maps.example.org", "*.example.org"]
    # private mode keeps the old default: this machine only
    assert server_options(port=7, environ={})["websocket_origin"] == ["localhost:7", "127.0.0.1:7"]


def test_signed_sessions_xsrf_expiry_and_no_tracebacks() -> None:
    public = server_options(port=1, public=True, environ={})
    assert public["sign_sessions"] and len(public["secret_key"]) >= 32
    assert public["serve_traceback"] is False and public["debug"] is False
    assert server_options(port=1, public=True, environ={})["secret_key"] != public["secret_key"]
    key = "k" * 40
    opts = server_options(port=1, sign_sessions=True, xsrf_cookies=True, unused_session_lifetime=2,
                          check_unused_sessions=0.5, environ={"BOKEH_SECRET_KEY": key})  # fmt: skip
    assert opts["secret_key"] == key and opts["xsrf_cookies"] is True
    assert opts["unused_session_lifetime_milliseconds"] == 2000
    assert opts["check_unused_sessions_milliseconds"] == 500
    with pytest.raises(ValueError, match="BOKEH_SECRET_KEY"):
        server_options(port=1, sign_sessions=True, environ={})
    with pytest.raises(ValueError, match="too short"):
        server_options(port=1, sign_sessions=True, environ={"BOKEH_SECRET_KEY": "short"})
    assert server_options(port=1, environ={"BOKEH_SIGN_SESSIONS": "true", "BOKEH_SECRET_KEY": key})[
        "sign_sessions"
    ]


def test_cli_refuses_a_star_origin_and_paths_in_public_mode(capsys) -> None:
    from app.cli import main

    assert main(["serve", "--public", "--allow-websocket-origin", "*"]) == 2
    err = capsys.readouterr().err
    assert "explicit websocket origin" in err and "Traceback" not in err
    assert main(["serve", "--public", "/etc/passwd"]) == 2
    assert "catalog datasets only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--max-request-bytes", "lots"])
    assert exc.value.code == 2
    assert "expected a positive size such as 2GB" in capsys.readouterr().err


def test_pins_are_minimums_in_pyproject(repo_root) -> None:
    text = (repo_root / "pyproject.toml").read_text()
    assert '"bokeh>=3.8.2"' in text and '"jupyter-server-proxy>=4.2.0"' in text
    import bokeh
    from packaging.version import Version

    assert Version(bokeh.__version__) >= Version("3.8.2")


# --- words, never paths or tracebacks ------------------------------------------------------
def test_user_messages_carry_no_paths() -> None:
    from data_catalog.errors import DatasetOpenError

    exc = DatasetOpenError(
        "/srv/data/secret/store.zarr: cannot be read (bad header at /srv/data/x)"
    )
    text = limits.user_message(exc, "sst")
    assert "'sst'" in text and "/srv" not in text and "cannot be read" in text
    text = limits.user_message(RuntimeError("Error during decompression\nTraceback ..."), "sst")
    assert "corrupt" in text and "Traceback" not in text and "\n" not in text
    assert "/home/u" not in limits.scrub("failed at /home/u/x.py line 3")
    assert limits.scrub("s3://key:secret@bucket/x") == "s3://bucket/x"
    assert limits.scrub("Traceback (most recent call last):") == ""


def test_app_code_sends_no_raw_exception_text_to_the_page(repo_root) -> None:
    """Audit: exception text reaching a view goes through app.limits (scrubbed)."""
    import re

    offenders = []
    for path in (repo_root / "app").rglob("*.py"):
        if path.parts[-2] == "commands" or path.name in ("cli.py", "limits.py"):
            continue  # the CLI prints to the operator's terminal
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\{exc(!r)?\}|str\(exc\)|format_exc", line) and "scrub(" not in line:
                offenders.append(f"{path.relative_to(repo_root)}:{n}: {line.strip()}")
    assert offenders == []


def test_served_page_error_is_words(monkeypatch) -> None:
    from app import server

    class Boom:
        def __init__(self, *a, **k):
            raise OSError("/very/secret/path/file.nc: disk on fire")

    monkeypatch.setattr("app.views.dashboard.Dashboard", Boom)
    page = server.create_session(_sources())
    text = page.object
    assert "could not build this page" in text and "/very" not in text


def test_one_step_field_still_right_under_limits() -> None:
    """Limits change nothing about the numbers."""
    limits.configure(Limits(max_request_bytes=10**9, max_concurrent=2, request_timeout=30))
    state = ExplorerState(_sources())
    results = ViewResults(state)
    results.refresh()
    expected = make_ds(0)["tas"].isel(time=0).values
    np.testing.assert_allclose(results.field.values, expected, equal_nan=True)
