// Pulse protocol inspector: a drawer (region "Inspector") listing the last
// 200 frames in and out (time, direction, type, channel, offset, bytes;
// a row's button shows its JSON), the offset and epoch per channel, the
// round trip of `ping`/`pong`, and what the page's wasm says of itself
// (`pulse:connection`, `pulse:outbox` events on `document`, sent only when
// they change): the transport in use, the reconnection machine's state with
// its next backoff, and the envelopes the outbox holds. Loaded by hook.js
// only when opened; hidden, it keeps no frame.

const MAX_FRAMES = 200;
const frames = [];
const offsets = new Map(); // channel -> { offset, epoch }
let connection = null; // the last `pulse:connection` detail
let outbox = null; // the last `pulse:outbox` detail
let socketUrl = null, streamUrl = null; // the last WebSocket's and EventSource's
let pingAt = null, rtt = null, shown = true, dirty = false, timer = null;
let offsetsChanged = false;
let drawer, bodies;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

function table(caption, headers) {
  const body = el("tbody");
  const head = el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, h)));
  return [el("table", {}, el("caption", {}, caption), el("thead", {}, head), body), body];
}

function build() {
  document.head.append(el("link", { rel: "stylesheet", href: "/inspector/inspector.css" }));
  const close = el("button", { type: "button" }, "Close");
  close.addEventListener("click", () => toggle());
  const facts = el("dl", { class: "pi-facts" });
  const fact = (label, id) => facts.append(el("div", {}, el("dt", {}, label), el("dd", { id }, "–")));
  fact("Transport", "pi-transport");
  fact("Connection", "pi-state");
  fact("Round trip", "pi-rtt");
  fact("Outbox", "pi-outbox");
  const [offsetTable, offsetBody] = table("Offsets by channel", ["Channel", "Offset", "Epoch"]);
  const [frameTable, frameBody] = table(`Last ${MAX_FRAMES} frames`, ["Time", "Direction", "Type", "Channel", "Offset", "Bytes"]);
  const json = el("pre", { id: "pi-json", tabindex: "0", "aria-label": "Frame JSON" }, "Choose a frame to see its JSON.");
  drawer = el(
    "aside",
    { id: "pulse-inspector", class: "pi", role: "region", "aria-label": "Inspector" },
    el("div", { class: "pi-head" }, el("h2", {}, "Inspector"), el("p", { class: "pi-hint" }, "Alt+Shift+I"), close),
    facts,
    // Scrolled boxes take the keyboard focus, so they scroll without a mouse.
    el("div", { class: "pi-scroll", tabindex: "0", role: "group", "aria-label": "Offsets by channel" }, offsetTable),
    el("div", { class: "pi-scroll pi-frames", tabindex: "0", role: "group", "aria-label": "Frames" }, frameTable),
    json,
  );
  bodies = { offsets: offsetBody, frames: frameBody, json };
  document.body.append(drawer);
}

function messages(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    return [{ type: "(not JSON)", data: {}, raw: text }];
  }
  if (message?.type === "batch" && Array.isArray(message.data?.messages)) return message.data.messages;
  return [message];
}

function channelOf(message) {
  const data = message.data ?? {};
  if (typeof data.channel === "string") return data.channel;
  if (Array.isArray(data.channels)) return data.channels.map((c) => (typeof c === "string" ? c : c.channel)).join(", ");
  if (typeof data.doc === "string") return `doc:${data.doc}`;
  if (typeof data.room === "string") return `chat:${data.room}`;
  return "";
}

function record(direction, text, socket, at = Date.now()) {
  if (!shown) return;
  noteUrl(socket);
  const list = messages(text);
  for (const message of list) {
    const data = message.data ?? {};
    const channel = channelOf(message);
    if (direction === "in" && typeof data.offset === "number" && typeof data.channel === "string") {
      const known = offsets.get(data.channel) ?? {};
      offsets.set(data.channel, { offset: data.offset, epoch: data.epoch ?? known.epoch ?? "" });
      offsetsChanged = true;
    }
    if (direction === "out" && message.type === "ping") pingAt = at;
    if (direction === "in" && message.type === "pong" && pingAt !== null) {
      rtt = at - pingAt;
      pingAt = null;
    }
    frames.push({
      at,
      direction,
      type: String(message.type ?? "?"),
      channel,
      offset: typeof data.offset === "number" ? String(data.offset) : "",
      bytes: list.length === 1 ? text.length : JSON.stringify(message).length,
      json: message.raw ?? JSON.stringify(message, null, 2),
    });
  }
  if (frames.length > MAX_FRAMES) {
    for (const gone of frames.splice(0, frames.length - MAX_FRAMES)) gone.row?.remove();
  }
  schedule();
}

function noteUrl(socket) {
  const url = socket?.url;
  if (typeof url !== "string") return;
  if (url.startsWith("ws")) socketUrl = url;
  else streamUrl = url;
}

function transportText() {
  if (!connection) return "–";
  if (connection.transport === "sse") return `SSE (fallback) ${streamUrl ?? `${location.origin}/sse`}`;
  return `WebSocket ${socketUrl ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`}`;
}

function stateText() {
  switch (connection?.state) {
    case undefined: return "–";
    case "waiting": {
      const secs = Math.max(0, Math.ceil((connection.retryAt - Date.now()) / 1000));
      return `Reconnecting in ${secs} s (backoff ${Math.round(connection.backoffMs)} ms)`;
    }
    case "connecting": return "Connecting";
    case "open": return "Open";
    case "no_network": return "Offline, waiting for the network";
    case "stopped": return "Stopped, no reconnect";
    default: return String(connection.state);
  }
}

function outboxText() {
  const pending = outbox?.pending ?? [];
  if (pending.length === 0) return "empty";
  return `${pending.length} waiting: ${pending.map(({ id, type }) => `${type} ${id}`).join(", ")}`;
}

function schedule() {
  if (dirty) return;
  dirty = true;
  requestAnimationFrame(render);
}

function set(id, text) {
  const node = document.getElementById(id);
  if (node && node.textContent !== text) node.textContent = text;
}

function render() {
  dirty = false;
  if (!shown) return;
  set("pi-transport", transportText());
  set("pi-state", stateText());
  set("pi-rtt", rtt === null ? "–" : `${rtt} ms`);
  set("pi-outbox", outboxText());
  if (offsetsChanged) {
    offsetsChanged = false;
    const rows = [...offsets].sort(([a], [b]) => a.localeCompare(b)).map(([channel, { offset, epoch }]) =>
      el("tr", {}, el("th", { scope: "row" }, channel), el("td", {}, String(offset)), el("td", {}, epoch)));
    bodies.offsets.replaceChildren(...rows);
  }
  // Rows are made once per frame and never rebuilt: the newest goes on top,
  // the oldest leaves when the 200 are full (so a row stays put to be clicked).
  for (const frame of frames) {
    if (frame.row) continue;
    const time = new Date(frame.at).toISOString().slice(11, 23);
    const show = el("button", { type: "button", class: "pi-link" }, time);
    show.addEventListener("click", () => { bodies.json.textContent = frame.json; });
    frame.row = el("tr", {},
      el("th", { scope: "row" }, show),
      el("td", {}, frame.direction === "in" ? "⇣ in" : "⇡ out"),
      el("td", {}, frame.type), el("td", {}, frame.channel), el("td", {}, frame.offset), el("td", {}, String(frame.bytes)));
    bodies.frames.prepend(frame.row);
  }
}

/**
 * Starts the inspector with the frames the hook kept before it loaded and the
 * page's last connection and outbox events; returns the hook's sink.
 */
export function start(early, sockets, last) {
  build();
  for (const socket of sockets) noteUrl(socket);
  for (const frame of early ?? []) record(frame.direction, frame.text, frame.socket, frame.at);
  connection = last?.connection ?? null;
  outbox = last?.outbox ?? null;
  document.addEventListener("pulse:connection", (event) => { connection = event.detail; schedule(); });
  document.addEventListener("pulse:outbox", (event) => { outbox = event.detail; schedule(); });
  timer = setInterval(schedule, 250);
  schedule();
  return record;
}

/** Shows or hides the drawer; hidden, nothing is kept. */
export function toggle() {
  shown = !shown;
  drawer.hidden = !shown;
  if (shown) {
    timer = setInterval(schedule, 250);
    schedule();
  } else {
    clearInterval(timer);
    frames.length = 0;
    bodies.frames.replaceChildren();
    offsets.clear();
    offsetsChanged = true;
    pingAt = rtt = null;
  }
}
