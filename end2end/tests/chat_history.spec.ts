import { test, expect, connectionStatus } from "./fixtures";

test.use({ serverFlags: ["--chat-rate", "1000"] });

test("older chat history loads when the log is scrolled to the top", async ({ openDashboard }) => {
  const page = await openDashboard();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  await page.getByRole("textbox", { name: "Name" }).fill("Alice");
  await page.getByRole("button", { name: "Join" }).click();
  await expect(page.getByRole("button", { name: "Leave" })).toBeVisible();

  // 55 messages from a second socket of the same user (the page's token).
  const acked = await page.evaluate(async () => {
    const token = document.cookie.split("; ").find((c) => c.startsWith("pulse_token="))!.split("=")[1];
    const ws = new WebSocket(`ws://${location.host}/ws`);
    await new Promise((resolve) => ws.addEventListener("open", resolve));
    const answers: any[] = [];
    let wake: (() => void) | null = null;
    ws.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ack" || message.type === "error") {
        answers.push(message);
        wake?.();
      }
    });
    const answer = () =>
      new Promise<any>((resolve) => {
        const take = () => (answers.length > 0 ? resolve(answers.shift()) : (wake = take));
        take();
      });
    ws.send(JSON.stringify({ type: "hello", data: { token } }));
    let acks = 0;
    // One at a time; a `rate_limited` answer is waited out and the same id resent.
    for (let n = 1; n <= 55; n++) {
      for (let attempt = 0; attempt < 100; attempt++) {
        ws.send(JSON.stringify({ type: "chat_send", data: { room: "general", text: `old message ${n}` }, id: `h-${n}` }));
        const reply = await answer();
        if (reply.type === "ack") {
          acks++;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    ws.close();
    return acks;
  });
  expect(acked).toBe(55);

  await page.reload();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  const log = page.getByRole("log", { name: "Chat" });
  await expect(log.getByRole("listitem")).toHaveCount(50);
  await expect(log.getByRole("listitem").filter({ hasText: /^Alice.*old message 5$/ })).toHaveCount(0);

  await log.evaluate((el) => el.scrollTo(0, 0));
  await expect(log.getByRole("listitem")).toHaveCount(55);
  await expect(log.getByRole("listitem").first()).toContainText("old message 1");
});
