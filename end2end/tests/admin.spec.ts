/**
 * An operator signs in to `/admin` with the admin key and watches the server
 * live: the connection count goes up when someone opens the dashboard in
 * another browser, the key is nowhere a script can read it, and axe-core
 * finds no serious or critical issue in either theme.
 */
import AxeBuilder from "@axe-core/playwright";
import type { Page } from "@playwright/test";
import { test, expect, connectionStatus } from "./fixtures";

const ADMIN_KEY = "e2e-admin-key-0123456";
/** `/admin` answers 401 with the sign-in form until signed in; Chromium logs that. */
const UNAUTHORIZED = /the server responded with a status of 401/;
test.use({ serverFlags: ["--admin-key", ADMIN_KEY], allowedConsole: UNAUTHORIZED });

/** One line per serious or critical axe violation, light and dark. */
async function seriousViolations(page: Page): Promise<string[]> {
  const found: string[] = [];
  for (const colorScheme of ["light", "dark"] as const) {
    await page.emulateMedia({ colorScheme, reducedMotion: "reduce" });
    const results = await new AxeBuilder({ page }).analyze();
    for (const violation of results.violations) {
      if (violation.impact !== "serious" && violation.impact !== "critical") continue;
      const where = violation.nodes.map((node) => node.target.join(" "));
      found.push(`[${colorScheme}] ${violation.id}: ${violation.help} at ${where.join(", ")}`);
    }
  }
  return found;
}

test("an operator signs in and sees a second browser's connection arrive", async ({
  browser,
  server,
  openDashboard,
}) => {
  const context = await browser.newContext({ baseURL: server.url });
  const admin = await context.newPage();
  const problems: string[] = [];
  admin.on("console", (message) => {
    if (["error", "warning"].includes(message.type()) && !UNAUTHORIZED.test(message.text())) {
      problems.push(`console.${message.type()}: ${message.text()}`);
    }
  });
  admin.on("pageerror", (error) => problems.push(`page error: ${error.message}`));

  await admin.goto("/admin");
  expect(await seriousViolations(admin), "the sign-in form").toEqual([]);
  await admin.getByLabel("Admin key").fill("not-the-key");
  await admin.getByRole("button", { name: "Sign in" }).click();
  await expect(admin.getByRole("alert")).toHaveText("Wrong admin key.");
  await admin.getByLabel("Admin key").fill(ADMIN_KEY);
  await admin.getByRole("button", { name: "Sign in" }).click();

  await expect(admin.getByRole("heading", { name: "Pulse admin", level: 1 })).toBeVisible();
  await expect(admin.getByRole("status")).toHaveText("Live");
  const connections = admin.locator("#connections");
  // The page's own socket is the one connection so far.
  await expect(connections).toHaveText("1");

  // Nothing a script can read holds the key or the session.
  const readable = await admin.evaluate(
    () => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie,
  );
  expect(readable).not.toContain(ADMIN_KEY);
  expect(readable).not.toContain("pulse_admin");

  const visitor = await openDashboard();
  await expect(connectionStatus(visitor)).toHaveText(/^Connected/);
  await expect(connections).toHaveText("2");
  await expect(admin.getByRole("table", { name: "Channels by subscribers on this instance" })).toContainText(
    "ticker:",
  );
  await expect(admin.getByRole("img", { name: "Connections over the last 10 minutes" })).toBeVisible();

  expect(await seriousViolations(admin), "the live view").toEqual([]);
  await context.close();
  expect(problems, "no console errors or warnings on /admin").toEqual([]);
});
