"""A real `gridscope serve` subprocess and one Chromium for the browser tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM_PATH, REPO_ROOT
from tests.ports import free_port

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def wait_for_liveness(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/liveness", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server not live after {timeout}s:\n{log.read_text()[-3000:]}")


def start_server(
    extra_args: list[str], log: Path, env: dict | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = Path(sys.executable).with_name("gridscope")
    cmd = [str(exe), "serve", "--port", str(port), "--no-show", *extra_args]
    handle = log.open("w")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_liveness(url, proc, log)
    except Exception:
        stop_server(proc)
        raise
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def server_url(artifacts: Path):
    proc, url = start_server([], artifacts / "serve.log")
    yield url
    stop_server(proc)


# Per module, not per session: a running sync Playwright holds an asyncio loop on the main
# thread, and later tests that call asyncio.run (load test, Bokeh client) would fail.
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM_PATH.exists():
        if os.environ.get("CI"):  # CI installs it (`make browser`): missing is a failure there
            pytest.fail(f"no Chromium at {CHROMIUM_PATH}; `make browser` installs it")
        pytest.skip(f"no Chromium at {CHROMIUM_PATH}; `make browser` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1150})
    page = context.new_page()
    page.set_default_timeout(30000)
    yield page
    context.close()
