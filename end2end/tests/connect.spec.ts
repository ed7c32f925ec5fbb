import { test, expect, connectionStatus } from "./fixtures";

test("the first HTML is rendered on the server, with the connection status", async ({ server, request }) => {
  const response = await request.get(`${server.url}/`);
  expect(response.status()).toBe(200);
  const html = await response.text();
  expect(html).toContain('role="status"');
  expect(html).toContain('aria-label="Connection"');
  expect(html).toMatch(/\/pkg\/pulse\.[A-Za-z0-9_-]+\.wasm/);
});

test("the page hydrates without console errors and connects", async ({ openDashboard }) => {
  const page = await openDashboard();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await expect(page.getByRole("heading", { name: "Pulse" })).toBeVisible();
});
