#!/usr/bin/env python3
"""A reconnect storm on top of streaming clients (issue 25, admission).

For each server build, in interleaved rounds: start the server pinned to CPU 0
(50 symbols at 2 ticks/s, heartbeat 15 s), then on CPU 1
  1. calm:  `pulse-loadgen --mode stream` with --stream clients x 10 symbols for
            --seconds s alone: its tick latency p50/p99;
  2. storm: the same stream run again, and beside it `--mode storm` with
            --storm clients x 2 symbols (ticks flow --settle s, then every storm
            socket is dropped at once and reconnects with backoff and resume);
            the stream clients' p50/p99 over the same window, the stormers'
            time until all are back, their 1013 answers and gaps.
One JSON line per run, then a summary of the medians per build.

  bench/storm_over_stream.py --server target/release/pulse \\
      --baseline-server /path/to/old/pulse --loadgen target/release/pulse-loadgen [--nice-storm]
      [--build uncapped=/path/to/scratch/pulse ...] [--steady-control] [--timeline DIR]

--build adds more builds to every round (after old and new, in that order).
--steady-control adds, per build and round, a run where the 10,000 extra
clients connect and stream as long as the storm run lasts but are never
dropped: what the stream clients' p99 is from the extra load alone.
--timeline DIR scrapes the server's /metrics every 200 ms (pace rate and lag,
open connections, messages out, delivery-latency buckets) into DIR/*.jsonl.
"""

import argparse
import json
import re
import threading
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

SOCKETS_PER_SOURCE_IP = 25_000


def start_server(binary, port, data_dir):
    command = ["taskset", "-c", "0", binary, "--addr", f"127.0.0.1:{port}", "--db", f"{data_dir}/pulse.db",
               "--symbols", "50", "--tick-rate", "2", "--seed", "1", "--heartbeat-ms", "15000"]
    env = dict(os.environ, RUST_LOG="warn", PULSE_ALLOW_STALE_BUNDLE="true")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(f"{data_dir}/server.log", "w"), env=env)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    sys.exit(f"{binary} did not answer /healthz; see {data_dir}/server.log")


def loadgen(args, mode, clients, symbols, duration, first_ip=1):
    sockets = clients * (3 if mode == "storm" else 1)
    ips = max(1, (sockets + SOCKETS_PER_SOURCE_IP - 1) // SOCKETS_PER_SOURCE_IP + 1)
    # Both load generators share CPU 1; with --nice-storm the storm's runs at
    # nice 19, so the stream clients' latency is the server's, not the time
    # their load generator waited behind the storm's reconnect work.
    nice = ["nice", "-n", "19"] if mode == "storm" and args.nice_storm else []
    return subprocess.Popen(
        nice + ["taskset", "-c", "1", args.loadgen, "--url", f"ws://127.0.0.1:{args.port}/ws", "--mode", mode,
         "--clients", str(clients), "--symbols", str(symbols), "--universe", "50", "--duration", str(duration),
         "--source-ips", str(ips), "--connect-rate", str(args.connect_rate), "--settle", str(args.settle),
         "--verify", "5", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def report(process):
    out, _ = process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


METRIC = re.compile(r'^(pulse_upgrade_rate|pulse_scheduling_lag_seconds|pulse_messages_out_total|'
                    r'pulse_connections_open|pulse_upgrades_refused_total)(?:\{[^}]*\})? (\S+)')
BUCKET = re.compile(r'^pulse_delivery_latency_seconds_bucket\{le="([^"]+)"\} (\S+)')


def scrape(port, rows, stop):
    """/metrics every 200 ms until `stop`: one row per scrape."""
    start = time.time()
    while not stop.is_set():
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            time.sleep(0.2)
            continue
        row = {"t": round(time.time() - start, 2), "delivery_buckets": {}}
        for line in text.splitlines():
            if m := METRIC.match(line):
                row[m.group(1)] = float(m.group(2))
            elif m := BUCKET.match(line):
                row["delivery_buckets"][m.group(1)] = float(m.group(2))
        rows.append(row)
        time.sleep(0.2)


# The storm's own run: ramp-up, --settle s, the drop and reconnect, then its
# checks; a steady control streams as long (measured: 18 s).
STEADY_SECONDS = 18


def one_run(args, label, binary, steady=False):
    data_dir = tempfile.mkdtemp(prefix="pulse-storm-")
    server = start_server(binary, args.port, data_dir)
    rows, stop = [], threading.Event()
    scraper = threading.Thread(target=scrape, args=(args.port, rows, stop), daemon=True)
    try:
        calm = report(loadgen(args, "stream", args.stream, 10, args.seconds))
        if args.timeline:
            scraper.start()
        stream = loadgen(args, "stream", args.stream, 10, args.seconds)
        # The storm connects while the stream clients connect too; its drop
        # comes --settle s after all its clients subscribed.
        if steady:
            storm = report(loadgen(args, "stream", args.storm, 2, STEADY_SECONDS))
        else:
            storm = report(loadgen(args, "storm", args.storm, 2, args.seconds))
        loaded = report(stream)
    finally:
        stop.set()
        if scraper.is_alive():
            scraper.join()
        server.terminate()
        server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.timeline:
        os.makedirs(args.timeline, exist_ok=True)
        name = f"{label}-{'steady' if steady else 'storm'}-{time.strftime('%H%M%S')}.jsonl"
        with open(os.path.join(args.timeline, name), "w") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
    line = {
        "label": label,
        "run": "steady" if steady else "storm",
        "nice_storm": args.nice_storm,
        "stream_clients": args.stream,
        "storm_clients": args.storm,
        "calm_p50_ms": (calm.get("latency_ms") or {}).get("p50"),
        "calm_p99_ms": (calm.get("latency_ms") or {}).get("p99"),
        "storm_p50_ms": (loaded.get("latency_ms") or {}).get("p50"),
        "storm_p99_ms": (loaded.get("latency_ms") or {}).get("p99"),
        "stream_closed_early": loaded.get("closed_early"),
        "storm_report": {k: storm.get(k) for k in storm if k not in ("latency_ms",)},
    }
    print(json.dumps(line), flush=True)
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="target/release/pulse")
    parser.add_argument("--baseline-server", default=None, help="the old build, run first in every round")
    parser.add_argument("--loadgen", default="target/release/pulse-loadgen")
    parser.add_argument("--port", type=int, default=3990)
    parser.add_argument("--stream", type=int, default=5000, help="streaming clients (10 symbols each)")
    parser.add_argument("--storm", type=int, default=10000, help="storm clients (2 symbols each)")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--settle", type=int, default=5)
    parser.add_argument("--connect-rate", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--nice-storm", action="store_true",
                        help="run the storm's load generator at nice 19 (the stream clients' one keeps CPU 1 first)")
    parser.add_argument("--build", action="append", default=[], metavar="LABEL=PATH",
                        help="another build to run in every round (repeatable)")
    parser.add_argument("--steady-control", action="store_true",
                        help="per build and round, also a run where the extra clients stream and are never dropped")
    parser.add_argument("--timeline", default=None, metavar="DIR", help="scrape /metrics every 200 ms into DIR")
    args = parser.parse_args()
    builds = [("new", args.server)]
    if args.baseline_server:
        builds.insert(0, ("old", args.baseline_server))
    builds += [tuple(build.split("=", 1)) for build in args.build]
    lines = []
    for _ in range(args.rounds):
        for label, binary in builds:
            lines.append(one_run(args, label, binary))
            if args.steady_control:
                lines.append(one_run(args, label, binary, steady=True))
    summary = {"summary": True}
    for label, _ in builds:
        mine = [line for line in lines if line["label"] == label and line["run"] == "storm"]
        for key in ("calm_p99_ms", "storm_p99_ms"):
            values = [line[key] for line in mine if line[key] is not None]
            summary[f"{label}_{key}"] = statistics.median(values) if values else None
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
