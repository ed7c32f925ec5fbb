/**
 * What a person using a screen reader or only a keyboard meets: axe-core finds
 * no serious or critical violation on the dashboard (signed out, signed in,
 * with the notifications list open; with chat lines, a notification's toast
 * and a note holding text and a co-editor's caret; light and dark), the
 * `Connection` status
 * announces changes of state but not the countdown, "Retry now" never
 * vanishes under the keyboard focus, and the notifications button controls a
 * list that exists.
 */
import AxeBuilder from "@axe-core/playwright";
import type { Page } from "@playwright/test";
import { test, expect, connectionStatus, join, say, chatLines, SERVER_DOWN } from "./fixtures";
import { note, editable, typeAtEnd } from "./note_helpers";

const ADMIN_KEY = "e2e-admin-key-0123456";
test.use({ serverFlags: ["--admin-key", ADMIN_KEY], allowedConsole: SERVER_DOWN });

/**
 * Runs axe on the whole page in the light and the dark theme and returns one
 * line per serious or critical violation (rule, impact, what it says, where).
 * axe leaves the contrast of very short text (a badge's "1", initials) as
 * "incomplete" even when it measured both colours; a measured ratio below the
 * required one counts here as the serious violation it is. A ratio of exactly
 * 1:1 (axe's "equalRatio") is text in its background's own colour: invisible on
 * purpose, like the note's overlay, which repeats the text transparently (and
 * hidden from screen readers) only to place co-editors' carets; axe leaves it
 * undecided too, and it is not counted.
 * The price flash is switched off (reduced motion): a contrast measured in the
 * middle of a fading background would differ from run to run.
 */
async function seriousViolations(page: Page): Promise<string[]> {
  const found: string[] = [];
  for (const colorScheme of ["light", "dark"] as const) {
    await page.emulateMedia({ colorScheme, reducedMotion: "reduce" });
    const results = await new AxeBuilder({ page }).analyze();
    for (const violation of results.violations) {
      if (violation.impact !== "serious" && violation.impact !== "critical") continue;
      const where = violation.nodes.map((node) => `${node.target.join(" ")}: ${node.failureSummary ?? ""}`.trim());
      found.push(`[${colorScheme}] ${violation.id} (${violation.impact}): ${violation.help}\n    ${where.join("\n    ")}`);
    }
    for (const unsure of results.incomplete.filter((rule) => rule.id === "color-contrast")) {
      for (const node of unsure.nodes) {
        const data = node.any[0]?.data as
          | { contrastRatio?: number; expectedContrastRatio?: string; fgColor?: string; bgColor?: string; messageKey?: string }
          | undefined;
        const required = parseFloat(data?.expectedContrastRatio ?? "");
        if (data?.messageKey === "equalRatio") continue;
        if (data?.contrastRatio && required && data.contrastRatio < required) {
          found.push(
            `[${colorScheme}] color-contrast (serious, short text): ${node.target.join(" ")}: ` +
              `${data.fgColor} on ${data.bgColor} is ${data.contrastRatio}:1, needs ${data.expectedContrastRatio}`,
          );
        }
      }
    }
  }
  return found;
}

test("axe finds nothing serious signed out, signed in, and with the notifications open", async ({ openDashboard, server, request }) => {
  const page = await openDashboard();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  // Ticks have arrived: the table shows prices, arrows and colours.
  await expect(page.getByRole("table", { name: "Live prices" })).toContainText(/[▲▼]/);
  expect(await seriousViolations(page), "signed out").toEqual([]);

  await join(page, "Alice");
  await expect(page.getByRole("list", { name: "Online" })).toContainText("Alice");
  expect(await seriousViolations(page), "signed in").toEqual([]);

  const response = await request.post(`${server.url}/api/notify`, {
    headers: { Authorization: `Bearer ${ADMIN_KEY}` },
    data: { user: "guest:alice", title: "Deploy finished", body: "v1.2.3 is live" },
  });
  expect(response.status()).toBe(200);
  const bell = page.getByRole("button", { name: /^Notifications/ });
  await expect(bell).toHaveAccessibleName("Notifications, 1 unread");
  await bell.click();
  await expect(page.getByRole("region", { name: "Notifications" })).toContainText("v1.2.3 is live");
  // The toast is on screen too.
  await expect(page.getByRole("status", { name: "New notification" })).toContainText("Deploy finished");
  expect(await seriousViolations(page), "notifications open").toEqual([]);
});

test("axe finds nothing serious with chat lines, a notification and a note with text in the page", async ({ openDashboard, server, request }) => {
  const alice = await openDashboard();
  const bob = await openDashboard();
  await join(alice, "Alice");
  await join(bob, "Bob");
  // Lines in the log, from both.
  await say(alice, "Good morning, everyone.");
  await say(bob, "Morning, Alice!");
  await expect(chatLines(alice, "Morning, Alice!")).toHaveCount(1);
  await expect(chatLines(alice, "Good morning, everyone.")).not.toContainText("sending");
  // The note holds text, and Bob's caret stands in it with his name.
  await editable(alice);
  await editable(bob);
  await typeAtEnd(alice, "Agenda: prices, chat, the note.");
  await expect(note(bob)).toHaveValue("Agenda: prices, chat, the note.");
  await note(bob).evaluate((area: HTMLTextAreaElement) => {
    area.focus();
    area.setSelectionRange(7, 13);
    area.dispatchEvent(new Event("select"));
  });
  await expect(alice.locator(".peer-caret .peer-flag", { hasText: "Bob" })).toBeVisible();
  // A notification: its toast is on screen and the badge counts it.
  const response = await request.post(`${server.url}/api/notify`, {
    headers: { Authorization: `Bearer ${ADMIN_KEY}` },
    data: { user: "guest:alice", title: "Deploy finished", body: "v1.2.3 is live" },
  });
  expect(response.status()).toBe(200);
  await expect(alice.getByRole("status", { name: "New notification" })).toContainText("Deploy finished");
  await expect(alice.getByRole("button", { name: /^Notifications/ })).toHaveAccessibleName("Notifications, 1 unread");
  await expect(alice.getByRole("log", { name: "Chat" }).getByRole("listitem")).toHaveCount(2);
  expect(await seriousViolations(alice), "chat, notification and note").toEqual([]);
});

test("the Connection status announces changes of state, not the countdown", async ({ openDashboard, server }) => {
  const page = await openDashboard();
  const status = connectionStatus(page);
  await expect(status).toHaveText(/^Connected/);
  // Every text the live region (role=status) ever holds from now on.
  await status.evaluate((region) => {
    const heard: string[] = [];
    (window as any).__heard = heard;
    new MutationObserver(() => heard.push(region.textContent ?? "")).observe(region, {
      subtree: true,
      childList: true,
      characterData: true,
    });
  });

  await server.stop();
  // The badge the eye sees counts down, second by second ...
  const badge = page.locator(".connection");
  await expect(badge).toHaveText(/^Reconnecting in ([2-9]|\d\d+) s/, { timeout: 30_000 });
  const shown = await badge.textContent();
  await expect(badge).not.toHaveText(shown ?? "");
  await expect(badge).toHaveText(/^Reconnecting in \d+ s/);
  // ... while the live region only ever said which state the page is in.
  const heard: string[] = await page.evaluate(() => (window as any).__heard);
  expect(heard.length).toBeGreaterThan(0);
  expect(new Set(heard)).toEqual(new Set(["Reconnecting"]));
  await expect(status).toHaveText(/^Reconnecting$/);

  await server.start();
  await expect(status).toHaveText(/^Connected$/, { timeout: 40_000 });
});

test("Retry now stays under the keyboard focus while it connects, and the badge keeps the focus once connected", async ({ openDashboard, server }) => {
  const page = await openDashboard();
  const status = connectionStatus(page);
  await expect(status).toHaveText(/^Connected/);
  const retry = page.getByRole("button", { name: "Retry now" });
  await expect(retry).toHaveCount(0);

  await server.stop();
  await expect(retry).toBeVisible();
  await retry.focus();
  await expect(retry).toBeFocused();
  // Press it with the server still down: a whole attempt (a new socket that
  // then fails) runs while the button has the focus.
  const attempt = page.waitForEvent("websocket");
  await page.keyboard.press("Enter");
  const socket = await attempt;
  // Not waitForEvent("close"): it rejects on the refused socket's error event.
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  if (!socket.isClosed()) await closed;
  await expect(page.locator(".connection")).toHaveText(/^Reconnecting in \d+ s/);
  await expect(retry).toBeFocused();

  // Back up: pressing it again connects, the button goes, and the focus
  // stays in the header's badge instead of falling to <body>.
  await server.start();
  await page.keyboard.press("Enter");
  await expect(status).toHaveText(/^Connected/, { timeout: 40_000 });
  await expect(retry).toHaveCount(0);
  await expect
    .poll(() => page.evaluate(() => document.activeElement?.closest(".connection-area") != null))
    .toBe(true);
});

test("the notifications button controls a list that is in the page, open or closed", async ({ openDashboard }) => {
  const page = await openDashboard();
  await join(page, "Alice");
  const bell = page.getByRole("button", { name: /^Notifications/ });
  const controls = await bell.getAttribute("aria-controls");
  expect(controls).toBeTruthy();
  const list = page.locator(`[id="${controls}"]`);

  await expect(bell).toHaveAttribute("aria-expanded", "false");
  await expect(list).toHaveCount(1);
  await expect(list).toBeHidden();

  await bell.click();
  await expect(bell).toHaveAttribute("aria-expanded", "true");
  await expect(list).toBeVisible();
  await expect(page.getByRole("region", { name: "Notifications" })).toContainText("Nothing new.");

  await bell.click();
  await expect(bell).toHaveAttribute("aria-expanded", "false");
  await expect(list).toHaveCount(1);
  await expect(list).toBeHidden();
});
