#!/usr/bin/env node
/**
 * How soon the shared note is editable once it comes into view, under
 * Chromium DevTools' "Fast 4G" preset, with an empty browser cache, in
 * Debian's Chromium against a running release Pulse (issue 25 point 1: the
 * goal is ≤ 1 s after the note comes into view). A benchmark, not a test: it
 * prints one JSON line per run and a summary line (median and max per case).
 *
 * The preset, as DevTools defines it (`Fast4GConditions` in
 * ChromeDevTools/devtools-frontend `front_end/core/sdk/NetworkManager.ts`):
 * download 9 Mbit/s × 0.9 = 1,012,500 B/s, upload 1.5 Mbit/s × 0.9 =
 * 168,750 B/s, latency 60 ms × 2.75 = 165 ms; applied with CDP
 * `Network.emulateNetworkConditions` before the page's first request.
 *
 * Cases (each run in a fresh browser context, so a cold cache):
 *  - `below_now`: a 1280×600 viewport (the note panel starts below the
 *    fold), join as a guest; at T, right after the join went through, scroll
 *    the note into view: T → editable.
 *  - `below_idle`: the same, but the scroll comes 3 s after the join (the
 *    idle prefetch had its chance): T → editable.
 *  - `below_reload`: 1280×600, joined on one page, cache cleared, the page
 *    loaded again signed in; at T, as soon as it is connected, scroll the
 *    note into view: T → editable.
 *  - `in_view`: a 1280×1600 viewport (the note in view at load), joined on
 *    one page, cache cleared, then the page loaded again signed in:
 *    navigation start → editable and first-in-view → editable.
 * "Editable" is the first moment the `Note` text area is not read-only and
 * holds the note's text (a seeded text, set before the runs).
 *
 * Per run it also records what the time is made of: the note module's fetch
 * (Resource Timing: start, end, bytes), the note's snapshot (`subscribed` of
 * `doc:notes`) arriving on the socket, all on the page's clock
 * (`performance.now()`, 0 = navigation start).
 *
 *   LEPTOS_SITE_ROOT=target/site target/release/pulse --addr 127.0.0.1:3996 --db /tmp/note_ready.db &
 *   flock /tmp/pulse-build.lock node bench/browser/note_ready.mjs --url http://127.0.0.1:3996 --runs 5
 *
 * An experiment, not what Pulse does: `--preload-chunk /pkg/split_….wasm`
 * adds the case `in_view_preload`, `in_view` with a `<link rel=preload
 * as=fetch>` of the note module put into the page's head as it is parsed
 * (what a server-rendered preload for signed-in pages would do), so the
 * module loads beside the main wasm instead of after hydration.
 *
 * `--cases below_now,in_view` picks cases, `--note-kib 64` seeds a bigger
 * note (on a fresh database: the seed is written once), `--label` tags the
 * lines.
 */
import { chromium } from "./playwright.mjs";

function arg(name, fallback) {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : fallback;
}
const url = arg("--url", "http://127.0.0.1:3000");
const runs = Number(arg("--runs", "5"));
const preloadChunk = arg("--preload-chunk", null);
const cases = arg("--cases", `below_now,below_idle,below_reload,in_view${preloadChunk ? ",in_view_preload" : ""}`).split(",");
const label = arg("--label", "");
// The note's size: the seeded sentence, then filler lines up to this many KiB
// (0: the sentence alone). Its snapshot comes over the throttled socket too.
const noteKib = Number(arg("--note-kib", "0"));
const GOAL_MS = 1000;

/** Chromium DevTools' "Fast 4G" (see the header). */
export const FAST_4G = {
  offline: false,
  latency: 60 * 2.75,
  downloadThroughput: ((9 * 1000 * 1000) / 8) * 0.9,
  uploadThroughput: ((1.5 * 1000 * 1000) / 8) * 0.9,
};

const SEEDED = "Seeded for note_ready: the agenda for Monday.";

/** The note's whole text for `--note-kib`. */
function noteText() {
  let text = SEEDED;
  for (let line = 1; text.length < noteKib * 1024; line += 1) {
    text += `\nLine ${String(line).padStart(5, "0")}: the quick brown fox jumps over the lazy dog, again and again.`;
  }
  return text;
}
const CHUNK = /\/pkg\/split_[^/]*\.wasm$/;

/**
 * Runs in the page before its own scripts: records when the note panel is
 * first in view (an IntersectionObserver without margin), when the note is
 * first editable with its text, and when socket frames about `doc:notes`
 * arrive. Everything on `performance.now()`.
 */
function instrument(seeded) {
  const marks = { inView: null, editable: null, docFrames: [] };
  window.__noteReady = marks;
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (typeof event.data === "string" && event.data.includes("doc:notes")) {
          const kind = /"type":"([a-z_]+)"/.exec(event.data);
          marks.docFrames.push({ at: performance.now(), kind: kind ? kind[1] : "?", bytes: event.data.length });
        }
      });
    }
  };
  const check = () => {
    const area = document.querySelector('textarea[aria-label="Note"]');
    if (!area) return;
    if (marks.editable === null && !area.readOnly && area.value.includes(seeded)) {
      marks.editable = performance.now();
    }
  };
  const watch = () => {
    const panel = document.querySelector("section.note");
    if (!panel) return false;
    new IntersectionObserver((entries) => {
      if (marks.inView === null && entries.some((e) => e.isIntersecting)) marks.inView = performance.now();
    }).observe(panel);
    new MutationObserver(check).observe(panel, { attributes: true, childList: true, subtree: true, characterData: true });
    const frame = () => {
      check();
      if (marks.editable === null) requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    return true;
  };
  if (!watch()) document.addEventListener("DOMContentLoaded", watch, { once: true });
}

/** Puts a preload of the note module `href` into the head as soon as it exists. */
function preload(href) {
  const add = () => {
    if (!document.head) return false;
    const link = document.createElement("link");
    link.rel = "preload";
    link.as = "fetch";
    link.type = "application/wasm";
    link.crossOrigin = "anonymous";
    link.href = href;
    document.head.appendChild(link);
    return true;
  };
  if (add()) return;
  const observer = new MutationObserver(() => {
    if (add()) observer.disconnect();
  });
  observer.observe(document, { childList: true, subtree: true });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

async function throttled(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", FAST_4G);
  return cdp;
}

const connected = (page) =>
  page.getByRole("status", { name: "Connection" }).getByText(/^Connected/).waitFor({ timeout: 60_000 });

async function join(page, name) {
  await connected(page);
  await page.getByRole("textbox", { name: "Name" }).fill(name);
  await page.getByRole("button", { name: "Join" }).click();
  await page.getByRole("button", { name: "Leave" }).waitFor({ timeout: 60_000 });
}

/** Waits for the marks to say editable, then reads them and the chunk's timing. */
async function collect(page) {
  await page.waitForFunction(() => window.__noteReady && window.__noteReady.editable !== null, null, {
    timeout: 60_000,
    polling: 50,
  });
  return page.evaluate((chunk) => {
    const marks = window.__noteReady;
    const re = new RegExp(chunk);
    const entry = performance.getEntriesByType("resource").find((e) => re.test(new URL(e.name).pathname));
    const [nav] = performance.getEntriesByType("navigation");
    const mainWasm = performance
      .getEntriesByType("resource")
      .find((e) => /\/pkg\/pulse\.[^/]*\.wasm$/.test(new URL(e.name).pathname));
    return {
      ...marks,
      domContentLoaded: nav ? nav.domContentLoadedEventEnd : null,
      mainWasm: mainWasm ? { start: mainWasm.startTime, end: mainWasm.responseEnd, bytes: mainWasm.transferSize } : null,
      chunk: entry
        ? { start: entry.startTime, responseStart: entry.responseStart, end: entry.responseEnd, bytes: entry.transferSize, encoded: entry.encodedBodySize }
        : null,
    };
  }, CHUNK.source);
}

async function seed() {
  const context = await browser.newContext({ baseURL: url });
  const page = await context.newPage();
  await page.goto("/");
  await join(page, "Seeder");
  const area = page.getByRole("textbox", { name: "Note" });
  await page.waitForFunction((el) => !el.readOnly, await area.elementHandle(), { timeout: 60_000 });
  // Acknowledged: nothing left in flight in the outbox.
  const acknowledged = () =>
    page.waitForFunction(
      () =>
        !Object.keys(localStorage)
          .filter((k) => k.startsWith("pulse_outbox:"))
          .some((k) => localStorage.getItem(k).includes('"flight":["')),
      null,
      { timeout: 30_000 },
    );
  if (!(await area.inputValue()).includes(SEEDED)) {
    if (noteKib > 0) {
      // 16 KiB per input event, each acknowledged before the next: a client
      // message is at most 64 KiB (protocol::MAX_MESSAGE_BYTES), base64
      // included. The value is set in the page (Playwright's `fill` takes
      // seconds on a long text area, Pulse or not).
      const text = noteText();
      for (let end = 16 * 1024; ; end += 16 * 1024) {
        await area.evaluate((el, value) => {
          el.value = value;
          el.setSelectionRange(value.length, value.length);
          el.dispatchEvent(new InputEvent("input", { bubbles: true, inputType: "insertText" }));
        }, text.slice(0, end));
        await acknowledged();
        if (end >= text.length) break;
      }
    } else {
      await area.click();
      await page.keyboard.press("Control+End");
      await area.pressSequentially(SEEDED, { delay: 5 });
      await acknowledged();
    }
  }
  const length = (await area.inputValue()).length;
  await context.close();
  return length;
}

async function belowFold(run, waitMs) {
  const context = await browser.newContext({ baseURL: url, viewport: { width: 1280, height: 600 } });
  await context.addInitScript(instrument, SEEDED);
  const page = await context.newPage();
  await throttled(context, page);
  await page.goto("/");
  await join(page, `Below${run}`);
  if (waitMs) await page.waitForTimeout(waitMs);
  return scrollAndMeasure(context, page);
}

/** Scrolls the note into view at T, waits for the marks and closes the
 * context. Editable before T (the module and the note were already here)
 * counts as 0. */
async function scrollAndMeasure(context, page) {
  const t = await page.evaluate(() => {
    document.querySelector('textarea[aria-label="Note"]').scrollIntoView({ block: "center" });
    return performance.now();
  });
  const marks = await collect(page);
  await context.close();
  return { t, ...marks, ready_ms: Math.max(0, marks.editable - t) };
}

/** Joins in a fresh context of `viewport`, clears the cache, and opens a
 * second, throttled and instrumented page there: signed in by its cookie. */
async function signedInReload(viewport, name, preloadHref = null) {
  const context = await browser.newContext({ baseURL: url, viewport });
  const joining = await context.newPage();
  await joining.goto("/");
  await join(joining, name);
  const cdp = await context.newCDPSession(joining);
  await cdp.send("Network.clearBrowserCache");
  await joining.close();
  await context.addInitScript(instrument, SEEDED);
  if (preloadHref) await context.addInitScript(preload, preloadHref);
  const page = await context.newPage();
  await throttled(context, page);
  await page.goto("/");
  return { context, page };
}

async function belowReload(run) {
  const { context, page } = await signedInReload({ width: 1280, height: 600 }, `Reload${run}`);
  await connected(page);
  return scrollAndMeasure(context, page);
}

async function inView(run, preloadHref = null) {
  const { context, page } = await signedInReload({ width: 1280, height: 1600 }, `InView${run}`, preloadHref);
  const marks = await collect(page);
  await context.close();
  return { ...marks, ready_ms: marks.editable - marks.inView, nav_to_editable_ms: marks.editable };
}

function stats(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median: Math.round(median), max: Math.round(sorted[sorted.length - 1]), n: sorted.length };
}

const round = (x) => (x === null || x === undefined ? x : Math.round(x));

try {
  const noteChars = await seed();
  const results = {};
  for (const name of cases) results[name] = [];
  // Interleaved: one run of each case per round.
  for (let run = 0; run < runs; run += 1) {
    for (const name of cases) {
      const r =
        name === "below_now"
          ? await belowFold(run, 0)
          : name === "below_idle"
            ? await belowFold(run, 3000)
            : name === "below_reload"
              ? await belowReload(run)
              : name === "in_view_preload"
                ? await inView(run, preloadChunk)
                : await inView(run);
      // What the wait after T (or after first-in-view) is made of.
      const from = name.startsWith("in_view") ? r.inView : r.t;
      const snapshot = r.docFrames.find((f) => f.kind === "subscribed" || f.kind === "batch");
      const line = {
        case: name,
        run,
        label,
        ready_ms: round(r.ready_ms),
        nav_to_editable_ms: round(r.nav_to_editable_ms ?? r.editable),
        t_or_in_view: round(from),
        editable: round(r.editable),
        chunk_start: round(r.chunk?.start),
        chunk_end: round(r.chunk?.end),
        chunk_bytes: r.chunk?.bytes ?? null,
        chunk_end_to_editable_ms: r.chunk ? round(r.editable - r.chunk.end) : null,
        snapshot_at: round(snapshot?.at),
        main_wasm_end: round(r.mainWasm?.end),
        doc_frames: r.docFrames.map((f) => `${f.kind}@${Math.round(f.at)}(${f.bytes})`).join(" "),
      };
      results[name].push(line);
      console.log(JSON.stringify(line));
    }
  }
  const summary = { summary: true, label, url, preset: FAST_4G, runs, note_chars: noteChars, at: new Date().toISOString() };
  for (const name of cases) {
    const ready = stats(results[name].map((l) => l.ready_ms));
    summary[name] = {
      ready_ms: ready,
      goal_met: ready.max <= GOAL_MS,
      nav_to_editable_ms: name.startsWith("in_view") ? stats(results[name].map((l) => l.nav_to_editable_ms)) : undefined,
      chunk_bytes: results[name].find((l) => l.chunk_bytes)?.chunk_bytes ?? null,
    };
  }
  console.log(JSON.stringify(summary));
} finally {
  await browser.close();
}
