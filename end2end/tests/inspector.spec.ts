/**
 * A developer inspects their own tab: with `?inspect` the Inspector lists
 * the `welcome` frame and ticks with their offsets (a frame's JSON on
 * request), and shows "Reconnecting in N s" while the server restarts;
 * Alt+Shift+I opens and closes it on a page loaded without it, which never
 * fetched the inspector before. axe-core finds nothing serious with it open.
 */
import AxeBuilder from "@axe-core/playwright";
import type { Locator, Page } from "@playwright/test";
import { test, expect, connectionStatus, SERVER_DOWN } from "./fixtures";

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

  await server.stop();
  await expect(inspector(page).locator("#pi-state")).toHaveText(/Reconnecting in \d+ s/);
  await server.start();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await expect(framesOfType(page, "welcome")).toHaveCount(2);
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
