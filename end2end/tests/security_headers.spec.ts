import { test, expect, connectionStatus, join, say, chatLines } from "./fixtures";

/**
 * The page works under its Content-Security-Policy: it hydrates, connects,
 * signs in and chats with no violation. A refused script, socket or fetch
 * would show as a `securitypolicyviolation` event and as a console error
 * ("Refused to …"), which the fixture turns into a failure too.
 */
test("the page hydrates and works under its Content-Security-Policy", async ({ browser, server, openDashboard }) => {
  const context = await browser.newContext({ baseURL: server.url });
  // Recorded from before the first script of the page runs (an init script
  // is injected by the browser, so the CSP does not apply to it).
  await context.addInitScript(() => {
    const seen: string[] = [];
    (window as any).__cspViolations = seen;
    document.addEventListener("securitypolicyviolation", (event) => {
      seen.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
    });
  });
  // (A cast, not a bare declaration: TypeScript would otherwise narrow it to
  // `undefined`, not seeing the callback assign it.)
  let policy = undefined as string | undefined;
  context.on("response", (response) => {
    if (response.request().resourceType() === "document" && new URL(response.url()).pathname === "/") {
      policy = response.headers()["content-security-policy"];
    }
  });

  const page = await openDashboard(context);
  // Hydrated: the socket driver only runs in the wasm, and it says Connected.
  await expect(connectionStatus(page)).toHaveText(/^Connected/);

  expect(policy, "the page has a CSP").toBeTruthy();
  const nonce = /'nonce-([^']+)'/.exec(policy ?? "")?.[1];
  expect(nonce, `a nonce in ${policy}`).toBeTruthy();
  expect(policy).toContain(`script-src 'self' 'nonce-${nonce}' 'wasm-unsafe-eval'`);
  expect(policy).toContain("frame-ancestors 'none'");
  expect(policy).toContain("object-src 'none'");
  expect(policy).toContain("base-uri 'none'");
  expect(policy).not.toContain("unsafe-inline");
  // Every script element of the page carries that response's nonce (the
  // browser hides the attribute; the property keeps it).
  const nonces = await page.locator("script").evaluateAll((scripts) =>
    scripts.map((script) => (script as HTMLScriptElement).nonce),
  );
  expect(nonces.length).toBeGreaterThan(0);
  for (const seen of nonces) expect(seen).toBe(nonce);

  // The interactive parts: guest login (a fetch), the socket, chat.
  await join(page, "Csp");
  await say(page, "allowed by the policy");
  await expect(chatLines(page, "allowed by the policy")).toHaveCount(1);

  expect(await page.evaluate(() => (window as any).__cspViolations)).toEqual([]);
  await context.close();
});

test("every response says nosniff and same-origin referrer", async ({ server, request }) => {
  const html = await (await request.get(`${server.url}/`)).text();
  const stylesheet = /\/pkg\/pulse\.[A-Za-z0-9_-]+\.css/.exec(html)?.[0];
  expect(stylesheet, "the page links its stylesheet").toBeTruthy();
  for (const path of ["/", "/healthz", stylesheet!, "/favicon.svg"]) {
    const response = await request.get(`${server.url}${path}`);
    expect(response.status(), path).toBe(200);
    expect(response.headers()["x-content-type-options"], path).toBe("nosniff");
    expect(response.headers()["referrer-policy"], path).toBe("same-origin");
  }
});
