/**
 * Starts, stops and kills a real `pulse` server process for one test, on its
 * own port, from the repository root (where `target/site` is).
 */
import { ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export const repoRoot = path.resolve(__dirname, "..", "..");

export function binaryPath(): string {
  return process.env.PULSE_BIN ?? path.join(repoRoot, "target", "release", "pulse");
}

export function siteRoot(): string {
  return path.join(repoRoot, "target", "site");
}

/** A port of 127.0.0.1 nothing listens on now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

export class PulseServer {
  private child?: ChildProcess;
  readonly logs: string[] = [];
  /** A data directory of its own, so tests never share state. */
  readonly dataDir = mkdtempSync(path.join(tmpdir(), "pulse-e2e-"));

  private constructor(
    readonly port: number,
    private readonly flags: string[],
  ) {}

  static async start(flags: string[] = []): Promise<PulseServer> {
    // A fixed secret, as in production: tokens survive a restart.
    const server = new PulseServer(await freePort(), ["--jwt-secret", "pulse-e2e-secret-0123456789abcdef", ...flags]);
    await server.start();
    return server;
  }

  /** Whether the server serves TLS itself (`--tls-cert`). */
  get tls(): boolean {
    return this.flags.includes("--tls-cert");
  }

  get url(): string {
    return `${this.tls ? "https" : "http"}://127.0.0.1:${this.port}`;
  }

  /** Starts the process (again) on the same port and waits until it answers. */
  async start(): Promise<void> {
    const child = spawn(binaryPath(), ["--addr", `127.0.0.1:${this.port}`, ...this.flags], {
      cwd: repoRoot,
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info", PULSE_DB: path.join(this.dataDir, "pulse.db") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    const keep = (chunk: Buffer) => this.logs.push(chunk.toString());
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) {
        throw new Error(`pulse exited with ${child.exitCode}:\n${this.logs.join("")}`);
      }
      if (this.tls) {
        // Node's fetch would not trust the test's CA: the log line will do.
        if (this.logs.join("").includes("listening on https://")) return;
      } else {
        try {
          const response = await fetch(`${this.url}/healthz`);
          if (response.ok) return;
        } catch {
          // Not listening yet.
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`pulse did not answer within 20 s:\n${this.logs.join("")}`);
  }

  /** Stops the process with `signal` and waits for it to exit. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill(signal);
    return exited;
  }

  /** Kills the process without a goodbye (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    await this.stop("SIGKILL");
  }

  /** Freezes the process (SIGSTOP): its sockets stay open and silent. */
  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  /** Lets a frozen process go on (SIGCONT). */
  resume(): void {
    this.child?.kill("SIGCONT");
  }

  /** Whether the process is running. */
  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }
}
