"""`app.settings.Settings`: every ``GRIDSCOPE_*`` variable read once, checked, in words."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from app.settings import Settings, SettingsError
from tests.conftest import REPO_ROOT


def test_unset_or_empty_variables_give_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    blank = {var: " " for var in Settings.variables()}
    assert Settings.from_env(blank) == Settings()


def test_each_variable_sets_its_field() -> None:
    env = {
        "GRIDSCOPE_INPROCESS_BYTES": "1MiB", "GRIDSCOPE_FALLBACK_BYTES": "2GB",
        "GRIDSCOPE_RECONNECT_INTERVAL": "0.5", "GRIDSCOPE_ASK_BYTES": "1e9",
        "GRIDSCOPE_READ_RATE": "2e8", "GRIDSCOPE_SMALL_GRID_CELLS": "1000",
        "GRIDSCOPE_WEBGL": "1", "GRIDSCOPE_MAX_CONCURRENT": "3",
        "GRIDSCOPE_CACHE_DIR": "off", "GRIDSCOPE_CACHE_BYTES": "64MB",
    }  # fmt: skip
    got = Settings.from_env(env)
    assert (got.inprocess_bytes, got.fallback_bytes, got.ask_bytes) == (2**20, 2 * 10**9, 10**9)
    assert (got.reconnect_interval, got.read_rate, got.small_grid_cells) == (0.5, 2e8, 1000)
    assert got.webgl is True and got.max_concurrent == 3 and got.cache_bytes == 64 * 10**6
    assert got.cache_directory is None
    assert Settings.from_env({"GRIDSCOPE_CACHE_DIR": "/x/y"}).cache_directory == "/x/y"


@pytest.mark.parametrize(
    "var,value,expected",
    [
        ("GRIDSCOPE_INPROCESS_BYTES", "lots", "a positive size"),
        ("GRIDSCOPE_SMALL_GRID_CELLS", "2.5", "whole number"),
        ("GRIDSCOPE_MAX_CONCURRENT", "0", "whole number"),
        ("GRIDSCOPE_RECONNECT_INTERVAL", "-1", "positive number of seconds"),
        ("GRIDSCOPE_WARM_UP_SECONDS", "soon", "seconds"),
        ("GRIDSCOPE_READ_RATE", "nan", "bytes per second"),
        ("GRIDSCOPE_WEBGL", "maybe", "1 or 0"),
        ("GRIDSCOPE_NUM_PROCS", "0", "whole number of at least 1"),
        ("GRIDSCOPE_API_MAX_AGE", "inf", "whole number of at least 1"),
        ("GRIDSCOPE_REQUEST_TIMEOUT", "0", "positive number of seconds"),
        ("GRIDSCOPE_WARM_UP_SECONDS", "-0.5", "0 or more"),
    ],
)
def test_a_malformed_value_is_refused_naming_the_variable(var, value, expected) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({var: value})
    message = str(info.value)
    assert message.startswith(f"{var}='{value}': ") and expected in message
    assert "\n" not in message


def test_a_flag_accepts_what_its_variable_accepts(capsys) -> None:
    """``serve``'s flags parse with their setting's parser: same values, same words."""
    from app.cli import main as gridscope

    for flag, value, words in [
        ("--request-timeout", "0", "expected a positive number of seconds"),
        ("--max-request-bytes", "lots", "expected a positive size"),
        ("--max-concurrent", "2.5", "expected a whole number of at least 1"),
        ("--num-procs", "0", "expected a whole number of at least 1"),
    ]:
        with pytest.raises(SystemExit):
            gridscope(["serve", flag, value])
        assert f"{flag}: '{value}': {words}" in capsys.readouterr().err


def test_every_field_has_a_variable_and_the_app_reads_no_other_way() -> None:
    """Settings are read once, here: no app module parses a GRIDSCOPE_ variable itself."""
    names = {f.metadata["var"] for f in dataclasses.fields(Settings)}
    assert len(names) == len(dataclasses.fields(Settings))
    offenders = []
    for path in (REPO_ROOT / "app").rglob("*.py"):
        if path.name == "settings.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"environ(\.get)?\(?\[?[\"']GRIDSCOPE_|getenv\([\"']GRIDSCOPE_", line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_the_runtime_reads_settings_once_and_holds_the_state(monkeypatch) -> None:
    """State lives on a `Runtime`: another runtime has its own cache, limits and client."""
    from app import answers, limits, map_views, runtime
    from app.limits import Limits
    from pipelines import Query, compute_map
    from tests.app_data import make_ds

    monkeypatch.setenv("GRIDSCOPE_SMALL_GRID_CELLS", "1234")
    first = runtime.install(runtime.Runtime.from_env())  # reads the process's environment
    monkeypatch.setenv("GRIDSCOPE_SMALL_GRID_CELLS", "99")  # read once: changes nothing now
    assert runtime.current() is first and map_views.small_grid_cells() == 1234
    ds = make_ds(1)
    query = Query(dataset="d", var="tas", time="2001-02")
    field = answers.full_map(ds, query)
    np.testing.assert_allclose(field.values, compute_map(ds, query).values, equal_nan=True)
    assert len(first.cache) == 1 and answers.start_map(ds, query).where == "cache"
    limits.configure(Limits(max_request_bytes=10))
    second = runtime.install(runtime.Runtime.from_env({"GRIDSCOPE_CACHE_DIR": "off"}))
    assert len(second.cache) == 0 and limits.current().max_request_bytes is None
    assert first.limits.max_request_bytes == 10 and second.client is None
    assert answers.start_map(ds, query).where == "in-process"
