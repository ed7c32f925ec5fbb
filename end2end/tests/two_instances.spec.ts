/**
 * Two Pulse instances serving as one (one PostgreSQL, one Redis, both
 * started for the test): people on different instances see each other
 * online (a user with a tab on each is one person with two tabs) and chat
 * as in one room, and a page whose instance dies moves to the other
 * (behind a tiny TCP proxy, so it keeps its origin) with the message it
 * was sending delivered once, without leaving the list of who is online.
 */
import { test, expect, Browser, Page } from "@playwright/test";
import { chatLines, connectionStatus, join, say } from "./fixtures";
import { PulseServer } from "./server";
import { Postgres, Proxy, Redis } from "./cluster";

let postgres: Postgres;
let redis: Redis;
let databases = 0;

test.beforeAll(async () => {
  postgres = await Postgres.start();
  redis = await Redis.start();
});

test.afterAll(async () => {
  await redis?.stop();
  await postgres?.stop();
});

/** Two instances on a fresh database and the shared Redis. */
async function twoInstances(): Promise<[PulseServer, PulseServer]> {
  databases += 1;
  const url = postgres.createDatabase(`e2e_cluster_${databases}`);
  const flags = ["--database-url", url, "--redis", redis.url];
  return [await PulseServer.start(flags), await PulseServer.start(flags)];
}

function person(page: Page, name: string) {
  return page.getByRole("list", { name: "Online" }).getByRole("listitem").filter({ hasText: name });
}

async function dashboard(browser: Browser, baseURL: string): Promise<Page> {
  const context = await browser.newContext({ baseURL });
  const page = await context.newPage();
  await page.goto("/");
  return page;
}

test("people on two instances see each other online and chat as in one room", async ({ browser }) => {
  const [a, b] = await twoInstances();
  try {
    const alice = await dashboard(browser, a.url);
    const bob = await dashboard(browser, b.url);
    await join(alice, "Alice");
    await join(bob, "Bob");
    await expect(person(alice, "Bob")).toBeVisible();
    await expect(person(bob, "Alice")).toBeVisible();
    await expect(person(bob, "Bob")).toContainText("you");

    // Bob opens a second tab, on the other instance: one person, two tabs.
    const bobElsewhere = await dashboard(browser, a.url);
    await join(bobElsewhere, "Bob");
    await expect(person(alice, "Bob")).toContainText("2 tabs");
    await expect(person(bob, "Bob")).toContainText("2 tabs");
    await bobElsewhere.context().close();
    await expect(person(alice, "Bob")).not.toContainText("2 tabs");
    await expect(person(alice, "Bob")).toBeVisible();

    await say(alice, "hello from the first instance");
    await expect(chatLines(bob, "hello from the first instance")).toContainText("Alice");
    await say(bob, "hi from the second one");
    await expect(chatLines(alice, "hi from the second one")).toContainText("Bob");
    // Each once, on both pages.
    for (const page of [alice, bob]) {
      await expect(chatLines(page, "hello from the first instance")).toHaveCount(1);
      await expect(chatLines(page, "hi from the second one")).toHaveCount(1);
    }
  } finally {
    await a.stop();
    await b.stop();
  }
});

test("a page whose instance dies moves to the other and its message arrives once", async ({ browser }) => {
  const [a, b] = await twoInstances();
  const alive = new Set([a.port, b.port]);
  const proxy = await Proxy.start(() => [a.port, b.port].filter((port) => alive.has(port)));
  try {
    const alice = await dashboard(browser, proxy.url);
    const bob = await dashboard(browser, b.url);
    await join(alice, "Alice");
    await join(bob, "Bob");
    await say(alice, "before the crash");
    await expect(chatLines(bob, "before the crash")).toHaveCount(1);

    // The instance Alice's page uses dies; what she sends now waits in the
    // page's outbox until the page is connected again, to the other one.
    alive.delete(a.port);
    await a.kill();
    await say(alice, "sent while moving");
    await expect(connectionStatus(alice)).toHaveText(/^Connected/, { timeout: 30_000 });
    await expect(chatLines(bob, "sent while moving")).toHaveCount(1);
    await expect(chatLines(bob, "sent while moving")).toContainText("Alice");
    await expect(chatLines(alice, "sent while moving")).toHaveCount(1);
    await expect(chatLines(alice, "sent while moving")).not.toContainText(/sending|failed/);
    await expect(chatLines(alice, "before the crash")).toHaveCount(1);
    // She moved within the grace: still online for Bob, once.
    await expect(person(bob, "Alice")).toHaveCount(1);
    await expect(person(alice, "Bob")).toBeVisible();
  } finally {
    await proxy.stop();
    await a.stop();
    await b.stop();
  }
});
