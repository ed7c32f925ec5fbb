#!/usr/bin/env node
/**
 * A Yjs peer that joins a Pulse document over the public WebSocket protocol
 * (docs/PROTOCOL.md) with nothing but `yjs`, `y-protocols` and `ws`: the
 * interoperability check between the JavaScript Yjs implementation and the
 * server's yrs. It logs in as a guest, subscribes to `doc:{doc}`, types a string
 * one character per transaction while publishing its cursor as awareness, and
 * waits until every edit is acked, the text holds every `--expect` substring and
 * every `--expect-peer` has been seen with a cursor.
 *
 *   target/release/pulse --addr 127.0.0.1:3000 --db /tmp/interop.db &
 *   node end2end/interop/yjs_peer.mjs --url ws://127.0.0.1:3000/ws --name ada \
 *     --type hello --at start --expect hello --expect world --expect-peer bob &
 *   node end2end/interop/yjs_peer.mjs --url ws://127.0.0.1:3000/ws --name bob \
 *     --type world --at end --expect hello --expect world --expect-peer ada
 *
 * Flags: --url (ws URL; the HTTP base for /api/login and the Origin header come
 * from it), --name, --doc (default notes), --type, --at start|end (default end),
 * --interval-ms (default 20), --expect (repeatable), --expect-peer (repeatable),
 * --timeout-ms (default 20000).
 *
 * Stdout: one JSON line per notable event ({"event": ...}); the last line is
 *   {"done": true|false, "text", "peers": [{"name", "cursor": index|null}],
 *    "errors", "acked", "missing"?: {...}}
 * Exit 0 when done, 1 on timeout, a lost connection or a failed login.
 * `error` frames are printed to stderr as JSON.
 */
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import * as Y from "yjs";
import * as awarenessProtocol from "y-protocols/awareness";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string", default: "ws://127.0.0.1:3000/ws" },
    name: { type: "string" },
    doc: { type: "string", default: "notes" },
    type: { type: "string", default: "" },
    at: { type: "string", default: "end" },
    "interval-ms": { type: "string", default: "20" },
    expect: { type: "string", multiple: true, default: [] },
    "expect-peer": { type: "string", multiple: true, default: [] },
    "timeout-ms": { type: "string", default: "20000" },
  },
});
if (!opts.name) usage("--name is required");
if (opts.at !== "start" && opts.at !== "end") usage("--at must be start or end");
const intervalMs = Number(opts["interval-ms"]);
const timeoutMs = Number(opts["timeout-ms"]);
const channel = `doc:${opts.doc}`;
// Characters, not UTF-16 units, so an emoji is typed as one insert.
const toType = [...opts.type];

function usage(message) {
  console.error(`yjs_peer: ${message}`);
  process.exit(2);
}

const log = (event) => console.log(JSON.stringify(event));
const toBase64 = (bytes) => Buffer.from(bytes).toString("base64");
const fromBase64 = (text) => new Uint8Array(Buffer.from(text, "base64"));
// Remote changes are applied with this origin, so the observers below can tell
// them from local ones and never echo them back to the server.
const REMOTE = "remote";

// ---- the document and its awareness -------------------------------------------

const ydoc = new Y.Doc();
const ytext = ydoc.getText("text");
const awareness = new awarenessProtocol.Awareness(ydoc);
const color = "#" + [...opts.name].reduce((h, c) => (h * 31 + c.codePointAt(0)) >>> 0, 7).toString(16).padStart(6, "0").slice(-6);

// Envelope ids must be unique per user across runs (the server deduplicates
// doc_update on them), so they carry a random run id.
const runId = randomBytes(6).toString("hex");
let nextId = 0;
const pending = new Set(); // ids of doc_updates sent and not acked yet
let acked = 0;
let errors = 0;
let typed = 0;

// Peers by name: the last cursor (relative position JSON) seen in their
// awareness state. `withCursor` remembers who was ever seen with a cursor, since
// a peer that finishes first leaves (and its state is removed) before we do.
const peers = new Map();
const withCursor = new Set();

ydoc.on("update", (update, origin) => {
  if (origin === REMOTE) return;
  const id = `y-${runId}-${nextId++}`;
  pending.add(id);
  send("doc_update", { doc: opts.doc, update: toBase64(update) }, id);
});

// Awareness goes out coalesced: the server takes at most 10 per second per
// connection (and may drop all but the latest), so at most one per 125 ms and the
// latest state wins. Only our own client id is ever sent: the Awareness object
// also "removes" remote clients itself after 30 s of silence (origin "timeout"),
// and relaying that is not our business.
const AWARENESS_MIN_GAP_MS = 125;
let awarenessDirty = false;
let awarenessTimer = null;
let awarenessSentAt = 0;
awareness.on("update", ({ added, updated, removed }, origin) => {
  if (origin === REMOTE) {
    notePeers();
    return;
  }
  if (![...added, ...updated, ...removed].includes(awareness.clientID)) return;
  awarenessDirty = true;
  if (awarenessTimer) return;
  const wait = Math.max(0, awarenessSentAt + AWARENESS_MIN_GAP_MS - Date.now());
  awarenessTimer = setTimeout(flushAwareness, wait);
});

function flushAwareness() {
  awarenessTimer = null;
  if (!awarenessDirty || finished) return;
  awarenessDirty = false;
  awarenessSentAt = Date.now();
  const update = awarenessProtocol.encodeAwarenessUpdate(awareness, [awareness.clientID]);
  send("doc_awareness", { doc: opts.doc, update: toBase64(update) });
}

function setCursor(index) {
  const pos = Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(ytext, index));
  awareness.setLocalState({
    user: { id: "", name: opts.name, color }, // the server overwrites id and name
    cursor: { anchor: pos, head: pos },
  });
}

function notePeers() {
  for (const [clientId, state] of awareness.getStates()) {
    const name = state?.user?.name;
    if (clientId === awareness.clientID || typeof name !== "string") continue;
    if (!peers.has(name)) log({ event: "peer", name });
    const cursor = state.cursor ?? null;
    if (cursor) withCursor.add(name);
    peers.set(name, cursor ?? peers.get(name) ?? null);
  }
  checkDone();
}

function resolveCursor(cursor) {
  if (!cursor?.head) return null;
  const abs = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(cursor.head), ydoc);
  return abs ? abs.index : null; // null: it points at content we have not received
}

// ---- typing ------------------------------------------------------------------

// For --at start the caret is a relative position stuck to the character we typed
// last (assoc -1), so remote inserts before it do not split the typed string.
let caret = null;

function caretIndex() {
  if (opts.at === "end") return ytext.length;
  if (caret === null) return 0;
  return Y.createAbsolutePositionFromRelativePosition(caret, ydoc)?.index ?? 0;
}

async function typeAll() {
  setCursor(caretIndex()); // be visible (with a cursor) before the first key
  for (const ch of toType) {
    await sleep(intervalMs);
    if (finished) return;
    const at = caretIndex();
    ydoc.transact(() => ytext.insert(at, ch), "local"); // one transaction, one doc_update
    const after = at + ch.length;
    caret = Y.createRelativePositionFromTypeIndex(ytext, after, -1);
    typed++;
    setCursor(after);
  }
  log({ event: "typed", chars: typed });
  checkDone();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- done / timeout ------------------------------------------------------------

let finished = false;
let doneTimer = null;

function missing() {
  const text = ytext.toString();
  const m = {};
  if (typed < toType.length) m.untyped = toType.length - typed;
  if (pending.size) m.unacked = pending.size;
  const expect = opts.expect.filter((s) => !text.includes(s));
  if (expect.length) m.expect = expect;
  const expectPeer = opts["expect-peer"].filter((n) => !withCursor.has(n));
  if (expectPeer.length) m.expect_peer = expectPeer;
  return m;
}

function checkDone() {
  if (finished || doneTimer || !subscribedOnce) return;
  if (Object.keys(missing()).length) return;
  // Everything is there: give the last frames (our peers' final awareness, a
  // late update) 300 ms to arrive before reporting.
  doneTimer = setTimeout(() => finish(true), 300);
}

function finish(done, extra = {}) {
  if (finished) return;
  finished = true;
  const line = {
    done,
    text: ytext.toString(),
    peers: [...peers].map(([name, cursor]) => ({ name, cursor: resolveCursor(cursor) })),
    errors,
    acked,
    ...(done ? {} : { missing: missing(), ...extra }),
  };
  console.log(JSON.stringify(line));
  const code = done ? 0 : 1;
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.once("close", () => process.exit(code));
    ws.close(1000);
    setTimeout(() => process.exit(code), 1000).unref();
  } else {
    process.exit(code);
  }
}

setTimeout(() => finish(false, { reason: "timeout" }), timeoutMs).unref();
// The ref'd socket keeps the process alive; the Awareness object's own 3 s check
// interval would too, so exits are always explicit (finish()).

// ---- the connection ------------------------------------------------------------

const wsUrl = new URL(opts.url);
const httpBase = `${wsUrl.protocol === "wss:" ? "https:" : "http:"}//${wsUrl.host}`;
let ws = null;
let subscribedOnce = false;
let lastOffset = 0;

function send(type, data, id) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify(id === undefined ? { type, data } : { type, id, data }));
}

function handle(msg) {
  const data = msg.data ?? {};
  switch (msg.type) {
    case "batch":
      // One level only: the server never nests batches (docs/EXTENSIONS.md).
      for (const inner of data.messages ?? []) if (inner?.type !== "batch") handle(inner);
      break;
    case "welcome":
      log({ event: "welcome", user: data.user, build: data.build });
      send("subscribe", { channels: [{ channel }] });
      break;
    case "subscribed": {
      if (data.channel !== channel) break;
      const snap = data.snapshot;
      // Empty strings are skipped: a zero-length awareness update does not decode.
      if (snap?.state) Y.applyUpdate(ydoc, fromBase64(snap.state), REMOTE);
      if (snap?.awareness) awarenessProtocol.applyAwarenessUpdate(awareness, fromBase64(snap.awareness), REMOTE);
      lastOffset = data.offset ?? 0;
      log({ event: "subscribed", channel, epoch: data.epoch, offset: lastOffset, text: ytext.toString() });
      if (!subscribedOnce) {
        subscribedOnce = true;
        typeAll();
      }
      notePeers();
      break;
    }
    case "doc_update":
      if (data.channel !== channel) break;
      // Yjs ignores what it already has, so our own echoed updates (if the server
      // sends them) and a duplicate are harmless.
      Y.applyUpdate(ydoc, fromBase64(data.update), REMOTE);
      if (typeof data.offset === "number") lastOffset = Math.max(lastOffset, data.offset);
      checkDone();
      break;
    case "doc_awareness":
      if (data.channel !== channel && data.doc !== opts.doc) break;
      awarenessProtocol.applyAwarenessUpdate(awareness, fromBase64(data.update), REMOTE);
      break;
    case "ack": {
      // 1.0 servers put the id only in data.id; 1.1 also on the envelope.
      const id = msg.id ?? data.id;
      if (pending.delete(id)) {
        acked++;
        checkDone();
      }
      break;
    }
    case "error":
      errors++;
      console.error(JSON.stringify(msg));
      break;
  }
}

let login;
try {
  const res = await fetch(`${httpBase}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: httpBase },
    body: JSON.stringify({ name: opts.name }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  login = await res.json();
} catch (e) {
  finish(false, { reason: `login failed: ${e.message}` });
}
log({ event: "login", user: login.user });

// The server checks Origin on /ws as well; a Node client may send its own.
ws = new WebSocket(opts.url, { origin: httpBase });
ws.on("open", () => send("hello", { token: login.token }));
ws.on("message", (raw, isBinary) => {
  if (isBinary) return;
  let msg;
  try {
    msg = JSON.parse(raw.toString("utf8"));
  } catch {
    console.error(JSON.stringify({ unparsable: raw.toString("utf8").slice(0, 200) }));
    return;
  }
  try {
    handle(msg);
  } catch (e) {
    // A Yjs/awareness decode failure is an interop bug: report it and count it.
    errors++;
    console.error(JSON.stringify({ type: "client_exception", message: e.message, frame: msg.type }));
  }
});
ws.on("close", (code, reason) => finish(false, { reason: `socket closed ${code} ${reason}` }));
ws.on("error", (e) => finish(false, { reason: `socket error: ${e.message}` }));
