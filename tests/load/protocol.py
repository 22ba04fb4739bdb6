"""One simulated user speaking the Bokeh protocol over a websocket, without a browser.

`ProtocolSession` does what BokehJS does for a dashboard page, and nothing more: it opens
``/ws`` with a session token (the URL's query string becomes the session's arguments, as
for ``bokeh.client.pull_session``), pulls the document (``PULL-DOC-REQ``), sends the
``document_ready`` event a browser sends once the page is drawn, and then changes the
time step, the variable or the region by sending the same ``PATCH-DOC`` a browser sends
when a person picks a new value in the widget. An update is timed from that message to
the server's patch of the answer's data: the map's image (``ColumnDataChanged`` of the
data source with an ``image`` column) for time and variable, the time series for the
region. Nothing is decoded into a Bokeh `Document` (only the JSON frames are read), so
a hundred sessions cost the client little of the two cores the server needs.

Errors: an ``ERROR`` message, the websocket closing, no answer within
`UPDATE_TIMEOUT_S`, or text appearing in the page's error box (``gs-error``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

__all__ = ["ACTIONS", "ProtocolSession", "SessionStats"]

#: What a user changes, and which answer shows that it was done.
ACTIONS = ("time", "variable", "region")
_TARGET = {"time": "map", "variable": "map", "region": "series"}
#: The widgets acted on, by their css class in the dashboard (app/views/sidebar.py).
_WIDGETS = {"time": "gs-time", "variable": "gs-var", "region": "gs-region"}
UPDATE_TIMEOUT_S = 30.0
#: Region choices that wait for the user's next click or box (no new answer by themselves).
_NO_ANSWER_YET = {"Point", "Custom box"}
_ids = itertools.count()


@dataclass
class SessionStats:
    """What one session measured."""

    index: int
    page_ready_s: float | None = None
    latencies: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _objects(tree: Any):
    """Every serialised Bokeh model (``{"type": "object", "id", "attributes"}``) in ``tree``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "object" and "id" in node:
                yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _option_values(options: Any) -> list[str]:
    """A Select's option values: ``["a", ...]`` or ``[["a", "label"], ...]``."""
    if not isinstance(options, list):
        return []
    return [o[0] if isinstance(o, list) else o for o in options if isinstance(o, (str, list))]


class ProtocolSession:
    """A dashboard session of ``url`` (``http://host:port``) opened with ``query``."""

    def __init__(
        self,
        url: str,
        index: int,
        *,
        query: dict[str, str] | None = None,
        seed: int = 0,
        think: tuple[float, float] = (2.0, 6.0),
        secret_key: str | None = None,
    ):
        self.url, self.query = url.rstrip("/"), dict(query or {})
        self.stats = SessionStats(index)
        self.rng = random.Random(seed * 100_003 + index)
        self.think, self.secret_key = think, secret_key
        self.widgets: dict[str, str] = {}  # action -> model id
        self.values: dict[str, Any] = {}  # model id -> current value
        self.options: dict[str, list[str]] = {}  # model id -> option values
        self.targets: dict[str, str] = {}  # "map" / "series" -> data source id
        self.error_box: str | None = None
        self.changes = {"map": 0, "series": 0}
        self._changed = asyncio.Event()
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._closing = False

    # --- protocol ---------------------------------------------------------------------------
    async def _send(self, msgtype: str, content: dict[str, Any]) -> None:
        header = {"msgid": f"c{next(_ids)}", "msgtype": msgtype}
        for part in (header, {}, content):
            await self._ws.write_message(json.dumps(part))

    async def _receive(self) -> Any:
        while True:
            fragment = await self._ws.read_message()
            if fragment is None:
                raise ConnectionError("the websocket closed")
            message = await self._receiver.consume(fragment)
            if message is not None:
                return message

    def _learn(self, tree: Any) -> None:
        """Note the widgets, the answers' data sources and the error box in new models."""
        for obj in _objects(tree):
            attrs = obj.get("attributes") or {}
            css = attrs.get("css_classes") or []
            for action, klass in _WIDGETS.items():
                if klass in css:
                    self.widgets[action] = obj["id"]
                    self.values[obj["id"]] = attrs.get("value")
                    self.options[obj["id"]] = _option_values(attrs.get("options"))
            if "gs-error" in css:
                self.error_box = obj["id"]
            data = attrs.get("data")
            columns = set()
            if isinstance(data, dict):
                entries = data.get("entries") if data.get("type") == "map" else None
                columns = {e[0] for e in entries} if entries else set(data)
            if "image" in columns:
                self.targets.setdefault("map", obj["id"])
            elif {"time", "value"} <= columns:
                self.targets.setdefault("series", obj["id"])

    def _apply(self, content: dict[str, Any]) -> None:
        self._learn(content.get("references", []))
        for event in content.get("events", []):
            model = (event.get("model") or {}).get("id")
            kind, attr = event.get("kind"), event.get("attr")
            if kind in ("ModelChanged", "ColumnDataChanged", "ColumnsStreamed", "ColumnsPatched"):
                for target, source in self.targets.items():
                    if model == source and (attr == "data" or kind != "ModelChanged"):
                        self.changes[target] += 1
            if kind == "ModelChanged":
                self._learn(event.get("new"))
                if model in self.values and attr == "value":
                    self.values[model] = event.get("new")
                elif model in self.options and attr == "options":
                    self.options[model] = _option_values(event.get("new"))
                elif model == self.error_box and attr == "text" and event.get("new"):
                    self.stats.errors.append(f"session {self.stats.index}: error shown: "
                                             f"{str(event['new'])[:200]}")  # fmt: skip
        # whoever waits re-checks: a page drawn in batches brings its widgets in patches
        # that change no data (`open` waits for them)
        self._changed.set()

    async def _read(self) -> None:
        try:
            while True:
                message = await self._receive()
                if message.msgtype == "PATCH-DOC":
                    self._apply(message.content)
                elif message.msgtype == "ERROR":
                    self.stats.errors.append(f"session {self.stats.index}: server error "
                                             f"{str(message.content)[:200]}")  # fmt: skip
        except (ConnectionError, OSError, asyncio.CancelledError) as exc:
            if not self._closing and not isinstance(exc, asyncio.CancelledError):
                self.stats.errors.append(f"session {self.stats.index}: {exc}")
            self._changed.set()

    # --- a user ----------------------------------------------------------------------------
    async def open(self, timeout: float = 90.0) -> bool:
        """Connect, pull the page and report it drawn; False (and an error) if it failed."""
        from bokeh.protocol import Protocol
        from bokeh.protocol.receiver import Receiver
        from bokeh.util.token import generate_jwt_token, generate_session_id
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        started = time.perf_counter()
        token = generate_jwt_token(generate_session_id(), secret_key=self.secret_key,
                                   signed=self.secret_key is not None)  # fmt: skip
        ws_url = self.url.replace("http", "ws", 1) + "/ws"
        if self.query:
            ws_url += "?" + urlencode(self.query)
        self._receiver = Receiver(Protocol())
        try:
            async with asyncio.timeout(timeout):
                self._ws = await websocket_connect(
                    HTTPRequest(ws_url, headers={"Origin": self.url}, connect_timeout=timeout,
                                request_timeout=timeout),
                    subprotocols=["bokeh", token], max_message_size=256 * 2**20,
                )  # fmt: skip
                await self._receive()  # ACK
                await self._send("PULL-DOC-REQ", {})
                while (message := await self._receive()).msgtype != "PULL-DOC-REPLY":
                    if message.msgtype == "PATCH-DOC":
                        self._apply(message.content)
                self._learn(message.content["doc"])
                self._reader = asyncio.create_task(self._read())
                ready = {"type": "event", "name": "document_ready",
                         "values": {"type": "map", "entries": []}}  # fmt: skip
                await self._send("PATCH-DOC", {"events": [
                    {"kind": "MessageSent", "msg_type": "bokeh_event", "msg_data": ready}]})  # fmt: skip
                while not ("map" in self.targets and len(self.widgets) == len(_WIDGETS)):
                    if self._reader.done():  # closed: the reader said why
                        return False
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            self.stats.errors.append(f"session {self.stats.index}: page not ready in {timeout:.0f} s "
                                     f"(widgets {sorted(self.widgets)}, data {sorted(self.targets)})")  # fmt: skip
            return False
        except Exception as exc:  # noqa: BLE001  (a failed page is one error, not the end of the run)
            self.stats.errors.append(f"session {self.stats.index}: page failed: {exc!r}"[:300])
            return False
        self.stats.page_ready_s = time.perf_counter() - started
        return True

    async def act(self, kind: str) -> float | None:
        """Pick another value in the ``kind`` widget; seconds until its answer arrived."""
        widget = self.widgets.get(kind)
        choices = [v for v in self.options.get(widget, [])
                   if v != self.values.get(widget) and v not in _NO_ANSWER_YET]  # fmt: skip
        target = _TARGET[kind]
        if widget is None or not choices or target not in self.targets:
            return None
        value = self.rng.choice(choices)
        before = self.changes[target]
        started = time.perf_counter()
        self.values[widget] = value
        await self._send("PATCH-DOC", {"events": [
            {"kind": "ModelChanged", "model": {"id": widget}, "attr": "value", "new": value}]})  # fmt: skip
        deadline = started + UPDATE_TIMEOUT_S
        while self.changes[target] == before:
            if self._reader is None or self._reader.done():
                return None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), deadline - time.perf_counter())
            except TimeoutError:
                self.stats.errors.append(f"session {self.stats.index}: no {target} after "
                                         f"{kind} -> {value!r} in {UPDATE_TIMEOUT_S:.0f} s")  # fmt: skip
                return None
        latency = time.perf_counter() - started
        self.stats.latencies.append((kind, latency))
        return latency

    async def run(self, end: float) -> None:
        """Act at human pace (a think time between actions) until ``end`` (monotonic)."""
        while True:
            pause = self.rng.uniform(*self.think)
            if time.monotonic() + pause >= end:
                return
            await asyncio.sleep(pause)
            if self._reader is None or self._reader.done():
                return
            await self.act(self.rng.choice(ACTIONS))

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
