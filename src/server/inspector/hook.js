// Pulse protocol inspector, the hook: the one part every dashboard page
// loads (about 1 KB; nothing of the inspector is in the wasm bundle). It
// notes the page's WebSockets and, only once the inspector is opened
// (`?inspect`, or Alt+Shift+I), copies their frames to it. Closed, it keeps
// no frame and listens to no socket.

const Native = window.WebSocket;
const sockets = new Set();
let sink = null; // (direction, text, socket) => void, once opened
let early = null; // frames seen before the inspector's module arrived

function watch(socket) {
  if (socket.__pulseWatched) return;
  socket.__pulseWatched = true;
  socket.addEventListener("message", (event) => sink?.("in", event.data, socket));
  const send = socket.send.bind(socket);
  socket.send = (data) => {
    sink?.("out", data, socket);
    send(data);
  };
}

window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    sockets.add(this);
    this.addEventListener("close", () => sockets.delete(this));
    if (sink) watch(this);
  }
};

let loading = null;
function open() {
  if (!sink) {
    early = [];
    sink = (direction, text, socket) => early.push({ direction, text, socket, at: Date.now() });
    sockets.forEach(watch);
  }
  loading ??= import("/inspector/inspector.js").then((inspector) => {
    sink = inspector.start(early, sockets);
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
