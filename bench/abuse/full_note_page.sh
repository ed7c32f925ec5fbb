#!/usr/bin/env bash
# What a page costs with a full shared note (issue 21, point 9): starts the
# release build in REPO (its target/release/pulse, serving its target/site) on
# PORT with an empty database, fills `doc:notes` to its 1 MiB limit through the
# protocol (bench/abuse/fill_note.mjs of THIS checkout), then prints
#   - the bytes of `GET /` anonymous and signed in (curl),
#   - the server's CPU time per anonymous `GET /` with the note empty and
#     full (utime+stime of the process from /proc over REQUESTS sequential
#     requests, divided by REQUESTS; it includes the simulator's ticks meanwhile,
#     which the empty-note figure shows),
#   - scripts/ssr_latency.py's latency percentiles (anonymous, signed in,
#     /healthz) from THIS checkout.
#
#   bench/abuse/full_note_page.sh /work/main 3991 200
#   bench/abuse/full_note_page.sh /work/wt/page 3992 200
set -euo pipefail
repo=${1:?repository with target/release/pulse and target/site}
port=${2:-3990}
requests=${3:-200}
here=$(cd "$(dirname "$0")/../.." && pwd)
url="http://127.0.0.1:$port"
data=$(mktemp -d)

(cd "$repo" && exec target/release/pulse --addr "127.0.0.1:$port" --db "$data/pulse.db" \
  --jwt-secret full-note-bench-secret-0123456789 >"$data/server.log" 2>&1) &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done

# CPU time of the server process (the subshell exec'd it) per anonymous GET /.
cpu_per_get() {
  local hz before after
  hz=$(getconf CLK_TCK)
  before=$(awk '{print $14 + $15}' "/proc/$server/stat")
  for _ in $(seq "$requests"); do curl -s -o /dev/null "$url/"; done
  after=$(awk '{print $14 + $15}' "/proc/$server/stat")
  python3 -c "print(f'{($after - $before) * 1000 / $hz / $requests:.2f} ms over $requests requests')"
}

echo "binary: $repo/target/release/pulse"
echo "empty note: anonymous GET / = $(curl -s -o /dev/null -w '%{size_download}' "$url/") bytes"
echo "empty note: server CPU per anonymous GET / = $(cpu_per_get)"
(cd "$here" && node --experimental-websocket bench/abuse/fill_note.mjs --url "$url")

token=$(curl -s -H 'content-type: application/json' -d '{"name":"Measurer"}' "$url/api/login" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "full note: anonymous GET / = $(curl -s -o /dev/null -w '%{size_download}' "$url/") bytes"
echo "full note: signed-in GET / = $(curl -s -o /dev/null -w '%{size_download}' -b "pulse_token=$token" "$url/") bytes"

echo "full note: server CPU per anonymous GET / = $(cpu_per_get)"

"$here/scripts/ssr_latency.py" --url "$url" --requests "$requests" --warmup 20
