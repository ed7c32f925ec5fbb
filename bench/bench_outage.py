#!/usr/bin/env python3
"""Local delivery while Redis is away: two instances of each binary on one
PostgreSQL and one Redis; a listener and a sender on the first instance
(`outage_delivery.mjs`); Redis is killed, five chat messages are sent (one a
second), and the time from each send to its delivery on the same instance is
recorded; then Redis is started again. Binaries are run interleaved, `--rounds`
times each; prints one JSON line per run, then the medians per binary.

  bench/bench_outage.py --server old=/work/bench-bin/main/pulse --server new=target/release/pulse
"""
import argparse, json, os, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench_cluster import Redis, SECRET  # noqa: E402

ROOT = bench.ROOT


def run(label, binary, args, database, redis_port):
    redis = Redis(redis_port)
    url = database.fresh_database()
    servers = []
    try:
        for i in range(2):
            port = args.port + i
            command = ["taskset", "-c", str(i % 2), binary, "--addr", f"127.0.0.1:{port}", "--tick-rate", "0",
                       "--database-url", url, "--redis", f"redis://127.0.0.1:{redis_port}", "--jwt-secret", SECRET]
            process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       env={**os.environ, "RUST_LOG": "error", "PULSE_ALLOW_STALE_BUNDLE": "true",
                                            "LEPTOS_SITE_ROOT": args.site})
            servers.append(process)
            bench.wait_until_up(process, port)
        script = subprocess.Popen([args.node, "--experimental-websocket", "--no-warnings",
                                   f"{ROOT}/bench/outage_delivery.mjs", "--url", f"http://127.0.0.1:{args.port}",
                                   "--messages", str(args.messages), "--rate", str(args.rate),
                                   "--wait", str(args.wait)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert script.stdout.readline().strip() == "ready"
        redis.stop()
        # Messages sent a moment after Redis went away (the publisher's
        # connection has seen it go and is reconnecting), not in the same
        # instant.
        time.sleep(args.settle)
        script.stdin.write("go\n")
        script.stdin.flush()
        report = json.loads(script.stdout.readline())
        script.wait(timeout=30)
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=15)
        redis.stop()
    delays = [d for d in report["delivery_ms"] if d is not None]
    report.update({"binary": label, "delivery_p50_ms": statistics.median(delays) if delays else None,
                   "delivery_max_ms": max(delays) if delays else None,
                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="append", required=True, help="label=path, repeatable")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between killing Redis and sending")
    parser.add_argument("--rate", type=float, default=1.0, help="messages sent per second")
    parser.add_argument("--wait", type=int, default=60, help="seconds to wait after the last send")
    parser.add_argument("--port", type=int, default=4100)
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--pg-port", type=int, default=5490)
    parser.add_argument("--node", default="node")
    parser.add_argument("--site", default="/work/bench-bin/main/site")
    args = parser.parse_args()
    binaries = [entry.split("=", 1) for entry in args.server]
    database = bench.Postgres(args.pg_port)
    results = {label: [] for label, _ in binaries}
    try:
        for _ in range(args.rounds):
            for label, binary in binaries:
                report = run(label, binary, args, database, args.redis_port)
                print(json.dumps(report), flush=True)
                results[label].append(report)
    finally:
        database.stop()
    for label, reports in results.items():
        p50 = [r["delivery_p50_ms"] for r in reports if r["delivery_p50_ms"] is not None]
        worst = [r["delivery_max_ms"] for r in reports if r["delivery_max_ms"] is not None]
        print(json.dumps({"binary": label, "rounds": len(reports),
                          "delivered": sum(r["delivered"] for r in reports),
                          "sent": sum(r["messages"] for r in reports),
                          "median_delivery_p50_ms": statistics.median(p50) if p50 else None,
                          "median_delivery_max_ms": statistics.median(worst) if worst else None}))


if __name__ == "__main__":
    main()
