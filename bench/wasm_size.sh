#!/usr/bin/env bash
# The wasm bundle's size budget: prints the release bundle's size raw and
# gzipped, then what it is made of, by crate and by item, with twiggy.
#
# Run after `LEPTOS_HASH_FILES=true cargo leptos build --release --precompress --split`
# and `node scripts/rehash_bundle.mjs` (scripts/run.sh). The names below are of
# the whole program (cargo's unsplit output); the note's module is listed apart. The shipped bundle has no names
# (wasm-opt drops them), so this makes a copy that keeps them: wasm-bindgen and
# wasm-opt -Oz run again, with the same flags cargo-leptos uses, on cargo's own
# output plus `-g`. Its code and data are the shipped bundle's within a few KB.
# Needs twiggy (`cargo install twiggy --version 0.8.0 --locked`) and wasm-opt
# from npm's binaryen (tools/node_modules/.bin, added here; a git worktree
# without its own tools/node_modules needs another checkout's on PATH).
#
#   bench/wasm_size.sh [TOP_ITEMS]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
top=${1:-30}
# The bundle's name carries its hash (hash-files); its .br and .gz are what is served.
shipped=$(ls target/site/pkg/pulse.*.wasm)
cargo_out=target/front/wasm32-unknown-unknown/wasm-release/pulse.wasm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf 'shipped %s: %s B raw; served %s B brotli, %s B gzip; gzip -9 %s B\n' "$shipped" \
  "$(wc -c <"$shipped")" "$(wc -c <"$shipped.br")" "$(wc -c <"$shipped.gz")" "$(gzip -9 -c "$shipped" | wc -c)"
# A split build (--split): the note's module, fetched later; it must import
# nothing from JavaScript (leptos#4347), only the main module's memory/table.
for chunk in target/site/pkg/split_*.wasm; do
  [ -e "$chunk" ] || continue
  printf 'chunk   %s: %s B raw; served %s B brotli, %s B gzip\n' "$chunk" \
    "$(wc -c <"$chunk")" "$(wc -c <"$chunk.br")" "$(wc -c <"$chunk.gz")"
  if wasm-dis "$chunk" | grep -E '^ *\(import ' | grep -qE '__wbg_|__wbindgen_'; then
    echo "FAIL: $chunk imports wasm-bindgen glue" >&2
    exit 1
  fi
done

wasm-bindgen --target web --keep-debug --out-dir "$work" --out-name pulse "$cargo_out"
wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int -g \
  "$work/pulse_bg.wasm" -o "$work/named.wasm"
twiggy top --format csv "$work/named.wasm" >"$work/top.csv"

echo
echo "by crate (the first path segment of each item's name; names and debug sections left out):"
python3 - "$work/top.csv" <<'EOF'
import collections, csv, re, sys
by, total = collections.Counter(), 0
for row in csv.DictReader(open(sys.argv[1])):
    name, size = row["Name"], int(row["ShallowSize"])
    if name.startswith('"') or name.startswith("custom section"):
        continue  # the names subsection, DWARF: not in the shipped bundle
    total += size
    if name.startswith("data segment"):
        by["(data: strings, tables)"] += size
        continue
    m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[[0-9a-f]+\])?::", name)
    crate = m.group(1) if m else "(unnamed)"
    by["core/alloc/std" if crate in ("core", "alloc", "std") else crate] += size
for crate, size in by.most_common(20):
    print(f"{size:>9} {100 * size / total:5.1f}%  {crate}")
print(f"{total:>9} total")
print()
for needle in ("hydrate_async", "Deserialize", "serde::private::de::content"):
    rows = csv.DictReader(open(sys.argv[1]))
    print(f"{sum(int(r['ShallowSize']) for r in rows if needle in r['Name']):>9} in items naming {needle}")
EOF
echo
twiggy top -n "$top" "$work/named.wasm" | cut -c1-160
