//! Which build of Pulse this is (`build.rs` computes it): the server sends it
//! as `welcome.build`, and a page built from other sources tells its user
//! that a new version is out. The server also looks for it in the wasm
//! bundle it serves (`server/bundle.rs`).

/// This build's id: `pulse-<debug|release>-<16 hex digits>`, the same in the
/// server and in the wasm bundle built from the same sources.
pub const BUILD_ID: &str = env!("PULSE_BUILD_ID");

/// The start every build id has in the bytes of a bundle.
pub const PREFIXES: [&str; 2] = ["pulse-release-", "pulse-debug-"];

/// Whether a server that says it is `server_build` is another build than
/// this one. An empty id (a server older than build ids) says nothing.
pub fn is_other_build(server_build: &str) -> bool {
    // black_box: the id's bytes stay in the wasm bundle, whole, for the
    // server's check at start (no optimizer folds the comparison away).
    !server_build.is_empty() && server_build != std::hint::black_box(BUILD_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_names_the_kind_of_build_and_a_hash() {
        let prefix = PREFIXES
            .iter()
            .find(|prefix| BUILD_ID.starts_with(*prefix))
            .expect("a known prefix");
        let hash = &BUILD_ID[prefix.len()..];
        assert_eq!(hash.len(), 16, "{BUILD_ID}");
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{BUILD_ID}");
    }

    #[test]
    fn only_another_id_is_another_build() {
        assert!(!is_other_build(BUILD_ID));
        assert!(!is_other_build(""), "a server without build ids");
        assert!(is_other_build("pulse-release-0000000000000000"));
        assert!(is_other_build("0.1.0"));
    }
}
