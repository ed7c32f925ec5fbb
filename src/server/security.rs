//! Owns the security headers: the pages' Content-Security-Policy, built
//! around the nonce Leptos renders into its inline scripts (and, since the
//! nonce makes each render unique, the pages' `Cache-Control`), and the headers
//! every response carries (`X-Content-Type-Options`, `Referrer-Policy`).

use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use leptos::prelude::use_context;
use leptos_axum::ResponseOptions;

/// What every response says, page or not: never guess a content type, and
/// tell other sites nothing about where their visitors came from.
pub async fn common_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// `Cache-Control` of a page: its HTML has this render's nonce and the
/// visitor's own state, so a browser asks again every time and no shared cache
/// keeps it.
pub const PAGE_CACHE: &str = "private, no-cache";

/// A context function for page renders: adds the page's CSP to the response,
/// with the nonce of this render, and [`PAGE_CACHE`]. `reload_port` is the port of
/// `cargo leptos watch`'s reload socket while it runs us (`LEPTOS_WATCH`).
///
/// Renders without a nonce or response options (a static file served by the
/// fallback) are left alone.
pub fn page_headers(reload_port: Option<u32>) -> impl Fn() + Clone + Send + 'static {
    move || {
        let (Some(nonce), Some(response)) =
            (leptos::nonce::use_nonce(), use_context::<ResponseOptions>())
        else {
            return;
        };
        let request = use_context::<Parts>();
        let host = request
            .as_ref()
            .and_then(|parts| parts.headers.get(header::HOST))
            .and_then(|value| value.to_str().ok());
        // A page is this visitor's, rendered now: never from a cache unasked.
        response.insert_header(header::CACHE_CONTROL, HeaderValue::from_static(PAGE_CACHE));
        let policy = content_security_policy(&nonce, host, reload_port);
        match HeaderValue::from_str(&policy) {
            Ok(value) => response.insert_header(header::CONTENT_SECURITY_POLICY, value),
            Err(err) => tracing::error!(%err, "cannot send the Content-Security-Policy"),
        }
    }
}

/// The page's policy: scripts only from this site or carrying this render's
/// `nonce` (Leptos' inline hydration scripts), wasm compilation for the
/// bundle, styles and everything else from this site, the socket on this
/// host, and no framing, plugins or `<base>`.
///
/// `'self'` should cover `ws:`/`wss:` on the same host (CSP 3), but not every
/// browser agrees, so the socket's origins are named from the `Host` header
/// when it is a plain host name (anything else is left out, so no header can
/// smuggle a directive in).
pub fn content_security_policy(
    nonce: &str,
    host: Option<&str>,
    reload_port: Option<u32>,
) -> String {
    let mut connect = String::from("'self'");
    if let Some(host) = host.filter(|host| is_plain_host(host)) {
        connect.push_str(&format!(" ws://{host} wss://{host}"));
        if let Some(port) = reload_port {
            let name = host_name(host);
            connect.push_str(&format!(" ws://{name}:{port} wss://{name}:{port}"));
        }
    }
    format!(
        "default-src 'self'; \
         script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; \
         connect-src {connect}; \
         object-src 'none'; \
         base-uri 'none'; \
         frame-ancestors 'none'; \
         form-action 'self'"
    )
}

/// A `Host` header value made only of what a host name, an IP address
/// (IPv6 in brackets) and a port use.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// The host without its port: `example.com:3000` → `example.com`,
/// `[::1]:3000` → `[::1]`.
fn host_name(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_nonce_and_the_socket_origins() {
        let policy = content_security_policy("abc", Some("example.com:3000"), None);
        assert_eq!(
            policy,
            "default-src 'self'; script-src 'self' 'nonce-abc' 'wasm-unsafe-eval'; \
             style-src 'self'; connect-src 'self' ws://example.com:3000 wss://example.com:3000; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        );
    }

    #[test]
    fn a_host_that_is_not_plain_adds_nothing() {
        for host in [
            None,
            Some(""),
            Some("a.test; script-src *"),
            Some("a'b"),
            Some("a b"),
        ] {
            let policy = content_security_policy("n", host, Some(3001));
            assert!(
                policy.contains("connect-src 'self'; "),
                "{host:?}: {policy}"
            );
        }
    }

    #[test]
    fn the_reload_socket_is_allowed_only_while_watching() {
        let policy = content_security_policy("n", Some("[::1]:3000"), Some(3001));
        assert!(
            policy.contains("ws://[::1]:3000 wss://[::1]:3000 ws://[::1]:3001 wss://[::1]:3001;")
        );
        let policy = content_security_policy("n", Some("localhost"), Some(3001));
        assert!(policy.contains("ws://localhost wss://localhost ws://localhost:3001"));
    }
}
