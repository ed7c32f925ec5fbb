/**
 * The shared note with a Python client: end2end/interop/pycrdt_peer.py, built on
 * pycrdt (the Python bindings of yrs) and `websockets`, speaking only the public
 * protocol, edits the note together with the browser and each sees the other's
 * caret. Its packages live in tools/pyenv (scripts/setup.sh installs them from
 * end2end/interop/requirements.txt).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { test, expect, join } from "./fixtures";
import { note, typeAtEnd, startPeer, type PeerResult } from "./note_helpers";

const PYTHON = path.join(__dirname, "..", "..", "tools", "pyenv", "bin", "python");

test("a pycrdt client and the browser edit the note together and see each other's cursor", async ({ server, openDashboard }) => {
  expect(existsSync(PYTHON), `${PYTHON} is missing: run scripts/setup.sh`).toBe(true);
  const alice = await openDashboard();
  await join(alice, "Alice");
  await expect(note(alice)).toBeEditable();
  await typeAtEnd(alice, "From the browser. ");
  const peer = startPeer(PYTHON, "pycrdt_peer.py", server.url, "Pia", "From pycrdt. ");
  let last: PeerResult = { done: false, text: "", errors: 0, peers: [] };
  try {
    // The pycrdt client's caret shows with its name, and its text arrives.
    await expect(alice.locator(".peer-caret .peer-flag", { hasText: "Pia" })).toBeVisible({ timeout: 20_000 });
    await expect(note(alice)).toHaveValue(/From pycrdt\./);
    // Its caret (a pycrdt sticky index, assoc -1) stands where it typed last: the end.
    await expect
      .poll(() =>
        alice.locator(".note-overlay").evaluate((overlay) => overlay.querySelector(".peer-caret")?.previousSibling?.textContent),
      )
      .toBe("From the browser. From pycrdt. ");
    await typeAtEnd(alice, "Alice again.");
    last = await peer.result();
  } finally {
    peer.stop();
  }
  expect(last.done).toBe(true);
  expect(last.errors).toBe(0);
  await expect(note(alice)).toHaveValue(last.text);
  expect(last.text).toContain("From the browser. ");
  // Alice's caret (the browser's relative position) resolved in pycrdt.
  const aliceCaret = last.peers.find((p) => p.name === "Alice");
  expect(aliceCaret, JSON.stringify(last.peers)).toBeDefined();
  expect(typeof aliceCaret?.cursor).toBe("number");
  expect(aliceCaret?.cursor ?? Infinity).toBeLessThanOrEqual(last.text.length);
});
