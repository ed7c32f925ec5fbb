/**
 * Issue 23: a tab that talks to another build of the server (a deploy while
 * it was open) says so politely and keeps working; and a release binary
 * refuses to start on a bundle that is not its own build.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Page } from "@playwright/test";
import { test, expect, connectionStatus } from "./fixtures";
import { binaryPath, freePort, repoRoot, siteRoot } from "./server";

/** Another build's id, as a server restarted from other sources says it. */
const OTHER_BUILD = "pulse-release-00000000000000ff";

function banner(page: Page) {
  return page.getByRole("status", { name: "New version" });
}

/** The first cell (the price) of `symbol`'s row in `Live prices`. */
function price(page: Page, symbol: string) {
  return page
    .getByRole("table", { name: "Live prices" })
    .getByRole("row")
    .filter({ has: page.getByRole("rowheader", { name: symbol, exact: true }) })
    .getByRole("cell")
    .first();
}

/** Waits until `symbol`'s price changes: the page is still live. */
async function aPriceChanges(page: Page, symbol: string) {
  await expect(price(page, symbol)).toHaveText(/^\d+\.\d{2}$/);
  const before = await price(page, symbol).textContent();
  await expect(price(page, symbol)).not.toHaveText(before ?? "", { timeout: 10_000 });
}

test("a server of another build shows the banner; the page keeps working and never reloads by itself", async ({
  browser,
  server,
}) => {
  const context = await browser.newContext({ baseURL: server.url });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("console", (message) => {
    if (["error", "warning"].includes(message.type())) problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(error.message));
  // The real server behind a proxy that says it is another build: what a
  // tab sees after the server was restarted from new sources.
  let rewritten = 0;
  await page.routeWebSocket("**/ws", (ws) => {
    const upstream = ws.connectToServer();
    upstream.onMessage((message) => {
      if (typeof message === "string" && message.includes('"build":')) {
        rewritten += 1;
        message = message.replace(/"build":"[^"]*"/, `"build":"${OTHER_BUILD}"`);
      }
      ws.send(message);
    });
  });
  await page.goto("/");
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await page.evaluate(() => ((window as any).__pulseMarker = "kept"));
  await expect(banner(page)).toHaveText("A new version of Pulse is available — Reload");
  expect(rewritten).toBeGreaterThan(0);
  // Still live under the banner, and still the same document.
  await aPriceChanges(page, "MSFT");
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  expect(await page.evaluate(() => (window as any).__pulseMarker)).toBe("kept");
  // Reloading is the user's choice.
  await banner(page).getByRole("button", { name: "Reload" }).click();
  await expect.poll(() => page.evaluate(() => (window as any).__pulseMarker ?? "reloaded")).toBe("reloaded");
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await context.close();
  expect(problems, "no console errors or warnings").toEqual([]);
});

test("a server of this build shows no banner", async ({ openDashboard }) => {
  const page = await openDashboard();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await aPriceChanges(page, "MSFT");
  await expect(banner(page)).toBeEmpty();
  await expect(page.getByText("A new version of Pulse is available")).toHaveCount(0);
});

test("a release binary started on a debug bundle refuses to start and names the fix", async () => {
  // The real bundle's id, with its kind turned to debug: what `cargo leptos
  // watch` leaves in target/site from the same sources.
  const pkg = path.join(siteRoot(), "pkg");
  const wasm = readdirSync(pkg).find((name) => name.endsWith(".wasm"));
  expect(wasm, "a wasm bundle in target/site/pkg").toBeTruthy();
  const ours = readFileSync(path.join(pkg, wasm!)).toString("latin1").match(/pulse-release-[0-9a-f]{16}/);
  expect(ours, "the release bundle carries its build id").not.toBeNull();
  const debugId = ours![0].replace("pulse-release-", "pulse-debug-");
  const site = mkdtempSync(path.join(tmpdir(), "pulse-stale-site-"));
  mkdirSync(path.join(site, "pkg"));
  writeFileSync(path.join(site, "pkg", "pulse.wasm"), Buffer.concat([Buffer.from("\0asm\x01\0\0\0"), Buffer.from(debugId)]));

  const env: NodeJS.ProcessEnv = { ...process.env, LEPTOS_SITE_ROOT: site, NO_COLOR: "1" };
  delete env.PULSE_ALLOW_STALE_BUNDLE;
  const child = spawn(binaryPath(), ["--addr", `127.0.0.1:${await freePort()}`, "--db", path.join(site, "pulse.db")], {
    cwd: repoRoot,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => {
    // A server that starts instead is stopped, so the test fails, not hangs.
    const guard = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.once("exit", (exitCode) => {
      clearTimeout(guard);
      resolve(exitCode);
    });
  });
  expect(code, output).not.toBe(0);
  expect(output).toContain("as a debug build");
  expect(output).toContain("cargo leptos build --release");
  expect(output).toContain("--allow-stale-bundle");
});
