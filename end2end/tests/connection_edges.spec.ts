/**
 * The browser's connection at its edges: close codes right after the upgrade,
 * an upgrade that is never answered, "Retry now" and the network coming back
 * during an attempt, a frozen server, and the outbox (two tabs of one user,
 * sign-out, a long queue, read marks) never losing or doubling a message.
 */
import net from "node:net";
import type { Browser, BrowserContext, Page, WebSocket } from "@playwright/test";
import { test, expect, connectionStatus, connectionText, SERVER_DOWN, join, say, chatLines as lines } from "./fixtures";

test.use({ allowedConsole: SERVER_DOWN });

/** Counts the page's WebSocket attempts, and the text frames it sent. */
function watchSockets(page: Page) {
  const seen = { attempts: [] as number[], sent: [] as string[] };
  page.on("websocket", (socket: WebSocket) => {
    seen.attempts.push(Date.now());
    socket.on("framesent", (frame) => seen.sent.push(String(frame.payload)));
  });
  return seen;
}

/**
 * A TCP proxy in front of the server that can swallow WebSocket upgrades:
 * the connection is accepted and never answered, as behind a broken network
 * middlebox. Everything else passes through.
 */
class Blackhole {
  swallow = true;
  upgrades = 0;
  private readonly held: net.Socket[] = [];
  private readonly server: net.Server;
  port = 0;

  constructor(private readonly target: number) {
    this.server = net.createServer((client) => {
      client.on("error", () => client.destroy());
      client.once("data", (head) => {
        if (/^GET \/ws[ ?]/.test(head.toString("latin1"))) {
          this.upgrades += 1;
          if (this.swallow) {
            this.held.push(client);
            return;
          }
        }
        const upstream = net.connect(this.target, "127.0.0.1", () => {
          upstream.write(head);
          client.pipe(upstream);
          upstream.pipe(client);
        });
        upstream.on("error", () => client.destroy());
        client.on("close", () => upstream.destroy());
        upstream.on("close", () => client.destroy());
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    const address = this.server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    return `http://127.0.0.1:${this.port}`;
  }

  close() {
    for (const socket of this.held) socket.destroy();
    this.server.close();
  }
}

test.describe("a forbidden origin", () => {
  test.use({ serverFlags: ["--allowed-origins", "http://pulse.invalid"] });

  test("close 1008 right after the upgrade is honoured: no retry loop", async ({ openDashboard }) => {
    const page = await openDashboard();
    await expect(connectionText(page)).toHaveText(/^Offline$/);
    const seen = watchSockets(page);
    await page.waitForTimeout(3_000);
    expect(seen.attempts, "the page stopped: no attempt after the 1008").toHaveLength(0);
    await expect(page.getByRole("button", { name: "Retry now" })).toBeVisible();
  });
});

test.describe("a full server", () => {
  test.use({ serverFlags: ["--max-connections", "1"] });

  test("close 1013 right after the upgrade backs off as the table says", async ({ openDashboard }) => {
    const first = await openDashboard();
    await expect(connectionStatus(first)).toHaveText(/^Connected/);
    const page = await openDashboard();
    await expect(connectionText(page)).toHaveText(/^Reconnecting in \d+ s/);
    const seen = watchSockets(page);
    await page.waitForTimeout(5_000);
    // Backing off: 1, 2, 4 s, each at least half of it, so some attempts
    // within 5 s, never two within half a second.
    expect(seen.attempts.length).toBeGreaterThanOrEqual(1);
    expect(seen.attempts.length).toBeLessThanOrEqual(4);
    const gaps = seen.attempts.slice(1).map((at, n) => at - seen.attempts[n]);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(450);
    await expect(page.getByRole("button", { name: "Retry now" })).toBeVisible();
    // A place frees up: the next attempt gets in.
    await first.close();
    await expect(connectionStatus(page)).toHaveText(/^Connected/, { timeout: 40_000 });
  });
});

/** Opens the dashboard through a `Blackhole` in front of `server`, runs `body`. */
async function behindBlackhole(
  browser: Browser,
  port: number,
  openDashboard: (context?: BrowserContext) => Promise<Page>,
  body: (page: Page, hole: Blackhole) => Promise<void>,
) {
  const hole = new Blackhole(port);
  const context = await browser.newContext({ baseURL: await hole.listen() });
  try {
    const page = await openDashboard(context);
    await expect(connectionText(page)).toHaveText(/^Offline · connecting/);
    await body(page, hole);
  } finally {
    await context.close();
    hole.close();
  }
}

test("an upgrade that is never answered times out and is retried", async ({ browser, server, openDashboard }) => {
  await behindBlackhole(browser, server.port, openDashboard, async (page, hole) => {
    const status = connectionStatus(page);
    // The attempt's deadline is 10 s: then it counts as a 1006 and backs off.
    await expect(status).toHaveText(/^Reconnecting/, { timeout: 15_000 });
    await expect.poll(() => hole.upgrades, { timeout: 15_000 }).toBeGreaterThanOrEqual(2);
    hole.swallow = false;
    await expect(status).toHaveText(/^Connected/, { timeout: 30_000 });
  });
});

test("\"Retry now\" works while an attempt is under way", async ({ browser, server, openDashboard }) => {
  await behindBlackhole(browser, server.port, openDashboard, async (page, hole) => {
    await expect.poll(() => hole.upgrades).toBe(1);
    hole.swallow = false;
    // Long before the 10 s deadline: a fresh attempt at once, and it gets in.
    await page.getByRole("button", { name: "Retry now" }).click({ timeout: 3_000 });
    await expect(connectionStatus(page)).toHaveText(/^Connected/, { timeout: 5_000 });
    expect(hole.upgrades).toBe(2);
  });
});

test("going offline and back online reconnects at once", async ({ openDashboard }) => {
  const page = await openDashboard();
  const status = connectionStatus(page);
  await expect(status).toHaveText(/^Connected/);
  const seen = watchSockets(page);
  await page.context().setOffline(true);
  await expect(status).toHaveText(/^(Offline|Reconnecting)/, { timeout: 10_000 });
  await page.waitForTimeout(1_000);
  await page.context().setOffline(false);
  // At once: without waiting out a backoff delay.
  await expect(status).toHaveText(/^Connected/, { timeout: 3_000 });
  expect(seen.attempts.length).toBeGreaterThanOrEqual(1);
});

/** Resolves when `socket` next sends a frame of `kind`, then receives one of `answer`. */
function nextExchange(socket: WebSocket, kind: string, answer: string): Promise<void> {
  return new Promise((resolve) => {
    let asked = false;
    socket.on("framesent", (frame) => {
      if (String(frame.payload).includes(`"type":"${kind}"`)) asked = true;
    });
    socket.on("framereceived", (frame) => {
      if (asked && String(frame.payload).includes(`"type":"${answer}"`)) resolve();
    });
  });
}

test.describe("a frozen server", () => {
  const heartbeatMs = 5_000;
  test.use({ serverFlags: ["--heartbeat-ms", String(heartbeatMs)] });

  test("is detected as dead within 2 heartbeats and recovered after it wakes", async ({ server, openDashboard }) => {
    const page = await openDashboard();
    const status = connectionStatus(page);
    const sockets: WebSocket[] = [];
    page.on("websocket", (socket) => sockets.push(socket));
    await page.reload();
    await expect(status).toHaveText(/^Connected/);
    const socket = sockets[sockets.length - 1];
    // Freeze it a third of a heartbeat after a ping was answered; ticks are
    // heard until then. Dead 2 heartbeats after the last message heard: not
    // at the first ping that finds 2 heartbeats of silence (2.7 here).
    await nextExchange(socket, "ping", "pong");
    await page.waitForTimeout(0.3 * heartbeatMs);
    server.pause();
    const frozenAt = Date.now();
    const limit = 2 * heartbeatMs + 1_500;
    try {
      await expect(status).toHaveText(/^Reconnecting/, { timeout: limit });
      expect(Date.now() - frozenAt).toBeLessThanOrEqual(limit);
    } finally {
      server.resume();
    }
    await expect(status).toHaveText(/^Connected/, { timeout: 40_000 });
  });
});

test("two tabs of one user each queue a message while the server is down: both arrive exactly once", async ({ browser, server, openDashboard }) => {
  const context = await browser.newContext({ baseURL: server.url });
  const first = await openDashboard(context);
  await join(first, "Ann");
  const second = await openDashboard(context);
  await expect(second.getByRole("button", { name: "Leave" })).toBeVisible();
  await expect(connectionStatus(second)).toHaveText(/^Connected/);

  await server.kill();
  for (const page of [first, second]) {
    await expect(connectionStatus(page)).toHaveText(/^(Reconnecting|Offline)/);
  }
  await say(first, "from the first tab");
  await say(second, "from the second tab");
  await expect(lines(first, "from the first tab")).toContainText("sending");
  await expect(lines(second, "from the second tab")).toContainText("sending");
  // The first tab is closed while the server is down: its message waits in
  // the browser, and the tab still open takes it over.
  await first.close();

  await server.start();
  await expect(connectionStatus(second)).toHaveText(/^Connected/, { timeout: 40_000 });
  const bob = await openDashboard();
  await join(bob, "Bob");
  for (const page of [second, bob]) {
    await expect(lines(page, "from the first tab")).toHaveCount(1);
    await expect(lines(page, "from the second tab")).toHaveCount(1);
  }
  await expect(lines(second, "from the first tab")).not.toContainText("sending");
  await bob.waitForTimeout(1_000);
  await expect(lines(bob, "from the first tab")).toHaveCount(1);
  await expect(lines(bob, "from the second tab")).toHaveCount(1);
});

test("Leave with a queued message sends nothing, as anyone", async ({ server, openDashboard }) => {
  const page = await openDashboard();
  const seen = watchSockets(page);
  await page.reload();
  await join(page, "Ann");
  await server.kill();
  await expect(connectionStatus(page)).toHaveText(/^(Reconnecting|Offline)/);
  await say(page, "never to be sent");
  await expect(lines(page, "never to be sent")).toContainText("sending");
  await page.getByRole("button", { name: "Leave" }).click();

  await server.start();
  await expect(connectionStatus(page)).toHaveText(/^Connected/, { timeout: 40_000 });
  // Signed in again, as someone else and as Ann: the message is gone.
  await join(page, "Bob");
  const ann = await openDashboard();
  await join(ann, "Ann");
  await ann.waitForTimeout(1_500);
  await expect(lines(page, "never to be sent")).toHaveCount(0);
  await expect(lines(ann, "never to be sent")).toHaveCount(0);
  expect(seen.sent.filter((frame) => frame.includes("never to be sent"))).toEqual([]);
});

test("30 messages queued offline arrive exactly once, none marked not sent", async ({ server, openDashboard }) => {
  const page = await openDashboard();
  await join(page, "Ann");
  await server.kill();
  await expect(connectionStatus(page)).toHaveText(/^(Reconnecting|Offline)/);
  const texts = Array.from({ length: 30 }, (_, n) => `queued number ${n + 1}.`);
  for (const text of texts) await say(page, text);
  await expect(lines(page, "queued number 30.")).toContainText("sending");

  await server.start();
  await expect(connectionStatus(page)).toHaveText(/^Connected/, { timeout: 40_000 });
  const log = page.getByRole("log", { name: "Chat" });
  await expect(log.getByText("sending")).toHaveCount(0, { timeout: 30_000 });
  await expect(log.getByText(/Not sent/)).toHaveCount(0);
  const bob = await openDashboard();
  await join(bob, "Bob");
  for (const text of texts) {
    await expect(lines(page, text)).toHaveCount(1);
    await expect(lines(bob, text)).toHaveCount(1);
  }
});

test.describe("read marks", () => {
  const adminKey = "e2e-admin-key-0123456";
  test.use({ serverFlags: ["--admin-key", adminKey] });

  test("a notification marked read while offline stays read after a reload", async ({ server, openDashboard, request }) => {
    const page = await openDashboard();
    await join(page, "Ann");
    const response = await request.post(`${server.url}/api/notify`, {
      headers: { Authorization: `Bearer ${adminKey}` },
      data: { user: "guest:ann", title: "Read me offline", body: "" },
    });
    expect(response.status()).toBe(200);
    const bell = page.getByRole("button", { name: /^Notifications/ });
    await expect(bell).toHaveAccessibleName("Notifications, 1 unread");

    await server.kill();
    await expect(connectionStatus(page)).toHaveText(/^(Reconnecting|Offline)/);
    await bell.click();
    await page.getByRole("region", { name: "Notifications" }).getByRole("button", { name: "Mark read" }).click();
    await expect(bell).toHaveAccessibleName("Notifications, none unread");

    await server.start();
    // Reload before the page reconnects, so the read mark comes back from the
    // stored outbox.
    await page.reload();
    await expect(connectionStatus(page)).toHaveText(/^Connected/);
    await expect(bell).toHaveAccessibleName("Notifications, none unread");
    // The server has it read too: a fresh page of Ann's says so.
    const again = await openDashboard(page.context());
    await expect(connectionStatus(again)).toHaveText(/^Connected/);
    await expect(again.getByRole("button", { name: /^Notifications/ })).toHaveAccessibleName("Notifications, none unread");
  });
});
