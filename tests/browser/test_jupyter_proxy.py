"""gridscope inside Jupyter: a real ``jupyter server`` with jupyter-server-proxy.

The server is started on loopback by the test; the app is reached through the
proxy URL ``/user-prefix/gridscope/`` (websockets included) and Chromium must
show the map. The launcher entry comes from our ``jupyter_serverproxy_servers``
entry point, so this also proves the entry point is installed and working.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.test_dashboard import open_dashboard
from tests.ports import free_port

pytestmark = pytest.mark.browser

TOKEN = "gridscope-test-token"
BASE = "/user/tester/"


@pytest.fixture(scope="module")
def jupyter_url(artifacts: Path, tmp_path_factory):
    port = free_port()
    log = (artifacts / "jupyter-server.log").open("w")
    root = tmp_path_factory.mktemp("jupyter-root")
    env = {
        **os.environ,
        "GRIDSCOPE_ALLOW_WEBSOCKET_ORIGIN": f"127.0.0.1:{port}",
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
    }
    cmd = [
        str(Path(sys.executable).with_name("jupyter-server")),
        "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
        f"--ServerApp.base_url={BASE}", f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}{BASE}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}api/status?token={TOKEN}", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((artifacts / "jupyter-server.log").read_text()[-3000:]) from None
            time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_launcher_entry_is_registered(jupyter_url):
    with urllib.request.urlopen(
        f"{jupyter_url}server-proxy/servers-info?token={TOKEN}", timeout=10
    ) as r:
        servers = json.load(r)["server_processes"]
    entry = next(s for s in servers if s["name"] == "gridscope")
    assert entry["launcher_entry"]["enabled"] is True
    assert entry["launcher_entry"]["title"] == "gridscope"


def test_dashboard_through_the_proxy(page, jupyter_url, artifacts: Path):
    # the proxy starts gridscope (its cluster, its datasets) on this first request: on a
    # loaded 2-core machine the first map took over the default 30 s (a failed run)
    page.set_default_timeout(90_000)
    page.goto(f"{jupyter_url}?token={TOKEN}")  # sets Jupyter's auth cookie
    open_dashboard(page, f"{jupyter_url}gridscope/?dataset=coads&var=SST&time=Jan")
    assert page.url.startswith(f"{jupyter_url}gridscope/")
    page.screenshot(path=str(artifacts / "10-jupyter-proxy.png"), full_page=True)
    # the permalink the page offers points back through the proxy
    values = page.evaluate(_ALL_INPUT_VALUES)
    assert any(v.startswith(f"{jupyter_url}gridscope/?dataset=coads") for v in values), values


_ALL_INPUT_VALUES = """() => {
  const out = [];
  const walk = root => {
    root.querySelectorAll('*').forEach(e => {
      if (e.tagName === 'INPUT' && e.value) out.push(e.value);
      if (e.shadowRoot) walk(e.shadowRoot);
    });
  };
  walk(document);
  return out;
}"""
