// Measures chat ack latency against a running Pulse server: `--senders`
// guests each send `chat_send` at `--rate` messages per second for
// `--seconds`, and the time from each send to its `ack` is recorded.
// `--listeners` more guests subscribe to the room and count the
// messages they receive, so the server also fans each message out.
// Prints one JSON line: {senders, listeners, rate, sent, acked, p50_ms,
// p99_ms, max_ms, delivered, setup_ms (the listeners' joining)}.
//
// Uses Node 20's built-in WebSocket (`node --experimental-websocket`), so it
// needs no npm package. Example:
//   node --experimental-websocket bench/chat_ack_latency.mjs \
//     --url http://127.0.0.1:3000 --senders 50 --rate 2 --seconds 20

import { connect, login as loginAt, parseArgs } from "./pulse_ws.mjs";

const args = parseArgs();
const url = args.url ?? "http://127.0.0.1:3000";
const senders = Number(args.senders ?? 50);
const rate = Number(args.rate ?? 2);
const seconds = Number(args.seconds ?? 20);
const listeners = Number(args.listeners ?? 0);

const login = (name) => loginAt(url, name);

const latencies = [];
let sent = 0;
let delivered = 0;

// One reader of the room (chat needs an identified user): subscribes, counts
// every `chat` it gets.
async function listener(n) {
  const token = await login(`read${n}x${Date.now() % 100000}`);
  let subscribed;
  const ready = new Promise((resolve, reject) => {
    subscribed = { resolve, reject };
  });
  const socket = await connect(url, token, (message) => {
    if (message.type === "subscribed") {
      subscribed.resolve();
    } else if (message.type === "chat") {
      delivered += 1;
    } else if (message.type === "error") {
      subscribed.reject(new Error(`listener: ${JSON.stringify(message.data)}`));
    }
  });
  const channels = [{ channel: "chat:bench" }];
  socket.send(JSON.stringify({ type: "subscribe", data: { channels } }));
  await ready;
  return socket;
}

async function sender(n) {
  const pending = new Map();
  const socket = await connect(url, await login(`ack${n}x${Date.now() % 100000}`), (message) => {
    if (message.type !== "ack") return;
    const at = pending.get(message.data.id);
    if (at !== undefined) {
      latencies.push(performance.now() - at);
      pending.delete(message.data.id);
    }
  });
  const end = performance.now() + seconds * 1000;
  // Spread the senders over the first interval.
  await new Promise((resolve) => setTimeout(resolve, (n / senders) * (1000 / rate)));
  let count = 0;
  while (performance.now() < end) {
    const id = `a-${n}-${count++}`;
    pending.set(id, performance.now());
    socket.send(JSON.stringify({ type: "chat_send", id, data: { room: "bench", text: `m ${id}` } }));
    sent += 1;
    await new Promise((resolve) => setTimeout(resolve, 1000 / rate));
  }
  await new Promise((resolve) => setTimeout(resolve, 1000));
  socket.close();
}

const readers = [];
const setupStarted = performance.now();
for (let n = 0; n < listeners; n += 1) readers.push(await listener(n));
// How long the listeners took to join, so a benchmark can leave it out.
const setupMs = performance.now() - setupStarted;
await Promise.all(Array.from({ length: senders }, (_, n) => sender(n)));
for (const socket of readers) socket.close();
latencies.sort((a, b) => a - b);
const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
console.log(
  JSON.stringify({
    senders,
    listeners,
    rate,
    sent,
    acked: latencies.length,
    p50_ms: +at(0.5).toFixed(2),
    p99_ms: +at(0.99).toFixed(2),
    max_ms: +latencies[latencies.length - 1].toFixed(2),
    delivered,
    setup_ms: +setupMs.toFixed(1),
  }),
);
