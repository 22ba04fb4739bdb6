"""Widget change -> new map drawn, measured inside Chromium (``python -m tests.bench.browser_latency``).

Starts ``gridscope serve`` (bundled catalog, or ``--source``), opens the dashboard in
the system Chromium and, ``--n`` times each, changes a sidebar widget from JavaScript
inside the page and waits for the map canvas to change. The clock runs in the page:
``t0 = performance.now()`` right before the ``change`` event is dispatched; the map is
"drawn" on the first animation frame whose canvas signature (a sparse grid of pixels
read with ``getImageData``, ~1 ms) differs from the one before the change. No
Playwright screenshots in the loop (they cost ~170 ms each).

Prints p50/p95 per widget and writes ``bench-results/browser-latency.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]

#: In-page helpers: find the map's main canvas (through shadow roots), sign it, and time
#: a select change until the signature changes.
JS_HELPERS = r"""
(() => {
  function* walk(root) {
    for (const el of root.querySelectorAll('*')) {
      yield el;
      if (el.shadowRoot) yield* walk(el.shadowRoot);
    }
  }
  function deepFind(root, pred) {
    for (const el of walk(root)) if (pred(el)) return el;
    return null;
  }
  const inside = function* (host) { yield* walk(host); if (host.shadowRoot) yield* walk(host.shadowRoot); };
  window.gsMapCanvas = () => {
    const host = deepFind(document, (e) => e.classList && e.classList.contains('gs-map'));
    if (!host) return null;
    let best = null;
    for (const el of inside(host)) {
      if (el.tagName === 'CANVAS' && el.width * el.height > (best ? best.width * best.height : 0)) best = el;
    }
    return best;
  };
  window.gsSignature = () => {
    const canvas = window.gsMapCanvas();
    if (!canvas || !canvas.width) return '';
    const ctx = canvas.getContext('2d');
    const w = canvas.width, h = canvas.height;
    const data = ctx.getImageData(0, 0, w, h).data;
    let sig = 0;
    const step = Math.max(4, Math.floor(w * h / 4000)) * 4;
    for (let i = 0; i < data.length; i += step) sig = (sig * 31 + data[i] + 7 * data[i + 1] + 13 * data[i + 2]) | 0;
    return String(sig);
  };
  window.gsSelect = (cls) => {
    const host = deepFind(document, (e) => e.classList && e.classList.contains(cls));
    if (!host) return null;
    for (const el of inside(host)) if (el.tagName === 'SELECT') return el;
    return null;
  };
  // change the <select> of widget `cls` to option `index`; resolve with ms until the map changes
  window.gsTimeChange = (cls, index, timeoutMs) => new Promise((resolve) => {
    const select = window.gsSelect(cls);
    if (!select) { resolve({error: 'no select ' + cls}); return; }
    const before = window.gsSignature();
    let frames = 0;
    const t0 = performance.now();
    select.selectedIndex = index;
    select.dispatchEvent(new Event('change', {bubbles: true}));
    select.dispatchEvent(new Event('input', {bubbles: true}));
    const poll = () => {
      frames += 1;
      const now = performance.now();
      if (window.gsSignature() !== before) { resolve({ms: now - t0, frames}); return; }
      if (now - t0 > timeoutMs) { resolve({error: 'timeout', ms: now - t0}); return; }
      requestAnimationFrame(poll);
    };
    requestAnimationFrame(poll);
  });
})();
"""


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"n": 0}
    return {
        "n": int(arr.size),
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p95_ms": round(float(np.percentile(arr, 95)), 1),
        "min_ms": round(float(arr.min()), 1),
        "max_ms": round(float(arr.max()), 1),
    }


def wait_for_signature(page: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate("window.gsSignature && window.gsSignature() !== ''"):
            return
        page.wait_for_timeout(100)
    raise RuntimeError("no map canvas")


def measure(page: Any, widget: str, indices: list[int], settle_ms: int = 300) -> list[float]:
    """Latencies (ms) of changing ``widget`` to each option index in turn."""
    out = []
    for index in indices:
        result = page.evaluate("([c, i]) => window.gsTimeChange(c, i, 10000)", [widget, index])
        if "error" in result:
            state = page.evaluate(
                "[window.gsSelect('gs-var').value, window.gsSelect('gs-time').value]"
            )
            print(f"{widget} -> option {index}: {result} (var, time now {state})", file=sys.stderr)
            page.screenshot(
                path=str(
                    REPO_ROOT / "bench-results" / f"browser-latency-timeout-{widget}-{index}.png"
                )
            )
            continue
        out.append(float(result["ms"]))
        page.wait_for_timeout(settle_ms)  # let trailing updates land before the next change
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(REPO_ROOT))
    from tests.browser.conftest import CHROMIUM_ARGS, start_server, stop_server
    from tests.conftest import CHROMIUM_PATH

    out_dir = REPO_ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    extra = [*args.source] if args.source else []
    proc, url = start_server(extra, out_dir / "browser-latency-serve.log")
    results: dict[str, Any] = {"url_query": args.query, "n": args.n}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1150})
            page.goto(f"{url}/{args.query}")
            page.wait_for_selector(".gs-map canvas", timeout=60000)
            page.evaluate(JS_HELPERS)
            wait_for_signature(page)
            page.wait_for_timeout(1500)
            noptions = page.evaluate("window.gsSelect('gs-time').options.length")
            rng = np.random.default_rng(0)
            # warm-up (first renders compile/caches), then the timed changes
            current = page.evaluate("window.gsSelect('gs-time').selectedIndex")
            indices = []
            for _ in range(args.n + 3):
                nxt = int(rng.integers(0, noptions - 1))
                nxt = nxt if nxt < current else nxt + 1
                indices.append(nxt)
                current = nxt
            times = measure(page, "gs-time", indices)[3:]
            results["time"] = _percentiles(times) | {"samples_ms": [round(t, 1) for t in times]}
            if args.var:
                nvars = page.evaluate("window.gsSelect('gs-var').options.length")
                if nvars > 1:
                    current = page.evaluate("window.gsSelect('gs-var').selectedIndex")
                    seq = [(current + 1 + i) % nvars for i in range(args.n + 2)]
                    seq = [s if s != current else (s + 1) % nvars for s in seq]
                    var_times = measure(page, "gs-var", seq, settle_ms=500)[2:]
                    results["var"] = _percentiles(var_times) | {
                        "samples_ms": [round(t, 1) for t in var_times]
                    }
            page.screenshot(path=str(out_dir / "browser-latency.png"))
            browser.close()
    finally:
        stop_server(proc)
    (out_dir / "browser-latency.json").write_text(json.dumps(results, indent=2))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="timed changes per widget (>= 20)")
    parser.add_argument("--query", default="?dataset=coads&var=SST",
                        help="URL query of the page to measure (default COADS SST)")  # fmt: skip
    parser.add_argument(
        "--source", action="append", default=[], help="extra SOURCE for gridscope serve"
    )
    parser.add_argument(
        "--no-var", dest="var", action="store_false", help="skip the variable changes"
    )
    args = parser.parse_args(argv)
    results = run(args)
    for widget in ("time", "var"):
        if widget in results:
            r = results[widget]
            print(f"{widget:5s} change -> new map drawn: p50 {r['p50_ms']:.0f} ms  p95 {r['p95_ms']:.0f} ms  "
                  f"(n={r['n']}, min {r['min_ms']:.0f}, max {r['max_ms']:.0f})")  # fmt: skip
    print(f"wrote {REPO_ROOT / 'bench-results' / 'browser-latency.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
