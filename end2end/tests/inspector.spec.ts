/**
 * A developer inspects their own tab: with `?inspect` the Inspector lists
 * the `welcome` frame and ticks with their offsets (a frame's JSON on
 * request), and shows the reconnection machine's own state ("Reconnecting in
 * N s" with its backoff) and outbox (a message queued while the server
 * restarts) as the page's wasm reports them; with `?transport=sse` it shows
 * the fallback and its frames both ways;
 * Alt+Shift+I opens and closes it on a page loaded without it, which never
 * fetched the inspector before. axe-core finds nothing serious with it open.
 */
import AxeBuilder from "@axe-core/playwright";
import type { Locator, Page } from "@playwright/test";
import { test, expect, connectionStatus, connectionText, join, say, SERVER_DOWN } from "./fixtures";

test.use({ allowedConsole: SERVER_DOWN });

function inspector(page: Page) {
  return page.getByRole("region", { name: "Inspector" });
}

/** The frames table's rows whose Type cell is exactly `type`. */
function framesOfType(page: Page, type: string): Locator {
  const table = inspector(page).getByRole("table", { name: "Last 200 frames" });
  return table.getByRole("row").filter({ has: page.getByRole("cell", { name: type, exact: true }) });
}

test("the inspector lists welcome and ticks, and the reconnection state", async ({ server, openDashboard }) => {
  const page = await openDashboard();
  await page.goto("/?inspect");
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await expect(inspector(page)).toBeVisible();
  await expect(framesOfType(page, "welcome")).toHaveCount(1);
  const tick = framesOfType(page, "tick").first();
  await expect(tick).toBeVisible();
  await expect(tick.getByRole("cell").nth(3)).toHaveText(/^\d+$/);
  await expect(tick).toContainText(/ticker:[A-Z.]+/);
  await tick.getByRole("button").click();
  await expect(inspector(page).getByLabel("Frame JSON")).toContainText('"type": "tick"');
  const offsets = inspector(page).getByRole("table", { name: "Offsets by channel" });
  await expect(offsets.getByRole("row").filter({ hasText: /ticker:/ }).first()).toBeVisible();
  await expect(inspector(page).locator("#pi-transport")).toContainText("WebSocket ws://");

  await page.emulateMedia({ reducedMotion: "reduce" });
  const results = await new AxeBuilder({ page }).include("#pulse-inspector").analyze();
  const serious = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(serious.map((v) => `${v.id}: ${v.help}`)).toEqual([]);

  await join(page, "Ann");
  await expect(inspector(page).locator("#pi-state")).toHaveText("Open");
  await expect(inspector(page).locator("#pi-outbox")).toHaveText("empty");
  await server.stop();
  // The machine's state with its backoff: the badge never shows the backoff.
  await expect(inspector(page).locator("#pi-state")).toHaveText(/^Reconnecting in \d+ s \(backoff \d+ ms\)$/);
  // A message written meanwhile waits in the outbox: no frame says so.
  await say(page, "queued while away");
  await expect(inspector(page).locator("#pi-outbox")).toHaveText(/^1 waiting: chat_send c-/);
  await server.start();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await expect(inspector(page).locator("#pi-outbox")).toHaveText("empty");
  await expect(framesOfType(page, "welcome")).toHaveCount(3);
});

test("on the fallback the inspector shows SSE and its frames both ways", async ({ openDashboard }) => {
  const page = await openDashboard();
  await page.goto("/?inspect&transport=sse");
  await expect(connectionText(page)).toHaveText("Connected (fallback)");
  await expect(inspector(page).locator("#pi-transport")).toContainText("SSE (fallback) http://");
  await expect(inspector(page).locator("#pi-state")).toHaveText("Open");
  // Down the stream, and up in POSTs.
  await expect(framesOfType(page, "welcome")).toHaveCount(1);
  await expect(framesOfType(page, "hello")).toHaveCount(1);
  await expect(framesOfType(page, "subscribe").first()).toBeVisible();
  await expect(framesOfType(page, "tick").first()).toBeVisible();
});

test("Alt+Shift+I opens and closes the inspector; closed, it was never fetched", async ({ openDashboard }) => {
  const page = await openDashboard();
  const fetched: string[] = [];
  page.on("request", (request) => {
    if (request.url().includes("/inspector/inspector")) fetched.push(request.url());
  });
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  expect(fetched).toEqual([]);
  await expect(inspector(page)).toHaveCount(0);

  await page.keyboard.press("Alt+Shift+KeyI");
  await expect(inspector(page)).toBeVisible();
  await expect(framesOfType(page, "tick").first()).toBeVisible();
  expect(fetched.length).toBeGreaterThan(0);

  await page.keyboard.press("Alt+Shift+KeyI");
  await expect(inspector(page)).toBeHidden();
});
