#!/usr/bin/env bash
# Installs whatever is missing, then runs every check and test Pulse has:
# formatting, clippy on both builds (server and wasm), the Rust unit and
# integration tests, the release build, and the Playwright tests in Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"

step() { printf '\n\033[1;34m[test]\033[0m %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy: server build (ssr) and the load generator (loadgen)"
cargo clippy --locked --features ssr,loadgen --all-targets -- -D warnings

step "clippy: browser build (wasm32, hydrate)"
cargo clippy --locked --lib --target wasm32-unknown-unknown --no-default-features --features hydrate -- -D warnings

step "clippy: browser build, split (cfg pulse_split)"
PULSE_SPLIT=1 cargo clippy --locked --lib --target wasm32-unknown-unknown --no-default-features --features hydrate -- -D warnings

step "the note's split module is pure Rust (leptos#4347)"
if grep -nE 'wasm_bindgen|web_sys|js_sys|leptos' src/client/note/replica.rs src/client/note/engine.rs; then
  echo "the note's engine must not call JavaScript (a split chunk cannot)"; exit 1
fi

step "Rust unit and integration tests"
cargo test --locked --features ssr,loadgen

step "release build (server + wasm bundle)"
# --split: the note's editor (yrs) is a second wasm module, fetched when the
# note comes near (client/note/load.rs); the rehash gives pulse.js, the main
# wasm and the loader one name per content (scripts/rehash_bundle.mjs).
LEPTOS_HASH_FILES=true cargo leptos build --release --precompress --split
node scripts/rehash_bundle.mjs

step "end-to-end tests (Playwright, Debian's Chromium)"
(cd end2end && npx playwright test)
