#!/usr/bin/env bash
# Installs whatever is missing, builds Pulse in release mode and serves the
# dashboard at http://127.0.0.1:3000 with the embedded defaults. Extra
# arguments go to the server (e.g. `scripts/run.sh --addr 0.0.0.0:3000`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# --split: the note's editor (yrs) is a second wasm module, fetched when the
# note comes near (client/note/load.rs); the rehash gives pulse.js, the main
# wasm and the loader one name per content (scripts/rehash_bundle.mjs).
LEPTOS_HASH_FILES=true cargo leptos build --release --precompress --split
node scripts/rehash_bundle.mjs
exec ./target/release/pulse "$@"
