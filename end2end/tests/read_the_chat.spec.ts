import { Page } from "@playwright/test";
import { test, expect, join, seed } from "./fixtures";

// Seeding sends many messages quickly.
test.use({ serverFlags: ["--chat-rate", "1000"] });

function numbered(prefix: string, from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => `${prefix} ${from + i}`);
}

/** Lets the page finish what the last change scheduled (effects, layout). */
async function settled(page: Page) {
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
}

function chatLog(page: Page) {
  return page.getByRole("log", { name: "Chat" });
}

/** How far the log is scrolled from its bottom, in CSS pixels. */
function fromBottom(page: Page) {
  return chatLog(page).evaluate((log) => log.scrollHeight - log.scrollTop - log.clientHeight);
}

test("scrolling up keeps its place while new messages arrive", async ({ openDashboard }) => {
  const page = await openDashboard();
  await join(page, "Alice");
  const log = chatLog(page);
  await seed(page, numbered("old message", 1, 40));
  await expect(log.getByRole("listitem")).toHaveCount(40);
  await settled(page);
  // Forty lines overflow the log, which follows the newest one.
  expect(await log.evaluate((log) => log.scrollHeight > log.clientHeight)).toBe(true);
  expect(await fromBottom(page)).toBeLessThan(2);

  // The reader scrolls up to read; new messages arrive meanwhile.
  await log.evaluate((log) => log.scrollTo(0, 100));
  await settled(page);
  expect(await log.evaluate((log) => log.scrollTop)).toBe(100);
  await seed(page, numbered("new message", 1, 3));
  await expect(log.getByRole("listitem")).toHaveCount(43);
  await settled(page);
  expect(await log.evaluate((log) => log.scrollTop), "the reader's place is kept").toBe(100);

  // Back at the bottom, the log follows the newest line again.
  await log.evaluate((log) => log.scrollTo(0, log.scrollHeight));
  await settled(page);
  await seed(page, ["the newest message"]);
  await expect(log.getByRole("listitem").last()).toContainText("the newest message");
  await settled(page);
  expect(await fromBottom(page)).toBeLessThan(2);
});

test("loading older messages at the top keeps the reader's place", async ({ openDashboard }) => {
  const page = await openDashboard();
  await join(page, "Alice");
  await seed(page, numbered("old message", 1, 55));
  await page.reload();
  const log = chatLog(page);
  // The snapshot holds the last 50.
  await expect(log.getByRole("listitem")).toHaveCount(50);
  await expect(page.getByRole("status", { name: "Connection" })).toHaveText(/^Connected/);
  await settled(page);

  // Where the first line shown will be once the reader is at the top
  // (measured before, as the older page may arrive as soon as they are).
  const firstShown = log.getByRole("listitem").filter({ hasText: /old message 6$/ });
  // Measured from the log (the element that scrolls; the lines' list is inside it).
  const place = () =>
    firstShown.evaluate((line) => line.getBoundingClientRect().top - line.closest("[role=log]")!.getBoundingClientRect().top);
  const before = await firstShown.evaluate((line) => {
    const log = line.closest("[role=log]")!;
    return line.getBoundingClientRect().top - log.getBoundingClientRect().top + log.scrollTop;
  });
  await log.evaluate((log) => log.scrollTo(0, 0));
  await expect(log.getByRole("listitem")).toHaveCount(55);
  await expect(log.getByRole("listitem").first()).toContainText("old message 1");
  await settled(page);
  expect(Math.abs((await place()) - before), "the line read before stays where it was").toBeLessThan(2);
});

test("a short log still offers older messages", async ({ openDashboard }) => {
  const page = await openDashboard();
  await join(page, "Alice");
  await seed(page, numbered("old message", 1, 55));
  await page.reload();
  const log = chatLog(page);
  await expect(log.getByRole("listitem")).toHaveCount(50);
  await expect(page.getByRole("status", { name: "Connection" })).toHaveText(/^Connected/);
  // A screen tall enough for the whole snapshot: the log does not scroll,
  // so no scroll to the top can ask for more.
  await log.evaluate((log) => (log.style.maxHeight = "none"));
  await settled(page);
  expect(await log.evaluate((log) => log.scrollHeight <= log.clientHeight)).toBe(true);

  const loadOlder = page.getByRole("button", { name: "Load older messages" });
  await loadOlder.focus();
  await page.keyboard.press("Enter");
  await expect(log.getByRole("listitem")).toHaveCount(55);
  await expect(log.getByRole("listitem").first()).toContainText("old message 1");
  // Offset 1 is shown: nothing older, and the focus is not lost with the button.
  await expect(loadOlder).toHaveCount(0);
  await expect(log).toBeFocused();
});

test("room tabs move with the arrow keys and label the chat panel", async ({ openDashboard }) => {
  const page = await openDashboard();
  await join(page, "Alice");
  await page.getByRole("textbox", { name: "Room" }).fill("ops");
  await page.getByRole("button", { name: "Go", exact: true }).click();

  const tabs = page.getByRole("tablist", { name: "Rooms" });
  const general = tabs.getByRole("tab", { name: "#general" });
  const ops = tabs.getByRole("tab", { name: "#ops" });
  await expect(ops).toHaveAttribute("aria-selected", "true");
  await expect(page.getByRole("tabpanel", { name: "#ops" }).getByRole("log", { name: "Chat" })).toBeVisible();
  // One tab stop: the selected tab.
  await expect(ops).toHaveAttribute("tabindex", "0");
  await expect(general).toHaveAttribute("tabindex", "-1");

  await ops.focus();
  await page.keyboard.press("ArrowLeft");
  await expect(general).toBeFocused();
  await expect(general).toHaveAttribute("aria-selected", "true");
  await expect(page.getByRole("tabpanel", { name: "#general" })).toBeVisible();
  await page.keyboard.press("End");
  await expect(ops).toBeFocused();
  await page.keyboard.press("Home");
  await expect(general).toBeFocused();
  await page.keyboard.press("ArrowRight");
  await expect(ops).toBeFocused();
  const panel = await page.getByRole("tabpanel").getAttribute("id");
  expect(panel).toBeTruthy();
  await expect(ops).toHaveAttribute("aria-controls", panel!);
  await expect(general).toHaveAttribute("aria-controls", panel!);
});

test("a message of mine enters the log once: its pending line becomes the message in place", async ({ openDashboard }) => {
  const page = await openDashboard();
  await join(page, "Ann");
  const log = page.getByRole("log", { name: "Chat" });
  // Count every list item added to the log for this text (a screen reader
  // reads out each one the polite live region gains).
  await log.evaluate((element) => {
    (window as any).__added = [];
    new MutationObserver((records) => {
      for (const record of records) {
        for (const node of record.addedNodes) {
          if (node instanceof HTMLElement && node.tagName === "LI") (window as any).__added.push(node.textContent);
        }
      }
    }).observe(element, { childList: true, subtree: true });
  });
  for (const text of ["said once, number one", "said once, number two"]) {
    await page.getByRole("textbox", { name: "Message" }).fill(text);
    await page.getByRole("textbox", { name: "Message" }).press("Enter");
    const line = log.getByRole("listitem").filter({ hasText: text });
    await expect(line).toHaveCount(1);
    await expect(line).not.toContainText("sending");
  }
  await page.waitForTimeout(500);
  const added: string[] = await page.evaluate(() => (window as any).__added);
  for (const text of ["said once, number one", "said once, number two"]) {
    expect(added.filter((line) => line.includes(text)), text).toHaveLength(1);
  }
});
