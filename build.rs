//! Computes Pulse's build id, `PULSE_BUILD_ID`: the kind of build (debug or
//! release) and a hash of the crate's sources. The server (`ssr`) and the wasm
//! bundle (`hydrate`) that cargo-leptos builds from the same tree get the same
//! id, so the server can tell at start whether `target/site` holds its own
//! bundle, and a page can tell that the server it talks to is a newer build.
//!
//! Also sets `cfg(pulse_split)` on a wasm build that cargo-leptos splits
//! (`--split`: it links with `--emit-relocs`), or with `PULSE_SPLIT` set
//! (to lint that path): the note's engine is then a split point
//! (`client/note/load.rs`). Any other build (`cargo leptos watch`, the CSR
//! build, the server) compiles it in: a split point that the splitter does
//! not process leaves an import the browser cannot resolve.

use std::path::{Path, PathBuf};

/// What the id covers: every Rust source and the manifest and lock file.
const INPUTS: [&str; 4] = ["src", "Cargo.toml", "Cargo.lock", "build.rs"];

fn main() {
    split();
    let mut files = Vec::new();
    for input in INPUTS {
        println!("cargo:rerun-if-changed={input}");
        collect(Path::new(input), &mut files);
    }
    files.sort();
    // FNV-1a, 64 bits: stable across toolchains, and no dependency.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for file in &files {
        let contents = std::fs::read(file).unwrap_or_default();
        feed(file.to_string_lossy().replace('\\', "/").as_bytes());
        feed(&(contents.len() as u64).to_le_bytes());
        feed(&contents);
    }
    // `release` for `--release` and profiles that inherit it (wasm-release),
    // `debug` otherwise: a debug bundle never matches a release server.
    let profile = match std::env::var("PROFILE").as_deref() {
        Ok("release") => "release",
        _ => "debug",
    };
    println!("cargo:rustc-env=PULSE_BUILD_ID=pulse-{profile}-{hash:016x}");
}

/// `path` if it is a file, or every file under it.
fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_file() {
        files.push(path.to_path_buf());
    } else if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            collect(&entry.path(), files);
        }
    }
}

/// `cfg(pulse_split)`, and the linker flag the splitter needs: without it
/// lld merges the data segments of the note's code (yrs' strings) with the
/// main module's, and the splitter then keeps them all in the main module
/// (cargo-leptos#679).
fn split() {
    println!("cargo:rustc-check-cfg=cfg(pulse_split)");
    println!("cargo:rerun-if-env-changed=PULSE_SPLIT");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32");
    let relocs =
        std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|flags| flags.contains("--emit-relocs"));
    if wasm && (relocs || std::env::var_os("PULSE_SPLIT").is_some()) {
        println!("cargo:rustc-cfg=pulse_split");
        println!("cargo:rustc-link-arg-cdylib=--no-merge-data-segments");
    }
}
