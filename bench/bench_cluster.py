#!/usr/bin/env python3
"""Benchmarks Pulse as several instances on one Redis and one PostgreSQL, next
to one instance on the same machine, in one sitting; prints one JSON line per
run, then a summary.

Each instance runs pinned to a core (instance i on CPU i mod 2: two cores
here, so two instances take both and the load generators, Redis and
PostgreSQL share them: the figures say what the relay costs, not what two
machines would give). The clients are split evenly over the instances, one
load generator (or chat script) per instance, run at once. CPU is sampled
from /proc for every instance, redis-server and PostgreSQL over the load
generators' measurement window.

  bench/bench_cluster.py stream --clients 5000 --symbols 10      # 50 symbols at 2 ticks/s
  bench/bench_cluster.py chat --clients 500 --senders 50 --chat-rate 2

--instances (default 2) sets how many; every run also measures one instance
with the same flags and Redis (the baseline of the ratios: one instance with
--redis pays the relay too) unless --no-single.

Build first:
  cargo build --release --features ssr --bin pulse
  cargo build --release --features loadgen --bin pulse-loadgen
"""
import argparse, json, os, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the single-server benchmark's helpers)

ROOT = bench.ROOT
SECRET = "bench-cluster-secret-0123456789abcdef"


class Redis:
    def __init__(self, port):
        self.port = port
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(port), "ping"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return
            time.sleep(0.05)
        sys.exit("redis-server did not start")

    def flush(self):
        subprocess.run(["redis-cli", "-p", str(self.port), "flushall"], stdout=subprocess.DEVNULL, check=True)

    def stop(self):
        self.process.kill()
        self.process.wait()


def sample_cpu(pids_of, stop, samples):
    while not stop.is_set():
        samples.append((time.monotonic(), {name: pids() for name, pids in pids_of.items()}))
        time.sleep(bench.SAMPLE_EVERY)


def cpu_at(samples, moment, name):
    before = [s for s in samples if s[0] <= moment]
    return (before[-1] if before else samples[0])[1][name]


def start_instances(args, count, database, redis):
    url = database.fresh_database()
    tick_rate = args.tick_rate if args.mode == "stream" else 0
    servers = []
    for i in range(count):
        port = args.port + i
        command = ["taskset", "-c", str(i % 2), args.server, "--addr", f"127.0.0.1:{port}",
                   "--symbols", str(args.universe), "--tick-rate", str(tick_rate), "--seed", "1",
                   "--database-url", url, "--redis", f"redis://127.0.0.1:{redis.port}",
                   "--jwt-secret", SECRET, "--heartbeat-ms", str(bench.DEFAULT_HEARTBEAT_MS), *args.server_flag]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "RUST_LOG": "error", "PULSE_ALLOW_STALE_BUNDLE": "true"})
        bench.wait_until_up(process, port)
        servers.append((port, process))
    # The simulator's lease is taken within a second.
    time.sleep(2)
    return servers


def load_command(args, port, share, senders):
    if args.mode == "stream":
        return [args.loadgen, "--url", f"ws://127.0.0.1:{port}/ws", "--mode", "stream", "--clients", str(share),
                "--symbols", str(args.symbols), "--universe", str(args.universe), "--duration", str(args.duration),
                "--source-ips", "2", "--connect-rate", str(args.connect_rate), "--json"]
    return [args.node, "--experimental-websocket", "--no-warnings", bench.CHAT_SCRIPT, "--url",
            f"http://127.0.0.1:{port}", "--senders", str(senders), "--rate", str(args.chat_rate),
            "--seconds", str(args.duration), "--listeners", str(max(0, share - senders))]


def run(args, count, database, redis):
    redis.flush()
    servers = start_instances(args, count, database, redis)
    pids_of = {f"instance{i}": (lambda pid=process.pid: bench.cpu_seconds(pid) or 0.0)
               for i, (_, process) in enumerate(servers)}
    pids_of["redis"] = lambda: bench.cpu_seconds(redis.process.pid) or 0.0
    pids_of["postgres"] = database.cpu_seconds
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=sample_cpu, args=(pids_of, stop, samples))
    sampler.start()
    try:
        started = time.monotonic()
        loads = [subprocess.Popen(load_command(args, port, args.clients // count, args.senders // count),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for port, _ in servers]
        reports = []
        for load in loads:
            out, err = load.communicate(timeout=900)
            lines = out.strip().splitlines()
            if not lines:
                sys.exit(f"a load generator printed nothing:\n{err[-2000:]}")
            reports.append(json.loads(lines[-1]))
        ended = time.monotonic()
    finally:
        stop.set()
        sampler.join()
        for _, process in servers:
            process.terminate()
            process.wait(timeout=15)
    if args.mode == "stream":
        window_start = started + max(r["ramp_up_secs"] for r in reports)
        window_end = window_start + min(r["duration_secs"] for r in reports)
    else:
        window_start = started + max(r.get("setup_ms", 0) for r in reports) / 1000
        window_end = ended
    cpu = {name: round(cpu_at(samples, window_end, name) - cpu_at(samples, window_start, name), 2) for name in pids_of}
    pulse_cpu = sum(v for k, v in cpu.items() if k.startswith("instance"))
    result = {"mode": args.mode, "instances": count, "clients": args.clients, "cpu_seconds": cpu,
              "window_secs": round(window_end - window_start, 1)}
    if args.mode == "stream":
        delivered = sum(r["messages_received"] for r in reports)
        result.update({
            "connected": sum(r["connected"] for r in reports),
            "msgs_per_sec": round(sum(r["messages_per_sec"] for r in reports)),
            "latency_p50_ms": max((r["latency_ms"] or {}).get("p50", 0) for r in reports),
            "latency_p99_ms": max((r["latency_ms"] or {}).get("p99", 0) for r in reports),
            "msgs_per_pulse_cpu_second": round(delivered / pulse_cpu) if pulse_cpu else None,
            "redis_cpu_us_per_msg": round(cpu["redis"] * 1e6 / delivered, 3) if delivered else None,
        })
    else:
        acked = sum(r["acked"] for r in reports)
        result.update({
            "senders": args.senders, "acked": acked,
            "ack_p50_ms": max(r["p50_ms"] for r in reports), "ack_p99_ms": max(r["p99_ms"] for r in reports),
            "delivered": sum(r["delivered"] for r in reports),
            "pulse_cpu_us_per_ack": round(pulse_cpu * 1e6 / acked, 1) if acked else None,
            "redis_cpu_us_per_ack": round(cpu["redis"] * 1e6 / acked, 1) if acked else None,
            "postgres_cpu_us_per_ack": round(cpu["postgres"] * 1e6 / acked, 1) if acked else None,
        })
    result["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["stream", "chat"])
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--no-single", action="store_true", help="skip the one-instance baseline")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--universe", type=int, default=50)
    parser.add_argument("--tick-rate", type=float, default=2.0)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--chat-rate", type=float, default=2.0)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connect-rate", type=int, default=900)
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--server", default=f"{ROOT}/target/release/pulse")
    parser.add_argument("--loadgen", default=f"{ROOT}/target/release/pulse-loadgen")
    parser.add_argument("--node", default="node")
    parser.add_argument("--server-flag", action="append", default=[])
    args = parser.parse_args()
    bench.wait_for_quiet(180)
    database = bench.Postgres(3998)
    redis = Redis(3997)
    try:
        lines = []
        for count in ([] if args.no_single else [1]) + [args.instances]:
            line = run(args, count, database, redis)
            print(json.dumps(line), flush=True)
            lines.append(line)
    finally:
        redis.stop()
        database.stop()


if __name__ == "__main__":
    sys.exit(main())
