#!/usr/bin/env python3
"""A pycrdt peer that joins a Pulse document over the public WebSocket protocol.

The Python counterpart of yjs_peer.mjs (same flags, same stdout contract): the
interoperability check between pycrdt (PyPI `pycrdt`, the Python bindings of
yrs) and the server's yrs and the browser. It uses nothing but `pycrdt`,
`websockets` and the standard library (end2end/interop/requirements.txt;
scripts/setup.sh installs them into tools/pyenv). It logs in as a guest,
subscribes to `doc:{doc}`, types a string one character per transaction while
publishing its cursor as awareness, and waits until every edit is acked, the
text holds every `--expect` substring and every `--expect-peer` has been seen
with a cursor.

  target/release/pulse --addr 127.0.0.1:3000 --db /tmp/interop.db &
  tools/pyenv/bin/python end2end/interop/pycrdt_peer.py --url ws://127.0.0.1:3000/ws \\
    --name pia --type hello --at start --expect hello --expect world --expect-peer yuki &
  node end2end/interop/yjs_peer.mjs --url ws://127.0.0.1:3000/ws --name yuki \\
    --type world --at end --expect hello --expect world --expect-peer pia

Flags: --url (ws URL; the HTTP base for /api/login and the Origin header come
from it), --name, --doc (default notes), --type, --at start|end (default end),
--interval-ms (default 20), --expect (repeatable), --expect-peer (repeatable),
--timeout-ms (default 20000).

Stdout: one JSON line per notable event ({"event": ...}); the last line is
  {"done": true|false, "text", "peers": [{"name", "cursor": index|null}],
   "errors", "acked", "retried", "missing"?: {...}}
Indices (cursor) are Yjs indices: UTF-16 code units, as in the browser.
`retried` counts doc_updates answered `rate_limited` and sent again (after 1 s,
with the same envelope id); those answers are not `errors`.
Exit 0 when done, 1 on timeout, a lost connection or a failed login, 2 on bad flags.
`error` frames are printed to stderr as JSON.

Units, since pycrdt mixes two: `Text.insert` and `len(Text)` count UTF-8 bytes
(yrs' default offset kind), while sticky indices (`StickyIndex.new`,
`get_index`) count UTF-16 code units like Yjs. The helpers below convert.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from pycrdt import Assoc, Awareness, Doc, StickyIndex, Text
from websockets.asyncio.client import connect

# Remote changes (doc updates and awareness) are applied with this origin, so the
# observers below can tell them from local ones and never echo them back.
REMOTE = "remote"
LOCAL = "local"
COLOR = "#2b8a3e"
# Awareness goes out coalesced: the server takes at most 10 per second per
# connection (and may drop all but the latest), so at most one per 125 ms and the
# latest state wins.
AWARENESS_MIN_GAP_S = 0.125
# y-protocols renews its local state every 15 s (others drop a state after 30 s
# of silence); so does this peer, in case a run is long.
AWARENESS_RENEW_S = 15.0
# `rate_limited` carries no delay (docs/EXTENSIONS.md): wait as the web client does.
RETRY_AFTER_S = 1.0


def log(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def log_err(event: dict[str, Any]) -> None:
    print(json.dumps(event), file=sys.stderr, flush=True)


def is_fatal(e: BaseException) -> bool:
    """pycrdt reports a Rust panic as pyo3's PanicException, a BaseException:
    those are caught like errors; these are not."""
    return isinstance(e, (KeyboardInterrupt, SystemExit, asyncio.CancelledError))


def u16len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def u16_to_utf8(s: str, index: int) -> int:
    """The UTF-8 byte offset in `s` of the UTF-16 index `index`."""
    units = 0
    offset = 0
    for ch in s:
        if units >= index:
            break
        units += 2 if ord(ch) > 0xFFFF else 1
        offset += len(ch.encode("utf-8"))
    return offset


def read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def decode_state_vector(data: bytes) -> dict[int, int]:
    """A Yjs v1 state vector: varuint count, then (client, clock) varuint pairs."""
    count, pos = read_var_uint(data, 0)
    sv = {}
    for _ in range(count):
        client, pos = read_var_uint(data, pos)
        clock, pos = read_var_uint(data, pos)
        sv[client] = clock
    return sv


class Peer:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.channel = f"doc:{opts.doc}"
        self.to_type = list(opts.type)  # code points: an emoji is one insert
        self.interval = opts.interval_ms / 1000
        url = urlsplit(opts.url)
        self.http_base = f"{'https' if url.scheme == 'wss' else 'http'}://{url.netloc}"

        self.doc: Doc = Doc()
        self.text: Text = self.doc.get("text", type=Text)
        self.awareness = Awareness(self.doc)
        self.remote = False  # true while a remote update is being applied
        self.doc.observe(self.on_doc_update)
        self.awareness.observe(self.on_awareness)

        # Envelope ids must be unique per user across runs (the server
        # deduplicates doc_update on them), so they carry a random run id.
        self.run_id = secrets.token_hex(6)
        self.next_id = 0
        self.pending: dict[str, dict[str, Any]] = {}  # id -> data, sent and not acked yet
        self.acked = 0
        self.errors = 0
        self.retried = 0
        self.typed = 0
        # Peers by name: the last cursor (relative position JSON) seen in their
        # awareness state. `with_cursor` remembers who was ever seen with a
        # cursor, since a peer that finishes first leaves before we do.
        self.peers: dict[str, Any] = {}
        self.with_cursor: set[str] = set()
        self.caret: dict[str, Any] | None = None  # for --at start

        self.loop = asyncio.get_running_loop()
        self.ws = None
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.awareness_wake = asyncio.Event()
        self.awareness_dirty = False
        self.awareness_sent_at = 0.0
        self.subscribed_once = False
        self.last_offset = 0
        self.finished = False
        self.finished_event = asyncio.Event()
        self.done_timer: asyncio.TimerHandle | None = None
        self.exit_code = 1

    # ---- the document and its awareness ------------------------------------

    def on_doc_update(self, event: Any) -> None:
        if self.remote:
            return
        msg_id = f"py-{self.run_id}-{self.next_id}"
        self.next_id += 1
        data = {"doc": self.opts.doc, "update": base64.b64encode(event.update).decode("ascii")}
        self.pending[msg_id] = data
        self.send("doc_update", data, msg_id)

    def apply_remote(self, update: bytes) -> None:
        self.remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self.remote = False

    def on_awareness(self, topic: str, args: tuple[dict[str, list[int]], Any]) -> None:
        if topic != "update":
            return
        changes, origin = args
        if origin == REMOTE:
            self.note_peers()
            return
        me = self.awareness.client_id
        if me not in changes["added"] + changes["updated"] + changes["removed"]:
            return
        # Only our own client id is ever sent.
        self.awareness_dirty = True
        self.awareness_wake.set()

    async def awareness_loop(self) -> None:
        while not self.finished:
            try:
                await asyncio.wait_for(self.awareness_wake.wait(), AWARENESS_RENEW_S)
            except TimeoutError:
                state = self.awareness.get_local_state()
                if state:
                    self.awareness.set_local_state(dict(state))  # a new clock
                continue
            self.awareness_wake.clear()
            wait = self.awareness_sent_at + AWARENESS_MIN_GAP_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.finished or not self.awareness_dirty:
                continue
            self.awareness_dirty = False
            self.awareness_sent_at = time.monotonic()
            update = self.awareness.encode_awareness_update([self.awareness.client_id])
            self.send("doc_awareness", {"doc": self.opts.doc, "update": base64.b64encode(update).decode("ascii")})

    def sticky(self, index: int) -> dict[str, Any]:
        """The Yjs relative position JSON of UTF-16 index `index` in the text, stuck
        to the character before it (assoc -1), as the browser writes it:
        {"item": {"client", "clock"}, "assoc": -1}, or {"tname": "text", "assoc": -1}
        at the start."""
        if index <= 0:
            return {"tname": "text", "assoc": -1}
        return StickyIndex.new(self.text, index, Assoc.BEFORE).to_json()

    def set_cursor(self, index: int) -> None:
        pos = self.sticky(index)
        self.awareness.set_local_state(
            {
                "user": {"id": "", "name": self.opts.name, "color": COLOR},  # the server overwrites id and name
                "cursor": {"anchor": pos, "head": pos},
            }
        )

    def note_peers(self) -> None:
        for client_id, state in self.awareness.states.items():
            if client_id == self.awareness.client_id or not isinstance(state, dict):
                continue
            user = state.get("user")
            name = user.get("name") if isinstance(user, dict) else None
            if not isinstance(name, str):
                continue
            if name not in self.peers:
                log({"event": "peer", "name": name})
            cursor = state.get("cursor") or None
            if cursor:
                self.with_cursor.add(name)
            self.peers[name] = cursor if cursor is not None else self.peers.get(name)
        self.check_done()

    def resolve(self, pos: Any) -> int | None:
        """A relative position (JSON) as a UTF-16 index, or None when it points at
        content we have not received (or is not a position in `text`).

        pycrdt panics (PanicException) on an item it does not know and on an
        unknown JSON field, and counts a type-level position in UTF-8 bytes, so
        those cases are handled here before it is asked."""
        if not isinstance(pos, dict):
            return None
        assoc = pos.get("assoc", 0)
        if not isinstance(assoc, int):
            assoc = 0
        item = pos.get("item")
        if item is None:
            if pos.get("type") is not None or pos.get("tname") != "text":
                return None
            return u16len(str(self.text)) if assoc >= 0 else 0
        if not isinstance(item, dict):
            return None
        client, clock = item.get("client"), item.get("clock")
        if not isinstance(client, int) or not isinstance(clock, int):
            return None
        if decode_state_vector(self.doc.get_state()).get(client, 0) <= clock:
            return None
        try:
            sticky = StickyIndex.from_json({"item": {"client": client, "clock": clock}, "assoc": assoc}, self.text)
            return sticky.get_index()
        except BaseException as e:
            if is_fatal(e):
                raise
            return None

    def resolve_cursor(self, cursor: Any) -> int | None:
        return self.resolve(cursor.get("head")) if isinstance(cursor, dict) else None

    # ---- typing ---------------------------------------------------------------

    def caret_index(self) -> int:
        """Where the next character goes, in UTF-16 units. For --at start the caret
        is stuck to the character we typed last (assoc -1), so remote inserts before
        it do not split the typed string."""
        if self.opts.at == "end":
            return u16len(str(self.text))
        if self.caret is None:
            return 0
        index = self.resolve(self.caret)
        return 0 if index is None else index

    async def type_all(self) -> None:
        self.set_cursor(self.caret_index())  # be visible (with a cursor) before the first key
        for ch in self.to_type:
            await asyncio.sleep(self.interval)
            if self.finished:
                return
            at = self.caret_index()
            current = str(self.text)
            # One transaction, one doc_update (sent by on_doc_update at commit).
            with self.doc.transaction(origin=LOCAL):
                self.text.insert(u16_to_utf8(current, at), ch)
            after = at + u16len(ch)
            self.caret = self.sticky(after)
            self.typed += 1
            self.set_cursor(after)
        log({"event": "typed", "chars": self.typed})
        self.check_done()

    # ---- done / timeout -----------------------------------------------------------

    def missing(self) -> dict[str, Any]:
        text = str(self.text)
        m: dict[str, Any] = {}
        if self.typed < len(self.to_type):
            m["untyped"] = len(self.to_type) - self.typed
        if self.pending:
            m["unacked"] = len(self.pending)
        expect = [s for s in self.opts.expect if s not in text]
        if expect:
            m["expect"] = expect
        expect_peer = [n for n in self.opts.expect_peer if n not in self.with_cursor]
        if expect_peer:
            m["expect_peer"] = expect_peer
        return m

    def check_done(self) -> None:
        if self.finished or self.done_timer or not self.subscribed_once:
            return
        if self.missing():
            return
        # Everything is there: give the last frames (our peers' final awareness,
        # a late update) 300 ms to arrive before reporting.
        self.done_timer = self.loop.call_later(0.3, self.finish, True)

    def finish(self, done: bool, **extra: Any) -> None:
        if self.finished:
            return
        self.finished = True
        line: dict[str, Any] = {
            "done": done,
            "text": str(self.text),
            "peers": [{"name": name, "cursor": self.resolve_cursor(cursor)} for name, cursor in self.peers.items()],
            "errors": self.errors,
            "acked": self.acked,
            "retried": self.retried,
        }
        if not done:
            line["missing"] = self.missing()
            line.update(extra)
        log(line)
        self.exit_code = 0 if done else 1
        self.finished_event.set()
        self.awareness_wake.set()

    # ---- the connection -------------------------------------------------------------

    def send(self, type_: str, data: dict[str, Any], msg_id: str | None = None) -> None:
        if self.finished:
            return
        envelope: dict[str, Any] = {"type": type_, "data": data}
        if msg_id is not None:
            envelope["id"] = msg_id
        self.outbox.put_nowait(json.dumps(envelope))

    async def writer(self) -> None:
        assert self.ws is not None
        while True:
            frame = await self.outbox.get()
            await self.ws.send(frame)

    def resend(self, msg_id: str) -> None:
        data = self.pending.get(msg_id)
        if data is not None:
            self.send("doc_update", data, msg_id)

    def handle(self, msg: dict[str, Any]) -> None:
        data = msg.get("data")
        if not isinstance(data, dict):
            data = {}
        kind = msg.get("type")
        if kind == "batch":
            # One level only: the server never nests batches (docs/EXTENSIONS.md).
            for inner in data.get("messages") or []:
                if isinstance(inner, dict) and inner.get("type") != "batch":
                    self.handle(inner)
        elif kind == "welcome":
            log({"event": "welcome", "user": data.get("user"), "build": data.get("build")})
            self.send("subscribe", {"channels": [{"channel": self.channel}]})
        elif kind == "subscribed":
            if data.get("channel") != self.channel:
                return
            snap = data.get("snapshot") or {}
            # Empty strings are skipped: a zero-length awareness update does not decode.
            if snap.get("state"):
                self.apply_remote(base64.b64decode(snap["state"]))
            if snap.get("awareness"):
                self.awareness.apply_awareness_update(base64.b64decode(snap["awareness"]), REMOTE)
            self.last_offset = data.get("offset") or 0
            log(
                {
                    "event": "subscribed",
                    "channel": self.channel,
                    "epoch": data.get("epoch"),
                    "offset": self.last_offset,
                    "text": str(self.text),
                }
            )
            if not self.subscribed_once:
                self.subscribed_once = True
                self.loop.create_task(self.type_all())
            self.note_peers()
        elif kind == "doc_update":
            if data.get("channel") != self.channel:
                return
            # yrs ignores what it already has, so our own echoed updates and a
            # duplicate are harmless.
            self.apply_remote(base64.b64decode(data["update"]))
            if isinstance(data.get("offset"), int):
                self.last_offset = max(self.last_offset, data["offset"])
            self.check_done()
        elif kind == "doc_awareness":
            if data.get("channel") != self.channel and data.get("doc") != self.opts.doc:
                return
            self.awareness.apply_awareness_update(base64.b64decode(data["update"]), REMOTE)
        elif kind == "ack":
            # 1.0 servers put the id only in data.id; 1.1 also on the envelope.
            msg_id = msg.get("id") or data.get("id")
            if msg_id in self.pending:
                del self.pending[msg_id]
                self.acked += 1
                self.check_done()
        elif kind == "error":
            msg_id = msg.get("id") or data.get("id")
            log_err(msg)
            if data.get("code") == "rate_limited" and msg_id in self.pending:
                self.retried += 1
                self.loop.call_later(RETRY_AFTER_S, self.resend, msg_id)
                return
            self.errors += 1
            # `invalid` or `too_large`: never stored, applied or acked; drop it
            # from the outbox as docs/EXTENSIONS.md says.
            self.pending.pop(msg_id, None)

    async def reader(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    continue
                try:
                    msg = json.loads(raw)
                except ValueError:
                    log_err({"unparsable": raw[:200]})
                    continue
                if not isinstance(msg, dict):
                    continue
                try:
                    self.handle(msg)
                except BaseException as e:
                    if is_fatal(e):
                        raise
                    # A pycrdt/awareness decode failure is an interop bug: report it and count it.
                    self.errors += 1
                    log_err({"type": "client_exception", "message": f"{type(e).__name__}: {e}", "frame": msg.get("type")})
        except Exception as e:  # ConnectionClosedError and the like
            self.finish(False, reason=f"socket error: {e}")
            return
        self.finish(False, reason=f"socket closed {self.ws.close_code} {self.ws.close_reason or ''}".rstrip())

    def login(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.http_base}/api/login",
            data=json.dumps({"name": self.opts.name}).encode(),
            headers={"content-type": "application/json", "origin": self.http_base},
            method="POST",
        )
        # Straight to the server, as yjs_peer's fetch does: no proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as res:
                return json.loads(res.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"HTTP {e.code}: {e.read().decode(errors='replace')}") from None

    async def run(self) -> int:
        deadline = self.loop.time() + self.opts.timeout_ms / 1000
        tasks: list[asyncio.Task[Any]] = []
        try:
            try:
                login = await asyncio.wait_for(asyncio.to_thread(self.login), self.opts.timeout_ms / 1000)
            except Exception as e:
                self.finish(False, reason=f"login failed: {e}")
                return self.exit_code
            log({"event": "login", "user": login.get("user")})
            try:
                # The server checks Origin on /ws as well.
                self.ws = await connect(
                    self.opts.url,
                    origin=self.http_base,
                    proxy=None,
                    max_size=None,  # a document snapshot may be over 1 MiB of base64
                    open_timeout=max(0.1, deadline - self.loop.time()),
                )
            except Exception as e:
                self.finish(False, reason=f"socket error: {e}")
                return self.exit_code
            self.send("hello", {"token": login["token"]})
            tasks = [
                asyncio.create_task(self.writer()),
                asyncio.create_task(self.reader()),
                asyncio.create_task(self.awareness_loop()),
            ]
            try:
                await asyncio.wait_for(self.finished_event.wait(), max(0.0, deadline - self.loop.time()))
            except TimeoutError:
                self.finish(False, reason="timeout")
            # Let the writer flush what is queued (nothing is queued after finish).
            await asyncio.sleep(0)
            try:
                await asyncio.wait_for(self.ws.close(1000), 1.0)
            except Exception:
                pass
            return self.exit_code
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pycrdt_peer", description="A pycrdt peer of a Pulse document.")
    parser.add_argument("--url", default="ws://127.0.0.1:3000/ws")
    parser.add_argument("--name")
    parser.add_argument("--doc", default="notes")
    parser.add_argument("--type", default="")
    parser.add_argument("--at", default="end")
    parser.add_argument("--interval-ms", type=float, default=20)
    parser.add_argument("--expect", action="append", default=[])
    parser.add_argument("--expect-peer", action="append", default=[])
    parser.add_argument("--timeout-ms", type=float, default=20000)
    opts = parser.parse_args(argv)
    if not opts.name:
        usage("--name is required")
    if opts.at not in ("start", "end"):
        usage("--at must be start or end")
    return opts


def usage(message: str) -> None:
    print(f"pycrdt_peer: {message}", file=sys.stderr)
    sys.exit(2)


async def main(opts: argparse.Namespace) -> int:
    return await Peer(opts).run()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args(sys.argv[1:]))))
