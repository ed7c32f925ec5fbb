/**
 * The fixtures every spec uses: a fresh `pulse` server per test, and a page
 * that fails the test on any console error, warning or uncaught exception
 * (hydration mismatches and panics show up there).
 */
import { test as base, expect, BrowserContext, Page } from "@playwright/test";
import { PulseServer } from "./server";

type Fixtures = {
  server: PulseServer;
  /** Extra flags for this test's server. */
  serverFlags: string[];
  /** Console messages matching this are expected in this test. */
  allowedConsole: RegExp | null;
  /**
   * Opens the dashboard in a page watched for console errors: in a fresh
   * browser context (another person), or as another tab of `context`.
   */
  openDashboard: (context?: BrowserContext) => Promise<Page>;
};

/**
 * Chromium logs a refused WebSocket or request as an error, and the split
 * loader logs a fetch of the note's module that failed (`TypeError: Failed to
 * fetch`); tests that stop the server expect them. (One RegExp: Playwright
 * reads an array option as [value, options].)
 */
export const SERVER_DOWN =
  /WebSocket connection to .* failed|Failed to load resource: net::ERR_CONNECTION_REFUSED|^TypeError: Failed to fetch/;

export const test = base.extend<Fixtures>({
  allowedConsole: [null, { option: true }],
  serverFlags: [[], { option: true }],

  server: async ({ serverFlags }, use, testInfo) => {
    const server = await PulseServer.start(serverFlags);
    await use(server);
    await server.stop();
    if (testInfo.status !== testInfo.expectedStatus) {
      await testInfo.attach("server-log", { body: server.logs.join("") });
    }
  },

  openDashboard: async ({ browser, server, allowedConsole }, use) => {
    const problems: string[] = [];
    const contexts: Awaited<ReturnType<typeof browser.newContext>>[] = [];
    await use(async (existing?: BrowserContext) => {
      let context = existing;
      if (!context) {
        // A TLS server's certificate comes from a CA made by the test.
        context = await browser.newContext({ baseURL: server.url, ignoreHTTPSErrors: server.tls });
        contexts.push(context);
      }
      const page = await context.newPage();
      page.on("console", (message) => {
        if (!["error", "warning"].includes(message.type())) return;
        const text = message.text();
        if (!allowedConsole?.test(text)) {
          problems.push(`console.${message.type()}: ${text}`);
        }
      });
      page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
      await page.goto("/");
      return page;
    });
    for (const context of contexts) await context.close();
    expect(problems, "no console errors or warnings").toEqual([]);
  },
});

export { expect };

/** The `Connection` status of the header. */
export function connectionStatus(page: Page) {
  return page.getByRole("status", { name: "Connection" });
}

/**
 * The whole text of the `Connection` badge as a person sees it: the state the
 * status announces and the detail beside it ("Reconnecting in 4 s",
 * "Offline · connecting…").
 */
export function connectionText(page: Page) {
  return page.locator(".connection-text");
}

/** Signs in as a guest through the header's form and waits for the chat. */
export async function join(page: Page, name: string) {
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await page.getByRole("textbox", { name: "Name" }).fill(name);
  await page.getByRole("button", { name: "Join" }).click();
  await expect(page.getByRole("button", { name: "Leave" })).toBeVisible();
  await expect(page.getByRole("log", { name: "Chat" })).toBeVisible();
}

/** Types a chat message and presses Enter. */
export async function say(page: Page, text: string) {
  await page.getByRole("textbox", { name: "Message" }).fill(text);
  await page.getByRole("textbox", { name: "Message" }).press("Enter");
}

/** The `Chat` log's lines holding `text`. */
export function chatLines(page: Page, text: string) {
  return page.getByRole("log", { name: "Chat" }).getByRole("listitem").filter({ hasText: text });
}

/**
 * Sends `texts` to #general from a second socket of the page's user (its
 * token cookie), one at a time, each waited for until acknowledged.
 */
export async function seed(page: Page, texts: string[]) {
  const acked = await page.evaluate(async (texts) => {
    const token = document.cookie.split("; ").find((c) => c.startsWith("pulse_token="))!.split("=")[1];
    const ws = new WebSocket(`ws://${location.host}/ws`);
    await new Promise((resolve) => ws.addEventListener("open", resolve));
    const answers: any[] = [];
    let wake: (() => void) | null = null;
    ws.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ack" || message.type === "error") {
        answers.push(message);
        wake?.();
      }
    });
    const answer = () =>
      new Promise<any>((resolve) => {
        const take = () => (answers.length > 0 ? resolve(answers.shift()) : (wake = take));
        take();
      });
    ws.send(JSON.stringify({ type: "hello", data: { token } }));
    const run = Math.random().toString(36).slice(2);
    let acks = 0;
    for (const [n, text] of texts.entries()) {
      // A `rate_limited` answer is waited out and the same id sent again.
      for (let attempt = 0; attempt < 100; attempt++) {
        ws.send(JSON.stringify({ type: "chat_send", data: { room: "general", text }, id: `seed-${run}-${n}` }));
        const reply = await answer();
        if (reply.type === "ack") {
          acks++;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    ws.close();
    return acks;
  }, texts);
  expect(acked).toBe(texts.length);
}
