// Measures how long a user's arrival takes to reach someone watching who is
// online: a watcher signs in on `--watch` and subscribes to `presence`;
// then `--users` guests, one every `--pace` ms, sign in on `--join` (another
// instance of the same cluster, or the same server) and say `hello`. For
// each, the time from opening its socket (connect, upgrade, `hello`) to the
// watcher's `presence_diff` that lists it is recorded; then they all close, and the time from the last
// close to the watcher seeing nobody but itself is recorded too (that one
// includes `--presence-grace-ms`, and with `--redis` the expiry of a
// connection's entry is not involved: the connections close cleanly).
// Prints one JSON line: {users, join_p50_ms, join_p99_ms, join_max_ms,
// all_left_ms, diffs (how many presence_diffs the watcher got)}.
//
// Uses Node 20's built-in WebSocket (`node --experimental-websocket`):
//   node --experimental-websocket bench/presence_latency.mjs \
//     --watch http://127.0.0.1:3000 --join http://127.0.0.1:3001 --users 200

import { connect, login, parseArgs } from "./pulse_ws.mjs";

const args = parseArgs();
const watchUrl = args.watch ?? "http://127.0.0.1:3000";
const joinUrl = args.join ?? watchUrl;
const users = Number(args.users ?? 200);
const pace = Number(args.pace ?? 20);
const run = `${Date.now() % 100000}`;

const online = new Map();
const seen = new Map(); // user id -> when the watcher first saw it
let diffs = 0;
let changed = () => {};
const watcherName = `Watcher${run}`;
await connect(watchUrl, await login(watchUrl, watcherName), (message) => {
  const now = performance.now();
  if (message.type === "subscribed" && message.data.channel === "presence") {
    online.clear();
    for (const user of message.data.snapshot?.users ?? []) online.set(user.id, user);
  } else if (message.type === "presence_diff") {
    diffs += 1;
    for (const user of message.data.leaves) online.delete(user.id);
    for (const user of [...message.data.joins, ...message.data.updates]) {
      online.set(user.id, user);
      if (!seen.has(user.id)) seen.set(user.id, now);
    }
  } else {
    return;
  }
  changed();
}).then((socket) => {
  socket.send(JSON.stringify({ type: "subscribe", data: { channels: [{ channel: "presence" }] } }));
});

function until(done, limitMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out")), limitMs);
    changed = () => {
      if (done()) {
        clearTimeout(timer);
        resolve();
      }
    };
    changed();
  });
}

const watcherId = `guest:${watcherName.toLowerCase()}`;
await until(() => online.has(watcherId), 10_000);

const welcomed = new Map();
const sockets = [];
for (let n = 0; n < users; n += 1) {
  const name = `Joiner${run}x${n}`;
  const token = await login(joinUrl, name);
  const started = performance.now();
  const socket = await connect(joinUrl, token);
  welcomed.set(`guest:${name.toLowerCase()}`, started);
  sockets.push(socket);
  await new Promise((resolve) => setTimeout(resolve, pace));
}
await until(() => [...welcomed.keys()].every((id) => seen.has(id)), 30_000);
const joins = [...welcomed].map(([id, at]) => seen.get(id) - at).sort((a, b) => a - b);

const closed = performance.now();
for (const socket of sockets) socket.close();
await until(() => online.size === 1, 60_000);
const allLeft = performance.now() - closed;

const at = (q) => joins[Math.min(joins.length - 1, Math.floor(q * joins.length))];
console.log(
  JSON.stringify({
    users,
    join_p50_ms: Number(at(0.5).toFixed(2)),
    join_p99_ms: Number(at(0.99).toFixed(2)),
    join_max_ms: Number(joins[joins.length - 1].toFixed(2)),
    all_left_ms: Math.round(allLeft),
    diffs,
  }),
);
process.exit(0);
