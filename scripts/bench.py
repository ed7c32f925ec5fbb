#!/usr/bin/env python3
"""Benchmarks a release Pulse server with pulse-loadgen and prints one JSON line.

The server runs pinned to CPU 0 and the load generator to CPU 1 (two cores here).
The server's CPU time and resident memory are sampled from /proc every 0.2 s;
CPU seconds are counted over the load generator's measurement window only
(after every client connected), so the ramp-up's handshakes are not included.

  scripts/bench.py stream --clients 1000 --symbols 10            # 50 symbols at 2 ticks/s
  scripts/bench.py idle --clients 10000

Build first: cargo leptos build --release && cargo build --release --features ssr --bin pulse-loadgen
"""
import argparse, json, os, subprocess, sys, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_bytes(pid):
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["stream", "idle"])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=10, help="subscriptions per client")
    parser.add_argument("--universe", type=int, default=50, help="symbols the server simulates")
    parser.add_argument("--tick-rate", type=float, default=2.0)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--port", type=int, default=3999)
    parser.add_argument("--server-flag", action="append", default=[], help="extra server flag (repeatable)")
    args = parser.parse_args()

    tick_rate = args.tick_rate if args.mode == "stream" else 0
    server = subprocess.Popen(
        ["taskset", "-c", "0", f"{ROOT}/target/release/pulse", "--addr", f"127.0.0.1:{args.port}",
         "--symbols", str(args.universe), "--tick-rate", str(tick_rate), "--seed", "1", *args.server_flag],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1)
        baseline_rss = rss_bytes(server.pid)
        samples, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                samples.append((time.monotonic(), cpu_seconds(server.pid), rss_bytes(server.pid)))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        source_ips = max(1, (args.clients + 19_999) // 20_000 + 1)
        loadgen = subprocess.run(
            ["taskset", "-c", "1", f"{ROOT}/target/release/pulse-loadgen", "--url", f"ws://127.0.0.1:{args.port}/ws",
             "--mode", args.mode, "--clients", str(args.clients), "--symbols", str(args.symbols),
             "--universe", str(args.universe), "--duration", str(args.duration),
             "--source-ips", str(source_ips), "--json"],
            capture_output=True, text=True)
        stop.set()
        sampler.join()
        report = json.loads(loadgen.stdout.strip().splitlines()[-1])
        window_start = started + report["ramp_up_secs"]
        window_end = window_start + report["duration_secs"]

        def cpu_at(moment):
            before = [s for s in samples if s[0] <= moment]
            return (before[-1] if before else samples[0])[1]

        cpu = cpu_at(window_end) - cpu_at(window_start)
        peak_rss = max(s[2] for s in samples)
        delivered = report["messages_received"]
        result = {
            "mode": args.mode,
            "clients": args.clients,
            "connected": report["connected"],
            "open_at_end": report.get("open_at_end"),
            "closed_early": report["closed_early"],
            "symbols_per_client": args.symbols if args.mode == "stream" else 0,
            "msgs_per_sec": round(report["messages_per_sec"]),
            "latency_ms": report.get("latency_ms"),
            "server_cpu_seconds": round(cpu, 2),
            "window_secs": round(report["duration_secs"], 1),
            "msgs_per_cpu_second": round(delivered / cpu) if cpu > 0 else None,
            "baseline_rss_mib": round(baseline_rss / 2**20, 1),
            "peak_rss_mib": round(peak_rss / 2**20, 1),
            "rss_per_client_kib": round((peak_rss - baseline_rss) / 1024 / max(1, report["connected"]), 2),
        }
        print(json.dumps(result))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
