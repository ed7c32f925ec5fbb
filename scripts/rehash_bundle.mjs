#!/usr/bin/env node
// Renames a split release bundle's entry files by the content of the whole
// group, so that a name never stands for two contents.
//
// Why: cargo-leptos 0.3.10 (compile/hash.rs) names pulse.js and the main wasm
// by their bytes *before* it writes the loader's hashed name into them
// (pulse.js imports `./__wasm_split.<h>.js`, which imports `./pulse.<h>.js`
// back and names the chunks; the main wasm imports the loader by name). A
// change in the note's module alone changes the loader's name and so the
// contents of pulse.js and the main wasm, but not their names. Served as
// immutable, a returning visitor's cached pulse.js would then import a
// loader that no longer exists, and the page would never hydrate.
//
// What: G = md5 (base64url, 22 characters, like cargo-leptos' own hashes) of
// every file of the group (pulse.js, the main wasm, the loader, the manifest
// and every chunk). pulse.js, the main wasm and the loader are renamed to
// carry G; their references to each other are rewritten (the names keep
// their length, so the wasm's bytes are patched in place); their .br/.gz are
// made again; hash.txt says G for `js`, `wasm` and `split`, and lists every
// chunk's hash as `chunk` (the server then serves chunks immutable too). Each
// chunk's name must already be its own bytes' hash: checked, never assumed.
//
//   node scripts/rehash_bundle.mjs [SITE_PKG_DIR] [HASH_FILE]
// (defaults: target/site/pkg and target/release/hash.txt). A build that is
// not split, or already rehashed, is left as it is.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

const pkg = process.argv[2] ?? "target/site/pkg";
const hashFile = process.argv[3] ?? "target/release/hash.txt";

const md5 = (bytes) => createHash("md5").update(bytes).digest("base64url");
const fail = (message) => {
  console.error(`rehash_bundle: ${message}`);
  process.exit(1);
};

const lines = readFileSync(hashFile, "utf8")
  .split("\n")
  .map((line) => line.trim())
  .filter(Boolean)
  .map((line) => line.split(":").map((part) => part.trim()));
const hashes = Object.fromEntries(lines.filter(([kind]) => kind !== "chunk"));
if (!hashes.split) {
  console.log("rehash_bundle: not a split build, nothing to do");
  process.exit(0);
}
if (hashes.js === hashes.wasm && hashes.wasm === hashes.split) {
  console.log(`rehash_bundle: already rehashed (${hashes.js})`);
  process.exit(0);
}

const file = (name) => path.join(pkg, name);
const entry = {
  js: `pulse.${hashes.js}.js`,
  wasm: `pulse.${hashes.wasm}.wasm`,
  split: `__wasm_split.${hashes.split}.js`,
};
const manifestName = `__wasm_split_manifest.${hashes.manifest}.json`;
const manifest = JSON.parse(readFileSync(file(manifestName), "utf8"));
const chunks = [...new Set(Object.values(manifest).flat())].sort().map((stem) => `${stem}.wasm`);

const chunkHashes = [];
for (const chunk of chunks) {
  const bytes = readFileSync(file(chunk));
  const named = chunk.split(".").at(-2);
  if (md5(bytes) !== named) {
    fail(`${chunk} is not named by its content (${md5(bytes)}): cargo-leptos changed?`);
  }
  chunkHashes.push(named);
}
for (const chunk of chunks) {
  const bytes = readFileSync(file(chunk));
  for (const name of Object.values(entry)) {
    if (bytes.includes(Buffer.from(name))) fail(`${chunk} names ${name}: it would change`);
  }
}

const group = hash([...Object.values(entry), manifestName, ...chunks].map((name) => readFileSync(file(name))));
function hash(contents) {
  const all = createHash("md5");
  for (const bytes of contents) {
    all.update(String(bytes.length));
    all.update(bytes);
  }
  return all.digest("base64url");
}
if (group.length !== hashes.js.length) fail(`hash length ${group.length} != ${hashes.js.length}`);

const renamed = {
  js: `pulse.${group}.js`,
  wasm: `pulse.${group}.wasm`,
  split: `__wasm_split.${group}.js`,
};
const precompressed = existsSync(file(`${entry.wasm}.br`));
for (const kind of Object.keys(entry)) {
  let bytes = readFileSync(file(entry[kind]));
  for (const other of Object.keys(entry)) {
    bytes = replaceAll(bytes, Buffer.from(entry[other]), Buffer.from(renamed[other]));
  }
  writeFileSync(file(renamed[kind]), bytes);
  for (const old of [entry[kind], `${entry[kind]}.br`, `${entry[kind]}.gz`]) rmSync(file(old), { force: true });
  if (precompressed) {
    const brotli = zlib.brotliCompressSync(bytes, {
      params: {
        [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
        [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
      },
    });
    writeFileSync(file(`${renamed[kind]}.br`), brotli);
    writeFileSync(file(`${renamed[kind]}.gz`), zlib.gzipSync(bytes, { level: 9 }));
  }
}

/** `bytes` with every `from` replaced by `to` (same length). */
function replaceAll(bytes, from, to) {
  if (from.length !== to.length) fail("a name changed length");
  const out = Buffer.from(bytes);
  for (let at = out.indexOf(from); at !== -1; at = out.indexOf(from, at + from.length)) {
    to.copy(out, at);
  }
  return out;
}

const kept = lines.filter(([kind]) => !["js", "wasm", "split", "chunk"].includes(kind));
const text = [
  ...kept.map(([kind, value]) => `${kind}: ${value}`),
  `js: ${group}`,
  `wasm: ${group}`,
  `split: ${group}`,
  ...chunkHashes.map((chunk) => `chunk: ${chunk}`),
].join("\n");
writeFileSync(hashFile, `${text}\n`);
console.log(`rehash_bundle: ${Object.values(entry).join(", ")} -> ${group}; chunks ${chunkHashes.join(", ")}`);
