/**
 * What the shared-note specs share: the `Note` text area, typing into it, and
 * an interop peer (a Yjs or pycrdt client of the public protocol) run as a
 * child process that prints JSON lines, the last one its result.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { expect } from "./fixtures";
import type { Page } from "@playwright/test";

export function note(page: Page) {
  return page.getByRole("textbox", { name: "Note" });
}

/** Waits until the note is editable (signed in). */
export async function editable(page: Page) {
  await expect(note(page)).toBeEditable();
}

/** Types `text` at the end of the note, key by key. */
export async function typeAtEnd(page: Page, text: string) {
  await note(page).click();
  await page.keyboard.press("Control+End");
  await note(page).pressSequentially(text, { delay: 15 });
}

/** Waits until the server acknowledged every edit of the note `page` made. */
export async function acknowledged(page: Page) {
  await expect
    .poll(() =>
      page.evaluate(() =>
        Object.keys(localStorage)
          .filter((k) => k.startsWith("pulse_outbox:"))
          .map((k) => localStorage.getItem(k))
          .join(""),
      ),
    )
    .not.toContain('"flight":["');
}

/** The last line an interop peer prints. */
export type PeerResult = {
  done: boolean;
  text: string;
  errors: number;
  peers: { name: string; cursor: number | null }[];
};

/**
 * Starts an interop peer (`program` running `script` from end2end/interop)
 * that joins the note of `serverUrl` as `name`, types `typed` at the end,
 * and waits for "Alice again." and Alice's cursor.
 */
export function startPeer(program: string, script: string, serverUrl: string, name: string, typed: string) {
  const peer = spawn(
    program,
    [
      path.join(__dirname, "..", "interop", script),
      "--url", `${serverUrl.replace("http", "ws")}/ws`,
      "--name", name,
      "--type", typed,
      "--at", "end",
      "--expect", "Alice again.",
      "--expect-peer", "Alice",
      "--timeout-ms", "30000",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  peer.stdout.on("data", (chunk) => (out += chunk));
  peer.stderr.on("data", (chunk) => (err += chunk));
  const exited = new Promise<number>((resolve) => peer.on("exit", (code) => resolve(code ?? -1)));
  return {
    /** Waits for the peer to exit 0 and returns its result line. */
    async result(): Promise<PeerResult> {
      expect(await exited, `${script}: ${out}\n${err}`).toBe(0);
      return JSON.parse(out.trim().split("\n").pop() ?? "{}");
    },
    stop() {
      if (peer.exitCode === null) peer.kill();
    },
  };
}
