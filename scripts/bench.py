#!/usr/bin/env python3
"""Benchmarks a release Pulse server with pulse-loadgen and prints one JSON line.

The server runs pinned to CPU 0 and the load generator to CPU 1 (two cores here).
The server's CPU time and resident memory are sampled from /proc every 0.2 s;
CPU seconds are counted over the load generator's measurement window only
(after every client connected; for storm, from the drop to the end), so the
ramp-up's handshakes are not included. The machine may be shared: before the
run the script waits (at most --wait-idle seconds) until no `rustc` runs, and
the line records what else used CPU during the window (`other_cpu_seconds`:
the machine's busy time minus the server's and the load generator's) and
whether a `rustc` was seen.

  scripts/bench.py stream --clients 1000 --symbols 10            # 50 symbols at 2 ticks/s
  scripts/bench.py idle --clients 19000
  scripts/bench.py storm --clients 10000 --symbols 2             # drop all, reconnect, resume
  scripts/bench.py abuse --clients 1000 --symbols 10             # + status flood + chat at its limit

Build first:
  cargo build --release --features ssr --bin pulse
  cargo build --release --features loadgen --bin pulse-loadgen
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_EVERY = 0.2
# A `rustc` check costs a process spawn: once a second is enough to notice a build.
RUSTC_CHECK_EVERY = 1.0
# Descriptors one source address gives one server port (ephemeral ports, with room).
SOCKETS_PER_SOURCE_IP = 20_000


def cpu_seconds(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_bytes(pid):
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE


def machine_busy_seconds():
    """Busy CPU time of the whole machine (every core), from /proc/stat:
    (everything, processes' user+system, interrupts, stolen by the hypervisor)."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return ((user + nice + system + irq + softirq + steal) / TICK, (user + nice + system) / TICK,
            (irq + softirq) / TICK, steal / TICK)


def rustc_running():
    return subprocess.run(["pgrep", "-x", "rustc"], stdout=subprocess.DEVNULL).returncode == 0


def wait_for_quiet(limit):
    """Waits until no rustc runs, at most `limit` seconds; returns the seconds waited."""
    started = time.monotonic()
    while rustc_running() and time.monotonic() - started < limit:
        time.sleep(2)
    return round(time.monotonic() - started, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["stream", "idle", "storm", "abuse"])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=10, help="subscriptions per client")
    parser.add_argument("--universe", type=int, default=50, help="symbols the server simulates")
    parser.add_argument("--tick-rate", type=float, default=2.0)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--port", type=int, default=3999)
    parser.add_argument("--server", default=f"{ROOT}/target/release/pulse", help="server binary")
    parser.add_argument("--loadgen", default=f"{ROOT}/target/release/pulse-loadgen", help="load generator binary")
    parser.add_argument("--label", default="", help="a name for the server build, copied into the line")
    # Below the server's default --max-upgrades-per-sec (1000/s since 1.1), so
    # that a ramp-up is never answered 1013 (stream and idle clients do not retry).
    parser.add_argument("--connect-rate", type=int, default=900)
    parser.add_argument("--settle", type=int, default=5, help="storm: seconds of ticks before the drop")
    parser.add_argument("--verify", type=int, default=10, help="storm: seconds of offset checks after")
    parser.add_argument("--wait-idle", type=float, default=180, help="seconds to wait for no rustc")
    parser.add_argument("--server-flag", action="append", default=[], help="extra server flag (repeatable)")
    args = parser.parse_args()

    waited = wait_for_quiet(args.wait_idle)
    rustc_at_start = rustc_running()
    tick_rate = 0 if args.mode == "idle" else args.tick_rate
    # A fresh database per run: chat from the abuse run must not carry over,
    # and two server builds must not share (or migrate) one file.
    data_dir = tempfile.mkdtemp(prefix="pulse-bench-")
    server = subprocess.Popen(
        ["taskset", "-c", "0", args.server, "--addr", f"127.0.0.1:{args.port}",
         "--db", f"{data_dir}/pulse.db",
         "--symbols", str(args.universe), "--tick-rate", str(tick_rate), "--seed", "1", *args.server_flag],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"})
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1)
        baseline_rss = rss_bytes(server.pid)
        samples, stop, rustc_seen = [], threading.Event(), []
        loadgen_pid = []

        def sample():
            last_rustc_check = 0.0
            while not stop.is_set():
                now = time.monotonic()
                loadgen_cpu = cpu_seconds(loadgen_pid[0]) if loadgen_pid else None
                samples.append((now, cpu_seconds(server.pid), rss_bytes(server.pid),
                                machine_busy_seconds(), loadgen_cpu))
                if now - last_rustc_check >= RUSTC_CHECK_EVERY:
                    last_rustc_check = now
                    if rustc_running():
                        rustc_seen.append(now)
                time.sleep(SAMPLE_EVERY)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        sockets = args.clients * (3 if args.mode == "storm" else 1)  # storm: old in TIME_WAIT + new
        source_ips = max(1, (sockets + SOCKETS_PER_SOURCE_IP - 1) // SOCKETS_PER_SOURCE_IP + 1)
        command = ["taskset", "-c", "1", args.loadgen, "--url", f"ws://127.0.0.1:{args.port}/ws",
                   "--mode", args.mode, "--clients", str(args.clients), "--symbols", str(args.symbols),
                   "--universe", str(args.universe), "--duration", str(args.duration),
                   "--source-ips", str(source_ips), "--connect-rate", str(args.connect_rate),
                   "--settle", str(args.settle), "--verify", str(args.verify), "--json"]
        loadgen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        loadgen_pid.append(loadgen.pid)
        out, err = loadgen.communicate(timeout=900)
        stop.set()
        sampler.join()
        lines = out.strip().splitlines()
        if not lines:
            sys.exit(f"pulse-loadgen printed nothing; stderr:\n{err[-3000:]}")
        report = json.loads(lines[-1])
        window_start = started + report["ramp_up_secs"]
        window_end = window_start + report["duration_secs"]

        def at(moment, index):
            before = [s for s in samples if s[0] <= moment and s[index] is not None]
            return (before[-1] if before else samples[0])[index] or 0.0

        cpu = at(window_end, 1) - at(window_start, 1)
        loadgen_cpu = at(window_end, 4) - at(window_start, 4)
        def machine_delta(part):
            before = [s for s in samples if s[0] <= window_start]
            after = [s for s in samples if s[0] <= window_end]
            first = (before[-1] if before else samples[0])[3]
            return (after[-1] if after else samples[-1])[3][part] - first[part]

        machine = machine_delta(0)
        peak_rss = max(s[2] for s in samples)
        result = {
            "label": args.label,
            "mode": args.mode,
            "clients": args.clients,
            "symbols_per_client": 0 if args.mode == "idle" else args.symbols,
        }
        if args.mode == "storm":
            result["storm"] = report
        else:
            delivered = report["messages_received"]
            result.update({
                "connected": report["connected"],
                "open_at_end": report.get("open_at_end"),
                "closed_early": report["closed_early"],
                "closed_early_by_code": report.get("closed_early_by_code"),
                "subscribed": report.get("subscribed"),
                "msgs_per_sec": round(report["messages_per_sec"]),
                "latency_ms": report.get("latency_ms"),
                "msgs_per_cpu_second": round(delivered / cpu) if cpu > 0 else None,
                "cpu_us_per_msg": round(cpu * 1e6 / delivered, 3) if delivered else None,
                "rss_per_client_kib": round((peak_rss - baseline_rss) / 1024 / max(1, report["connected"]), 2),
            })
            if "abuse" in report:
                result["abuse"] = report["abuse"]
        result.update({
            "server_cpu_seconds": round(cpu, 2),
            "window_secs": round(report["duration_secs"], 1),
            "baseline_rss_mib": round(baseline_rss / 2**20, 1),
            "peak_rss_mib": round(peak_rss / 2**20, 1),
            "loadgen_cpu_seconds": round(loadgen_cpu, 2),
            "other_cpu_seconds": round(max(0.0, machine - cpu - loadgen_cpu), 2),
            # Of that: other processes, interrupt work (loopback TCP runs partly
            # there, for our own traffic too) and time the hypervisor gave others.
            "other_process_cpu_seconds": round(max(0.0, machine_delta(1) - cpu - loadgen_cpu), 2),
            "irq_cpu_seconds": round(machine_delta(2), 2),
            "steal_seconds": round(machine_delta(3), 2),
            "rustc_waited_secs": waited,
            "rustc_at_start": rustc_at_start,
            "rustc_seen_during_run": bool(rustc_seen),
            "loadavg_after": open("/proc/loadavg").read().split()[0],
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        print(json.dumps(result))
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
