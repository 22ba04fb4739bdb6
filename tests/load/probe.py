"""In-page helpers (installed with ``context.add_init_script``) that watch the plots cheaply.

``window.__gs`` finds the primary canvas of the map (``.gs-map``) or of the time series
(``.gs-series``) through shadow roots, takes a small signature of its pixels (one ``getImageData`` read, every 7th pixel hashed: a feature of
more than a few dozen pixels, e.g. a 2-px region outline, always hits samples), and lists
visible problems: the warning / error alerts of the dashboard, other danger alerts, error
toasts, and any 'Traceback' text.
"""

from __future__ import annotations

import json

#: Selectors whose visibility means the user sees something went wrong.
PROBLEM_SELECTORS = (".gs-message", ".gs-error", ".alert-danger", ".notyf__toast--error")

INIT_SCRIPT = r"""
(() => {
  const PROBLEMS = __PROBLEMS__;
  function deepAll(root, sel, out, limit) {
    const walker = root.querySelectorAll('*');
    for (const el of walker) {
      if (el.matches(sel)) { out.push(el); if (out.length >= limit) return out; }
      if (el.shadowRoot) { deepAll(el.shadowRoot, sel, out, limit); if (out.length >= limit) return out; }
    }
    return out;
  }
  function deepText(root) {
    let text = '';
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) text += ' ' + el.shadowRoot.textContent + deepText(el.shadowRoot);
    }
    return text;
  }
  const cached = {};
  const gs = {
    canvas(plot) {
      const sel = '.gs-' + (plot || 'map');
      if (cached[sel] && cached[sel].isConnected) return cached[sel];
      const hosts = deepAll(document, sel, [], 1);
      if (!hosts.length) return null;
      const host = hosts[0];
      const found = deepAll(host.shadowRoot || host, 'canvas', [], 1);
      if (!found.length && host.shadowRoot) deepAll(host, 'canvas', found, 1);
      cached[sel] = found.length ? found[0] : null;
      return cached[sel];
    },
    sig(plot) {
      const c = gs.canvas(plot);
      if (!c || !c.width || !c.height) return 'none';
      let data;
      try { data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; }
      catch (e) { return 'err:' + e; }
      let h1 = 2166136261 >>> 0, h2 = 0, colourful = 0;
      for (let i = 0; i < data.length; i += 28) {        // every 7th pixel
        const r = data[i], g = data[i + 1], b = data[i + 2];
        h1 = Math.imul(h1 ^ (r | (g << 8) | (b << 16)), 16777619) >>> 0;
        h2 = (h2 + r * 3 + g * 5 + b * 7 + (i & 1023)) >>> 0;
        if (Math.max(r, g, b) - Math.min(r, g, b) > 40) colourful++;
      }
      if (!plot || plot === 'map') gs.colourful = colourful;
      return c.width + 'x' + c.height + ':' + h1 + ':' + h2;
    },
    // the map shows data: enough saturated (non-grey) samples
    hasData() { gs.sig(); return (gs.colourful || 0) > 200; },
    // plot: 'map' (default) or 'series', the plot whose change ends the action
    mark(plot) {
      gs.plot = plot || 'map';
      gs.before = gs.sig(gs.plot); gs.markedAt = performance.now(); return gs.before;
    },
    changed() {
      const now = gs.sig(gs.plot);
      if (now !== 'none' && now !== gs.before) { gs.changedAt = performance.now(); return true; }
      return false;
    },
    problems(withText) {
      const out = [];
      for (const sel of PROBLEMS) {
        for (const el of deepAll(document, sel, [], 20)) {
          if (el.checkVisibility ? el.checkVisibility() : el.offsetParent !== null) {
            const text = ((el.shadowRoot ? el.shadowRoot.textContent : '') + ' ' + (el.textContent || '')).trim();
            out.push(sel + ': ' + text.slice(0, 300));
          }
        }
      }
      if (withText) {
        const text = document.body ? document.body.innerText + deepText(document) : '';
        if (text.includes('Traceback')) out.push('page shows a Traceback');
      }
      return out;
    },
  };
  window.__gs = gs;
})();
""".replace("__PROBLEMS__", json.dumps(list(PROBLEM_SELECTORS)))
