import { test, expect, connectionStatus, seed } from "./fixtures";

test.use({ serverFlags: ["--chat-rate", "1000"] });

test("older chat history loads when the log is scrolled to the top", async ({ openDashboard }) => {
  const page = await openDashboard();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await page.getByRole("textbox", { name: "Name" }).fill("Alice");
  await page.getByRole("button", { name: "Join" }).click();
  await expect(page.getByRole("button", { name: "Leave" })).toBeVisible();

  // 55 messages from a second socket of the same user (the page's token).
  await seed(page, Array.from({ length: 55 }, (_, n) => `old message ${n + 1}`));

  await page.reload();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  const log = page.getByRole("log", { name: "Chat" });
  await expect(log.getByRole("listitem")).toHaveCount(50);
  await expect(log.getByRole("listitem").filter({ hasText: /^Alice.*old message 5$/ })).toHaveCount(0);

  await log.evaluate((el) => el.scrollTo(0, 0));
  await expect(log.getByRole("listitem")).toHaveCount(55);
  await expect(log.getByRole("listitem").first()).toContainText("old message 1");
});
