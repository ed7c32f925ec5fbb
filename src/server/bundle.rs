//! Owns the check at start that the site's wasm bundle was built from this
//! server's own build: a bundle of other sources (or a debug bundle under a
//! release server, left by `cargo leptos watch`) fails to hydrate, and the
//! page would sit on "Offline · connecting…" with nothing saying why.
//!
//! The bundle carries its build id (`crate::build_id`) as plain bytes; the
//! server looks for its own. No bundle at all (API-only use, tests) is fine.

use std::path::{Path, PathBuf};

use crate::build_id::{BUILD_ID, PREFIXES};

/// Why the site's bundle is not this server's.
#[derive(Debug)]
pub struct StaleBundle {
    pub path: PathBuf,
    /// The build id found in the bundle, if any.
    pub found: Option<String>,
    /// A chunk (the note's split wasm module) that the split manifest
    /// beside the bundle names and that is not there: `path` is the manifest.
    pub missing_chunk: Option<PathBuf>,
}

impl std::fmt::Display for StaleBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.missing_chunk {
            Some(chunk) => write!(
                f,
                "the site bundle is incomplete: {manifest} names {chunk}, which is missing, so the \
                 note could never be edited. Rebuild the site with {fix}",
                manifest = self.path.display(),
                chunk = chunk.display(),
                fix = fix_command(),
            )?,
            None => write!(
                f,
                "the site bundle {path} is not this server's build: it was built {found} and this \
                 server is {BUILD_ID}, so its pages would fail to start in the browser. Rebuild \
                 the site with {fix}",
                path = self.path.display(),
                found = describe(self.found.as_deref()),
                fix = fix_command(),
            )?,
        }
        write!(
            f,
            ", or start with --allow-stale-bundle (PULSE_ALLOW_STALE_BUNDLE=1) to serve it anyway"
        )
    }
}

impl std::error::Error for StaleBundle {}

/// Checks the bundle at `wasm` (the file the page links): `Ok` when it is
/// this build's or the site has no bundle at all. When that file is missing
/// but its folder holds others (a hashed release bundle under a binary
/// without `hash.txt` beside it), one of them must be this build's. On a
/// split build every chunk the manifests beside it name must be there too.
pub fn check(wasm: &Path) -> Result<(), StaleBundle> {
    let candidates = if wasm.is_file() {
        vec![wasm.to_path_buf()]
    } else {
        others_beside(wasm)
    };
    let mut stale = None;
    for path in candidates {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if build_ids(&bytes).any(|id| id == BUILD_ID) {
            return check_chunks(&path);
        }
        let found = build_ids(&bytes).next().map(str::to_owned);
        stale.get_or_insert(StaleBundle {
            path,
            found,
            missing_chunk: None,
        });
    }
    stale.map_or(Ok(()), Err)
}

/// Every chunk named by a split manifest (`__wasm_split_manifest*.json`:
/// `{"module": ["chunk stem", ...]}`) beside `wasm` exists.
fn check_chunks(wasm: &Path) -> Result<(), StaleBundle> {
    let Some(Ok(entries)) = wasm.parent().map(std::fs::read_dir) else {
        return Ok(());
    };
    for manifest in entries.flatten().map(|entry| entry.path()) {
        let is_manifest = manifest
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|name| {
                name.starts_with("__wasm_split_manifest") && name.ends_with(".json")
            });
        let Some(text) = is_manifest
            .then(|| std::fs::read_to_string(&manifest).ok())
            .flatten()
        else {
            continue;
        };
        let modules: std::collections::HashMap<String, Vec<String>> =
            serde_json::from_str(&text).unwrap_or_default();
        for stem in modules.values().flatten() {
            let chunk = manifest.with_file_name(format!("{stem}.wasm"));
            if !chunk.is_file() {
                return Err(StaleBundle {
                    path: manifest,
                    found: None,
                    missing_chunk: Some(chunk),
                });
            }
        }
    }
    Ok(())
}

/// The `.wasm` files in the folder of `wasm`, by name.
fn others_beside(wasm: &Path) -> Vec<PathBuf> {
    let Some(Ok(entries)) = wasm.parent().map(std::fs::read_dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    found.sort();
    found
}

/// Every build id in `bytes`: a known prefix and 16 hex digits.
fn build_ids(bytes: &[u8]) -> impl Iterator<Item = &str> {
    (0..bytes.len()).filter_map(move |at| {
        let rest = &bytes[at..];
        let prefix = PREFIXES.iter().find(|p| rest.starts_with(p.as_bytes()))?;
        let end = prefix.len() + 16;
        let id = rest.get(..end)?;
        id[prefix.len()..]
            .iter()
            .all(u8::is_ascii_hexdigit)
            .then(|| std::str::from_utf8(id).ok())
            .flatten()
    })
}

/// How the error names what the bundle is.
fn describe(found: Option<&str>) -> String {
    let kind = |id: &str| {
        if id.starts_with(PREFIXES[0]) {
            "release"
        } else {
            "debug"
        }
    };
    match found {
        Some(id) if kind(id) != kind(BUILD_ID) => format!("as a {} build ({id})", kind(id)),
        Some(id) => format!("from other sources ({id})"),
        None => "by another version of Pulse (it has no build id)".to_owned(),
    }
}

/// The command that builds the bundle this server needs.
fn fix_command() -> &'static str {
    if BUILD_ID.starts_with(PREFIXES[0]) {
        "`cargo leptos build --release`"
    } else {
        "`cargo leptos watch` or `cargo leptos build`"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of its own holding one bundle file, removed on drop.
    struct Bundle(PathBuf);
    impl Drop for Bundle {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn bundle(contents: &[u8]) -> (Bundle, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("pulse-bundle-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pulse.0123abc.wasm");
        std::fs::write(&path, contents).unwrap();
        (Bundle(dir), path)
    }

    #[test]
    fn a_bundle_with_this_build_id_passes() {
        let (_dir, path) = bundle(format!("\0asm..data{BUILD_ID}more").as_bytes());
        check(&path).unwrap();
    }

    #[test]
    fn no_bundle_passes() {
        check(Path::new("/nonexistent/pkg/pulse.wasm")).unwrap();
    }

    #[test]
    fn a_bundle_of_another_build_is_named_with_the_fix() {
        // This build's sources, built as the other kind (debug for release).
        let hash = &BUILD_ID[BUILD_ID.len() - 16..];
        let (kind, other) = if BUILD_ID.starts_with(PREFIXES[0]) {
            ("debug", format!("{}{hash}", PREFIXES[1]))
        } else {
            ("release", format!("{}{hash}", PREFIXES[0]))
        };
        let (_dir, path) = bundle(format!("\0asm..{other}..").as_bytes());
        let err = check(&path).unwrap_err();
        assert_eq!(err.found.as_deref(), Some(other.as_str()));
        let message = err.to_string();
        assert!(message.contains(&format!("as a {kind} build")), "{message}");
        assert!(message.contains("cargo leptos"), "{message}");
        assert!(message.contains("--allow-stale-bundle"), "{message}");
    }

    #[test]
    fn a_bundle_without_a_build_id_is_refused() {
        let (_dir, path) = bundle(b"\0asm an old bundle, pulse-release-xyz");
        let err = check(&path).unwrap_err();
        assert_eq!(err.found, None);
        assert!(err.to_string().contains("no build id"), "{err}");
    }

    #[test]
    fn a_missing_bundle_beside_one_of_another_build_is_refused() {
        let (_dir, other) = bundle(b"\0asm..pulse-release-00000000000000ff..");
        let linked = other.with_file_name("pulse.wasm");
        let err = check(&linked).unwrap_err();
        assert_eq!(err.found.as_deref(), Some("pulse-release-00000000000000ff"));
    }

    #[test]
    fn a_split_bundle_needs_every_chunk_its_manifest_names() {
        let (_dir, path) = bundle(format!("\0asm..data{BUILD_ID}more").as_bytes());
        let manifest = path.with_file_name("__wasm_split_manifest.0123abc.json");
        std::fs::write(&manifest, r#"{"pulse_note":["split_pulse_note.4567def"]}"#).unwrap();
        let err = check(&path).unwrap_err();
        let chunk = path.with_file_name("split_pulse_note.4567def.wasm");
        assert_eq!(err.missing_chunk.as_deref(), Some(chunk.as_path()));
        assert!(err.to_string().contains("is missing"), "{err}");
        std::fs::write(&chunk, b"\0asm").unwrap();
        check(&path).unwrap();
    }

    #[test]
    fn ids_are_a_prefix_and_sixteen_hex_digits() {
        let bytes = b"pulse-release-0123456789abcdeX pulse-release-00000000000000ff!";
        let ids: Vec<_> = build_ids(bytes).collect();
        assert_eq!(ids, ["pulse-release-00000000000000ff"]);
    }
}
