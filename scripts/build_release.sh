#!/usr/bin/env bash
# Builds the release server and the site bundle exactly as they ship:
# hashed file names, precompressed (.br, .gz), and the note's editor (yrs)
# split into a second wasm module that the page fetches when the note comes
# near (client/note/load.rs). The rehash then gives pulse.js, the main wasm
# and the split loader one name per content (scripts/rehash_bundle.mjs).
# A build without --split also works (the editor is then in the main module).
# Needs wasm-opt from npm's binaryen on PATH (tools/node_modules/.bin).
# Arguments go to cargo-leptos (`--frontend-only`: the wasm bundle alone).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# The wasm's panic locations name their source files. Shorten the absolute
# prefix of this machine's crate registry, so the bundle carries
# `serde_json-1.0.154/src/ser.rs`, not `/root/.cargo/registry/src/index.crates.io-<h>/…`. The wasm target
# only (the server keeps its full paths); cargo-leptos puts these in front of
# its own `--split` flags. A RUSTFLAGS set by the caller wins over them (cargo's
# order), and a prefix with a space is left as it is (the variable is split on
# spaces). The standard library's `/rustc/<commit>/library/…` names come with
# its metadata and are not remapped this way.
remap=""
for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ "${CARGO_HOME:-$HOME/.cargo}/git/checkouts/"; do
  case "$dir" in *" "*) continue ;; esac
  [ -d "$dir" ] && remap+=" --remap-path-prefix=$dir="
done
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS:-}$remap"
LEPTOS_HASH_FILES=true cargo leptos build --release --precompress --split "$@"
node scripts/rehash_bundle.mjs
