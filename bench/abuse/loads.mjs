#!/usr/bin/env node
/**
 * Issue 21 point 7: one client makes the server load a large document again
 * and again while other users chat; how long do their `chat_send` acks take?
 *
 * Starts a `pulse` binary (`--binary`) on a fresh database, fills `--docs`
 * documents (`doc:big0`, `doc:big1`, …) to about `--size` bytes of text each
 * through the public protocol (one Yjs client, npm `yjs`), then measures
 * `bench/chat_ack_latency.mjs` twice, `--seconds` each: alone, then while one
 * signed-in client loops, waiting for each answer before the next request:
 *
 *   subscribe  subscribe to doc:big0 and unsubscribe again (the documents are
 *              cycled when `--docs` > 1, so each subscribe finds one released
 *              longest ago)
 *   update     a one-character `doc_update` to doc:big0, which nobody
 *              subscribes to (a `rate_limited` answer is waited out and sent
 *              again: 30 a second is what one connection may send)
 *
 * Prints one JSON line: both latency runs, the loop's rounds, and the
 * server's `pulse_doc_loads_total` (absent from builds before it) and CPU
 * seconds over the loaded run.
 *
 *   node --experimental-websocket bench/abuse/loads.mjs --binary target/release/pulse \
 *     --variant subscribe --docs 1 --seconds 20
 *
 * `yjs` is taken from end2end/node_modules, or from `--yjs DIR` (a folder
 * with node_modules/yjs, e.g. `npm install --prefix DIR yjs@13.6.33`).
 */
import { spawn, execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, login, connect } from "../pulse_ws.mjs";

const args = parseArgs();
const binary = args.binary ?? "target/release/pulse";
const variant = args.variant ?? "subscribe";
const docs = Number(args.docs ?? 1);
const size = Number(args.size ?? 1_000_000);
const seconds = Number(args.seconds ?? 20);
const senders = Number(args.senders ?? 5);
const rate = Number(args.rate ?? 2);
const chunk = 45_000;
const sentence = "The quick brown fox jumps over the lazy dog, and the note grows. ";

const yjsFrom = args.yjs
  ? join(args.yjs, "package.json")
  : new URL("../../end2end/package.json", import.meta.url).pathname;
const Y = createRequire(yjsFrom)("yjs");

const port = await new Promise((resolve) => {
  const probe = createServer().listen(0, "127.0.0.1", () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});
const url = `http://127.0.0.1:${port}`;
const workdir = mkdtempSync(join(tmpdir(), "pulse-loads-"));
const server = spawn(
  binary,
  ["--addr", `127.0.0.1:${port}`, "--db", join(workdir, "pulse.db"), "--tick-rate", "0",
    "--jwt-secret", "loads-bench-jwt-secret-of-32-bytes-at-least"],
  { stdio: "ignore", env: { ...process.env, RUST_LOG: "warn", PULSE_ALLOW_STALE_BUNDLE: "true" } },
);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The server's user + system CPU seconds so far. */
function cpuSeconds() {
  const fields = readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1].split(" ");
  const ticks = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim());
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

async function metric(name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : null;
}

/** A signed-in socket whose answers can be awaited one at a time. */
async function client(name) {
  const waiting = [];
  const socket = await connect(url, await login(url, name), (message) => {
    if (["ack", "error", "subscribed", "unsubscribed"].includes(message.type)) {
      waiting.shift()?.(message);
    }
  });
  const ask = (frame) => {
    const answer = new Promise((resolve) => waiting.push(resolve));
    socket.send(JSON.stringify(frame));
    return answer;
  };
  return { socket, ask };
}

/** Fills `doc` to about `size` bytes of text; answers the Yjs replica. */
async function fill(doc, filler) {
  const replica = new Y.Doc();
  const text = replica.getText("text");
  for (let n = 0; text.length + chunk <= size; n++) {
    const before = Y.encodeStateVector(replica);
    text.insert(text.length, sentence.repeat(Math.ceil(chunk / sentence.length)).slice(0, chunk));
    const update = Buffer.from(Y.encodeStateAsUpdate(replica, before)).toString("base64");
    const frame = { type: "doc_update", id: `fill-${doc}-${n}`, data: { doc, update } };
    let reply = await filler.ask(frame);
    while (reply.type === "error" && reply.data.code === "rate_limited") {
      await sleep(200);
      reply = await filler.ask(frame);
    }
    if (reply.type === "error") throw new Error(`filling ${doc}: ${JSON.stringify(reply.data)}`);
  }
  return replica;
}

/** Runs chat_ack_latency.mjs for `seconds`; answers its JSON line. */
function chatLatency() {
  const script = new URL("../chat_ack_latency.mjs", import.meta.url).pathname;
  return new Promise((resolve, reject) => {
    const run = spawn(process.execPath, ["--experimental-websocket", script, "--url", url,
      "--senders", String(senders), "--rate", String(rate), "--seconds", String(seconds)]);
    let out = "";
    run.stdout.on("data", (data) => (out += data));
    run.on("exit", (code) =>
      code === 0 ? resolve(JSON.parse(out.trim().split("\n").pop())) : reject(new Error(`chat_ack_latency: ${code}`)));
  });
}

/** The abusive loop, until `stop.done`. */
async function abuse(abuser, replica, stop) {
  const rounds = { requests: 0, rate_limited: 0, errors: 0 };
  const text = replica?.getText("text");
  for (let n = 0; !stop.done; n++) {
    if (variant === "subscribe") {
      const channel = `doc:big${n % docs}`;
      const answer = await abuser.ask({ type: "subscribe", data: { channels: [{ channel }] } });
      if (answer.type === "error") rounds.errors++;
      await abuser.ask({ type: "unsubscribe", data: { channels: [channel] } });
    } else {
      const before = Y.encodeStateVector(replica);
      text.insert(0, "x");
      const update = Buffer.from(Y.encodeStateAsUpdate(replica, before)).toString("base64");
      const frame = { type: "doc_update", id: `x-${n}`, data: { doc: "big0", update } };
      let reply = await abuser.ask(frame);
      while (reply.type === "error" && reply.data.code === "rate_limited" && !stop.done) {
        rounds.rate_limited++;
        await sleep(20);
        reply = await abuser.ask(frame);
      }
      if (reply.type === "error" && reply.data.code !== "rate_limited") rounds.errors++;
    }
    rounds.requests++;
  }
  return rounds;
}

try {
  for (let tries = 0; ; tries++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {}
    if (tries > 100) throw new Error("the server did not come up");
    await sleep(100);
  }
  const filler = await client("Filler");
  const replicas = [];
  for (let d = 0; d < docs; d++) replicas.push(await fill(`big${d}`, filler));
  filler.socket.close();
  const alone = await chatLatency();
  const abuser = await client("Looper");
  const stop = { done: false };
  const loadsBefore = await metric("pulse_doc_loads_total");
  const cpuBefore = cpuSeconds();
  const looping = abuse(abuser, replicas[0], stop);
  const loaded = await chatLatency();
  stop.done = true;
  const rounds = await looping;
  const cpu = cpuSeconds() - cpuBefore;
  const loadsAfter = await metric("pulse_doc_loads_total");
  abuser.socket.close();
  console.log(JSON.stringify({
    binary, variant, docs, doc_text_bytes: replicas[0].getText("text").length, seconds, senders, rate,
    alone: { p50_ms: alone.p50_ms, p99_ms: alone.p99_ms, acked: alone.acked },
    with_loop: { p50_ms: loaded.p50_ms, p99_ms: loaded.p99_ms, max_ms: loaded.max_ms, acked: loaded.acked },
    loop: rounds,
    doc_loads_during_loop: loadsBefore === null ? null : loadsAfter - loadsBefore,
    server_cpu_seconds_during_loop: +cpu.toFixed(2),
  }));
} finally {
  server.kill("SIGTERM");
  rmSync(workdir, { recursive: true, force: true });
}
