#!/usr/bin/env node
/**
 * Checks a running `cargo leptos watch` (the development loop, README
 * "Developing") in Debian's Chromium: the page hydrates and connects, a guest
 * joins, the note is editable at once (a watch build never splits: the
 * editor is compiled in, so no note module is fetched) and takes typing.
 * Then, with `--edit FILE --from OLD --to NEW`, it changes OLD to NEW in the
 * view file FILE (a real edit: cargo-leptos ignores a bare touch), waits
 * until the open page reloaded by itself and shows NEW, checks the note
 * again, and puts the file back (which rebuilds once more). The restarted
 * server keeps the page signed in only with a fixed `PULSE_JWT_SECRET`
 * (`--expect-signed-in` makes a sign-out a failure). Prints one line per
 * step; exits non-zero on the first failure.
 *
 *   LEPTOS_SITE_ADDR=127.0.0.1:3970 LEPTOS_RELOAD_PORT=3971 cargo leptos watch &
 *   node scripts/check_watch.mjs --url http://127.0.0.1:3970 \
 *     --edit src/app/header.rs --from '" Pulse"' --to '" Pulse dev"'
 */
import { readFileSync, writeFileSync } from "node:fs";
import { chromium } from "../bench/browser/playwright.mjs";

function arg(name, fallback = null) {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : fallback;
}
const url = arg("--url", "http://127.0.0.1:3000");
const edit = arg("--edit");
const from = arg("--from");
const to = arg("--to");
// A debug rebuild of the server and the wasm on two cores takes minutes.
const REBUILD_MS = Number(arg("--rebuild-timeout-ms", "600000"));

const started = Date.now();
const say = (step, detail = "") => console.log(`${((Date.now() - started) / 1000).toFixed(1)} s  ${step} ${detail}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run"],
});
const problems = [];
const chunkRequests = [];
let original = null;
try {
  const page = await browser.newPage({ baseURL: url });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console.error: ${message.text()}`);
  });
  page.on("request", (request) => {
    if (/\/pkg\/split_[^/]*\.wasm$/.test(new URL(request.url()).pathname)) chunkRequests.push(request.url());
  });
  const connected = () =>
    page.getByRole("status", { name: "Connection" }).getByText(/^Connected/).waitFor({ timeout: 60_000 });
  const note = page.getByRole("textbox", { name: "Note" });
  const editable = async () =>
    page.waitForFunction((el) => !el.readOnly, await note.elementHandle(), { timeout: 30_000 });
  const type = async (text) => {
    await note.click();
    await page.keyboard.press("Control+End");
    await note.pressSequentially(text, { delay: 10 });
    const value = await note.inputValue();
    if (!value.endsWith(text)) throw new Error(`the note does not end with what was typed: …${value.slice(-40)}`);
  };

  await page.goto("/");
  await connected();
  say("hydrated and connected");
  await page.getByRole("textbox", { name: "Name" }).fill("Watcher");
  await page.getByRole("button", { name: "Join" }).click();
  await page.getByRole("button", { name: "Leave" }).waitFor();
  say("joined");
  await editable();
  await type(" typed in watch.");
  say("note editable, typed", `(note module requests: ${chunkRequests.length})`);

  if (edit) {
    original = readFileSync(edit, "utf8");
    if (!original.includes(from)) throw new Error(`${edit} does not contain ${from}`);
    const reloaded = page.waitForEvent("load", { timeout: REBUILD_MS });
    writeFileSync(edit, original.replace(from, to));
    say("edited", `${edit}: ${from} -> ${to}`);
    await reloaded;
    say("the page reloaded by itself");
    // The reload may come before the new server answers; the text says which build it is.
    const wanted = to.replace(/^"|"$/g, "").trim();
    await page.waitForFunction((text) => document.body.innerText.includes(text), wanted, { timeout: REBUILD_MS, polling: 500 });
    await connected();
    say("the new build is served", `(page shows ${JSON.stringify(wanted)})`);
    // The restarted server keeps this page's sign-in only if it has the same
    // --jwt-secret (PULSE_JWT_SECRET); a random one signs everyone out.
    const leave = page.getByRole("button", { name: "Leave" });
    const join = page.getByRole("button", { name: "Join" });
    await leave.or(join).first().waitFor();
    if (await leave.isVisible()) {
      say("still signed in after the restart");
    } else {
      say("signed out by the restart", "(no PULSE_JWT_SECRET: a random secret per start)");
      if (process.argv.includes("--expect-signed-in")) throw new Error("the sign-in did not survive the restart");
      await page.getByRole("textbox", { name: "Name" }).fill("Watcher");
      await join.click();
      await leave.waitFor();
      say("joined again");
    }
    await editable();
    await type(" again after the rebuild.");
    say("note editable after the rebuild, typed");
  }
  if (chunkRequests.length) throw new Error(`a watch build fetched a note module: ${chunkRequests.join(", ")}`);
  if (problems.length) throw new Error(problems.join("\n"));
  say("ok");
} catch (err) {
  console.error(`FAILED: ${err.message}`);
  process.exitCode = 1;
} finally {
  if (original !== null) {
    writeFileSync(edit, original);
    say("restored", edit);
  }
  await browser.close();
}
