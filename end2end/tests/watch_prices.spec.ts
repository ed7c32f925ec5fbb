import { test, expect, connectionStatus } from "./fixtures";

/** The row of `symbol` in the `Live prices` table. */
function row(page: import("@playwright/test").Page, symbol: string) {
  return page
    .getByRole("table", { name: "Live prices" })
    .getByRole("row")
    .filter({ has: page.getByRole("rowheader", { name: symbol, exact: true }) });
}

test("the first HTML already holds live prices", async ({ browser, server }) => {
  // Give the simulator a moment to tick every symbol at least once.
  await expect
    .poll(async () => (await (await fetch(`${server.url}/`)).text()).includes("▲") || (await (await fetch(`${server.url}/`)).text()).includes("▼"), { timeout: 15_000 })
    .toBe(true);
  // With JavaScript off, only the server's HTML is there.
  const context = await browser.newContext({ javaScriptEnabled: false, baseURL: server.url });
  const page = await context.newPage();
  await page.goto("/");
  const table = page.getByRole("table", { name: "Live prices" });
  await expect(table.getByRole("row")).toHaveCount(13); // header + 12 symbols
  const price = row(page, "AAPL").getByRole("cell").first();
  await expect(price).toHaveText(/^\d+\.\d{2}$/);
  await context.close();
});

test("prices change within a few seconds", async ({ openDashboard }) => {
  const page = await openDashboard();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  const table = page.getByRole("table", { name: "Live prices" });
  await expect(table).toBeVisible();
  const price = row(page, "MSFT").getByRole("cell").first();
  await expect(price).toHaveText(/^\d+\.\d{2}$/);
  // Tag the row's element: a tick must update its cells in place, not
  // re-create the row (or the table).
  await row(page, "MSFT").evaluate((el) => ((el as any).__pulseMarker = "kept"));
  await table.evaluate((el) => ((el as any).__pulseMarker = "kept"));
  const before = await price.textContent();
  await expect(price).not.toHaveText(before ?? "", { timeout: 10_000 });
  expect(await row(page, "MSFT").evaluate((el) => (el as any).__pulseMarker)).toBe("kept");
  expect(await table.evaluate((el) => (el as any).__pulseMarker)).toBe("kept");
});

test("removing a symbol stops its row, and a reload keeps the watchlist", async ({ openDashboard }) => {
  const page = await openDashboard();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await page.getByRole("button", { name: "Remove AAPL" }).click();
  await expect(row(page, "AAPL")).toHaveCount(0);
  await expect(page.getByRole("table", { name: "Live prices" }).getByRole("row")).toHaveCount(12);

  await page.reload();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await expect(row(page, "AAPL")).toHaveCount(0);
  await expect(row(page, "MSFT")).toHaveCount(1);
});

test("adding a symbol subscribes to it", async ({ openDashboard }) => {
  const page = await openDashboard();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await page.getByRole("button", { name: "Remove AMD" }).click();
  await expect(row(page, "AMD")).toHaveCount(0);

  const input = page.getByRole("textbox", { name: "Symbol" });
  await input.fill("not a symbol!");
  await page.getByRole("button", { name: "Add", exact: true }).click();
  await expect(page.getByRole("alert").filter({ hasText: "is not a symbol" })).toBeVisible();

  await input.fill("amd");
  await input.press("Enter");
  await expect(row(page, "AMD")).toHaveCount(1);
  await expect(row(page, "AMD").getByRole("cell").first()).toHaveText(/^\d+\.\d{2}$/, { timeout: 10_000 });
  await expect(input).toHaveValue("");
});
