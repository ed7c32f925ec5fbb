import { test, expect, connectionStatus, join, SERVER_DOWN } from "./fixtures";
import type { Page } from "@playwright/test";

test.use({ serverFlags: ["--presence-grace-ms", "1000"] });

function online(page: Page) {
  return page.getByRole("list", { name: "Online" });
}

function person(page: Page, name: string) {
  return online(page).getByRole("listitem").filter({ hasText: name });
}


test("two people see each other join, each marked as you", async ({ openDashboard }) => {
  const alice = await openDashboard();
  const bob = await openDashboard();
  await join(alice, "Alice");
  await expect(person(alice, "Alice")).toContainText("you");
  await join(bob, "Bob");
  await expect(person(alice, "Bob")).toBeVisible();
  await expect(person(bob, "Alice")).toBeVisible();
  await expect(person(bob, "Bob")).toContainText("you");
  await expect(person(alice, "Bob")).not.toContainText("you");
});

test("closing one tab of two keeps the user; closing the last removes them after the grace", async ({ openDashboard }) => {
  const alice = await openDashboard();
  await join(alice, "Alice");
  const bobFirst = await openDashboard();
  await join(bobFirst, "Bob");
  // A second tab of Bob's: same browser, so the same stored token.
  const bobSecond = await openDashboard(bobFirst.context());
  await expect(bobSecond.getByRole("button", { name: "Leave" })).toBeVisible();
  await expect(person(alice, "Bob")).toContainText("2 tabs");

  await bobSecond.close();
  await expect(person(alice, "Bob")).not.toContainText("2 tabs");
  await expect(person(alice, "Bob")).toBeVisible();

  await bobFirst.close();
  await expect(person(alice, "Bob")).toHaveCount(0, { timeout: 10_000 });
  await expect(person(alice, "Alice")).toBeVisible();
});

test("hiding a page shows its user as away", async ({ openDashboard }) => {
  const alice = await openDashboard();
  const bob = await openDashboard();
  await join(alice, "Alice");
  await join(bob, "Bob");
  await expect(person(alice, "Bob")).toBeVisible();
  const setHidden = (hidden: boolean) =>
    bob.evaluate((hidden) => {
      Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (hidden ? "hidden" : "visible") });
      document.dispatchEvent(new Event("visibilitychange", { bubbles: true }));
    }, hidden);
  await setHidden(true);
  await expect(person(alice, "Bob")).toContainText("away");
  await setHidden(false);
  await expect(person(alice, "Bob")).not.toContainText("away");
});

test.describe("a status from a page that is gone", () => {
  test.use({ allowedConsole: SERVER_DOWN });

  test("is never replayed: a visible page says online after its welcome", async ({ server, openDashboard }) => {
    const alice = await openDashboard();
    await join(alice, "Alice");
    const bob = await openDashboard();
    await join(bob, "Bob");
    await server.kill();
    await expect(connectionStatus(bob)).toHaveText(/^(Reconnecting|Offline)/);
    // Bob's tab is hidden while the server is down, then closed.
    await bob.evaluate(() => {
      Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
      document.dispatchEvent(new Event("visibilitychange", { bubbles: true }));
    });
    const context = bob.context();
    await bob.close();

    await server.start();
    await expect(connectionStatus(alice)).toHaveText(/^Connected/, { timeout: 40_000 });
    // Bob comes back later in a visible tab.
    const again = await openDashboard(context);
    await expect(connectionStatus(again)).toHaveText(/^Connected/);
    await expect(person(alice, "Bob")).toBeVisible();
    await alice.waitForTimeout(1_500);
    await expect(person(alice, "Bob")).not.toContainText("away");
    await expect(person(again, "Bob")).not.toContainText("away");
  });
});

test("a reload stays signed in, and leaving signs out", async ({ openDashboard }) => {
  const page = await openDashboard();
  await join(page, "Alice");
  await page.reload();
  // The server already renders the signed-in header and the list.
  await expect(page.getByRole("button", { name: "Leave" })).toBeVisible();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await expect(person(page, "Alice")).toContainText("you");
  await page.getByRole("button", { name: "Leave" }).click();
  await expect(page.getByRole("button", { name: "Join" })).toBeVisible();
  await expect(page.getByText("Join to see who is online.")).toBeVisible();
});

test("a name that is not allowed is explained", async ({ openDashboard }) => {
  const page = await openDashboard();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  const name = page.getByRole("textbox", { name: "Name" });
  await name.fill("   ");
  await page.getByRole("button", { name: "Join" }).click();
  await expect(page.getByRole("alert").filter({ hasText: "must not be empty" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Join" })).toBeVisible();
});

test("an avatar shows a name's initials in capitals, in the page and from the server", async ({ openDashboard }) => {
  const page = await openDashboard();
  await join(page, "émile ßtraße");
  // Drawn by the page (the browser's toUpperCase), then by the server (Rust's).
  const avatars = page.locator(".identity .avatar, .people .avatar");
  await expect(avatars).toHaveText(["ÉSS", "ÉSS"]);
  await page.reload();
  await expect(avatars).toHaveText(["ÉSS", "ÉSS"]);
});
