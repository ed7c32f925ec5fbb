#!/usr/bin/env python3
"""Server-side rendering latency of the dashboard, against a running server.

Sends sequential GETs over one keep-alive connection and prints one JSON line
with the p50/p90/p99 of `/` anonymous, `/` signed in (a guest token cookie:
the page then renders the user's chat room and inbox as well) and `/healthz`
(the same HTTP round trip without a render: the floor to compare with).

  target/release/pulse --addr 127.0.0.1:3999 --db /tmp/ssr.db &
  bench/ssr_latency.py --url http://127.0.0.1:3999 [--requests 2000]
"""
import argparse, http.client, json, statistics, time, urllib.parse


def percentiles(samples):
    ordered = sorted(samples)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)
    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "mean": round(statistics.mean(ordered) * 1000, 3)}


def measure(conn, path, headers, count):
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        samples.append(time.perf_counter() - started)
        if response.status != 200:
            raise SystemExit(f"{path}: HTTP {response.status}")
    return percentiles(samples), len(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    url = urllib.parse.urlparse(args.url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80)
    conn.request("POST", "/api/login", body=json.dumps({"name": "Renderer"}),
                 headers={"content-type": "application/json"})
    token = json.loads(conn.getresponse().read())["token"]
    cookie = {"cookie": f"pulse_token={token}"}
    result = {}
    for name, path, headers in [("anonymous", "/", {}), ("signed_in", "/", cookie), ("healthz", "/healthz", {})]:
        measure(conn, path, headers, args.warmup)
        stats, size = measure(conn, path, headers, args.requests)
        result[name] = {**stats, "bytes": size}
    result["requests"] = args.requests
    result["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
