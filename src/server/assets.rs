//! Owns the site's static files: the wasm bundle, its JS glue and the CSS
//! under `/pkg/`, and `public/` (the favicon), all in the site root.
//!
//! A file is sent in the best encoding the browser accepts of those written
//! beside it (`.br`, `.gz`: `cargo leptos build --release --precompress`),
//! with `Vary: Accept-Encoding`. A file whose name carries one of the content
//! hashes cargo-leptos listed in its hash file (`hash-files = true`:
//! `pulse.<hash>.wasm`) never changes, so it is cached for a year as
//! `immutable`: a second visit asks for none of them. Any other file is
//! `no-cache`: the browser asks again and gets a `304` while it is unchanged.
//! A request that is no file is handed back for the app's "not found" page.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use leptos::config::LeptosOptions;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tower_http::services::ServeDir;

/// `Cache-Control` of a file whose name has its content hash in it.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of any other file: keep it, but ask before using it.
pub const REVALIDATE: &str = "no-cache";

/// The static files and which of them are immutable.
#[derive(Clone, Debug)]
pub struct Assets {
    files: ServeDir,
    /// `/pkg/`: where the hashed bundle lives.
    pkg_prefix: String,
    /// The content hashes of this build (empty without hashed names).
    hashes: Vec<String>,
}

impl Assets {
    /// The files of `site_root`; names under `/{pkg_dir}/` that carry one of
    /// `hashes` are immutable.
    pub fn new(site_root: impl AsRef<Path>, pkg_dir: &str, hashes: Vec<String>) -> Self {
        let files = ServeDir::new(site_root.as_ref())
            .precompressed_br()
            .precompressed_gzip()
            .append_index_html_on_directories(false);
        Assets {
            files,
            pkg_prefix: format!("/{}/", pkg_dir.trim_matches('/')),
            hashes: hashes.into_iter().filter(|hash| !hash.is_empty()).collect(),
        }
    }

    /// The site Leptos was configured with, and the hashes of its hash file
    /// (when `options.hash_files`).
    pub fn for_site(options: &LeptosOptions) -> Self {
        let hashes = if options.hash_files {
            read_hash_file(options)
                .into_iter()
                .map(|(_, hash)| hash)
                .collect()
        } else {
            Vec::new()
        };
        Assets::new(
            options.site_root.as_ref(),
            options.site_pkg_dir.as_ref(),
            hashes,
        )
    }

    /// The file `request` names, with its caching headers; or the request
    /// back when there is no such file (or the method is not GET or HEAD).
    pub async fn serve(&self, request: Request<Body>) -> Result<Response<Body>, Request<Body>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Err(request);
        }
        // ServeDir takes the request; the original is kept for "not found".
        let mut probe = Request::new(Body::empty());
        *probe.method_mut() = request.method().clone();
        *probe.uri_mut() = request.uri().clone();
        *probe.version_mut() = request.version();
        *probe.headers_mut() = request.headers().clone();
        let response = match self.files.clone().try_call(probe).await {
            Ok(response) => response,
            Err(err) => {
                tracing::error!(%err, path = request.uri().path(), "reading a static file");
                let mut response = Response::new(Body::from("cannot read the file"));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return Ok(response);
            }
        };
        if response.status() == StatusCode::NOT_FOUND {
            return Err(request);
        }
        let mut response = response.map(Body::new);
        let cache = match response.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED => {
                if self.is_immutable(request.uri().path()) {
                    IMMUTABLE
                } else {
                    REVALIDATE
                }
            }
            // 412, 416, an I/O error: an answer to this request only.
            _ => "no-store",
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        Ok(response)
    }

    /// Whether `path` names a file of this build's hashed bundle.
    fn is_immutable(&self, path: &str) -> bool {
        let Some(name) = path.strip_prefix(&self.pkg_prefix) else {
            return false;
        };
        !name.contains('/')
            && name
                .split('.')
                .any(|part| self.hashes.iter().any(|hash| hash == part))
    }
}

/// Where cargo-leptos wrote the hash file: beside the server binary (where
/// Leptos itself reads it to name the bundle in the page).
pub fn hash_file(options: &LeptosOptions) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join(options.hash_file.as_ref()))
}

/// Whether the site holds the hashed bundle the hash file names: the page
/// may link hashed names only then. A hash file left by an earlier build
/// (the site since rebuilt without hashes) or `cargo leptos watch` (whose
/// rebuilds are never hashed) means plain names.
pub fn has_hashed_bundle(options: &LeptosOptions) -> bool {
    if std::env::var_os("LEPTOS_WATCH").is_some() {
        return false;
    }
    let entries = read_hash_file(options);
    let wasm = entries.iter().find(|(kind, _)| kind == "wasm");
    wasm.is_some_and(|(_, hash)| {
        Path::new(options.site_root.as_ref())
            .join(options.site_pkg_dir.as_ref())
            .join(format!("{}.{hash}.wasm", options.output_name))
            .is_file()
    })
}

/// The wasm bundle the page links: `pkg/pulse.<hash>.wasm` in a hashed
/// build (`options.hash_files`, set by [`has_hashed_bundle`]), else
/// `pkg/pulse.wasm`.
pub fn wasm_path(options: &LeptosOptions) -> PathBuf {
    let hash = options
        .hash_files
        .then(|| read_hash_file(options))
        .and_then(|entries| entries.into_iter().find(|(kind, _)| kind == "wasm"))
        .map(|(_, hash)| format!(".{hash}"))
        .unwrap_or_default();
    Path::new(options.site_root.as_ref())
        .join(options.site_pkg_dir.as_ref())
        .join(format!("{}{hash}.wasm", options.output_name))
}

/// The note module's loader on a split build (`pkg/__wasm_split.<hash>.js`,
/// from the hash file's `split` line), for the page to preload: pulse.js
/// imports it, and the browser would find it only after pulse.js arrived.
/// Read once per process, as Leptos reads the hash file for the bundle's
/// own names: the shell asks on every page rendered.
pub fn split_loader(options: &LeptosOptions) -> Option<String> {
    static LOADER: OnceLock<Option<String>> = OnceLock::new();
    LOADER
        .get_or_init(|| {
            if !options.hash_files {
                return None;
            }
            let (_, hash) = read_hash_file(options)
                .into_iter()
                .find(|(kind, _)| kind == "split")?;
            Some(format!("/{}/__wasm_split.{hash}.js", options.site_pkg_dir))
        })
        .clone()
}

/// The `(kind, hash)` pairs of the hash file beside the binary; none when
/// there is no such file.
fn read_hash_file(options: &LeptosOptions) -> Vec<(String, String)> {
    hash_file(options)
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| parse_hashes(&text))
        .unwrap_or_default()
}

/// The hash file's `kind: hash` lines (`js`, `wasm`, `css`, ...).
fn parse_hashes(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(kind, hash)| (kind.trim().to_owned(), hash.trim().to_owned()))
        .filter(|(_, hash)| !hash.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM: &[u8] = b"\0asm the bundle, uncompressed";
    const WASM_BR: &[u8] = b"brotli bytes";
    const WASM_GZ: &[u8] = b"gzip bytes";

    /// A site root like cargo-leptos writes: a hashed, precompressed bundle
    /// and a favicon without a hash or compressed twins.
    fn site() -> (PathBuf, Assets) {
        let root =
            std::env::temp_dir().join(format!("pulse-assets-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("pkg/pulse.abc123.wasm"), WASM).unwrap();
        std::fs::write(root.join("pkg/pulse.abc123.wasm.br"), WASM_BR).unwrap();
        std::fs::write(root.join("pkg/pulse.abc123.wasm.gz"), WASM_GZ).unwrap();
        std::fs::write(root.join("favicon.svg"), "<svg/>").unwrap();
        let hashes = parse_hashes("js: def456\nwasm: abc123\ncss: 789xyz\n")
            .into_iter()
            .map(|(_, hash)| hash)
            .collect();
        let assets = Assets::new(&root, "pkg", hashes);
        (root, assets)
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).unwrap()
    }

    async fn body(response: Response<Body>) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn the_best_encoding_the_browser_accepts_is_sent() {
        let (root, assets) = site();
        let path = "/pkg/pulse.abc123.wasm";
        let cases: [(&str, Option<&str>, &[u8]); 4] = [
            ("gzip, deflate, br, zstd", Some("br"), WASM_BR),
            ("gzip", Some("gzip"), WASM_GZ),
            ("identity", None, WASM),
            ("", None, WASM),
        ];
        for (accept, encoding, bytes) in cases {
            let response = assets
                .serve(get(path, &[("accept-encoding", accept)]))
                .await
                .expect("a file");
            assert_eq!(response.status(), StatusCode::OK, "{accept}");
            assert_eq!(header(&response, "content-encoding"), encoding, "{accept}");
            assert_eq!(header(&response, "content-type"), Some("application/wasm"));
            assert_eq!(header(&response, "vary"), Some("accept-encoding"));
            assert_eq!(body(response).await, bytes, "{accept}");
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn hashed_names_are_immutable_and_others_revalidate_with_a_304() {
        let (root, assets) = site();
        let wasm = assets
            .serve(get("/pkg/pulse.abc123.wasm", &[]))
            .await
            .unwrap();
        assert_eq!(header(&wasm, "cache-control"), Some(IMMUTABLE));

        let icon = assets.serve(get("/favicon.svg", &[])).await.unwrap();
        assert_eq!(header(&icon, "cache-control"), Some(REVALIDATE));
        let modified = header(&icon, "last-modified")
            .expect("a validator")
            .to_owned();
        let again = assets
            .serve(get("/favicon.svg", &[("if-modified-since", &modified)]))
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&again, "cache-control"), Some(REVALIDATE));
        assert!(body(again).await.is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn a_split_builds_loader_and_chunks_listed_in_the_hash_file_are_immutable() {
        let (root, _) = site();
        // What scripts/rehash_bundle.mjs writes for a split build.
        let text = "css: c\nmanifest: m1\njs: g1\nwasm: g1\nsplit: g1\nchunk: k1\n";
        let hashes = parse_hashes(text).into_iter().map(|(_, h)| h).collect();
        let assets = Assets::new(&root, "pkg", hashes);
        for name in [
            "__wasm_split.g1.js",
            "split_pulse_note.k1.wasm",
            "split_pulse_note.k2.wasm",
        ] {
            std::fs::write(root.join("pkg").join(name), WASM).unwrap();
        }
        for (path, cache) in [
            ("/pkg/__wasm_split.g1.js", IMMUTABLE),
            ("/pkg/split_pulse_note.k1.wasm", IMMUTABLE),
            ("/pkg/split_pulse_note.k2.wasm", REVALIDATE),
        ] {
            let response = assets.serve(get(path, &[])).await.unwrap();
            assert_eq!(header(&response, "cache-control"), Some(cache), "{path}");
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn a_name_without_this_builds_hash_is_not_immutable() {
        let (root, assets) = site();
        std::fs::write(root.join("pkg/pulse.oldhash.wasm"), WASM).unwrap();
        std::fs::write(root.join("abc123.txt"), "outside pkg").unwrap();
        for path in ["/pkg/pulse.oldhash.wasm", "/abc123.txt"] {
            let response = assets.serve(get(path, &[])).await.unwrap();
            assert_eq!(
                header(&response, "cache-control"),
                Some(REVALIDATE),
                "{path}"
            );
        }
        let unhashed = Assets::new(&root, "pkg", Vec::new());
        let response = unhashed
            .serve(get("/pkg/pulse.abc123.wasm", &[]))
            .await
            .unwrap();
        assert_eq!(header(&response, "cache-control"), Some(REVALIDATE));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn what_is_no_file_is_handed_back_untouched() {
        let (root, assets) = site();
        for (method, path) in [
            (Method::GET, "/"),
            (Method::GET, "/no/such/page"),
            (Method::GET, "/pkg"),
            (Method::GET, "/../Cargo.toml"),
            (Method::POST, "/favicon.svg"),
        ] {
            let request = Request::builder()
                .method(method.clone())
                .uri(path)
                .header("x-kept", "yes")
                .body(Body::empty())
                .unwrap();
            let back = assets.serve(request).await.expect_err(path);
            assert_eq!(back.method(), method);
            assert_eq!(back.uri().path(), path);
            assert_eq!(back.headers()["x-kept"], "yes");
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn only_a_file_is_cached_never_an_error_about_it() {
        let (root, assets) = site();
        let range = assets
            .serve(get("/pkg/pulse.abc123.wasm", &[("range", "bytes=9999-")]))
            .await
            .unwrap();
        assert_eq!(range.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&range, "cache-control"), Some("no-store"));
        let part = assets
            .serve(get("/pkg/pulse.abc123.wasm", &[("range", "bytes=0-3")]))
            .await
            .unwrap();
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(header(&part, "cache-control"), Some(IMMUTABLE));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_hash_file_lists_kind_and_hash_per_line() {
        let pairs = parse_hashes("js: a1\nwasm:b2\n\ncss: c3 \nnonsense\nempty:\n");
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, h)| (k.as_str(), h.as_str()))
            .collect();
        assert_eq!(pairs, [("js", "a1"), ("wasm", "b2"), ("css", "c3")]);
    }
}
