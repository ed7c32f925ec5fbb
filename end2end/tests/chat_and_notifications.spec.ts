import { test, expect, connectionStatus, join, say, SERVER_DOWN } from "./fixtures";
import type { Page } from "@playwright/test";

const ADMIN_KEY = "e2e-admin-key-0123456";
test.use({ serverFlags: ["--admin-key", ADMIN_KEY], allowedConsole: SERVER_DOWN });




test("two people chat, and HTML in a message is shown as text", async ({ openDashboard }) => {
  const alice = await openDashboard();
  const bob = await openDashboard();
  await join(alice, "Alice");
  await join(bob, "Bob");

  await say(alice, "hello Bob");
  await expect(bob.getByRole("log", { name: "Chat" }).getByRole("listitem").filter({ hasText: "hello Bob" })).toContainText("Alice");
  await expect(alice.getByRole("log", { name: "Chat" }).getByRole("listitem").filter({ hasText: "hello Bob" })).not.toContainText("sending");
  await expect(alice.getByRole("textbox", { name: "Message" })).toHaveValue("");

  await bob.getByRole("textbox", { name: "Message" }).fill("hi Alice");
  await bob.getByRole("button", { name: "Send" }).click();
  await expect(alice.getByRole("log", { name: "Chat" }).getByRole("listitem").filter({ hasText: "hi Alice" })).toContainText("Bob");

  const html = '<b id="injected">bold</b><img src=x onerror="window.__pwned=1">';
  await say(bob, html);
  await expect(alice.getByRole("log", { name: "Chat" }).getByRole("listitem").filter({ hasText: html })).toBeVisible();
  await expect(alice.locator("#injected")).toHaveCount(0);
  expect(await alice.evaluate(() => (window as any).__pwned)).toBeUndefined();

  // A reload shows the room's history, rendered by the server.
  await alice.reload();
  await expect(alice.getByRole("log", { name: "Chat" }).getByRole("listitem").filter({ hasText: "hi Alice" })).toBeVisible();
  await expect(connectionStatus(alice)).toHaveText(/^Connected/);
  await expect(alice.getByRole("log", { name: "Chat" }).getByRole("listitem").filter({ hasText: "hello Bob" })).toHaveCount(1);
});

test("a notification sent through the API appears as a toast and in the count", async ({ openDashboard, server, request }) => {
  const page = await openDashboard();
  await join(page, "Alice");
  await expect(page.getByRole("button", { name: /^Notifications/ })).toHaveAccessibleName("Notifications, none unread");

  const response = await request.post(`${server.url}/api/notify`, {
    headers: { Authorization: `Bearer ${ADMIN_KEY}` },
    data: { user: "guest:alice", title: "Deploy finished", body: "v1.2.3 is live" },
  });
  expect(response.status()).toBe(200);

  await expect(page.getByRole("status", { name: "New notification" })).toContainText("Deploy finished");
  const bell = page.getByRole("button", { name: /^Notifications/ });
  await expect(bell).toHaveAccessibleName("Notifications, 1 unread");
  await bell.click();
  const list = page.getByRole("region", { name: "Notifications" });
  await expect(list).toContainText("v1.2.3 is live");
  await list.getByRole("button", { name: "Mark read" }).click();
  await expect(bell).toHaveAccessibleName("Notifications, none unread");

  // Read stays read after a reload.
  await page.reload();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await expect(page.getByRole("button", { name: /^Notifications/ })).toHaveAccessibleName("Notifications, none unread");
});

test("a user who was offline finds the notification on the next visit", async ({ openDashboard, server, request }) => {
  const response = await request.post(`${server.url}/api/notify`, {
    headers: { Authorization: `Bearer ${ADMIN_KEY}` },
    data: { user: "guest:carol", title: "While you were away", body: "" },
  });
  expect(response.status()).toBe(200);
  const page = await openDashboard();
  await join(page, "Carol");
  await expect(page.getByRole("button", { name: /^Notifications/ })).toHaveAccessibleName("Notifications, 1 unread");

  // The count is in the server's HTML too: after a restart, with JavaScript off.
  await server.stop();
  await server.start();
  const html = await page.context().browser()!.newContext({
    javaScriptEnabled: false,
    baseURL: server.url,
    storageState: await page.context().storageState(),
  });
  const rendered = await html.newPage();
  await rendered.goto("/");
  await expect(rendered.getByRole("button", { name: /^Notifications/ })).toHaveAccessibleName("Notifications, 1 unread");
  await html.close();
});
