#!/usr/bin/env python3
"""Counts a server's syscalls and wake-ups per delivered message under the
stream (fan-out) load, for Pulse, the zero-work writer or the Node reference
(issue 25, point 3), and prints one JSON line per server.

It runs `bench/bench.py stream` for one server and, once every client is
subscribed, attaches `perf stat` to the server's process for `--seconds`:
every `syscalls:sys_enter_*` tracepoint, `context-switches` (the server's
threads going to sleep and being scheduled again) and `sched:sched_wakeup`
(wake-ups the server's threads issued, e.g. a runtime worker waking
another). Messages delivered in that window are the load generator's
measured rate (`msgs_per_sec`, over its whole window, which contains
perf's) times the seconds counted. Counts do not depend on how busy the
machine is, so this needs no quiet machine (no build lock); perf's
tracepoints cost the server a little CPU, so take CPU figures from bench.py
instead.

  bench/syscalls.py --server-kind pulse --clients 1000
  bench/syscalls.py --server-kind zero --clients 1000
  bench/syscalls.py --server-kind pulse --server /path/to/other/pulse --label old

Needs `perf` and permission to trace (root, or kernel.perf_event_paranoid <= 1).
"""
import argparse, json, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How a syscall counts in the summary.
WRITES = ("write", "writev", "sendto", "sendmsg", "sendmmsg")
READS = ("read", "readv", "recvfrom", "recvmsg", "recvmmsg")
POLLS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")


def server_pid(port, deadline):
    """The server bench.py started on `port` (taskset execs, so its pid is the server's)."""
    pattern = f"--addr 127.0.0.1:{port}"
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout.split()
        for pid in found:
            try:
                cmdline = open(f"/proc/{pid}/cmdline").read().split("\0")
            except OSError:
                continue
            # Not the shell or bench.py: the process whose own command holds the flag.
            if "--addr" in cmdline and not any(part.endswith("bench.py") for part in cmdline):
                return int(pid)
        time.sleep(0.2)
    sys.exit(f"no server appeared on port {port}")


def perf_stat(pid, seconds):
    """Counts per event name over `seconds` (perf's CSV output on stderr)."""
    events = "syscalls:sys_enter_*,context-switches,sched:sched_wakeup"
    done = subprocess.run(["perf", "stat", "-x", ",", "-e", events, "-p", str(pid), "--", "sleep", str(seconds)],
                          capture_output=True, text=True)
    counts = {}
    for line in done.stderr.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[0].strip().isdigit():
            counts[fields[2]] = counts.get(fields[2], 0) + int(fields[0])
    if not counts:
        sys.exit(f"perf stat counted nothing:\n{done.stderr[-2000:]}")
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-kind", choices=("pulse", "zero", "node"), default="pulse")
    parser.add_argument("--server", default=f"{ROOT}/target/release/pulse", help="the Pulse binary")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=10, help="how long perf counts")
    parser.add_argument("--port", type=int, default=3997)
    parser.add_argument("--label", default="")
    parser.add_argument("--server-flag", action="append", default=[], help="extra Pulse flag (repeatable)")
    args = parser.parse_args()

    # Ramp-up at bench.py's 900 connects a second, then a margin; perf's
    # window then ends well inside the load generator's.
    ramp = args.clients / 900 + 4
    duration = int(ramp + args.seconds + 6)
    command = [sys.executable, f"{ROOT}/bench/bench.py", "stream", "--server-kind", args.server_kind,
               "--server", args.server, "--clients", str(args.clients), "--symbols", str(args.symbols),
               "--duration", str(duration), "--port", str(args.port), "--wait-idle", "0",
               *[f"--server-flag={flag}" for flag in args.server_flag]]
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    pid = server_pid(args.port, time.monotonic() + 60)
    time.sleep(1 + ramp + 2)  # bench.py's settle second, the ramp-up, subscriptions
    counts = perf_stat(pid, args.seconds)
    out, _ = bench.communicate(timeout=duration + 120)
    run = json.loads(out.strip().splitlines()[-1])
    messages = run["msgs_per_sec"] * args.seconds
    syscalls = {name.split("sys_enter_", 1)[1]: n for name, n in counts.items() if "sys_enter_" in name and n}
    per_msg = lambda n: round(n / messages, 3) if messages else None
    total = sum(syscalls.values())
    line = {
        "label": args.label or args.server_kind, "server_kind": args.server_kind, "clients": args.clients,
        "symbols_per_client": args.symbols, "seconds_counted": args.seconds,
        "msgs_per_sec": run["msgs_per_sec"], "messages_counted": messages,
        "connected": run["connected"], "latency_ms": run.get("latency_ms"),
        "per_msg": {
            "syscalls": per_msg(total),
            "writes": per_msg(sum(syscalls.get(name, 0) for name in WRITES)),
            "reads": per_msg(sum(syscalls.get(name, 0) for name in READS)),
            "epoll_waits": per_msg(sum(syscalls.get(name, 0) for name in POLLS)),
            "futex": per_msg(syscalls.get("futex", 0)),
            "context_switches": per_msg(counts.get("context-switches", 0)),
            "wakeups_issued": per_msg(counts.get("sched:sched_wakeup", 0)),
        },
        "syscalls": dict(sorted(syscalls.items(), key=lambda item: -item[1])),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())
