"""Issue 21 point 1: one client that never reads asks for subscribe answers.

Starts a `pulse` binary (optionally under an address-space cap), then runs one
hostile client for a fixed time: it says `hello`, then sends `subscribe`
frames as fast as the server takes them, each listing one channel N times,
and never reads a byte. When the server closes it, it connects again and goes
on (a hostile client would). Meanwhile the server's resident memory (VmRSS)
is sampled from /proc. Prints one JSON object with the figures.

Variants:
  ticker  `ticker:AAPL` x N (the simulator runs, so AAPL has a snapshot)
  chat    `chat:big` x N, a room holding 50 messages of 2,000 characters

Run with tools/pyenv/bin/python (it has `websockets`); see RESULTS-answers.md.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

ADMIN_KEY = "abuse-bench-admin-key-0123"
JWT_SECRET = "abuse-bench-jwt-secret-of-32-bytes-at-least"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    """The process's resident set in KiB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def login(base, name):
    request = urllib.request.Request(
        f"{base}/api/login",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)["token"]


async def hello(ws, token):
    data = {"token": token} if token else {}
    await ws.send(json.dumps({"type": "hello", "data": data}))


async def fill_room(ws_url, base, room, messages, length):
    """Posts `messages` messages of `length` characters, from enough users
    that the chat rate (bursts of 10) never refuses one; waits for the acks."""
    text = "x" * length
    per_user = 10
    for user in range((messages + per_user - 1) // per_user):
        token = login(base, f"poster{user}")
        async with connect(ws_url, compression=None, max_size=None, proxy=None) as ws:
            await hello(ws, token)
            count = min(per_user, messages - user * per_user)
            for n in range(count):
                await ws.send(json.dumps({"type": "chat_send", "id": f"p{user}-{n}",
                                          "data": {"room": room, "text": text}}))
            acks = 0
            while acks < count:
                frame = json.loads(await ws.recv())
                items = frame["data"]["messages"] if frame["type"] == "batch" else [frame]
                for item in items:
                    if item["type"] == "ack":
                        acks += 1
                    elif item["type"] == "error":
                        raise RuntimeError(f"posting: {item}")


async def hoard(ws_url, token, frame, deadline, stats):
    """The client that never reads: sends `frame` until the deadline,
    reconnecting whenever the server closes it."""
    while time.monotonic() < deadline:
        try:
            # max_queue=1: the library stops reading the socket once one
            # message waits unread (and this client reads none), so the
            # kernel's buffers fill and the server must queue the rest.
            async with connect(ws_url, compression=None, max_size=None, max_queue=1,
                               ping_interval=None, proxy=None, open_timeout=5) as ws:
                stats["connections"] += 1
                await hello(ws, token)
                while time.monotonic() < deadline:
                    await asyncio.wait_for(ws.send(frame), timeout=max(0.1, deadline - time.monotonic()))
                    stats["frames"] += 1
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            stats["closes"].append(code)
        except (OSError, asyncio.TimeoutError, WebSocketException) as err:
            if time.monotonic() < deadline:
                stats["errors"].append(type(err).__name__)
                await asyncio.sleep(0.2)


async def sample(pid, deadline, started, samples):
    while time.monotonic() < deadline:
        kib = rss_kib(pid)
        samples.append((round(time.monotonic() - started, 2), kib))
        if kib is None:
            return
        await asyncio.sleep(0.25)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="the pulse binary to measure")
    parser.add_argument("--variant", choices=["ticker", "chat"], required=True)
    parser.add_argument("--repeat", type=int, default=2000, help="entries per subscribe frame")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--as-limit", default="4G",
                        help="address-space cap for the server (prlimit --as); 'none' for none")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="pulse-abuse-")
    port = free_port()
    command = [args.binary, "--addr", f"127.0.0.1:{port}", "--db", f"{workdir}/pulse.db",
               "--admin-key", ADMIN_KEY, "--jwt-secret", JWT_SECRET]
    if args.as_limit != "none":
        command = ["prlimit", f"--as={parse_size(args.as_limit)}", "--"] + command
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1", "PULSE_ALLOW_STALE_BUNDLE": "true"})
    try:
        base = f"http://127.0.0.1:{port}"
        ws_url = f"ws://127.0.0.1:{port}/ws"
        wait_until_up(base)
        stats = {"connections": 0, "frames": 0, "closes": [], "errors": []}
        if args.variant == "ticker":
            token = None
            channel = "ticker:AAPL"
            await asyncio.sleep(2)  # a few ticks, so AAPL has a snapshot
        else:
            channel = "chat:big"
            await fill_room(ws_url, base, "big", 50, 2000)
            token = login(base, "hoarder")
        entry = {"channel": channel}
        frame = json.dumps({"type": "subscribe", "data": {"channels": [entry] * args.repeat}})
        rss_before = rss_kib(server.pid)
        started = time.monotonic()
        deadline = started + args.seconds
        samples = []
        await asyncio.gather(hoard(ws_url, token, frame, deadline, stats),
                             sample(server.pid, deadline, started, samples))
        alive = server.poll() is None
        healthy = alive and healthz(base)
        slow = metric(base, "pulse_slow_consumers_total") if alive else None
        peak = max((kib for _, kib in samples if kib is not None), default=None)
        died_at = next((t for t, kib in samples if kib is None), None)
        result = {
            "binary": args.binary,
            "variant": args.variant,
            "repeat": args.repeat,
            "frame_bytes": len(frame),
            "seconds": args.seconds,
            "as_limit": args.as_limit,
            "rss_before_mib": mib(rss_before),
            "rss_peak_mib": mib(peak),
            "rss_end_mib": mib(samples[-1][1]) if samples and samples[-1][1] else None,
            "rss_every_5s_mib": [(t, mib(kib)) for t, kib in samples if kib is not None and
                                 abs(t - round(t / 5) * 5) < 0.13],
            "server_alive": alive,
            "server_died_after_s": died_at,
            "server_exit": server.returncode,
            "healthz_after": healthy,
            "slow_consumers_closed": slow,
            "hoarder": stats,
        }
        stats["closes"] = summarise(stats["closes"])
        stats["errors"] = summarise(stats["errors"])
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


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def mib(kib):
    return None if kib is None else round(kib / 1024, 1)


def summarise(items):
    counts = {}
    for item in items:
        counts[str(item)] = counts.get(str(item), 0) + 1
    return counts


def healthz(base):
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def metric(base, name):
    """A counter from /metrics (None if the server does not answer)."""
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(name + " "):
                    return int(float(line.split()[1]))
    except OSError:
        return None
    return None


def wait_until_up(base):
    for _ in range(200):
        if healthz(base):
            return
        time.sleep(0.05)
    sys.exit("the server did not come up")


if __name__ == "__main__":
    asyncio.run(main())
