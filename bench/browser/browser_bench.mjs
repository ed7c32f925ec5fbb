#!/usr/bin/env node
/**
 * The browser speed budget of issue 10: one signed-in dashboard in Debian's
 * Chromium watching `--symbols` symbols that tick `--tick-rate` times a second
 * each, while a second (Node) client posts chat messages into the room the page
 * shows. A benchmark, not a test: it asserts nothing and prints one JSON line.
 *
 * It owns its own `pulse` server (a fresh database in a temp directory) and
 * measures, over a `--seconds` window that starts once the page is live:
 *   - long tasks (PerformanceObserver 'longtask', over 50 ms), during the load
 *     and during the window;
 *   - main-thread busy %: the delta of CDP `Performance.getMetrics`
 *     `TaskDuration` (the renderer main thread's task time) over the window's
 *     wall time, with its Script / Layout / RecalcStyle parts;
 *   - JS heap growth: `JSHeapUsedSize` after a forced GC
 *     (`HeapProfiler.collectGarbage`) at the start and at the end, and the
 *     wasm linear memory (captured from `WebAssembly.instantiate*`), which is
 *     outside the JS heap and never shrinks;
 *   - frames per second (requestAnimationFrame callbacks in the window);
 *   - navigation to the first live tick: the first change of a price cell's
 *     text after the server's HTML (hydration reuses the server's nodes, so the
 *     first mutation is the socket's first tick reaching the DOM).
 *
 * Run from the repository root after `scripts/build_release.sh`:
 *   node --experimental-websocket bench/browser/browser_bench.mjs \
 *     [--bin target/release/pulse] [--site target/site] [--label new] \
 *     [--seconds 30] [--symbols 50] [--tick-rate 10] [--chat-per-sec 3] [--out FILE.jsonl] \
 *     [--reduced-motion reduce]
 * (`--experimental-websocket`: Node 20's WebSocket, for the chat client.)
 */
import { spawn } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "./playwright.mjs";

const args = parseArgs(process.argv.slice(2), {
  bin: "target/release/pulse",
  site: "target/site",
  label: "",
  seconds: "30",
  symbols: "50",
  "tick-rate": "10",
  "chat-per-sec": "3",
  "settle-seconds": "3",
  // "reduce": the page as a person with prefers-reduced-motion sees it (no flash).
  "reduced-motion": "no-preference",
  out: "",
});
const seconds = Number(args.seconds);
const symbolCount = Number(args.symbols);

if (typeof WebSocket === "undefined") {
  console.error("no global WebSocket: run node with --experimental-websocket (Node 20)");
  process.exit(2);
}

function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in defaults)) throw new Error(`unknown flag --${key}`);
    out[key] = argv[i + 1];
  }
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Starts `pulse` and waits for /healthz. */
async function startServer() {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), "pulse-bench-"));
  const child = spawn(
    path.resolve(args.bin),
    [
      "--addr", `127.0.0.1:${port}`,
      "--jwt-secret", "pulse-bench-secret-0123456789abcdef",
      "--symbols", String(symbolCount),
      "--tick-rate", args["tick-rate"],
    ],
    {
      env: {
        ...process.env,
        RUST_LOG: "warn",
        PULSE_DB: path.join(dataDir, "pulse.db"),
        LEPTOS_SITE_ROOT: path.resolve(args.site),
      },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`pulse exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return { url, child, dataDir };
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  throw new Error("pulse did not answer within 20 s");
}

async function login(url, name) {
  const response = await fetch(`${url}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) throw new Error(`login: ${response.status} ${await response.text()}`);
  return (await response.json()).token;
}

/** A second person posting `perSec` chat messages a second into `general`. */
async function startChatter(url, token, perSec) {
  const socket = new WebSocket(`${url.replace("http", "ws")}/ws`);
  let acked = 0;
  await new Promise((resolve, reject) => {
    socket.addEventListener("error", reject, { once: true });
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "hello", data: { token } }));
    });
    socket.addEventListener("message", (event) => {
      const text = String(event.data);
      if (text.includes('"type":"welcome"')) resolve();
      acked += text.split('"type":"ack"').length - 1;
    });
  });
  let n = 0;
  const timer = setInterval(() => {
    n += 1;
    socket.send(
      JSON.stringify({ type: "chat_send", id: `bench-${n}`, data: { room: "general", text: `bench message ${n}: the quick brown fox` } }),
    );
  }, 1000 / perSec);
  return {
    stop() {
      clearInterval(timer);
      socket.close();
      return { sent: n, acked };
    },
  };
}

/** Runs in the page before any of its scripts. */
function instrument() {
  const bench = {
    longtasks: [],
    frames: [],
    firstTickAt: null,
    connectedAt: null,
    priceChanges: 0,
    wasmMemory: null,
  };
  window.__bench = bench;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      bench.longtasks.push({ start: entry.startTime, duration: entry.duration });
    }
  }).observe({ type: "longtask", buffered: true });
  const frame = (t) => {
    bench.frames.push(t);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  // The wasm module's memory, to see linear-memory growth (not in the JS heap).
  for (const name of ["instantiate", "instantiateStreaming"]) {
    const original = WebAssembly[name];
    WebAssembly[name] = async function (...rest) {
      const result = await original.apply(this, rest);
      const instance = result.instance ?? result;
      if (instance?.exports?.memory) bench.wasmMemory = instance.exports.memory;
      return result;
    };
  }
  document.addEventListener("DOMContentLoaded", () => {
    const priceCell = (node) => (node.nodeType === 1 ? node : node.parentElement)?.closest?.("td.price");
    new MutationObserver((mutations) => {
      for (const m of mutations) {
        if (priceCell(m.target)) {
          bench.priceChanges += 1;
          if (bench.firstTickAt === null) bench.firstTickAt = performance.now();
        }
      }
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
    const status = document.querySelector('[role="status"][aria-label="Connection"]');
    if (status) {
      const check = () => {
        if (bench.connectedAt === null && /^Connected/.test(status.textContent ?? "")) bench.connectedAt = performance.now();
      };
      new MutationObserver(check).observe(status, { subtree: true, childList: true, characterData: true });
    }
  });
}

function metric(metrics, name) {
  return metrics.metrics.find((m) => m.name === name)?.value ?? NaN;
}

function summarise(tasks) {
  const durations = tasks.map((t) => t.duration);
  return {
    count: durations.length,
    max_ms: durations.length ? Math.round(Math.max(...durations)) : 0,
    total_ms: Math.round(durations.reduce((a, b) => a + b, 0)),
  };
}

const server = await startServer();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // performance.memory with exact figures (no bucketing).
    "--enable-precise-memory-info",
  ],
});
let chatter;
try {
  const readerToken = await login(server.url, "Bench Reader");
  const chatterToken = await login(server.url, "Bench Chatter");
  const watchlist = Array.from({ length: symbolCount }, (_, i) => `SYM${i}`).join("-");
  const context = await browser.newContext({ baseURL: server.url, viewport: { width: 1280, height: 900 },
    reducedMotion: args["reduced-motion"],
  });
  await context.addCookies([
    { name: "pulse_token", value: readerToken, url: server.url },
    { name: "pulse_watchlist", value: watchlist, url: server.url },
  ]);
  await context.addInitScript(instrument);
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => ["error", "warning"].includes(m.type()) && problems.push(m.text()));
  page.on("pageerror", (e) => problems.push(e.message));
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");

  chatter = await startChatter(server.url, chatterToken, Number(args["chat-per-sec"]));
  await page.goto("/");
  await page.waitForFunction(() => window.__bench.firstTickAt !== null && window.__bench.connectedAt !== null, null, {
    timeout: 30_000,
  });
  const rows = await page.locator("table.prices tbody tr").count();
  const load = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    return {
      dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
      load_ms: Math.round(nav.loadEventEnd),
      connected_ms: Math.round(window.__bench.connectedAt),
      first_tick_ms: Math.round(window.__bench.firstTickAt),
    };
  });
  await sleep(Number(args["settle-seconds"]) * 1000);

  // The window.
  await cdp.send("HeapProfiler.enable");
  await cdp.send("HeapProfiler.collectGarbage");
  const before = await cdp.send("Performance.getMetrics");
  const start = await page.evaluate(() => ({
    now: performance.now(),
    wasm: window.__bench.wasmMemory?.buffer.byteLength ?? null,
    changes: window.__bench.priceChanges,
  }));
  const loadStart = loadavg()[0];
  const wallStart = Date.now();
  await sleep(seconds * 1000);
  const after = await cdp.send("Performance.getMetrics");
  const end = await page.evaluate(() => ({
    now: performance.now(),
    wasm: window.__bench.wasmMemory?.buffer.byteLength ?? null,
    changes: window.__bench.priceChanges,
    frames: window.__bench.frames,
    longtasks: window.__bench.longtasks,
  }));
  const wall = (Date.now() - wallStart) / 1000;
  await cdp.send("HeapProfiler.collectGarbage");
  const afterGc = await cdp.send("Performance.getMetrics");

  const inWindow = (t) => t >= start.now && t <= end.now;
  const windowSecs = (end.now - start.now) / 1000;
  const busy = (name) => (metric(after, name) - metric(before, name)) / wall;
  const heapStart = metric(before, "JSHeapUsedSize");
  const heapEnd = metric(afterGc, "JSHeapUsedSize");
  const chat = chatter.stop();
  chatter = null;
  const result = {
    label: args.label,
    at: new Date().toISOString(),
    symbols: symbolCount,
    tick_rate: Number(args["tick-rate"]),
    reduced_motion: args["reduced-motion"],
    rows,
    seconds: Number(windowSecs.toFixed(1)),
    ...load,
    longtasks_during_load: summarise(end.longtasks.filter((t) => t.start < start.now)),
    longtasks_in_window: summarise(end.longtasks.filter((t) => inWindow(t.start))),
    main_thread_busy_pct: Number((100 * busy("TaskDuration")).toFixed(1)),
    script_pct: Number((100 * busy("ScriptDuration")).toFixed(1)),
    layout_pct: Number((100 * busy("LayoutDuration")).toFixed(1)),
    recalc_style_pct: Number((100 * busy("RecalcStyleDuration")).toFixed(1)),
    fps: Number((end.frames.filter(inWindow).length / windowSecs).toFixed(1)),
    js_heap_after_gc_start_kb: Math.round(heapStart / 1024),
    js_heap_after_gc_end_kb: Math.round(heapEnd / 1024),
    js_heap_growth_kb: Math.round((heapEnd - heapStart) / 1024),
    wasm_memory_start_kb: start.wasm === null ? null : Math.round(start.wasm / 1024),
    wasm_memory_end_kb: end.wasm === null ? null : Math.round(end.wasm / 1024),
    price_cell_updates_per_sec: Math.round((end.changes - start.changes) / windowSecs),
    chat_sent: chat.sent,
    chat_acked: chat.acked,
    // The machine is shared: the 1-minute load average around the window.
    loadavg_1m: [Number(loadStart.toFixed(2)), Number(loadavg()[0].toFixed(2))],
    console_problems: problems,
  };
  const line = JSON.stringify(result);
  console.log(line);
  if (args.out) appendFileSync(args.out, line + "\n");
} finally {
  chatter?.stop();
  await browser.close();
  server.child.kill("SIGTERM");
  await new Promise((resolve) => server.child.once("exit", resolve));
  rmSync(server.dataDir, { recursive: true, force: true });
}
