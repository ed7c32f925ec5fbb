// Pulse protocol inspector, the hook: the one part every dashboard page
// loads (about 2 KB; nothing of the inspector is in the wasm bundle). It
// notes the page's WebSockets and fallback streams (EventSource on /sse) and,
// only once the inspector is opened (`?inspect`, or Alt+Shift+I), copies
// their frames to it, and the fallback's POSTs (one envelope a line). It
// keeps the last `pulse:connection` and `pulse:outbox` events the page's
// wasm sends when its reconnection machine or its outbox change (a few
// bytes, replaced each time). Closed, it keeps no frame and listens to no
// socket.

const NativeSocket = window.WebSocket;
const NativeSource = window.EventSource;
const nativeFetch = window.fetch;
const sockets = new Set(); // WebSockets and EventSources
let sink = null; // (direction, text, socket) => void, once opened
let early = null; // frames seen before the inspector's module arrived
const last = { connection: null, outbox: null };
document.addEventListener("pulse:connection", (event) => { last.connection = event.detail; });
document.addEventListener("pulse:outbox", (event) => { last.outbox = event.detail; });

function watch(socket) {
  if (socket.__pulseWatched) return;
  socket.__pulseWatched = true;
  socket.addEventListener("message", (event) => sink?.("in", event.data, socket));
  if (!(socket instanceof NativeSocket)) return;
  const send = socket.send.bind(socket);
  socket.send = (data) => {
    sink?.("out", data, socket);
    send(data);
  };
}

window.WebSocket = class extends NativeSocket {
  constructor(...args) {
    super(...args);
    sockets.add(this);
    this.addEventListener("close", () => sockets.delete(this));
    if (sink) watch(this);
  }
};

if (NativeSource) {
  window.EventSource = class extends NativeSource {
    constructor(...args) {
      super(...args);
      sockets.add(this);
      if (sink) watch(this);
    }
    close() {
      sockets.delete(this);
      super.close();
    }
  };
}

// The fallback's POSTs to /sse/{session}: read from a copy of the request,
// only while the inspector is open.
window.fetch = function (input, init) {
  if (sink) {
    const request = input instanceof Request ? input : null;
    const url = new URL(request ? request.url : String(input), location.href);
    const method = (init?.method ?? request?.method ?? "GET").toUpperCase();
    if (method === "POST" && /^\/sse\/[^/]+$/.test(url.pathname)) {
      const body = init?.body !== undefined ? Promise.resolve(String(init.body)) : request?.clone().text();
      const source = [...sockets].find((s) => !(s instanceof NativeSocket)) ?? { url: url.href };
      body?.then((text) => text.split("\n").filter((line) => line.trim()).forEach((line) => sink?.("out", line, source)));
    }
  }
  return nativeFetch.call(window, input, init);
};

let loading = null;
function open() {
  if (!sink) {
    early = [];
    sink = (direction, text, socket) => early.push({ direction, text, socket, at: Date.now() });
    sockets.forEach(watch);
  }
  loading ??= import("/inspector/inspector.js").then((inspector) => {
    sink = inspector.start(early, sockets, last);
    early = null;
    return inspector;
  });
  return loading;
}

if (new URLSearchParams(location.search).has("inspect")) open();
document.addEventListener("keydown", (event) => {
  if (event.altKey && event.shiftKey && event.code === "KeyI") {
    event.preventDefault();
    if (loading) loading.then((inspector) => inspector.toggle());
    else open();
  }
});
