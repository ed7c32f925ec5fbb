import { test, expect, connectionStatus, SERVER_DOWN, join, say, chatLines as lines } from "./fixtures";
import type { Page } from "@playwright/test";

test.use({ allowedConsole: SERVER_DOWN });




test("after a crash both pages come back by themselves and nothing is lost or doubled", async ({ server, openDashboard }) => {
  const alice = await openDashboard();
  const bob = await openDashboard();
  await join(alice, "Alice");
  await join(bob, "Bob");
  await say(alice, "before the crash 1");
  await say(bob, "before the crash 2");
  await expect(lines(alice, "before the crash 2")).toHaveCount(1);
  await expect(lines(bob, "before the crash 1")).toHaveCount(1);

  await server.kill();
  await expect(connectionStatus(alice)).toHaveText(/^(Reconnecting|Offline)/);
  await expect(connectionStatus(bob)).toHaveText(/^(Reconnecting|Offline)/);
  await expect(alice.getByRole("button", { name: "Retry now" })).toBeVisible();

  await say(alice, "typed while the server was down");
  await expect(lines(alice, "typed while the server was down")).toContainText("sending");

  await server.start();
  await expect(connectionStatus(alice)).toHaveText(/^Connected/, { timeout: 40_000 });
  await expect(connectionStatus(bob)).toHaveText(/^Connected/, { timeout: 40_000 });

  await expect(lines(bob, "typed while the server was down")).toHaveCount(1);
  await expect(lines(alice, "typed while the server was down")).not.toContainText("sending");
  // Give a duplicate every chance to show up, then count again.
  await alice.waitForTimeout(1_000);
  for (const page of [alice, bob]) {
    await expect(lines(page, "typed while the server was down")).toHaveCount(1);
    await expect(lines(page, "before the crash 1")).toHaveCount(1);
    await expect(lines(page, "before the crash 2")).toHaveCount(1);
  }
});

test("a message queued while offline is sent by the next visit of the page", async ({ server, openDashboard }) => {
  const alice = await openDashboard();
  await join(alice, "Alice");
  const context = alice.context();

  await server.kill();
  await expect(connectionStatus(alice)).toHaveText(/^(Reconnecting|Offline)/);
  await say(alice, "queued before the reload");
  await expect(lines(alice, "queued before the reload")).toContainText("sending");
  // The page goes away while the server is still down (a reload cannot load
  // anything then); its outbox stays in the browser.
  await alice.close();

  await server.start();
  const again = await openDashboard(context);
  await expect(connectionStatus(again)).toHaveText(/^Connected/);
  await expect(lines(again, "queued before the reload")).toHaveCount(1);
  await expect(lines(again, "queued before the reload")).not.toContainText("sending");

  const bob = await openDashboard();
  await join(bob, "Bob");
  await expect(lines(bob, "queued before the reload")).toHaveCount(1);
});
