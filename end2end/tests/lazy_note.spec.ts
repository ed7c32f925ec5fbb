import type { Page, Route } from "@playwright/test";
import { test, expect, join, say, chatLines, connectionStatus, SERVER_DOWN } from "./fixtures";
import { note, editable, typeAtEnd } from "./note_helpers";

/**
 * The note's editor (yrs, the replica, undo, awareness) is a second wasm
 * module on the release build (`--split`): the dashboard is live without it,
 * a signed-in page fetches it when the note comes near or the page is idle,
 * an anonymous one never does, and a failed fetch is retried.
 */

/** The note module's requests (`/pkg/split_pulse_note.<hash>.wasm`). */
const CHUNK = /\/pkg\/split_[^/]*\.wasm$/;

/** The `Online` list's entry of `name`. */
function online(page: Page, name: string) {
  return page.getByRole("list", { name: "Online" }).getByRole("listitem").filter({ hasText: name });
}

/** The first price of `symbol` in `Live prices`. */
function price(page: Page, symbol: string) {
  return page
    .getByRole("table", { name: "Live prices" })
    .getByRole("row")
    .filter({ hasText: symbol })
    .getByRole("cell")
    .first();
}

const hint = (page: Page) => page.locator("#note-hint");

/** Holds `page`'s requests for the note module until the test releases them. */
async function holdChunk(page: Page): Promise<Route[]> {
  const held: Route[] = [];
  await page.route(CHUNK, (route) => {
    held.push(route);
  });
  return held;
}

/** The note module's requests `page` makes from now on. */
function chunkRequests(page: Page): string[] {
  const asked: string[] = [];
  page.on("request", (request) => {
    if (CHUNK.test(new URL(request.url()).pathname)) asked.push(request.url());
  });
  return asked;
}

test("the dashboard is live while the note's editor loads, and the note is editable once it is here", async ({
  openDashboard,
}) => {
  const ann = await openDashboard();
  const held = await holdChunk(ann);
  await join(ann, "Ann");

  // Held: the note module was asked for, once.
  await expect.poll(() => held.length).toBe(1);
  await expect(connectionStatus(ann)).toHaveText(/^Connected/);
  const before = await price(ann, "MSFT").textContent();
  await expect(price(ann, "MSFT")).not.toHaveText(before!, { timeout: 20_000 });
  await say(ann, "before the note's editor");
  await expect(chatLines(ann, "before the note's editor")).toHaveCount(1);
  await expect(online(ann, "Ann")).toHaveCount(1);
  await expect(note(ann)).not.toBeEditable();
  await expect(hint(ann)).toHaveText("Loading the note's editor…");
  expect(held.length).toBe(1);

  await held[0].continue();
  await editable(ann);
  await typeAtEnd(ann, "Ann was here.");

  const bob = await openDashboard();
  await join(bob, "Bob");
  await editable(bob);
  await expect(note(bob)).toHaveValue(/Ann was here\.$/);
});

test("an anonymous visitor never fetches the note's editor", async ({ openDashboard }) => {
  const page = await openDashboard();
  const asked = chunkRequests(page);
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await note(page).scrollIntoViewIfNeeded();
  await page.waitForLoadState("networkidle");
  // Past the idle trigger (1.5 s after the note went live) and then some.
  await page.waitForTimeout(4_000);
  expect(asked).toEqual([]);
  await expect(note(page)).not.toBeEditable();
});

test.describe("a failed fetch", () => {
  // The loader logs the failed fetch (the page says so in the panel only).
  test.use({ allowedConsole: /^TypeError: Failed to fetch|net::ERR_FAILED/ });

  test("keeps the dashboard live and is retried until the editor is here", async ({ openDashboard }) => {
    const ann = await openDashboard();
    let aborted = 0;
    await ann.route(CHUNK, (route) => {
      aborted += 1;
      return route.abort();
    });
    await join(ann, "Ann");
    await expect(hint(ann)).toHaveText("The note's editor could not load; retrying…");
    await expect(note(ann)).not.toBeEditable();
    await say(ann, "still live");
    await expect(chatLines(ann, "still live")).toHaveCount(1);
    expect(aborted).toBeGreaterThanOrEqual(1);

    await ann.unroute(CHUNK);
    await editable(ann);
    await typeAtEnd(ann, "after a retry");
    await expect(note(ann)).toHaveValue(/after a retry$/);
  });
});

test.describe("a fetch that fails while the server is down", () => {
  test.use({ allowedConsole: SERVER_DOWN });

  test("is not asked again until the page is connected, then the note is editable", async ({
    server,
    openDashboard,
  }) => {
    const ann = await openDashboard();
    const held = await holdChunk(ann);
    const asked = chunkRequests(ann);
    await join(ann, "Ann");
    await expect.poll(() => held.length).toBe(1);

    // The server goes down while the module is on its way: the fetch fails.
    await server.kill();
    await expect(connectionStatus(ann)).toHaveText(/^(Reconnecting|Offline)/);
    await held[0].continue();
    await ann.unroute(CHUNK);
    await expect(hint(ann)).toHaveText("The note's editor could not load; retrying…");
    // Longer than the first two retries of a page that is connected (2 s,
    // then 4 s): the offline page does not ask a server that is down.
    await ann.waitForTimeout(7_000);
    expect(asked).toHaveLength(1);

    await server.start();
    await expect(connectionStatus(ann)).toHaveText(/^Connected/, { timeout: 40_000 });
    await editable(ann);
    await typeAtEnd(ann, "after the server came back");
    await expect(note(ann)).toHaveValue(/after the server came back$/);
  });
});
