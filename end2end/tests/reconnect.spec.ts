import { test, expect, connectionStatus, SERVER_DOWN } from "./fixtures";

test.use({ allowedConsole: SERVER_DOWN });

test("after a server restart the page reconnects by itself", async ({ server, openDashboard }) => {
  const page = await openDashboard();
  const status = connectionStatus(page);
  await expect(status).toHaveText(/^Connected/);

  await server.stop();
  await expect(status).toHaveText(/^Reconnecting/);

  await server.start();
  await expect(status).toHaveText(/^Connected/, { timeout: 40_000 });
});
