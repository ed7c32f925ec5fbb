/**
 * A person behind a proxy that breaks the WebSocket upgrade: after two
 * refused upgrades (while plain HTTP works) the page falls back to Server-Sent
 * Events and POSTs and says "Connected (fallback)"; prices, presence, chat and
 * the shared note work over it. When the proxy starts passing upgrades, the
 * page moves back to a WebSocket by itself ("Connected"), ending its fallback
 * session on the server, and no chat line is lost or doubled on either move.
 */
import type { Page } from "@playwright/test";
import { test, expect, connectionStatus, connectionText, join, say, chatLines } from "./fixtures";
import { BlockingProxy } from "./blocking_proxy";
import { note, editable, typeAtEnd } from "./note_helpers";

// Chromium logs each refused upgrade (the page's and its background tries).
test.use({ allowedConsole: /WebSocket connection to .* failed/ });

function price(page: Page, symbol: string) {
  return page
    .getByRole("table", { name: "Live prices" })
    .getByRole("row")
    .filter({ has: page.getByRole("rowheader", { name: symbol, exact: true }) })
    .getByRole("cell")
    .first();
}

function person(page: Page, name: string) {
  return page.getByRole("list", { name: "Online" }).getByRole("listitem").filter({ hasText: name });
}

test("behind a proxy that refuses WebSockets the page falls back, works, and moves back", async ({ server, browser, openDashboard }) => {
  test.setTimeout(150_000);
  const proxy = await BlockingProxy.start(server.port);
  const behind = await browser.newContext({ baseURL: proxy.url });
  try {
    const alice = await openDashboard(behind);
    await expect(connectionText(alice)).toHaveText("Connected (fallback)", { timeout: 30_000 });
    expect(proxy.refused).toBeGreaterThanOrEqual(2);
    // The state word is what a screen reader hears, as on a WebSocket.
    await expect(connectionStatus(alice)).toHaveText("Connected");

    // Prices tick over the stream.
    const before = await price(alice, "MSFT").textContent();
    await expect(price(alice, "MSFT")).not.toHaveText(before ?? "", { timeout: 15_000 });

    // Presence and chat, with someone on a WebSocket.
    await join(alice, "Alice");
    await expect(connectionText(alice)).toHaveText("Connected (fallback)");
    const bob = await openDashboard();
    await join(bob, "Bob");
    await expect(person(alice, "Bob")).toBeVisible();
    await expect(person(bob, "Alice")).toBeVisible();
    await say(alice, "sent over the fallback");
    await expect(chatLines(bob, "sent over the fallback")).toHaveCount(1);
    await expect(chatLines(alice, "sent over the fallback")).not.toContainText("sending");
    await say(bob, "heard over the fallback");
    await expect(chatLines(alice, "heard over the fallback")).toHaveCount(1);

    // The note, both ways.
    await editable(alice);
    await editable(bob);
    await typeAtEnd(alice, "fallback edit");
    await expect(note(bob)).toHaveValue(/fallback edit/);
    await typeAtEnd(bob, " websocket edit");
    await expect(note(alice)).toHaveValue(/websocket edit/);

    // The proxy lets WebSockets through: the page moves back by itself, and
    // ends its fallback session rather than leaving it to time out, so Bob
    // sees Alice with one tab again, not two.
    const ended = alice.waitForResponse(
      (r) => r.request().method() === "DELETE" && new URL(r.url()).pathname.startsWith("/sse/"),
      { timeout: 60_000 },
    );
    proxy.passUpgrades = true;
    await expect(connectionText(alice)).toHaveText("Connected", { timeout: 60_000 });
    expect((await ended).status()).toBe(204);
    await expect(person(bob, "Alice")).not.toContainText("tabs");
    await say(bob, "heard after the move");
    await expect(chatLines(alice, "heard after the move")).toHaveCount(1);
    await say(alice, "sent after the move");
    await expect(chatLines(bob, "sent after the move")).toHaveCount(1);
    // Nothing doubled by either move, on either side.
    for (const page of [alice, bob]) {
      for (const line of ["sent over the fallback", "heard over the fallback"]) {
        await expect(chatLines(page, line)).toHaveCount(1);
      }
    }
    await expect(note(alice)).toHaveValue(/fallback edit websocket edit/);
  } finally {
    await behind.close();
    await proxy.stop();
  }
});
