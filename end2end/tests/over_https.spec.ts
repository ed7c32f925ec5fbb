import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test, expect, connectionStatus } from "./fixtures";

/**
 * A CA and a certificate for 127.0.0.1 signed by it, made with openssl for
 * this file's tests; returns the server's TLS flags.
 */
function tlsFlags(): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), "pulse-e2e-tls-"));
  const file = (name: string) => path.join(dir, name);
  writeFileSync(file("leaf.ext"), "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  openssl("req", "-x509", ...ec, "-keyout", file("ca-key.pem"), "-out", file("ca.pem"), "-days", "2", "-subj", "/CN=pulse e2e CA");
  openssl("req", ...ec, "-keyout", file("key.pem"), "-out", file("leaf.csr"), "-subj", "/CN=127.0.0.1");
  openssl("x509", "-req", "-in", file("leaf.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca-key.pem"),
    "-CAcreateserial", "-out", file("cert.pem"), "-days", "2", "-extfile", file("leaf.ext"));
  return ["--tls-cert", file("cert.pem"), "--tls-key", file("key.pem")];
}

test.use({ serverFlags: tlsFlags() });

test("the dashboard works over HTTPS, its page over HTTP/2 and its socket over wss://", async ({ openDashboard, server }) => {
  expect(server.url).toMatch(/^https:\/\//);
  const page = await openDashboard();
  await expect(connectionStatus(page)).toHaveText(/^Connected/);
  // The page came over HTTP/2 (ALPN h2); the socket is wss:// on the same port.
  const protocol = await page.evaluate(
    () => (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).nextHopProtocol,
  );
  expect(protocol).toBe("h2");
  // Prices tick over the secure socket.
  const price = page
    .getByRole("table", { name: "Live prices" })
    .getByRole("row")
    .filter({ has: page.getByRole("rowheader", { name: "MSFT", exact: true }) })
    .getByRole("cell")
    .first();
  await expect(price).toHaveText(/^\d+\.\d{2}$/);
  const before = await price.textContent();
  await expect(price).not.toHaveText(before ?? "", { timeout: 10_000 });
  // The server counts the socket as one that came over TLS.
  const metrics = await (await page.request.get("/metrics")).text();
  expect(metrics).toContain('pulse_connections_by_transport{transport="websocket",tls="true"} 1');
});
