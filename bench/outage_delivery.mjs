// Measures local delivery while Redis is away: a listener and a sender on
// the same instance (`--url`), both in room `bench`. Prints `ready` once
// both are connected and subscribed, waits for a line on stdin (the driver
// kills Redis meanwhile), then sends `--messages` at `--rate` per second
// and records, per message, the time from its send to its `ack` and to its
// delivery to the listener (one message goes through Redis before it is
// killed, as in a cluster already at work). Gives up `--wait` seconds after the last send.
// Prints one JSON line: {messages, acked, delivered, ack_ms, delivery_ms}
// (each a list, in send order; null where nothing came).
//
//   node --experimental-websocket bench/outage_delivery.mjs --url http://127.0.0.1:4000

import { connect, login, parseArgs } from "./pulse_ws.mjs";
import { createInterface } from "node:readline";

const args = parseArgs();
const url = args.url ?? "http://127.0.0.1:3000";
const messages = Number(args.messages ?? 5);
const rate = Number(args.rate ?? 1);
const wait = Number(args.wait ?? 60);
const tag = Date.now() % 100000;

const sentAt = new Map();
const idOf = new Map();
const ackMs = new Map();
const deliveryMs = new Map();
let subscribed;
const ready = new Promise((resolve) => (subscribed = resolve));
const listener = await connect(url, await login(url, `out${tag}`), (message) => {
  if (message.type === "subscribed") subscribed();
  // The server names a message itself (`msg_id`); its text names it here.
  const id = message.type === "chat" ? idOf.get(message.data.text) : undefined;
  if (id !== undefined && !deliveryMs.has(id)) {
    deliveryMs.set(id, performance.now() - sentAt.get(id));
  }
});
listener.send(JSON.stringify({ type: "subscribe", data: { channels: [{ channel: "chat:bench" }] } }));
await ready;
const sender = await connect(url, await login(url, `in${tag}`), (message) => {
  if (message.type === "ack" && sentAt.has(message.data.id)) {
    ackMs.set(message.data.id, performance.now() - sentAt.get(message.data.id));
  }
});
// One message through Redis first, as in a cluster already at work.
const warm = `warm ${tag}`;
idOf.set(warm, "warm");
sentAt.set("warm", performance.now());
sender.send(JSON.stringify({ type: "chat_send", id: "warm", data: { room: "bench", text: warm } }));
while (!deliveryMs.has("warm")) await new Promise((resolve) => setTimeout(resolve, 20));
deliveryMs.delete("warm");
console.log("ready");
await new Promise((resolve) => createInterface({ input: process.stdin }).once("line", resolve));

const ids = [];
for (let n = 0; n < messages; n += 1) {
  const id = `o-${tag}-${n}`;
  ids.push(id);
  const text = `outage ${tag} ${n}`;
  idOf.set(text, id);
  sentAt.set(id, performance.now());
  sender.send(JSON.stringify({ type: "chat_send", id, data: { room: "bench", text } }));
  await new Promise((resolve) => setTimeout(resolve, 1000 / rate));
}
const deadline = performance.now() + wait * 1000;
while (deliveryMs.size < messages && performance.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const round = (value) => (value === undefined ? null : +value.toFixed(1));
console.log(
  JSON.stringify({
    messages,
    acked: ackMs.size,
    delivered: deliveryMs.size,
    ack_ms: ids.map((id) => round(ackMs.get(id))),
    delivery_ms: ids.map((id) => round(deliveryMs.get(id))),
  }),
);
listener.close();
sender.close();
process.exit(0);
