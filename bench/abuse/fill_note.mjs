#!/usr/bin/env node
/**
 * Fills the shared note (`doc:notes`) of a running server to its 1 MiB limit
 * through the public protocol, for measuring what a page costs with a full
 * note. A benchmark helper, not a test: it signs in as a guest, appends
 * `--chunk` characters of plain sentences per `doc_update` (one Yjs client,
 * npm `yjs`), waits for each `ack` (a `rate_limited` one is sent again), and
 * stops at the first `too_large`. Prints one JSON line: updates acknowledged
 * and the bytes of text the note then holds.
 *
 *   target/release/pulse --addr 127.0.0.1:3990 --db /tmp/full-note.db &
 *   node --experimental-websocket bench/abuse/fill_note.mjs --url http://127.0.0.1:3990
 */
import { createRequire } from "node:module";
import { parseArgs, login, connect } from "../pulse_ws.mjs";

// yjs from end2end/node_modules (pinned there for the interop peers), as
// bench/browser/playwright.mjs takes Playwright: one install, one version.
const Y = createRequire(new URL("../../end2end/package.json", import.meta.url))("yjs");

const args = parseArgs();
const url = args.url ?? "http://127.0.0.1:3000";
const chunk = Number(args.chunk ?? 45_000);
const sentence = "The quick brown fox jumps over the lazy dog, and the note grows. ";

const doc = new Y.Doc();
const text = doc.getText("text");
let waiting = null;
const socket = await connect(url, await login(url, args.name ?? "Filler"), (message) => {
  if ((message.type === "ack" || message.type === "error") && waiting) waiting(message);
});
const answer = () => new Promise((resolve) => (waiting = resolve));

let updates = 0;
for (let n = 0; ; n++) {
  const before = Y.encodeStateVector(doc);
  text.insert(text.length, sentence.repeat(Math.ceil(chunk / sentence.length)).slice(0, chunk));
  const update = Buffer.from(Y.encodeStateAsUpdate(doc, before)).toString("base64");
  const frame = JSON.stringify({ type: "doc_update", id: `fill-${n}`, data: { doc: "notes", update } });
  socket.send(frame);
  let reply = await answer();
  while (reply.type === "error" && reply.data.code === "rate_limited") {
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.send(frame);
    reply = await answer();
  }
  if (reply.type === "error") {
    if (reply.data.code !== "too_large") throw new Error(`update ${n}: ${JSON.stringify(reply.data)}`);
    // Refused, so not in the note: take it out of the count.
    console.log(JSON.stringify({ updates, text_bytes: (text.length - chunk) }));
    break;
  }
  updates++;
}
socket.close();
