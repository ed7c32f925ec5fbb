// The reference server of `bench/bench.py --compare`: Node's `ws` package
// (pinned in package.json) speaking the part of the Pulse protocol
// (docs/PROTOCOL.md) that pulse-loadgen and bench/chat_ack_latency.mjs use,
// so that the same clients drive Pulse and this server. See README.md beside
// this file for what it does and does not do.
//
//   node server.mjs --port 3998 --symbols 50 --tick-rate 2 --heartbeat-ms 15000
//
// One process, one thread of JavaScript (Node's own helper threads aside).

import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { WebSocketServer } from "ws";

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------- flags

const DEFAULTS = {
  addr: "127.0.0.1:3000",
  port: "",
  symbols: "50",
  "tick-rate": "2",
  "heartbeat-ms": "15000",
  "hello-timeout-ms": "10000",
  seed: "1",
};

function parseFlags(argv) {
  const flags = { ...DEFAULTS };
  for (let n = 0; n < argv.length; n += 1) {
    const name = argv[n].replace(/^--/, "");
    if (!argv[n].startsWith("--") || !(name in DEFAULTS) || n + 1 >= argv.length) {
      console.error(`usage: node server.mjs [--${Object.keys(DEFAULTS).join(" V] [--")} V]`);
      process.exit(2);
    }
    flags[name] = argv[(n += 1)];
  }
  return flags;
}

const flags = parseFlags(process.argv.slice(2));
const [host, addrPort] = flags.addr.split(":");
const PORT = Number(flags.port || addrPort);
const TICK_RATE = Number(flags["tick-rate"]);
const HEARTBEAT_MS = Number(flags["heartbeat-ms"]);
const HELLO_TIMEOUT_MS = Number(flags["hello-timeout-ms"]);
/** PROTOCOL.md: `max_message_bytes`; a larger frame is closed with 1009 by ws. */
const MAX_MESSAGE_BYTES = 65_536;
/** Bytes a socket may have waiting to be written before its ticks are skipped. */
const MAX_BUFFERED_BYTES = 1 << 20;
/** PROTOCOL.md: a ticker snapshot holds up to the last 60 prices. */
const RECENT = 60;
/** PROTOCOL.md: a chat snapshot holds the last 50 messages. */
const CHAT_SNAPSHOT = 50;
/** Chat `id`s remembered for idempotent resends (in memory, oldest forgotten first). */
const MAX_REMEMBERED_IDS = 100_000;
const EPOCH = randomUUID().slice(0, 8);
const BUILD = `node-ws-reference (ws ${require("ws/package.json").version}, bufferutil ${bufferutilKind()})`;

/** Whether ws masks and unmasks with bufferutil's prebuilt binary or its JS fallback. */
function bufferutilKind() {
  try {
    require("node-gyp-build").path(require("node:path").dirname(require.resolve("bufferutil")));
    return "native";
  } catch {
    return "missing";
  }
}

// ---------------------------------------------------------------- time

/** Microseconds since the Unix epoch (the wall clock, below a millisecond). */
function nowMicros() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** RFC 3339 in UTC with six fractional digits, like Pulse's timestamps. */
function timestamp(micros = nowMicros()) {
  const iso = new Date(Math.floor(micros / 1000)).toISOString(); // ...SS.mmmZ
  return `${iso.slice(0, -1)}${String(micros % 1000).padStart(3, "0")}Z`;
}

/** One server message serialised once, as the bytes every socket is sent. */
function frame(type, data, id) {
  const echo = id === undefined ? "" : `,"id":${JSON.stringify(id)}`;
  return Buffer.from(`{"type":"${type}","data":${JSON.stringify(data)},"timestamp":"${timestamp()}"${echo}}`);
}

// ---------------------------------------------------------------- market

/** mulberry32: a small seeded generator, so a seed gives the same walk. */
function generator(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = generator(Number(flags.seed));
const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());

/** The symbols: a number N means SYM0..SYM{N-1}, like `pulse --symbols N`. */
const symbols = /^\d+$/.test(flags.symbols)
  ? Array.from({ length: Number(flags.symbols) }, (_, n) => `SYM${n}`)
  : flags.symbols.split(",").map((s) => s.trim()).filter(Boolean);

/** Every channel by name: `ticker:SYM` and, once used, `chat:room`. */
const channels = new Map();

function channelState(name) {
  let state = channels.get(name);
  if (!state) {
    state = { name, offset: 0, subscribers: new Set(), last: null, recent: [], messages: [] };
    channels.set(name, state);
  }
  return state;
}

// Pulse's simulator: a geometric random walk in whole cents per symbol, each
// with its own volatility, cumulative volume, change against the open.
const instruments = symbols.map((symbol) => {
  const open = 1000 + Math.floor(random() * 49_000);
  return { symbol, channel: channelState(`ticker:${symbol}`), open, cents: open, volume: 0, sigma: 0.0004 + random() * 0.0021 };
});

let ticksSkipped = 0;

/** Moves one symbol, serialises its tick once and sends it to every subscriber. */
function step(instrument) {
  const z = normal();
  const { sigma } = instrument;
  const next = Math.round(instrument.cents * Math.exp(sigma * z - (sigma * sigma) / 2));
  instrument.cents = Math.max(1, next === instrument.cents ? next + (z >= 0 ? 1 : -1) : next);
  instrument.volume += (1 + Math.floor(random() * 50)) * 100;
  const changeCents = instrument.cents - instrument.open;
  const channel = instrument.channel;
  channel.offset += 1;
  const tick = {
    channel: channel.name,
    offset: channel.offset,
    symbol: instrument.symbol,
    price: instrument.cents / 100,
    change: changeCents / 100,
    change_pct: Math.round((changeCents * 10_000) / instrument.open) / 100,
    volume: instrument.volume,
  };
  channel.last = tick;
  channel.recent.push(tick.price);
  if (channel.recent.length > RECENT) channel.recent.shift();
  const bytes = frame("tick", tick);
  for (const socket of channel.subscribers) {
    // A reader that fell 1 MiB behind misses ticks (Pulse conflates them).
    if (socket.bufferedAmount > MAX_BUFFERED_BYTES) ticksSkipped += 1;
    else socket.send(bytes, { binary: false });
  }
}

/** `rate` steps per second per symbol, spread evenly, symbols in turn (as Pulse does). */
function simulate(rate) {
  if (!(rate > 0) || instruments.length === 0) return;
  const perSecond = rate * instruments.length;
  const started = performance.now();
  let done = 0;
  setInterval(() => {
    const due = Math.floor(((performance.now() - started) / 1000) * perSecond);
    if (due > done + perSecond + 1) done = due - 1; // after a stall, skip ahead
    for (; done < due; done += 1) step(instruments[done % instruments.length]);
  }, Math.max(1, 1000 / perSecond));
}

// ---------------------------------------------------------------- tokens

/** A guest token: `ref.` + base64url JSON. Not signed: this server checks nothing. */
function mintToken(name) {
  const user = { id: `guest:${name.toLowerCase()}`, name };
  return { token: `ref.${Buffer.from(JSON.stringify(user)).toString("base64url")}`, user };
}

function userOf(token) {
  if (typeof token !== "string" || !token.startsWith("ref.")) return null;
  try {
    const user = JSON.parse(Buffer.from(token.slice(4), "base64url").toString());
    return typeof user.id === "string" && typeof user.name === "string" ? { id: user.id, name: user.name } : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- connections

const TICKER = /^ticker:[A-Z0-9.]{1,12}$/;
const CHAT = /^chat:([a-z0-9-]{1,32})$/;
const ROOM = /^[a-z0-9-]{1,32}$/;
/** Acks already sent, by `user id \n envelope id`, for idempotent resends. */
const acks = new Map();

function sendError(socket, code, message, id, channel) {
  const data = { code, message };
  if (id !== undefined) data.id = id;
  if (channel !== undefined) data.channel = channel;
  socket.send(frame("error", data, id), { binary: false });
}

function subscribe(socket, entries) {
  if (!Array.isArray(entries)) return sendError(socket, "invalid", "data.channels: must be an array");
  for (const entry of entries) {
    const name = entry?.channel;
    const chat = typeof name === "string" && CHAT.exec(name);
    if (typeof name !== "string" || (!TICKER.test(name) && !chat)) {
      sendError(socket, "not_found", "the reference server serves ticker: and chat: channels only", undefined, name);
      continue;
    }
    if (chat && !socket.user) {
      sendError(socket, "unauthorized", "chat needs a token", undefined, name);
      continue;
    }
    const state = channelState(name);
    state.subscribers.add(socket);
    socket.subscriptions.add(state);
    let snapshot = null;
    if (chat) snapshot = { messages: state.messages };
    else if (state.last) snapshot = { quote: state.last, recent: state.recent };
    const answer = { channel: name, epoch: EPOCH, offset: state.offset, recovered: false, snapshot };
    socket.send(frame("subscribed", answer), { binary: false });
  }
}

function unsubscribe(socket, names) {
  if (!Array.isArray(names)) return sendError(socket, "invalid", "data.channels: must be an array");
  for (const name of names) {
    const state = channels.get(name);
    if (state) {
      state.subscribers.delete(socket);
      socket.subscriptions.delete(state);
    }
    socket.send(frame("unsubscribed", { channel: name }), { binary: false });
  }
}

/** `chat_send`: ack first, then the message to the room's subscribers. In memory only. */
function chatSend(socket, data, id) {
  if (!socket.user) return sendError(socket, "unauthorized", "chat needs a token", id);
  if (typeof id !== "string") return sendError(socket, "invalid", "id: chat_send needs an envelope id", id);
  const key = `${socket.user.id}\n${id}`;
  const earlier = acks.get(key);
  if (earlier) return socket.send(frame("ack", earlier, id), { binary: false });
  if (typeof data.room !== "string" || !ROOM.test(data.room)) return sendError(socket, "invalid", "data.room", id);
  if (typeof data.text !== "string" || data.text.trim() === "") return sendError(socket, "invalid", "data.text", id);
  const state = channelState(`chat:${data.room}`);
  state.offset += 1;
  const message = {
    channel: state.name,
    offset: state.offset,
    room: data.room,
    msg_id: randomUUID(),
    user: socket.user,
    text: data.text,
    sent_at: timestamp(),
  };
  state.messages.push(message);
  if (state.messages.length > CHAT_SNAPSHOT) state.messages.shift();
  const ack = { id, channel: state.name, offset: state.offset };
  acks.set(key, ack);
  if (acks.size > MAX_REMEMBERED_IDS) acks.delete(acks.keys().next().value);
  socket.send(frame("ack", ack, id), { binary: false });
  const bytes = frame("chat", message);
  for (const subscriber of state.subscribers) subscriber.send(bytes, { binary: false });
}

function onMessage(socket, raw, isBinary) {
  socket.lastSeen = performance.now();
  if (isBinary) return sendError(socket, "bad_frame", "frames must be text");
  let envelope;
  try {
    envelope = JSON.parse(raw.toString());
  } catch (err) {
    return sendError(socket, "bad_json", `not valid JSON: ${err.message}`);
  }
  if (envelope === null || typeof envelope !== "object" || Array.isArray(envelope)) {
    return sendError(socket, "bad_json", "a frame must be one JSON object");
  }
  const { type, data, id } = envelope;
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    return sendError(socket, "invalid", "data: must be a JSON object", id);
  }
  if (type === "hello") return hello(socket, data);
  if (!socket.ready) return sendError(socket, "hello_required", "send hello first", id);
  switch (type) {
    case "subscribe":
      return subscribe(socket, data.channels);
    case "unsubscribe":
      return unsubscribe(socket, data.channels);
    case "chat_send":
      return chatSend(socket, data, id);
    case "ping":
      return socket.send(frame("pong", {}), { binary: false });
    default:
      return sendError(socket, "unknown_type", `the reference server does not serve \`${type}\``, id);
  }
}

function hello(socket, data) {
  if (data.token !== undefined) {
    socket.user = userOf(data.token);
    if (!socket.user) return socket.close(4001, "invalid token");
  }
  clearTimeout(socket.helloDeadline);
  socket.ready = true;
  const welcome = {
    connection_id: randomUUID().replaceAll("-", ""),
    user: socket.user,
    heartbeat_ms: HEARTBEAT_MS,
    max_message_bytes: MAX_MESSAGE_BYTES,
    build: BUILD,
  };
  socket.send(frame("welcome", welcome), { binary: false });
}

function onConnection(socket, request) {
  const origin = request.headers.origin;
  // Scripts send no Origin; a browser's must be this server's own (Pulse's default).
  if (origin !== undefined && URL.canParse(origin) && new URL(origin).host !== request.headers.host) {
    return socket.close(1008, "origin not allowed");
  }
  socket.ready = false;
  socket.user = null;
  socket.subscriptions = new Set();
  socket.lastSeen = performance.now();
  socket.helloDeadline = setTimeout(() => socket.close(4001, "no hello"), HELLO_TIMEOUT_MS);
  socket.on("message", (raw, isBinary) => onMessage(socket, raw, isBinary));
  socket.on("pong", () => {
    socket.lastSeen = performance.now();
  });
  socket.on("error", () => {});
  socket.on("close", () => {
    clearTimeout(socket.helloDeadline);
    for (const state of socket.subscriptions) state.subscribers.delete(socket);
    socket.subscriptions.clear();
  });
}

// ---------------------------------------------------------------- HTTP and start

function readBody(request) {
  return new Promise((resolve, reject) => {
    let body = "";
    request.setEncoding("utf8");
    request.on("data", (chunk) => {
      body += chunk;
      if (body.length > 16_384) reject(new Error("body too large"));
    });
    request.on("end", () => resolve(body));
    request.on("error", reject);
  });
}

async function onRequest(request, response) {
  const answer = (status, body, type = "application/json") => {
    response.writeHead(status, { "content-type": type });
    response.end(typeof body === "string" ? body : JSON.stringify(body));
  };
  if (request.method === "GET" && request.url === "/healthz") return answer(200, "ok", "text/plain");
  if (request.method === "POST" && request.url === "/api/login") {
    try {
      const { name } = JSON.parse(await readBody(request));
      if (typeof name !== "string" || !/^[A-Za-z0-9_.-]{1,32}$/.test(name)) throw new Error("name");
      return answer(200, mintToken(name));
    } catch {
      return answer(400, { code: "invalid", message: "expected {\"name\": \"...\"}" });
    }
  }
  return answer(404, { code: "not_found", message: "the reference server serves /ws, /healthz and /api/login" });
}

const http = createServer((request, response) => {
  onRequest(request, response).catch(() => response.destroy());
});
const wss = new WebSocketServer({ server: http, path: "/ws", maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });
wss.on("connection", onConnection);

// One sweep every heartbeat: a Ping to every socket, and a socket silent for
// two heartbeats (no Pong, no message) is dropped, as Pulse does.
setInterval(() => {
  const now = performance.now();
  for (const socket of wss.clients) {
    if (now - socket.lastSeen > 2 * HEARTBEAT_MS) socket.terminate();
    else socket.ping();
  }
}, HEARTBEAT_MS);

simulate(TICK_RATE);

function shutdown() {
  for (const socket of wss.clients) socket.close(1001, "server going away");
  http.close();
  setTimeout(() => process.exit(0), 1000).unref();
  if (ticksSkipped > 0) console.error(`ticks skipped for slow readers: ${ticksSkipped}`);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

http.listen(PORT, host, () => {
  console.error(`${BUILD} on http://${host}:${PORT}: ${symbols.length} symbols at ${TICK_RATE}/s, heartbeat ${HEARTBEAT_MS} ms`);
});
