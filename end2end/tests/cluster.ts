/**
 * What a test of several instances needs beside `pulse`: a throwaway
 * PostgreSQL cluster and a private Redis (both from Debian's packages, each
 * a child that dies with this process), and a tiny TCP proxy in front of
 * the instances, so that a page keeps one origin (its cookies, its outbox in
 * localStorage) while the instance behind it changes.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { chownSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createConnection, createServer, Server, Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort } from "./server";

/** Whether something accepts TCP connections on `port` of 127.0.0.1. */
async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

async function until(what: string, check: () => Promise<boolean>, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} did not start within 30 s`);
}

/** As root, PostgreSQL runs as the `postgres` user (it refuses root). */
function asPostgres(): string[] {
  return process.getuid?.() === 0 ? ["--reuid=postgres", "--regid=postgres", "--init-groups"] : [];
}

/** A PostgreSQL cluster in a temporary directory, on a free port. */
export class Postgres {
  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    readonly port: number,
  ) {}

  static async start(): Promise<Postgres> {
    const versions = readdirSync("/usr/lib/postgresql").sort((a, b) => Number(a) - Number(b));
    const bin = `/usr/lib/postgresql/${versions[versions.length - 1]}/bin`;
    const dir = mkdtempSync(path.join(tmpdir(), "pulse-e2e-pg-"));
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync("id", ["-u", "postgres"]).toString());
      const gid = Number(execFileSync("id", ["-g", "postgres"]).toString());
      chownSync(dir, uid, gid);
    }
    const initdb = spawnSync(
      "setpriv",
      [...asPostgres(), "--", `${bin}/initdb`, "-D", dir, "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"],
      { cwd: dir },
    );
    if (initdb.status !== 0) throw new Error(`initdb failed: ${initdb.stderr}`);
    const port = await freePort();
    const child = spawn(
      "setpriv",
      [...asPostgres(), "--pdeathsig", "SIGQUIT", "--", `${bin}/postgres`, "-D", dir, "-p", `${port}`, "-k", dir,
        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
      { cwd: dir, stdio: "ignore" },
    );
    await until("postgres", async () => spawnSync(`${bin}/pg_isready`, ["-q", "-h", dir, "-p", `${port}`]).status === 0, child);
    return new Postgres(child, dir, port);
  }

  /** A new database's URL. */
  createDatabase(name: string): string {
    const made = spawnSync("psql", ["-h", "127.0.0.1", "-p", `${this.port}`, "-U", "postgres", "-d", "postgres", "-c", `CREATE DATABASE ${name}`]);
    if (made.status !== 0) throw new Error(`createdb failed: ${made.stderr}`);
    return `postgres://postgres@127.0.0.1:${this.port}/${name}`;
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGQUIT");
    await exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A Redis server with no persistence, on a free port. */
export class Redis {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static async start(): Promise<Redis> {
    const port = await freePort();
    const child = spawn(
      "setpriv",
      ["--pdeathsig", "SIGKILL", "--", "redis-server", "--port", `${port}`, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: "ignore" },
    );
    await until("redis-server", () => listening(port), child);
    return new Redis(child, port);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGKILL");
    await exited;
  }
}

/**
 * Forwards each new TCP connection to the first of `targets` that accepts
 * it: a page on the proxy's port stays on one origin while the instance
 * serving it changes (the one it used died).
 */
export class Proxy {
  private constructor(
    private readonly server: Server,
    readonly port: number,
    /** Every open socket, both sides, so `stop` can end them. */
    private readonly sockets: Set<Socket>,
  ) {}

  static async start(targets: () => number[]): Promise<Proxy> {
    const port = await freePort();
    const sockets = new Set<Socket>();
    const server = createServer(async (client) => {
      sockets.add(client);
      client.once("close", () => sockets.delete(client));
      client.pause();
      for (const target of targets()) {
        const upstream = await new Promise<Socket | null>((resolve) => {
          const socket = createConnection({ host: "127.0.0.1", port: target });
          socket.once("connect", () => resolve(socket));
          socket.once("error", () => resolve(null));
        });
        if (!upstream) continue;
        sockets.add(upstream);
        upstream.once("close", () => {
          sockets.delete(upstream);
          client.destroy();
        });
        client.once("close", () => upstream.destroy());
        upstream.on("error", () => client.destroy());
        client.on("error", () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
        return;
      }
      client.destroy();
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    return new Proxy(server, port, sockets);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
