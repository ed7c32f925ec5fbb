#!/usr/bin/env bash
# Installs whatever is missing, builds Pulse in release mode and serves the
# dashboard at http://127.0.0.1:3000 with the embedded defaults. Extra
# arguments go to the server (e.g. `scripts/run.sh --addr 0.0.0.0:3000`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
./scripts/build_release.sh   # the shipped bundle: hashed, precompressed, the note split off
exec ./target/release/pulse "$@"
