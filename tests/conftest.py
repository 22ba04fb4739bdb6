"""Shared pytest configuration for gridscope.

Kept minimal on purpose: each area appends its own fixtures below.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

#: Repository root (the folder holding pyproject.toml).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Real NOAA PMEL sample files (public domain) bundled with the catalog.
SAMPLES_DIR = REPO_ROOT / "data_catalog" / "samples"

#: Chromium used by the browser tests; `make browser` installs Debian's build here.
CHROMIUM_PATH = Path(os.environ.get("GRIDSCOPE_CHROMIUM", "/usr/bin/chromium"))


#: Servers started by tests share answers in a folder of this test session only, never
#: the machine's (`app.answer_cache`): a test must not be answered by an earlier run.
_ANSWERS = tempfile.mkdtemp(prefix="gridscope-test-answers-")
os.environ.setdefault("GRIDSCOPE_CACHE_DIR", _ANSWERS)
atexit.register(shutil.rmtree, _ANSWERS, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Absolute path of the repository root."""
    return REPO_ROOT


# real `dask scheduler` + worker processes on loopback, for the cluster tests
from tests.dask_processes import dask_processes  # noqa: E402, F401


@pytest.fixture(autouse=True)
def app_runtime():
    """Each test gets a fresh app runtime (`app.runtime`): settings from the environment,
    no cluster, unlimited, and answers kept in memory only (the shared answer directory
    would carry answers from one test, or one run, to the next)."""
    from app.runtime import Runtime, install

    return install(Runtime.from_env({**os.environ, "GRIDSCOPE_CACHE_DIR": "off"}))
