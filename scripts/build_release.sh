#!/usr/bin/env bash
# Builds the release server and the site bundle exactly as they ship:
# hashed file names, precompressed (.br, .gz), and the note's editor (yrs)
# split into a second wasm module that the page fetches when the note comes
# near (client/note/load.rs). The rehash then gives pulse.js, the main wasm
# and the split loader one name per content (scripts/rehash_bundle.mjs).
# A build without --split also works (the editor is then in the main module).
# Needs wasm-opt from npm's binaryen on PATH (tools/node_modules/.bin).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
LEPTOS_HASH_FILES=true cargo leptos build --release --precompress --split
node scripts/rehash_bundle.mjs
