// Pulse admin: keeps the server-rendered view (server/admin/page.rs) live.
// Opens the same /ws socket as the dashboard (the browser sends the HttpOnly
// admin session cookie with the upgrade), subscribes to the `admin` channel
// and writes each snapshot (one a second) into the page's elements. Text
// only ever goes in through textContent.

const $ = (id) => document.getElementById(id);
const WIDTH = 600, HEIGHT = 120, POINTS = 60, STEP_SECS = 10;
let retry = 1000;

function rate(perSecond) { return perSecond.toFixed(1); }
function millis(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(0)} ms`;
}
function transport(plain, tls) { return `${plain + tls} (${tls} TLS)`; }
function short(id) { return id.slice(0, 8); }

function status(text) { const el = $("admin-status"); if (el.textContent !== text) el.textContent = text; }
function set(id, text) { const el = $(id); if (el && el.textContent !== text) el.textContent = text; }

function fill(id, rows, columns) {
  const body = $(id);
  const next = document.createElement("tbody");
  next.id = id;
  if (rows.length === 0) {
    const tr = next.insertRow(), td = document.createElement("td");
    td.colSpan = columns;
    td.textContent = "None";
    tr.append(td);
  }
  for (const row of rows) {
    const tr = next.insertRow();
    row.forEach((text, index) => {
      const cell = document.createElement(index === 0 ? "th" : "td");
      if (index === 0) cell.scope = "row";
      cell.textContent = text;
      tr.append(cell);
    });
  }
  body.replaceWith(next);
}

function chart(history, now) {
  const top = Math.max(1, ...history);
  const step = WIDTH / (POINTS - 1);
  const start = WIDTH - step * Math.max(0, history.length - 1);
  const points = history.map((value, index) =>
    `${(start + step * index).toFixed(1)},${(HEIGHT - (value / top) * (HEIGHT - 4) - 2).toFixed(1)}`);
  $("chart-line").setAttribute("points", points.join(" "));
  const text = history.length === 0
    ? `No history yet; ${now} connections now.`
    : `Between ${Math.min(...history)} and ${Math.max(...history)} connections over the last ` +
      `${Math.ceil((history.length * STEP_SECS) / 60)} minutes (one point per ${STEP_SECS} s); ${now} now.`;
  set("chart-text", text);
}

function show(s) {
  const t = s.total, mine = s.instances[0] ?? {};
  set("connections", String(t.connections));
  set("in-rate", rate(t.in_per_second));
  set("out-rate", rate(t.out_per_second));
  set("delivery-p50", millis(t.delivery_p50_ms));
  set("delivery-p99", millis(t.delivery_p99_ms));
  chart(t.history, t.connections);
  const instances = s.instances.map((i) => [
    i.instance === s.instance ? `${short(i.instance)} (this one)` : short(i.instance),
    String(i.connections), transport(i.by_transport.websocket, i.by_transport.websocket_tls),
    transport(i.by_transport.sse, i.by_transport.sse_tls), rate(i.in_per_second), rate(i.out_per_second),
    millis(i.delivery_p50_ms), millis(i.delivery_p99_ms), millis(i.commit_p50_ms),
    millis(i.commit_p99_ms), i.leases.join(", "),
  ]);
  if (s.instances.length > 1) {
    instances.push(["Total", String(t.connections), "", "", rate(t.in_per_second), rate(t.out_per_second),
      millis(t.delivery_p50_ms), millis(t.delivery_p99_ms), "", "", ""]);
  }
  fill("instances", instances, 11);
  // Same rows as page.rs `relay_rows`.
  const relayRow = (name, relay, redis, postgres) => [name].concat(relay
    ? [String(relay.depth.ordered), String(relay.depth.ticks), String(relay.depth.awareness),
      millis(relay.lag_seconds * 1000), String(relay.behind)]
    : ["–", "–", "–", "–", "–"], [millis(redis), millis(postgres)]);
  const shown = s.instances.filter((i) => i.relay || i.redis_rtt_ms != null || i.postgres_rtt_ms != null);
  const relays = shown.map((i) => relayRow(short(i.instance), i.relay, i.redis_rtt_ms, i.postgres_rtt_ms));
  if (shown.length > 1) {
    relays.push(relayRow("Total", t.relay, t.redis_rtt_ms, t.postgres_rtt_ms));
  }
  fill("relay", relays, 8);
  fill("slowest", (mine.slowest ?? []).map((c) =>
    [short(c.connection_id), c.user ?? "anonymous", String(c.queued_frames), String(c.queued_bytes)]), 4);
  const channel = (r) => [r.channel, String(r.subscribers), rate(r.per_second)];
  fill("by-subscribers", (mine.top_by_subscribers ?? []).map(channel), 3);
  fill("by-rate", (mine.top_by_rate ?? []).map(channel), 3);
  fill("errors", t.errors.map((r) => [r.code, String(r.count)]), 2);
  fill("closes", t.closes.map((r) => [r.code, String(r.count)]), 2);
}

function receive(message) {
  if (message.type === "batch") { message.data.messages.forEach(receive); return; }
  if (message.type === "admin") { show(message.data); status("Live"); retry = 1000; }
  if (message.type === "error" && message.data.code === "forbidden") {
    status("Session ended: reload the page to sign in again");
    retry = 0;
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.onopen = () => {
    socket.send(JSON.stringify({ type: "hello", data: {} }));
    socket.send(JSON.stringify({ type: "subscribe", data: { channels: [{ channel: "admin" }] } }));
  };
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = () => {
    if (retry === 0) return;
    status(`Reconnecting in ${Math.round(retry / 1000)} s`);
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 30000);
  };
}

connect();
