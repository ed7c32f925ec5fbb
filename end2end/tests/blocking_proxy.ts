/**
 * A proxy like the corporate ones that break WebSockets: it passes every
 * plain HTTP request (pages, the API, the fallback's stream and POSTs,
 * unbuffered) to a `pulse` server, and refuses every WebSocket upgrade with
 * a 403 until `passUpgrades` is set; then it tunnels them too. Node's `http`
 * and `net` only; the Host header goes through as the browser sent it, so
 * the server's Origin check sees the page's own host.
 */
import http from "node:http";
import net from "node:net";

export class BlockingProxy {
  /** Whether WebSocket upgrades go through (refused while false). */
  passUpgrades = false;
  /** Upgrades refused so far. */
  refused = 0;
  private readonly open = new Set<net.Socket>();

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<BlockingProxy> {
    const server = http.createServer();
    const port = await new Promise<number>((resolve) =>
      server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)),
    );
    const proxy = new BlockingProxy(server, port);
    server.on("connection", (socket) => {
      proxy.open.add(socket);
      socket.on("close", () => proxy.open.delete(socket));
    });
    server.on("request", (request, response) => {
      const upstream = http.request(
        { host: "127.0.0.1", port: targetPort, method: request.method, path: request.url, headers: request.headers, agent: false },
        (answer) => {
          response.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
          // Server-Sent Events go through as they come.
          response.flushHeaders();
          answer.pipe(response);
        },
      );
      upstream.on("error", () => response.destroy());
      response.on("close", () => upstream.destroy());
      request.pipe(upstream);
    });
    server.on("upgrade", (request, socket, head) => {
      if (!proxy.passUpgrades) {
        proxy.refused++;
        socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
      }
      const upstream = net.connect(targetPort, "127.0.0.1", () => {
        const lines = [`${request.method} ${request.url} HTTP/1.1`];
        for (let i = 0; i < request.rawHeaders.length; i += 2) {
          lines.push(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`);
        }
        upstream.write(lines.join("\r\n") + "\r\n\r\n");
        if (head.length > 0) upstream.write(head);
        socket.pipe(upstream).pipe(socket);
      });
      proxy.open.add(upstream);
      upstream.on("close", () => proxy.open.delete(upstream));
      upstream.on("error", () => socket.destroy());
      socket.on("error", () => upstream.destroy());
    });
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    for (const socket of this.open) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
