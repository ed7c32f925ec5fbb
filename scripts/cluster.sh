#!/usr/bin/env bash
# Installs whatever is missing, builds Pulse in release mode and runs two
# instances as one on this machine: the dashboard at http://127.0.0.1:3000
# and http://127.0.0.1:3001, sharing one PostgreSQL and one Redis that this
# script starts for them (data in data/cluster/, kept between runs; no
# system service is used). Ctrl-C stops everything.
#
# The same by hand, for servers of your own:
#   pulse --addr 0.0.0.0:3000 --database-url postgres://… --redis redis://… --jwt-secret S
#   pulse --addr 0.0.0.0:3001 --database-url postgres://… --redis redis://… --jwt-secret S
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# --split: the note's editor (yrs) is a second wasm module, fetched when the
# note comes near (client/note/load.rs); the rehash gives pulse.js, the main
# wasm and the loader one name per content (scripts/rehash_bundle.mjs).
LEPTOS_HASH_FILES=true cargo leptos build --release --precompress --split
node scripts/rehash_bundle.mjs

DIR="$PWD/data/cluster"
PG_PORT="${PULSE_CLUSTER_PG_PORT:-55432}"
REDIS_PORT="${PULSE_CLUSTER_REDIS_PORT:-56379}"
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
mkdir -p "$DIR"
log() { printf '\033[1;34m[cluster]\033[0m %s\n' "$*"; }

# PostgreSQL refuses to run as root: then it runs as the `postgres` user.
AS_PG=()
if [ "$(id -u)" -eq 0 ]; then AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups); fi
if [ ! -f "$DIR/pg/PG_VERSION" ]; then
  log "initdb $DIR/pg"
  mkdir -p "$DIR/pg"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$DIR/pg"; fi
  (cd "$DIR/pg" && "${AS_PG[@]}" "$BIN/initdb" -D "$DIR/pg" --auth=trust -U postgres -E UTF8 --locale=C >/dev/null)
fi
# The instances share one token secret, so a sign-in on one is good on both.
if [ ! -f "$DIR/jwt-secret" ]; then
  head -c 32 /dev/urandom | base64 | tr -d '\n=' >"$DIR/jwt-secret"
fi
SECRET="$(cat "$DIR/jwt-secret")"

PIDS=()
cleanup() {
  log "stopping"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

log "PostgreSQL on 127.0.0.1:$PG_PORT"
(cd "$DIR/pg" && exec "${AS_PG[@]}" "$BIN/postgres" -D "$DIR/pg" -p "$PG_PORT" -k "$DIR/pg" \
  -c listen_addresses=127.0.0.1 >"$DIR/postgres.log" 2>&1) &
PIDS+=($!)
for _ in $(seq 100); do
  "$BIN/pg_isready" -q -h "$DIR/pg" -p "$PG_PORT" && break
  sleep 0.1
done
"$BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tc \
  "SELECT 1 FROM pg_database WHERE datname = 'pulse'" | grep -q 1 ||
  "$BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE pulse"

log "Redis on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$DIR/redis.log" 2>&1 &
PIDS+=($!)
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done

for port in 3000 3001; do
  log "Pulse on http://127.0.0.1:$port"
  ./target/release/pulse --addr "127.0.0.1:$port" \
    --database-url "postgres://postgres@127.0.0.1:$PG_PORT/pulse" \
    --redis "redis://127.0.0.1:$REDIS_PORT" --jwt-secret "$SECRET" "$@" &
  PIDS+=($!)
done
log "the dashboard: http://127.0.0.1:3000 and http://127.0.0.1:3001 (Ctrl-C stops all)"
wait
