#!/usr/bin/env node
/**
 * What a visit to the dashboard transfers, in Debian's Chromium against a
 * running server: a first visit in a fresh profile, then a second visit in the
 * same profile. A benchmark, not a test: it prints one JSON line with, per
 * visit, the bytes the network carried (Resource Timing `transferSize`: headers
 * and the encoded body; 0 for a file taken from the cache) for the page and
 * each file, and their total. Then a signed-in first visit (joined as a guest,
 * cache cleared): "until live" (what it carried when the page was connected,
 * without the note's split module) and "after the note module" (once the
 * note is editable: its module fetched too).
 *
 *   target/release/pulse --addr 127.0.0.1:3997 --db /tmp/weight.db &
 *   node bench/browser/page_weight.mjs --url http://127.0.0.1:3997
 */
import { chromium } from "./playwright.mjs";

const at = process.argv.indexOf("--url");
const url = at > 0 ? process.argv[at + 1] : "http://127.0.0.1:3000";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run"],
});
try {
  const context = await browser.newContext();
  const visits = {};
  for (const visit of ["first", "second"]) {
    const page = await context.newPage();
    await page.goto(url);
    // Hydrated and live: the socket driver only runs in the wasm.
    await page.getByRole("status", { name: "Connection" }).getByText(/^Connected/).waitFor({ timeout: 30_000 });
    visits[visit] = await page.evaluate(() => {
      const files = {};
      const [navigation] = performance.getEntriesByType("navigation");
      files[new URL(navigation.name).pathname + " (page)"] = navigation.transferSize;
      for (const entry of performance.getEntriesByType("resource")) {
        const path = new URL(entry.name).pathname;
        if (path !== "/ws") files[path] = entry.transferSize;
      }
      const total = Object.values(files).reduce((sum, bytes) => sum + bytes, 0);
      return { total, files };
    });
    await page.close();
  }

  // Signed in: join on one page, clear the cache, then visit again.
  const joining = await context.newPage();
  await joining.goto(url);
  await joining.getByRole("status", { name: "Connection" }).getByText(/^Connected/).waitFor({ timeout: 30_000 });
  await joining.getByRole("textbox", { name: "Name" }).fill("Weigher");
  await joining.getByRole("button", { name: "Join" }).click();
  await joining.getByRole("button", { name: "Leave" }).waitFor();
  const cdp = await context.newCDPSession(joining);
  await cdp.send("Network.clearBrowserCache");
  await joining.close();
  const page = await context.newPage();
  await page.goto(url);
  await page.getByRole("status", { name: "Connection" }).getByText(/^Connected/).waitFor({ timeout: 30_000 });
  const weigh = (leaveOut) =>
    page.evaluate((leaveOut) => {
      const files = {};
      const [navigation] = performance.getEntriesByType("navigation");
      files[new URL(navigation.name).pathname + " (page)"] = navigation.transferSize;
      for (const entry of performance.getEntriesByType("resource")) {
        const path = new URL(entry.name).pathname;
        if (path !== "/ws" && !(leaveOut && /\/pkg\/split_/.test(path))) files[path] = entry.transferSize;
      }
      const total = Object.values(files).reduce((sum, bytes) => sum + bytes, 0);
      return { total, files };
    }, leaveOut);
  const untilLive = await weigh(true);
  const area = page.getByRole("textbox", { name: "Note" });
  await page.waitForFunction((el) => !el.readOnly, await area.elementHandle(), { timeout: 30_000 });
  const afterNote = await weigh(false);
  visits.signed_in = { until_live: untilLive.total, after_note_module: afterNote.total, files: afterNote.files };
  console.log(JSON.stringify({ url, ...visits, at: new Date().toISOString() }));
} finally {
  await browser.close();
}
