/**
 * The shared note in two browser windows (two people), and with a Yjs client
 * (npm `yjs` + `y-protocols`, end2end/interop/yjs_peer.mjs) that speaks only
 * the public protocol: typing at once converges, a window that goes offline
 * keeps typing and converges when it is back, co-editors' carets show with
 * their names, and the text is in the page with JavaScript off.
 */
import { test, expect, join, SERVER_DOWN } from "./fixtures";
import { note, editable, typeAtEnd, startPeer, acknowledged } from "./note_helpers";
import type { Page } from "@playwright/test";

/** Whether the characters of `typed` appear in `text` in their order. */
function inOrder(text: string, typed: string): boolean {
  let at = 0;
  for (const ch of typed) {
    at = text.indexOf(ch, at);
    if (at < 0) return false;
    at += 1;
  }
  return true;
}

/** Alice and Bob, each in a window of their own, signed in, the note editable. */
async function aliceAndBob(openDashboard: () => Promise<Page>): Promise<[Page, Page]> {
  const alice = await openDashboard();
  const bob = await openDashboard();
  await join(alice, "Alice");
  await join(bob, "Bob");
  await editable(alice);
  await editable(bob);
  return [alice, bob];
}

test("typing in two windows at once converges", async ({ openDashboard }) => {
  const [alice, bob] = await aliceAndBob(openDashboard);
  await Promise.all([typeAtEnd(alice, "Alice was here. "), typeAtEnd(bob, "Bob too. ")]);
  const total = "Alice was here. Bob too. ".length;
  await expect.poll(async () => (await note(alice).inputValue()).length).toBe(total);
  const text = await note(alice).inputValue();
  await expect(note(bob)).toHaveValue(text);
  // Nothing lost or doubled, and each person's keys in the order typed.
  // (Where the two phrases meet depends on timing: typing at one spot at
  // once, whole words of one may land between words of the other.)
  expect(inOrder(text, "Alice was here. ")).toBe(true);
  expect(inOrder(text, "Bob too. ")).toBe(true);
});

test.describe("offline", () => {
  test.use({ allowedConsole: SERVER_DOWN });

  test("a window that goes offline keeps typing; when it is back both show the same text", async ({ openDashboard }) => {
    const [alice, bob] = await aliceAndBob(openDashboard);
    await typeAtEnd(alice, "Shared start. ");
    await expect(note(bob)).toHaveValue("Shared start. ");

    await bob.context().setOffline(true);
    await expect(bob.getByRole("status", { name: "Connection" })).toHaveText(/^(Offline|Reconnecting)/, { timeout: 15_000 });
    await typeAtEnd(bob, "Bob offline. ");
    await typeAtEnd(alice, "Alice online. ");
    await expect(note(bob)).not.toHaveValue(/Alice online/);
    await expect(note(alice)).not.toHaveValue(/Bob offline/);

    await bob.context().setOffline(false);
    await expect(note(bob)).toHaveValue(/Alice online\./, { timeout: 20_000 });
    await expect(note(alice)).toHaveValue(/Bob offline\./);
    const text = await note(alice).inputValue();
    await expect(note(bob)).toHaveValue(text);
    expect(text.startsWith("Shared start. ")).toBe(true);
  });
});

test("a co-editor's caret shows in their colour with their name", async ({ openDashboard }) => {
  const [alice, bob] = await aliceAndBob(openDashboard);
  await typeAtEnd(alice, "Where is Alice?");
  await expect(note(bob)).toHaveValue("Where is Alice?");
  // Alice puts her caret after "Where".
  await note(alice).evaluate((area: HTMLTextAreaElement) => {
    area.focus();
    area.setSelectionRange(5, 5);
    area.dispatchEvent(new Event("select"));
  });
  const flag = bob.locator(".peer-caret .peer-flag", { hasText: "Alice" });
  await expect(flag).toBeVisible();
  await expect(bob.locator(".note-people")).toContainText("Alice");
  // The caret stands where Alice's is: after "Where". (Polled: her flag may
  // first show at the end of what she typed, before her selection arrives.)
  await expect
    .poll(() =>
      bob.locator(".note-overlay").evaluate((overlay) => overlay.querySelector(".peer-caret")?.previousSibling?.textContent ?? ""),
    )
    .toBe("Where");
  // Bob types before it: her caret stays between the same characters.
  await note(bob).click();
  await bob.keyboard.press("Control+Home");
  await note(bob).pressSequentially(">> ");
  await expect(note(alice)).toHaveValue(">> Where is Alice?");
  await expect
    .poll(() =>
      bob.locator(".note-overlay").evaluate((overlay) => overlay.querySelector(".peer-caret")?.previousSibling?.textContent),
    )
    .toBe(">> Where");
  // Alice leaves: her caret goes.
  await alice.close();
  await expect(flag).toHaveCount(0, { timeout: 10_000 });
});

test("undo takes back one's own typing, not a co-editor's", async ({ openDashboard }) => {
  const [alice, bob] = await aliceAndBob(openDashboard);
  await typeAtEnd(bob, "Bob's line. ");
  await expect(note(alice)).toHaveValue("Bob's line. ");
  await typeAtEnd(alice, "Alice typo");
  await expect(note(bob)).toHaveValue("Bob's line. Alice typo");
  await note(alice).press("Control+z");
  await expect(note(alice)).toHaveValue("Bob's line. ");
  await expect(note(bob)).toHaveValue("Bob's line. ");
  await note(alice).press("Control+Shift+z");
  await expect(note(bob)).toHaveValue("Bob's line. Alice typo");
});

test("the note's text is in the page with JavaScript off", async ({ browser, server, openDashboard }) => {
  const alice = await openDashboard();
  await join(alice, "Alice");
  await editable(alice);
  await typeAtEnd(alice, "Rendered by the server.");
  // Acknowledged (stored) before anyone else loads the page.
  await acknowledged(alice);
  const context = await browser.newContext({ baseURL: server.url, javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto("/");
  await expect(note(page)).toHaveValue("Rendered by the server.");
  await expect(note(page)).not.toBeEditable();
  await context.close();
});

test("a long note is rendered as its beginning, read-only, and a signed-in page edits all of it once it is loaded", async ({ openDashboard }) => {
  const alice = await openDashboard();
  await join(alice, "Alice");
  await editable(alice);
  // Longer than the page is rendered with (8 KiB of the note's text).
  const long = "The first line of a long note.\n" + "A line that fills the note up. ".repeat(3000) + "The last line.";
  await note(alice).fill(long);
  await expect(note(alice)).toHaveValue(long);
  await acknowledged(alice);

  // The page as the server renders it for Alice: the note's beginning, a
  // marker that more follows, and not the rest (nor the note's Yjs state).
  const html = await (await alice.context().request.get("/")).text();
  expect(html).toContain("The first line of a long note.");
  expect(html).toMatch(/A line th[^<]*…<\/textarea>/);
  expect(html).not.toContain("The last line.");
  expect(html.length).toBeLessThan(long.length);

  // Another tab of Alice's: it hydrates without complaint (the fixture fails
  // on any console error), loads the whole note over its socket, and edits it.
  const tab = await openDashboard(alice.context());
  await expect(note(tab)).toHaveValue(long);
  await editable(tab);
  await typeAtEnd(tab, " Typed after the note was loaded.");
  const edited = long + " Typed after the note was loaded.";
  await expect(note(tab)).toHaveValue(edited);
  await expect(note(alice)).toHaveValue(edited);
});

test("a Yjs client and the browser edit the note together and see each other's cursor", async ({ server, openDashboard }) => {
  const alice = await openDashboard();
  await join(alice, "Alice");
  await editable(alice);
  await typeAtEnd(alice, "From the browser. ");
  const peer = startPeer(process.execPath, "yjs_peer.mjs", server.url, "Yuki", "From Yjs. ");
  // The Yjs client's caret shows with its name, and its text arrives.
  await expect(alice.locator(".peer-caret .peer-flag", { hasText: "Yuki" })).toBeVisible({ timeout: 20_000 });
  await expect(note(alice)).toHaveValue(/From Yjs\./);
  await typeAtEnd(alice, "Alice again.");
  const last = await peer.result();
  expect(last.done).toBe(true);
  expect(last.errors).toBe(0);
  await expect(note(alice)).toHaveValue(last.text);
  expect(last.peers.map((p: { name: string }) => p.name)).toContain("Alice");
});

test("text composed with an input method arrives whole while a co-editor types", async ({ openDashboard }) => {
  const [alice, bob] = await aliceAndBob(openDashboard);
  await typeAtEnd(alice, "Start: ");
  await expect(note(bob)).toHaveValue("Start: ");
  await note(alice).click();
  await alice.keyboard.press("Control+End");
  // Alice composes with an IME (Chromium's own composition events) while
  // Bob types at the start of the note.
  const ime = await alice.context().newCDPSession(alice);
  await ime.send("Input.imeSetComposition", { text: "に", selectionStart: 1, selectionEnd: 1 });
  await ime.send("Input.imeSetComposition", { text: "にほ", selectionStart: 2, selectionEnd: 2 });
  await note(bob).click();
  await bob.keyboard.press("Control+Home");
  await note(bob).pressSequentially("Bob> ");
  await ime.send("Input.insertText", { text: "日本" });
  await expect(note(bob)).toHaveValue("Bob> Start: 日本");
  await expect(note(alice)).toHaveValue("Bob> Start: 日本");
});
