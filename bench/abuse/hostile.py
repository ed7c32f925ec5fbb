"""Issue 21 points 2, 5 and 6: what a hostile editor of the shared note costs.

Starts a `pulse` binary (release, under an address-space cap) on a fresh
database, then runs one scenario and prints one JSON object with its figures:

  awareness  point 2: one sender alternates awareness set/remove as fast as it
             can for --seconds (each message sets one of two client ids, its
             state padded to --state-bytes, and removes the other); --readers
             subscribers read normally. Per reader: doc_awareness frames received, bytes, relays
             per second, and the close code if the server closed it.
  frames     point 5: tiny hostile doc_update / doc_awareness frames (2^k
             clients, structs, delete ranges, array values, map entries, a
             value nested 20,000 deep, awareness claiming millions of states).
             Each alone: the answer, server CPU ms (/proc/pid/stat) and peak
             RSS (VmHWM after resetting it through clear_refs). Then two
             attackers send them in a loop for --seconds while a bystander
             pings every 50 ms: its round trips before and during.
  pending    point 6: 23 updates, each from a fresh Yjs client, holding "a",
             then (the middle never sent) 44,000 characters after it; the
             answers, the note's state size after them (a fresh subscriber's
             snapshot), and what an honest edit ("hello") and an honest
             paste (40,000 characters) get afterwards.

Every frame is written by hand in the lib0 v1 encoding (no Yjs library
needed). Run with tools/pyenv/bin/python (it has `websockets`); see
RESULTS-hostile.md.
"""

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

JWT_SECRET = "abuse-bench-jwt-secret-of-32-bytes-at-least"
ADMIN_KEY = "abuse-bench-admin-key-0123"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- lib0 v1 ---------------------------------------------------------------

def var(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def string(text):
    raw = text.encode() if isinstance(text, str) else text
    return var(len(raw)) + raw


STRING, ANY, SKIP, ORIGIN = 4, 8, 10, 0x80
NAMED_TEXT = var(1) + string("text")


def text_update(client, text, clock=0):
    """One client inserting `text` at the start of `text` (no origins)."""
    return var(1) + var(1) + var(client) + var(clock) + bytes([STRING]) + NAMED_TEXT \
        + string(text) + var(0)


def awareness_update(client, clock, state):
    return var(1) + var(client) + var(clock) + string(state)


def awareness_entries(entries):
    """Several (client, clock, state) entries in one update."""
    return var(len(entries)) + b"".join(var(c) + var(k) + string(s) for c, k, s in entries)


def hostile_frames(deep=True):
    """(name, kind, bytes): a few dozen bytes each, except the deep one."""
    frames = []
    for power in (22, 24, 26, 27, 28, 31):
        n = 1 << power
        frames.append((f"2^{power} clients", "update",
                       var(n) + var(1) + var(7) + var(0) + bytes([STRING]) + NAMED_TEXT
                       + string("a") + var(0)))
        frames.append((f"2^{power} structs", "update",
                       var(1) + var(n) + var(7) + var(0) + bytes([STRING]) + NAMED_TEXT
                       + string("a") + var(0)))
        frames.append((f"2^{power} delete ranges", "update",
                       var(0) + var(1) + var(7) + var(n) + var(0) + var(1) + var(0) + var(1)))
        frames.append((f"array of 2^{power} values", "update",
                       var(1) + var(1) + var(7) + var(0) + bytes([ANY]) + NAMED_TEXT + var(1)
                       + bytes([117]) + var(n) + bytes([126]) + var(0)))
        frames.append((f"map of 2^{power} entries", "update",
                       var(1) + var(1) + var(7) + var(0) + bytes([ANY]) + NAMED_TEXT + var(1)
                       + bytes([118]) + var(n) + string("k") + bytes([126]) + var(0)))
        frames.append((f"awareness of 2^{power} states", "awareness",
                       var(n) + var(7) + var(1) + string("{}")))
    nested = var(1) + var(1) + var(7) + var(0) + bytes([ANY]) + NAMED_TEXT + var(1) \
        + bytes([117, 1]) * 20_000 + bytes([126]) + var(0)
    if deep:
        frames.append(("array nested 20,000 deep", "update", nested))
    return frames


# --- process and sockets -----------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def reset_peak(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def login(base, name):
    request = urllib.request.Request(f"{base}/api/login", data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)["token"]


def wait_until_up(base):
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not come up")


def messages(frame):
    message = json.loads(frame)
    return message["data"]["messages"] if message["type"] == "batch" else [message]


class Peer:
    """One socket: hello (signed in as `name` unless None), optionally
    subscribed to doc:notes."""

    def __init__(self, url, base, name, subscribe=False):
        self.url, self.base, self.name, self.subscribe = url, base, name, subscribe

    async def __aenter__(self):
        token = login(self.base, self.name) if self.name else None
        self.ws = await connect(self.url, compression=None, max_size=None, proxy=None,
                                ping_interval=None)
        await self.send("hello", {"token": token} if token else {})
        await self.wait(lambda m: m["type"] == "welcome")
        self.snapshot = None
        if self.subscribe:
            await self.send("subscribe", {"channels": [{"channel": "doc:notes"}]})
            subscribed = await self.wait(lambda m: m["type"] == "subscribed")
            self.snapshot = subscribed["data"]["snapshot"]
        return self

    async def __aexit__(self, *_):
        await self.ws.close()

    async def send(self, kind, data, id=None):
        message = {"type": kind, "data": data}
        if id is not None:
            message["id"] = id
        await self.ws.send(json.dumps(message))

    async def wait(self, wanted):
        while True:
            for message in messages(await self.ws.recv()):
                if wanted(message):
                    return message

    async def ask(self, kind, data, id):
        """Sends and waits for the ack or error with this id."""
        await self.send(kind, data, id)
        message = await self.wait(lambda m: m["type"] in ("ack", "error")
                                  and (m.get("id") == id or m["data"].get("id") == id))
        return "ack" if message["type"] == "ack" else message["data"]["code"]

    async def ping(self):
        started = time.perf_counter()
        await self.send("ping", {})
        await self.wait(lambda m: m["type"] == "pong")
        return (time.perf_counter() - started) * 1000


def b64(raw):
    return base64.b64encode(raw).decode()


# --- scenarios ---------------------------------------------------------------

async def awareness(url, base, seconds, readers, state_bytes):
    results = [{"frames": 0, "bytes": 0, "closed": None} for _ in range(readers)]
    done = asyncio.Event()

    async def read(index):
        async with Peer(url, base, f"reader{index}", subscribe=True) as peer:
            result = results[index]
            try:
                while not done.is_set():
                    try:
                        frame = await asyncio.wait_for(peer.ws.recv(), 0.5)
                    except asyncio.TimeoutError:
                        continue
                    result["bytes"] += len(frame)
                    result["frames"] += sum(m["type"] == "doc_awareness" for m in messages(frame))
            except ConnectionClosed as closed:
                result["closed"] = closed.rcvd.code if closed.rcvd else "no close frame"

    async with Peer(url, base, "sender", subscribe=True) as sender:
        tasks = [asyncio.create_task(read(i)) for i in range(readers)]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        clock, sent = 0, 0
        while time.monotonic() - started < seconds:
            # Each message sets one of two client ids (a state padded to
            # --state-bytes) and removes the other: every one holds a removal.
            clock += 1
            state = json.dumps({"cursor": {"anchor": clock, "head": clock},
                                "pad": "x" * state_bytes})
            shown, removed = (1, 2) if clock % 2 else (2, 1)
            update = awareness_entries([(shown, clock, state), (removed, clock, "null")])
            await sender.send("doc_awareness", {"doc": "notes", "update": b64(update)})
            sent += 1
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)  # the last paced relay
        done.set()
        await asyncio.gather(*tasks)
    for result in results:
        result["relays_per_s"] = round(result["frames"] / elapsed, 1)
        result["mib"] = round(result["bytes"] / 2**20, 2)
    return {"sent": sent, "sent_per_s": round(sent / elapsed), "seconds": round(elapsed, 2),
            "readers": results,
            "readers_closed": sum(r["closed"] is not None for r in results)}


async def frames(url, base, pid, seconds, deep):
    alone = []
    async with Peer(url, base, "mallory", subscribe=True) as mallory:
        for n, (name, kind, raw) in enumerate(hostile_frames(deep)):
            reset_peak(pid)
            before = cpu_ms(pid)
            if kind == "update":
                data = {"doc": "notes", "update": b64(raw)}
                try:
                    answer = await asyncio.wait_for(mallory.ask("doc_update", data, f"h{n}"), 30)
                except (ConnectionClosed, asyncio.TimeoutError, OSError) as err:
                    answer = f"no answer ({type(err).__name__})"
            else:
                data = {"doc": "notes", "update": b64(raw)}
                try:
                    answer = await asyncio.wait_for(
                        mallory.ask("doc_awareness", data, f"h{n}"), 30)
                except asyncio.TimeoutError:
                    answer = "no answer"
            alive = os.path.exists(f"/proc/{pid}") and status_kib(pid, "VmHWM") is not None
            alone.append({"frame": name, "bytes": len(raw), "answer": answer,
                          "cpu_ms": round(cpu_ms(pid) - before) if alive else None,
                          "peak_rss_mib": round(status_kib(pid, "VmHWM") / 1024, 1)
                          if alive else None,
                          "server_alive": alive})
            if not alive:
                return {"alone": alone, "server_died": True}
    # Two attackers in a loop (everything but the deep one), a bystander pinging.
    loop = hostile_frames(deep=False)
    baseline, during = [], []
    counts = {}

    async def attack(name, deadline):
        async with Peer(url, base, name, subscribe=True) as peer:
            n = 0
            while time.monotonic() < deadline:
                _, kind, raw = loop[n % len(loop)]
                kind = "doc_update" if kind == "update" else "doc_awareness"
                answer = await peer.ask(kind, {"doc": "notes", "update": b64(raw)}, f"{name}-{n}")
                counts[answer] = counts.get(answer, 0) + 1
                n += 1

    async with Peer(url, base, None) as bystander:
        for _ in range(40):
            baseline.append(await bystander.ping())
            await asyncio.sleep(0.05)
        before = cpu_ms(pid)
        deadline = time.monotonic() + seconds
        attackers = [asyncio.create_task(attack(f"attacker{i}", deadline)) for i in range(2)]
        while time.monotonic() < deadline:
            during.append(await bystander.ping())
            await asyncio.sleep(0.05)
        await asyncio.gather(*attackers)
        cpu = cpu_ms(pid) - before

    def summary(samples):
        return {"median_ms": round(statistics.median(samples), 2),
                "max_ms": round(max(samples), 1), "n": len(samples)}

    return {"alone": alone, "bystander_ping_before": summary(baseline),
            "bystander_ping_during": summary(during), "attack_answers": counts,
            "server_cpu_ms_during": round(cpu), "attack_seconds": seconds}


async def pending(url, base):
    answers = {}
    filler = "z" * 44_000
    async with Peer(url, base, "mallory") as mallory:
        for n in range(23):
            client = 1000 + n
            # "a" at clock 0, a skip over the "b" at 1 (never sent), then
            # 44,000 characters whose origin is that "b".
            raw = (var(1) + var(3) + var(client) + var(0)
                   + bytes([STRING]) + NAMED_TEXT + string("a")
                   + bytes([SKIP]) + var(1)
                   + bytes([ORIGIN | STRING]) + var(client) + var(1) + string(filler)
                   + var(0))
            answer = await mallory.ask("doc_update", {"doc": "notes", "update": b64(raw)},
                                       f"skip-{n}")
            answers[answer] = answers.get(answer, 0) + 1
    async with Peer(url, base, "reader", subscribe=True) as reader:
        state = base64.b64decode(reader.snapshot["state"])
    async with Peer(url, base, "honest") as honest:
        honest_answer = await honest.ask(
            "doc_update", {"doc": "notes", "update": b64(text_update(5000, "hello"))}, "honest")
        paste_answer = await honest.ask(
            "doc_update", {"doc": "notes", "update": b64(text_update(5001, "p" * 40_000))},
            "paste")
    async with Peer(url, base, "reader2", subscribe=True) as reader:
        state_after = base64.b64decode(reader.snapshot["state"])
    return {"attack_answers": answers, "note_state_bytes_after_attack": len(state),
            "honest_edit": honest_answer, "honest_paste_40k": paste_answer, "note_state_bytes_after_honest_edit": len(state_after),
            "hello_in_state": b"hello" in state_after}


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--scenario", choices=["awareness", "frames", "pending"], required=True)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--state-bytes", type=int, default=3000,
                        help="padding in each awareness state (at most 4 KiB of JSON)")
    parser.add_argument("--as-limit", default="4G", help="'4G' or 'none'")
    parser.add_argument("--skip-deep", action="store_true",
                        help="frames: leave out the deeply nested value (it kills an old server)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pulse-hostile-")
    port = free_port()
    command = [args.binary, "--addr", f"127.0.0.1:{port}", "--db", f"{workdir}/pulse.db",
               "--admin-key", ADMIN_KEY, "--jwt-secret", JWT_SECRET, "--tick-rate", "0"]
    if args.as_limit != "none":
        command = ["prlimit", f"--as={4 << 30}", "--"] + command
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1"})
    try:
        base, url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
        wait_until_up(base)
        pid = server.pid
        # prlimit execs the server in place: same pid.
        if args.scenario == "awareness":
            result = await awareness(url, base, args.seconds, args.readers, args.state_bytes)
        elif args.scenario == "frames":
            result = await frames(url, base, pid, args.seconds, not args.skip_deep)
        else:
            result = await pending(url, base)
        result.update({"binary": args.binary, "scenario": args.scenario,
                       "server_alive_after": server.poll() is None,
                       "server_exit": server.returncode})
        print(json.dumps(result, indent=1))
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
