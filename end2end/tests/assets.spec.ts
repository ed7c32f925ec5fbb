import { test, expect, connectionStatus } from "./fixtures";

/**
 * The page is light to load and free to load again: the bundle's files carry
 * their content hash in their names, go out brotli-compressed (gzip for a
 * browser without brotli), are cached as immutable, and a second visit fetches
 * none of them; the HTML is never taken from a cache.
 */

/**
 * The kinds of the page's own bundle files (the wasm, its JS glue, the CSS);
 * the note module's loader (`__wasm_split.<h>.js`, imported by pulse.js) and
 * chunks of a split build are left out here, but not from the second visit.
 */
function kinds(files: string[]): string[] {
  return files
    .filter((f) => !f.includes("/__wasm_split.") && !f.includes("/split_"))
    .map((f) => f.split(".").pop()!)
    .sort();
}

/** The bundle's files the page links: the wasm, its JS glue, the CSS. */
async function bundle(html: string): Promise<string[]> {
  const names = [...html.matchAll(/\/pkg\/pulse\.[A-Za-z0-9_-]{16,}\.(?:wasm|js|css)/g)].map((m) => m[0]);
  return [...new Set(names)].sort();
}

test("the bundle has hashed names, the best encoding, and immutable caching", async ({ server, request }) => {
  const page = await request.get(`${server.url}/`);
  expect(page.headers()["cache-control"]).toBe("private, no-cache");
  const files = await bundle(await page.text());
  expect(files.map((f) => f.split(".").pop()).sort(), `hashed names in ${files}`).toEqual(["css", "js", "wasm"]);

  for (const file of files) {
    for (const [accept, encoding] of [
      ["gzip, deflate, br, zstd", "br"],
      ["gzip", "gzip"],
      ["identity", undefined],
    ] as const) {
      const response = await request.get(`${server.url}${file}`, { headers: { "accept-encoding": accept } });
      expect(response.status(), `${file} ${accept}`).toBe(200);
      const headers = response.headers();
      expect(headers["content-encoding"], `${file} ${accept}`).toBe(encoding);
      expect(headers["cache-control"], file).toBe("public, max-age=31536000, immutable");
      expect(headers["vary"], file).toBe("accept-encoding");
    }
  }
  // The wasm arrives intact whichever encoding carried it.
  const wasm = files.find((f) => f.endsWith(".wasm"))!;
  const plain = await (await request.get(`${server.url}${wasm}`, { headers: { "accept-encoding": "identity" } })).body();
  const brotli = await (await request.get(`${server.url}${wasm}`, { headers: { "accept-encoding": "br" } })).body();
  expect(plain.subarray(0, 4)).toEqual(Buffer.from([0, 0x61, 0x73, 0x6d]));
  expect(brotli.equals(plain), "Playwright decodes the brotli body to the same bytes").toBe(true);
});

test("a second visit downloads none of the bundle again", async ({ server, browser, openDashboard }) => {
  const context = await browser.newContext({ baseURL: server.url });
  const first = await openDashboard(context);
  await expect(connectionStatus(first)).toHaveText(/^Connected/);
  const firstTransfer = await transferred(first);
  expect(kinds(Object.keys(firstTransfer))).toEqual(["css", "js", "wasm"]);
  for (const [file, bytes] of Object.entries(firstTransfer)) expect(bytes, file).toBeGreaterThan(0);
  await first.close();

  const second = await openDashboard(context);
  await expect(connectionStatus(second)).toHaveText(/^Connected/);
  const secondTransfer = await transferred(second);
  expect(Object.keys(secondTransfer).sort()).toEqual(Object.keys(firstTransfer).sort());
  // transferSize 0: taken from the browser's cache, no request at all (a
  // revalidation would transfer at least its headers).
  for (const [file, bytes] of Object.entries(secondTransfer)) expect(bytes, `${file} again`).toBe(0);
  await context.close();
});

/** Bytes the network carried for each bundle file of the page (Resource Timing). */
async function transferred(page: import("@playwright/test").Page): Promise<Record<string, number>> {
  return page.evaluate(() => {
    const sizes: Record<string, number> = {};
    for (const entry of performance.getEntriesByType("resource") as PerformanceResourceTiming[]) {
      const path = new URL(entry.name).pathname;
      if (path.startsWith("/pkg/")) sizes[path] = entry.transferSize;
    }
    return sizes;
  });
}
