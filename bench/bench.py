#!/usr/bin/env python3
"""Benchmarks a release Pulse server with pulse-loadgen and prints one JSON line;
with --compare, Pulse against a reference server built on Node's `ws` package.

The server runs pinned to CPU 0 and the load generator to CPU 1 (two cores here).
The server's CPU time and resident memory are sampled from /proc every 0.2 s;
CPU seconds are counted over the load generator's measurement window only
(after every client connected; for storm, from the drop to the end), so the
ramp-up's handshakes are not included. The machine may be shared: before each
run the script waits (at most --wait-idle seconds) until no `rustc` runs, and
the line records what else used CPU during the window (`other_cpu_seconds`:
the machine's busy time minus the server's and the load generator's) and
whether a `rustc` was seen.

  bench/bench.py stream --clients 1000 --symbols 10            # 50 symbols at 2 ticks/s
  bench/bench.py idle --clients 19500                          # heartbeat 5 s, see below
  bench/bench.py storm --clients 10000 --symbols 2             # drop all, reconnect, resume
  bench/bench.py abuse --clients 1000 --symbols 10             # + status flood + chat at its limit
  bench/bench.py chat --senders 50 --chat-rate 2               # chat_send -> ack latency
  bench/bench.py doc --editors 10 --readers 100 --edit-rate 2   # one shared note (Pulse only)

Idle memory: `rss_per_socket_kib_mid` is (the server's RSS in the middle of
the measurement window - its RSS before the first connection) / sockets
connected, every socket having said `hello`; `pinged` and `min_pings` say how
many sockets got a WebSocket Ping and the fewest one got (pulse-loadgen
answers each with a Pong; a server closes a socket silent for two
heartbeats, so a socket still open after that answered). Idle mode passes
`--heartbeat-ms 5000` to the server (stream and chat: 15000, Pulse's
default) so that every socket is pinged several times within a 20 s window.
`rss_per_client_kib` is the older measure, from the peak RSS.

Chat: bench/chat_ack_latency.mjs (pinned to CPU 1) logs `--senders` guests in,
each sends `chat_send` at `--chat-rate` per second for `--duration` s, and the
time from each send to its `ack` is recorded; the simulator is off (as in idle
mode) and the server's CPU is counted over the script's run after its
listeners (if any) joined.

Doc: pulse-loadgen's doc mode (pinned to CPU 1): `--editors` guests each keep
a yrs replica of `doc:notes` and insert a letter `--edit-rate` times a second
(at a random spot, or with `--edit-at cursor` after their previous letter),
`--readers` more only apply; editing stops after `--total-updates` (or
`--duration` s, or once the note is full) and the window ends once every
client has every update. `cpu_us_per_update` is the server's CPU over that window
per acknowledged update, `end_rss_mib` its RSS at the window's end, and
`state_bytes` the size of the document a fresh subscriber then receives.
The simulator is off, as in idle and chat.

Comparison with the reference server (bench/reference/, Node's `ws`, pinned
in its package-lock.json; `npm ci` runs there first when node_modules is
missing). Three rounds, each runs Pulse then the reference with the same
flags, one at a time; every run's line is printed, then one `summary` line
with the medians per server and the ratios pulse/node:

  bench/bench.py stream --clients 1000 --symbols 10 --compare
  bench/bench.py stream --clients 5000 --symbols 10 --compare
  bench/bench.py idle --clients 19500 --compare
  bench/bench.py chat --senders 50 --chat-rate 2 --compare

Two builds of Pulse (issue 22: old main against new): `--baseline-server
PATH` runs three interleaved rounds of that binary ("old") and `--server`
("new") and prints the ratios new / old:

  bench/bench.py stream --clients 5000 --symbols 10 --baseline-server /path/to/old/pulse

The stores (issue 13): `--database postgres` runs Pulse on PostgreSQL, in a
throwaway cluster this script starts (initdb in a temporary directory, as the
`postgres` user when run as root; fsync on, as SQLite's synchronous=FULL),
pinned to CPU 0 with the server, with a fresh database per run; its CPU
(the postmaster and every backend) is sampled like the server's and reported
as `db_cpu_seconds` (`cpu_us_per_ack_with_db` adds it in). `--compare-stores`
runs three rounds of SQLite then PostgreSQL and prints the ratios
postgres / sqlite. Chat `--clients` above `--senders` adds listeners that
subscribe to the room, so every message is also fanned out:

  bench/bench.py chat --clients 500 --senders 50 --chat-rate 2 --compare-stores
  bench/bench.py chat --clients 200 --senders 200 --chat-rate 5 --compare-stores \
      --server-flag=--chat-rate=20

TLS (issue 23): `--tls` serves Pulse with `--tls-cert`/`--tls-key` (a CA and a
certificate for 127.0.0.1 made with `openssl` for the run) and points
pulse-loadgen at `wss://` trusting that CA (`--tls-ca`); `--compare-tls` runs
three rounds of plain then TLS against the same binary and prints the ratios
tls / plain (stream, idle and storm: the modes whose clients log in over no
HTTP request):

  bench/bench.py stream --clients 1000 --symbols 10 --compare-tls
  bench/bench.py idle --clients 19500 --compare-tls

The limit (issue 25): `--compare-zero` runs three rounds of Pulse, the Node
reference and the zero-work writer (bench/reference/zero_writer.c, compiled
here with gcc into target/bench/ when missing or older than its source: one
epoll thread that encodes each tick once and send()s the same bytes to every
subscriber, nothing else; stream and idle only), and prints the ratios
pulse / zero, node / zero and pulse / node:

  bench/bench.py stream --clients 1000 --symbols 10 --compare-zero
  bench/bench.py stream --clients 5000 --symbols 10 --compare-zero

One flag's cost (issue 24: JSON logs): `--compare-flag FLAG` runs three rounds
of --server without then with FLAG, ratio with / without. Pulse runs with
RUST_LOG=error unless `--rust-log` says otherwise (info: the default level
of a deployment, so the log lines are written):

  bench/bench.py stream --clients 5000 --symbols 10 --rust-log info --compare-flag=--log-format=json

Syscalls and wake-ups per delivered message: bench/syscalls.py.

--server-kind node runs the reference alone, --server-kind zero the zero-work writer. The reference serves stream,
idle and chat only (no resume, presence or rate limits: storm and abuse need
Pulse); its chat is kept in memory, not on disk (see bench/reference/README.md).

Build first:
  cargo build --release --features ssr --bin pulse
  cargo build --release --features loadgen --bin pulse-loadgen
"""
import argparse, json, os, shutil, ssl, statistics, subprocess, sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = f"{ROOT}/bench/reference"
CHAT_SCRIPT = f"{ROOT}/bench/chat_ack_latency.mjs"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_EVERY = 0.2
# A `rustc` check costs a process spawn: once a second is enough to notice a build.
RUSTC_CHECK_EVERY = 1.0
# Descriptors one source address gives one server port (ephemeral ports, with room).
SOCKETS_PER_SOURCE_IP = 20_000
# Heartbeats: idle sockets must be pinged within the window; otherwise Pulse's default.
IDLE_HEARTBEAT_MS = 5000
DEFAULT_HEARTBEAT_MS = 15000
ROUNDS = 3
KINDS = ("pulse", "node", "zero")
# What the reference serves; storm and abuse need resume, presence and rate limits.
NODE_MODES = ("stream", "idle", "chat")
# The zero-work writer (bench/reference/zero_writer.c) serves ticks only.
ZERO_MODES = ("stream", "idle")
ZERO_SOURCE = f"{REFERENCE}/zero_writer.c"
ZERO_BINARY = f"{ROOT}/target/bench/zero-writer"


def cpu_seconds(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, every thread


def rss_bytes(pid):
    try:
        return int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE
    except OSError:
        return None


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


def ensure_reference():
    """Installs the reference's pinned packages when they are missing."""
    if os.path.exists(f"{REFERENCE}/node_modules/ws/package.json"):
        return
    # bufferutil's install script only looks for the prebuilt binary its
    # package ships, which it finds again at run time: nothing to build.
    command = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
    print(f"installing the reference server's packages: (cd {REFERENCE} && {' '.join(command)})", file=sys.stderr)
    if subprocess.run(command, cwd=REFERENCE, stdout=sys.stderr).returncode != 0:
        sys.exit(f"npm ci failed; run it yourself: cd {REFERENCE} && {' '.join(command)}")


def ensure_zero_writer():
    """Compiles the zero-work writer with gcc when its binary is missing or
    older than its source (no dependency beyond libc and libm)."""
    if os.path.exists(ZERO_BINARY) and os.path.getmtime(ZERO_BINARY) >= os.path.getmtime(ZERO_SOURCE):
        return
    os.makedirs(os.path.dirname(ZERO_BINARY), exist_ok=True)
    command = ["gcc", "-O2", "-Wall", "-o", ZERO_BINARY, ZERO_SOURCE, "-lm"]
    print(f"compiling the zero-work writer: {' '.join(command)}", file=sys.stderr)
    if subprocess.run(command, stdout=sys.stderr).returncode != 0:
        sys.exit("gcc failed on bench/reference/zero_writer.c")


def server_command(args, kind, data_dir, tick_rate, heartbeat_ms):
    """The command line of one server, pinned to CPU 0, with the same universe,
    tick rate, seed and heartbeat for Pulse and the reference."""
    common = ["--addr", f"127.0.0.1:{args.port}", "--symbols", str(args.universe),
              "--tick-rate", str(tick_rate), "--seed", "1", "--heartbeat-ms", str(heartbeat_ms)]
    if kind == "node":
        return ["taskset", "-c", "0", args.node, f"{REFERENCE}/server.mjs", *common]
    if kind == "zero":
        return ["taskset", "-c", "0", ZERO_BINARY, *common]
    binary = args.baseline_server if kind == "baseline" else args.server
    # "flagged": the same binary with --compare-flag's flag added.
    extra = [args.compare_flag] if kind == "flagged" else []
    return ["taskset", "-c", "0", binary, "--db", f"{data_dir}/pulse.db", *common, *args.server_flag, *extra]


def wait_until_up(server, port, tls=None):
    """Polls /healthz (over https trusting `tls`'s CA when given)."""
    scheme = "https" if tls else "http"
    context = ssl.create_default_context(cafile=tls["ca"]) if tls else None
    for _ in range(100):
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode} before answering /healthz")
        try:
            urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/healthz", timeout=1, context=context)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"the server did not answer {scheme}://127.0.0.1:{port}/healthz within 10 s")


def make_certificates():
    """A CA and a server certificate for 127.0.0.1 (EC P-256, as most sites
    serve now), made with openssl in a temporary directory; returns the paths."""
    directory = tempfile.mkdtemp(prefix="pulse-bench-tls-")
    paths = {name: f"{directory}/{name}.pem" for name in ("ca", "ca-key", "cert", "key", "csr")}
    extensions = f"{directory}/leaf.ext"
    with open(extensions, "w") as out:
        out.write("basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *ec, "-keyout", paths["ca-key"], "-out", paths["ca"], "-days", "2", "-subj", "/CN=pulse bench CA"],
        ["req", *ec, "-keyout", paths["key"], "-out", paths["csr"], "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", paths["csr"], "-CA", paths["ca"], "-CAkey", paths["ca-key"], "-CAcreateserial",
         "-out", paths["cert"], "-days", "2", "-extfile", extensions],
    ):
        subprocess.run(["openssl", *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return paths


def over_tls(command, tls):
    """A pulse-loadgen command line pointed at wss:// and trusting the CA."""
    command = [part.replace("ws://", "wss://", 1) if part.startswith("ws://") else part for part in command]
    return command + ["--tls-ca", tls["ca"]]


def loadgen_command(args):
    sockets = args.clients * (3 if args.mode == "storm" else 1)  # storm: old in TIME_WAIT + new
    source_ips = max(1, (sockets + SOCKETS_PER_SOURCE_IP - 1) // SOCKETS_PER_SOURCE_IP + 1)
    return ["taskset", "-c", "1", args.loadgen, "--url", f"ws://127.0.0.1:{args.port}/ws",
            "--mode", args.mode, "--clients", str(args.clients), "--symbols", str(args.symbols),
            "--universe", str(args.universe), "--duration", str(args.duration),
            "--source-ips", str(source_ips), "--connect-rate", str(args.connect_rate),
            "--settle", str(args.settle), "--verify", str(args.verify), "--json"]


def doc_command(args):
    command = ["taskset", "-c", "1", args.loadgen, "--url", f"ws://127.0.0.1:{args.port}/ws",
               "--mode", "doc", "--editors", str(args.editors), "--readers", str(args.readers),
               "--edit-rate", str(args.edit_rate), "--edit-at", args.edit_at, "--duration", str(args.duration),
               "--connect-rate", str(args.connect_rate), "--json"]
    if args.total_updates:
        command += ["--total-updates", str(args.total_updates)]
    return command


def chat_command(args):
    return ["taskset", "-c", "1", args.node, "--experimental-websocket", "--no-warnings", CHAT_SCRIPT,
            "--url", f"http://127.0.0.1:{args.port}", "--senders", str(args.senders),
            "--rate", str(args.chat_rate), "--seconds", str(args.duration),
            "--listeners", str(max(0, args.clients - args.senders) if args.clients_given else 0)]


class Postgres:
    """A throwaway PostgreSQL cluster for the benchmark: initdb in a temporary
    directory (as the `postgres` user when this runs as root: PostgreSQL
    refuses root), the server pinned to CPU 0 beside Pulse, stopped at exit."""

    def __init__(self, port):
        bindirs = sorted((d for d in os.listdir("/usr/lib/postgresql") if os.path.isdir(f"/usr/lib/postgresql/{d}/bin")),
                         key=lambda d: [int(part) for part in d.split(".") if part.isdigit()])
        if not bindirs:
            sys.exit("PostgreSQL is not installed: scripts/setup.sh installs it")
        self.bin = f"/usr/lib/postgresql/{bindirs[-1]}/bin"
        self.port, self.count = port, 0
        self.dir = tempfile.mkdtemp(prefix="pulse-bench-pg-")
        self.as_user = []
        if os.geteuid() == 0:
            import pwd
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self.as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        subprocess.run([*self.as_user, f"{self.bin}/initdb", "-D", self.dir, "--auth=trust", "-U", "postgres",
                        "-E", "UTF8", "--locale=C"], check=True, stdout=subprocess.DEVNULL, cwd=self.dir)
        self.server = subprocess.Popen(
            ["taskset", "-c", "0", *self.as_user, f"{self.bin}/postgres", "-D", self.dir, "-p", str(port),
             "-k", self.dir, "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=100"],
            stdout=subprocess.DEVNULL, stderr=open(f"{self.dir}/server.log", "w"), cwd=self.dir)
        for _ in range(300):
            if subprocess.run([f"{self.bin}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL).returncode == 0:
                return
            time.sleep(0.1)
        log = open(f"{self.dir}/server.log").read()[-3000:]
        self.stop()
        sys.exit(f"PostgreSQL did not start:\n{log}")

    def fresh_database(self):
        self.count += 1
        name = f"pulse_bench_{self.count}"
        subprocess.run([f"{self.bin}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
                        "postgres", "-q", "-c", f"CREATE DATABASE {name}"], check=True)
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def pids(self):
        """The postmaster and every process it started (the backends)."""
        root = self.server.pid
        # taskset and setpriv exec, so the postmaster has the Popen's pid.
        found = [root]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                if ppid == root:
                    found.append(int(entry))
        return found

    def cpu_seconds(self):
        """CPU of the cluster's live processes plus what its exited children
        used (cutime/cstime of the postmaster)."""
        total = 0.0
        for pid in self.pids():
            value = cpu_seconds(pid)
            total += value or 0.0
        try:
            fields = open(f"/proc/{self.server.pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[13]) + int(fields[14])) / TICK
        except OSError:
            pass
        return total

    def stop(self):
        self.server.send_signal(2)  # SIGINT: fast shutdown
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Sampler:
    """Samples the server's CPU and RSS, the machine's busy time and the load's
    CPU every SAMPLE_EVERY seconds, and notes any `rustc` it sees."""

    def __init__(self, server_pid, database=None):
        self.server_pid, self.load_pid, self.database = server_pid, None, database
        self.samples, self.rustc_seen = [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        last_rustc_check = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            load_cpu = cpu_seconds(self.load_pid) if self.load_pid else None
            db_cpu = self.database.cpu_seconds() if self.database else None
            self.samples.append((now, cpu_seconds(self.server_pid), rss_bytes(self.server_pid),
                                 machine_busy_seconds(), load_cpu, db_cpu))
            if now - last_rustc_check >= RUSTC_CHECK_EVERY:
                last_rustc_check = now
                if rustc_running():
                    self.rustc_seen.append(now)
            time.sleep(SAMPLE_EVERY)

    def finish(self):
        self.stop.set()
        self.thread.join()

    def at(self, moment, index):
        """Field `index` of the last sample taken at or before `moment`."""
        before = [s for s in self.samples if s[0] <= moment and s[index] is not None]
        return (before[-1] if before else self.samples[0])[index] or 0.0

    def machine_delta(self, start, end, part):
        return self.at(end, 3)[part] - self.at(start, 3)[part]


def run_load(command, sampler):
    """Runs the load generator (or the chat script) and returns its last JSON
    line, when it started and when it ended."""
    started = time.monotonic()
    load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler.load_pid = load.pid
    out, err = load.communicate(timeout=900)
    ended = time.monotonic()
    lines = out.strip().splitlines()
    if not lines:
        sys.exit(f"{' '.join(command[3:5])} printed nothing; stderr:\n{err[-3000:]}")
    return json.loads(lines[-1]), started, ended


def run_once(args, kind, label, database=None):
    """Starts one server (on `database`, a `Postgres`, when given; else on a
    SQLite file), runs the load against it, stops it; returns the result line."""
    waited = wait_for_quiet(args.wait_idle)
    rustc_at_start = rustc_running()
    # Idle, chat and doc: no ticks, so the server's CPU is the sockets' (and the chat's or the document's) alone.
    tick_rate = 0 if args.mode in ("idle", "chat", "doc") else args.tick_rate
    heartbeat_ms = args.heartbeat_ms or (IDLE_HEARTBEAT_MS if args.mode == "idle" else DEFAULT_HEARTBEAT_MS)
    # A fresh database per run: chat from the abuse run must not carry over,
    # and two server builds must not share (or migrate) one file.
    data_dir = tempfile.mkdtemp(prefix="pulse-bench-")
    # "tls": the same Pulse binary, serving TLS itself (--tls or --compare-tls).
    tls = args.tls_files if kind == "tls" else None
    command = server_command(args, "pulse" if tls else kind, data_dir, tick_rate, heartbeat_ms)
    if tls:
        command += ["--tls-cert", tls["cert"], "--tls-key", tls["key"]]
    if database:
        command += ["--database-url", database.fresh_database()]
    server = subprocess.Popen(
        command, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # WebSocket-only: the site bundle in target/site may be another build's.
        env={**os.environ, "RUST_LOG": args.rust_log, "PULSE_ALLOW_STALE_BUNDLE": "true"})
    try:
        wait_until_up(server, args.port, tls)
        time.sleep(1)
        baseline_rss = rss_bytes(server.pid)
        sampler = Sampler(server.pid, database)
        try:
            if args.mode == "chat":
                report, started, ended = run_load(chat_command(args), sampler)
                # Without the listeners' logins and subscriptions.
                window_start, window_end = started + report.get("setup_ms", 0) / 1000, ended
            else:
                command = doc_command(args) if args.mode == "doc" else loadgen_command(args)
                if tls:
                    command = over_tls(command, tls)
                if kind == "sse" or args.transport == "sse":
                    command += ["--transport", "sse"]
                report, started, _ = run_load(command, sampler)
                window_start = started + report["ramp_up_secs"]
                window_end = window_start + report["duration_secs"]
        finally:
            sampler.finish()
        result = summarise(args, kind, label, report, sampler, baseline_rss, window_start, window_end)
        result["database"] = "postgres" if database else ("memory" if kind in ("node", "zero") else "sqlite")
        if kind == "sse" or args.transport == "sse":
            result["transport"] = "sse"
        if database:
            db_cpu = sampler.at(window_end, 5) - sampler.at(window_start, 5)
            result["db_cpu_seconds"] = round(db_cpu, 2)
            if args.mode == "chat" and report.get("acked"):
                result["cpu_us_per_ack_with_db"] = round(
                    (result["server_cpu_seconds"] + db_cpu) * 1e6 / report["acked"], 1)
        result.update({
            "heartbeat_ms": heartbeat_ms,
            "rustc_waited_secs": waited,
            "rustc_at_start": rustc_at_start,
            "rustc_seen_during_run": bool(sampler.rustc_seen),
            "loadavg_after": open("/proc/loadavg").read().split()[0],
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def summarise(args, kind, label, report, sampler, baseline_rss, window_start, window_end):
    cpu = sampler.at(window_end, 1) - sampler.at(window_start, 1)
    load_cpu = sampler.at(window_end, 4) - sampler.at(window_start, 4)
    mid_rss = sampler.at((window_start + window_end) / 2, 2)
    peak_rss = max(s[2] for s in sampler.samples if s[2] is not None)
    result = {"label": label, "server_kind": kind, "mode": args.mode}
    if args.mode == "chat":
        result.update({"senders": args.senders, "listeners": report.get("listeners", 0), "chat": report,
                       "cpu_us_per_ack": round(cpu * 1e6 / report["acked"], 1) if report.get("acked") else None})
    elif args.mode == "doc":
        acked = report["acked"]
        snapshot = report.get("final_snapshot") or {}
        result.update({
            "editors": args.editors, "readers": args.readers, "edit_rate": args.edit_rate, "edit_at": args.edit_at,
            "total_updates": args.total_updates,
            "acked": acked,
            "updates_per_sec": round(report["acked_per_sec"], 1),
            "update_to_peer_ms": report.get("update_to_peer_ms"),
            "ack_ms": report.get("ack_ms"),
            "cpu_us_per_update": round(cpu * 1e6 / acked, 1) if acked else None,
            "state_bytes": snapshot.get("state_bytes"),
            "text_chars": snapshot.get("text_chars"),
            "end_rss_mib": round(sampler.at(window_end, 2) / 2**20, 1),
            "converged": report["replicas_diverged"] == 0 and report["drained"],
            "doc": report,
        })
    else:
        result.update({"clients": args.clients, "symbols_per_client": 0 if args.mode == "idle" else args.symbols})
    if args.mode == "storm":
        result["storm"] = report
    elif args.mode not in ("chat", "doc"):
        delivered = report["messages_received"]
        connected = max(1, report["connected"])
        result.update({
            "connected": report["connected"],
            # Handshakes that failed (a timeout, a refused upgrade), by message.
            "connect_errors": report.get("connect_errors"),
            "connect_error_kinds": report.get("connect_error_kinds"),
            "open_at_end": report.get("open_at_end"),
            "pinged": report.get("pinged"),
            "min_pings": report.get("min_pings"),
            "closed_early": report["closed_early"],
            "closed_early_by_code": report.get("closed_early_by_code"),
            "ramp_up_secs": report.get("ramp_up_secs"),
            "subscribed": report.get("subscribed"),
            "msgs_per_sec": round(report["messages_per_sec"]),
            "latency_ms": report.get("latency_ms"),
            "msgs_per_cpu_second": round(delivered / cpu) if cpu > 0 else None,
            "cpu_us_per_msg": round(cpu * 1e6 / delivered, 3) if delivered else None,
            # (RSS in the middle of the window - RSS before the first connection) / sockets.
            "rss_per_socket_kib_mid": round((mid_rss - baseline_rss) / 1024 / connected, 2),
            # The older measure, from the peak.
            "rss_per_client_kib": round((peak_rss - baseline_rss) / 1024 / connected, 2),
        })
        if "abuse" in report:
            result["abuse"] = report["abuse"]
    machine = sampler.machine_delta(window_start, window_end, 0)
    result.update({
        "server_cpu_seconds": round(cpu, 2),
        "window_secs": round(window_end - window_start, 1),
        "baseline_rss_mib": round(baseline_rss / 2**20, 1),
        "mid_rss_mib": round(mid_rss / 2**20, 1),
        "peak_rss_mib": round(peak_rss / 2**20, 1),
        "loadgen_cpu_seconds": round(load_cpu, 2),
        "other_cpu_seconds": round(max(0.0, machine - cpu - load_cpu), 2),
        # Of that: other processes, interrupt work (loopback TCP runs partly
        # there, for our own traffic too) and time the hypervisor gave others.
        "other_process_cpu_seconds": round(max(0.0, sampler.machine_delta(window_start, window_end, 1) - cpu - load_cpu), 2),
        "irq_cpu_seconds": round(sampler.machine_delta(window_start, window_end, 2), 2),
        "steal_seconds": round(sampler.machine_delta(window_start, window_end, 3), 2),
    })
    return result


# What the summary compares: a name, how to read it from a line, and whether
# more is better (the ratio is the measured server over its reference: pulse / node,
# new / old, postgres / sqlite).
MEASURES = {
    "stream": [("connected", lambda r: r["connected"], "higher"),
               ("msgs_per_cpu_second", lambda r: r["msgs_per_cpu_second"], "higher"),
               ("msgs_per_sec", lambda r: r["msgs_per_sec"], "higher"),
               ("latency_p50_ms", lambda r: (r["latency_ms"] or {}).get("p50"), "lower"),
               ("latency_p99_ms", lambda r: (r["latency_ms"] or {}).get("p99"), "lower"),
               ("server_cpu_seconds", lambda r: r["server_cpu_seconds"], "lower"),
               ("rss_per_socket_kib_mid", lambda r: r["rss_per_socket_kib_mid"], "lower")],
    "idle": [("rss_per_socket_kib_mid", lambda r: r["rss_per_socket_kib_mid"], "lower"),
             ("connected", lambda r: r["connected"], "higher"),
             ("closed_early", lambda r: r["closed_early"], "lower"),
             ("ramp_up_secs", lambda r: r["ramp_up_secs"], "lower"),
             ("open_at_end", lambda r: r["open_at_end"], "higher"),
             ("pinged", lambda r: r["pinged"], "higher"),
             ("server_cpu_seconds", lambda r: r["server_cpu_seconds"], "lower")],
    "storm": [("all_back_secs", lambda r: r["storm"]["all_back_secs"], "lower"),
              ("back_p99_ms", lambda r: r["storm"]["back_ms"]["p99"], "lower"),
              ("server_cpu_seconds", lambda r: r["server_cpu_seconds"], "lower"),
              ("peak_rss_mib", lambda r: r["peak_rss_mib"], "lower"),
              ("back", lambda r: r["storm"]["back"], "higher"),
              ("channels_with_gap", lambda r: r["storm"]["channels_with_gap"], "lower"),
              ("duplicate_ticks", lambda r: r["storm"]["duplicate_ticks"], "lower")],
    "chat": [("ack_p50_ms", lambda r: r["chat"]["p50_ms"], "lower"),
             ("ack_p99_ms", lambda r: r["chat"]["p99_ms"], "lower"),
             ("acked", lambda r: r["chat"]["acked"], "higher"),
             ("cpu_us_per_ack", lambda r: r["cpu_us_per_ack"], "lower"),
             ("cpu_us_per_ack_with_db", lambda r: r.get("cpu_us_per_ack_with_db", r["cpu_us_per_ack"]), "lower"),
             ("delivered", lambda r: r["chat"].get("delivered"), "higher")],
}


def median_of(lines, read):
    values = [v for v in (read(line) for line in lines) if v is not None]
    return round(statistics.median(values), 3) if values else None


def compare(args, variants, ratio, more_ratios=()):
    """ROUNDS rounds of each variant in turn, `variants` being (name, server
    kind, database), run in that order in every round; every line, then the
    summary with the ratios `ratio` = (numerator, denominator) by name (and
    `more_ratios`, more such pairs, for three servers)."""
    first, second = ratio[1], ratio[0]
    lines = {name: [] for name, _, _ in variants}
    for round_number in range(1, ROUNDS + 1):
        for name, kind, database in variants:
            line = run_once(args, kind, f"{args.label or args.mode}:{name}", database)
            line["round"] = round_number
            lines[name].append(line)
            print(json.dumps(line), flush=True)
    summary = {"summary": f"{args.mode}, median of {ROUNDS} interleaved rounds; ratio = {second} / {first}",
               "label": args.label, "mode": args.mode}
    if args.mode == "chat":
        summary["senders"], summary["chat_rate"] = args.senders, args.chat_rate
        summary["clients"] = args.clients if args.clients_given else args.senders
    else:
        summary["clients"], summary["symbols_per_client"] = args.clients, 0 if args.mode == "idle" else args.symbols
    for measure, read, better in MEASURES[args.mode]:
        base, other = median_of(lines[first], read), median_of(lines[second], read)
        ratio = round(other / base, 3) if other is not None and base else None
        summary[measure] = {first: base, second: other, "ratio": ratio, "better": better}
        for numerator, denominator in more_ratios:
            top, bottom = median_of(lines[numerator], read), median_of(lines[denominator], read)
            summary[measure][numerator] = top
            summary[measure][denominator] = bottom
            summary[measure][f"{numerator}/{denominator}"] = round(top / bottom, 3) if top is not None and bottom else None
    # A server that could not take every client did less work: its per-message
    # figures then compare unequal loads, which the summary says outright.
    short = {name: min(line.get("connected", args.clients) for line in lines[name]) for name in lines
             if lines[name] and args.mode != "chat"}
    summary["every_client_connected"] = {name: low >= args.clients for name, low in short.items()}
    summary["rustc_seen_during_runs"] = sum(line["rustc_seen_during_run"] for name in lines for line in lines[name])
    print(json.dumps(summary), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["stream", "idle", "storm", "abuse", "chat", "doc"])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=10, help="subscriptions per client")
    parser.add_argument("--universe", type=int, default=50, help="symbols the server simulates")
    parser.add_argument("--tick-rate", type=float, default=2.0)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--port", type=int, default=3999)
    parser.add_argument("--server", default=f"{ROOT}/target/release/pulse", help="server binary")
    parser.add_argument("--loadgen", default=f"{ROOT}/target/release/pulse-loadgen", help="load generator binary")
    parser.add_argument("--node", default="node", help="node binary (the reference server, the chat script)")
    parser.add_argument("--compare-zero", action="store_true",
                        help=f"{ROUNDS} rounds of Pulse, the Node reference and the zero-work writer, ratios to it")
    parser.add_argument("--compare-flag", default=None, metavar="FLAG",
                        help=f"{ROUNDS} rounds of --server without then with FLAG (e.g. --log-format=json), ratio with / without")
    parser.add_argument("--rust-log", default="error", help="RUST_LOG for Pulse (the log level; default error)")
    parser.add_argument("--server-kind", choices=KINDS, default="pulse",
                        help="pulse, or node: the reference server in bench/reference/")
    parser.add_argument("--compare", action="store_true",
                        help=f"{ROUNDS} rounds of Pulse then the reference, and a summary line")
    parser.add_argument("--heartbeat-ms", type=int, default=None,
                        help=f"both servers' heartbeat (default {IDLE_HEARTBEAT_MS} in idle mode, else {DEFAULT_HEARTBEAT_MS})")
    parser.add_argument("--label", default="", help="a name for the server build, copied into the line")
    # A steady ramp-up, so that the load generator's own handshakes do not
    # swamp its core (stream and idle clients do not retry a 1013).
    parser.add_argument("--connect-rate", type=int, default=900)
    parser.add_argument("--settle", type=int, default=5, help="storm: seconds of ticks before the drop")
    parser.add_argument("--verify", type=int, default=10, help="storm: seconds of offset checks after")
    parser.add_argument("--senders", type=int, default=50, help="chat: guests sending chat_send")
    parser.add_argument("--chat-rate", type=float, default=2.0, help="chat: messages per second per sender")
    parser.add_argument("--editors", type=int, default=10, help="doc: clients that edit the note")
    parser.add_argument("--readers", type=int, default=100, help="doc: clients that only read it")
    parser.add_argument("--edit-rate", type=float, default=2.0, help="doc: updates per second per editor")
    parser.add_argument("--edit-at", choices=["random", "cursor"], default="random",
                        help="doc: type at a random spot each time, or at the editor's cursor")
    parser.add_argument("--total-updates", type=int, default=None,
                        help="doc: stop editing after this many updates (else after --duration s)")
    parser.add_argument("--wait-idle", type=float, default=180, help="seconds to wait for no rustc")
    parser.add_argument("--server-flag", action="append", default=[], help="extra Pulse flag (repeatable)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite",
                        help="Pulse's store: the SQLite file, or a throwaway PostgreSQL cluster")
    parser.add_argument("--compare-stores", action="store_true",
                        help="three rounds of Pulse on SQLite then on PostgreSQL, and the ratios")
    parser.add_argument("--baseline-server", default=None,
                        help=f"another Pulse binary (an older build): {ROUNDS} interleaved rounds of it and --server, ratio new / old")
    parser.add_argument("--pg-port", type=int, default=3998, help="the throwaway PostgreSQL's port")
    parser.add_argument("--tls", action="store_true",
                        help="Pulse serves TLS itself (a certificate made for the run); the clients use wss://")
    parser.add_argument("--compare-tls", action="store_true",
                        help=f"{ROUNDS} rounds of Pulse over plain ws:// then over wss://, ratio tls / plain")
    parser.add_argument("--transport", choices=["websocket", "sse"], default="websocket",
                        help="how the clients reach Pulse: WebSockets or the HTTP fallback (stream, idle)")
    parser.add_argument("--compare-transports", action="store_true",
                        help=f"{ROUNDS} rounds of Pulse over WebSockets then over the HTTP fallback, ratio sse / websocket")
    args = parser.parse_args()
    if (args.transport == "sse" or args.compare_transports) and (args.mode not in ("stream", "idle")
                                                                  or args.tls or args.compare_tls):
        parser.error("--transport sse and --compare-transports: stream or idle, plain HTTP")
    args.tls_files = make_certificates() if args.tls or args.compare_tls else None
    if args.tls_files and args.mode not in ("stream", "idle", "storm"):
        parser.error("--tls and --compare-tls: stream, idle or storm (the other modes log in over plain HTTP)")
    # Chat: --clients counts only when given (senders + listeners).
    args.clients_given = any(arg == "--clients" or arg.startswith("--clients=") for arg in sys.argv[1:])

    uses_zero = args.compare_zero or args.server_kind == "zero"
    if uses_zero and args.mode not in ZERO_MODES:
        parser.error(f"the zero-work writer serves {', '.join(ZERO_MODES)} only, not {args.mode}")
    if uses_zero:
        ensure_zero_writer()
    uses_node = args.compare or args.compare_zero or args.server_kind == "node"
    if uses_node and args.mode not in NODE_MODES:
        parser.error(f"the reference server serves {', '.join(NODE_MODES)} only, not {args.mode}")
    if uses_node:
        ensure_reference()
    if sum(map(bool, (args.compare, args.compare_stores, args.baseline_server, args.compare_tls,
                      args.compare_transports, args.compare_zero, args.compare_flag))) > 1:
        parser.error("--compare, --compare-stores, --baseline-server, --compare-tls, --compare-transports,"
                     " --compare-zero and --compare-flag: one at a time")
    database = None
    if args.compare_stores or args.database == "postgres":
        database = Postgres(args.pg_port)
    try:
        if args.compare:
            compare(args, [("pulse", "pulse", None), ("node", "node", None)], ("pulse", "node"))
        elif args.compare_zero:
            compare(args, [("pulse", "pulse", None), ("node", "node", None), ("zero", "zero", None)],
                    ("pulse", "zero"), more_ratios=[("node", "zero"), ("pulse", "node")])
        elif args.compare_flag:
            compare(args, [("without", "pulse", database), ("with", "flagged", database)], ("with", "without"))
        elif args.compare_stores:
            compare(args, [("sqlite", "pulse", None), ("postgres", "pulse", database)], ("postgres", "sqlite"))
        elif args.compare_transports:
            compare(args, [("websocket", "pulse", database), ("sse", "sse", database)], ("sse", "websocket"))
        elif args.compare_tls:
            compare(args, [("plain", "pulse", database), ("tls", "tls", database)], ("tls", "plain"))
        elif args.baseline_server:
            compare(args, [("old", "baseline", database), ("new", "pulse", database)], ("new", "old"))
        else:
            kind = "tls" if args.tls else args.server_kind
            print(json.dumps(run_once(args, kind, args.label, database)))
    finally:
        if database:
            database.stop()


if __name__ == "__main__":
    sys.exit(main())
