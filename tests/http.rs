//! The HTTP side against a real server: the server-rendered page, health,
//! metrics, unknown paths, the security and caching headers, who may read presence, and
//! the API's body limit.

mod common;

use common::{http_get, http_post, http_response, Client, HttpResponse, TestServer};
use serde_json::{json, Value};

/// `/` is rendered on the server with the connection status in it and the
/// scripts that hydrate it.
#[tokio::test]
async fn the_dashboard_is_rendered_on_the_server() {
    let server = TestServer::start(&[]).await;
    let (status, body) = http_get(server.addr, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"role="status""#), "{body}");
    assert!(body.contains(r#"aria-label="Connection""#));
    assert!(body.contains("Offline"));
    assert!(body.contains("/pkg/pulse.js"), "hydration script is linked");
    assert!(body.contains("/pkg/pulse.css"), "stylesheet is linked");
}

/// `/healthz` answers `200 ok`.
#[tokio::test]
async fn healthz_says_ok() {
    let server = TestServer::start(&[]).await;
    assert_eq!(
        http_get(server.addr, "/healthz").await,
        (200, "ok".to_owned())
    );
}

/// `/metrics` is Prometheus text and counts connections and messages.
#[tokio::test]
async fn metrics_count_connections_and_messages() {
    let server = TestServer::start(&[]).await;
    let mut client = Client::connected(&server).await;
    client.send(r#"{"type":"ping","data":{}}"#).await;
    client.recv().await;
    let (status, body) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE pulse_connections_open gauge"));
    assert!(body.contains("pulse_connections_open 1"), "{body}");
    assert!(body.contains("pulse_messages_in_total 2"), "{body}");
    assert!(body.contains("pulse_messages_out_total 2"), "{body}");
}

/// An unknown path is a 404 page, not a crash or an empty answer.
#[tokio::test]
async fn unknown_paths_are_404() {
    let server = TestServer::start(&[]).await;
    let (status, body) = http_get(server.addr, "/no/such/page").await;
    assert_eq!(status, 404);
    assert!(body.contains("Page not found"));
}

/// A secret and an admin key long enough for the server to accept them.
const SECRET: &str = "http-test-secret-of-at-least-32-bytes";
const ADMIN_KEY: &str = "http-test-admin-key";

async fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_response(server.addr, "GET", path, headers, "").await
}

/// The nonce of `script-src 'nonce-…'` in a CSP.
fn csp_nonce(policy: &str) -> &str {
    let start = policy.find("'nonce-").expect("a nonce in the CSP") + "'nonce-".len();
    let end = start + policy[start..].find('\'').unwrap();
    &policy[start..end]
}

/// The page's CSP allows only the site's own scripts plus those carrying this
/// response's nonce, which every inline script of the page carries; the
/// nonce is new for every response; the socket's origin is named; nothing
/// may frame the page.
#[tokio::test]
async fn pages_carry_a_csp_whose_nonce_is_on_every_script() {
    let server = TestServer::start(&["--tick-rate", "0"]).await;
    let first = get(&server, "/", &[]).await;
    assert_eq!(first.status, 200);
    let policy = first
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("no CSP on /: {:?}", first.headers));
    let nonce = csp_nonce(policy);
    assert!(nonce.len() >= 16, "{policy}");
    let host = server.addr.to_string();
    for directive in [
        "default-src 'self'".to_owned(),
        format!("script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'"),
        "style-src 'self'".to_owned(),
        format!("connect-src 'self' ws://{host} wss://{host}"),
        "frame-ancestors 'none'".to_owned(),
        "base-uri 'none'".to_owned(),
        "object-src 'none'".to_owned(),
    ] {
        assert!(policy.contains(&directive), "{directive} missing: {policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let scripts: Vec<&str> = first.body.split("<script").skip(1).collect();
    assert!(!scripts.is_empty(), "the page has its hydration script");
    for script in scripts {
        let tag = &script[..script.find('>').unwrap()];
        assert!(
            tag.contains(&format!("nonce=\"{nonce}\"")),
            "a script without this response's nonce: <script{tag}>"
        );
    }

    let second = get(&server, "/", &[]).await;
    let other = csp_nonce(second.header("content-security-policy").unwrap());
    assert_ne!(nonce, other, "every response has a nonce of its own");
    assert!(second.body.contains(&format!("nonce=\"{other}\"")));

    let missing = get(&server, "/no/such/page", &[]).await;
    assert_eq!(missing.status, 404);
    let policy = missing
        .header("content-security-policy")
        .expect("CSP on 404");
    assert!(missing
        .body
        .contains(&format!("nonce=\"{}\"", csp_nonce(policy))));
}

/// Every response, page or API, says `nosniff` and `same-origin`.
#[tokio::test]
async fn every_response_has_nosniff_and_a_same_origin_referrer_policy() {
    let server = TestServer::start(&["--tick-rate", "0"]).await;
    for path in ["/", "/healthz", "/api/presence", "/no/such/page"] {
        let response = get(&server, path, &[]).await;
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            response.header("referrer-policy"),
            Some("same-origin"),
            "{path}"
        );
    }
}

/// A page (the dashboard, "not found") is this visitor's and carries this
/// render's nonce: a browser must ask again every time, and no shared cache
/// may keep it. (The bundle's caching is tested in `server/assets.rs` and by
/// Playwright against the release build.)
#[tokio::test]
async fn pages_are_never_taken_from_a_cache_unasked() {
    let server = TestServer::start(&["--tick-rate", "0"]).await;
    for path in ["/", "/no/such/page"] {
        let response = get(&server, path, &[]).await;
        assert_eq!(
            response.header("cache-control"),
            Some("private, no-cache"),
            "{path}"
        );
    }
}

/// `GET /api/presence` answers 401 with `WWW-Authenticate: Bearer` without a
/// credential or with a bad one, and 200 for a user's token or the admin key.
#[tokio::test]
async fn presence_needs_a_user_token_or_the_admin_key() {
    let server = TestServer::start(&[
        "--tick-rate",
        "0",
        "--jwt-secret",
        SECRET,
        "--admin-key",
        ADMIN_KEY,
    ])
    .await;
    for bearer in [None, Some("not-a-token"), Some("http-test-admin-keY")] {
        let auth = bearer.map(|credential| format!("Bearer {credential}"));
        let headers: Vec<(&str, &str)> = auth
            .iter()
            .map(|auth| ("Authorization", auth.as_str()))
            .collect();
        let response = get(&server, "/api/presence", &headers).await;
        assert_eq!(response.status, 401, "{bearer:?}: {}", response.body);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        let body: Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }

    let (status, login) = http_post(server.addr, "/api/login", None, r#"{"name":"Ada"}"#).await;
    assert_eq!(status, 200, "{login}");
    let token = login["token"].as_str().unwrap();
    for credential in [token, ADMIN_KEY] {
        let auth = format!("Bearer {credential}");
        let response = get(&server, "/api/presence", &[("Authorization", &auth)]).await;
        assert_eq!(response.status, 200, "{}", response.body);
        let body: Value = serde_json::from_str(&response.body).unwrap();
        assert!(body["users"].is_array(), "{body}");
    }
}

/// An API body of exactly 16 KiB is read; one byte more is answered 413
/// `too_large`, whether its length is declared or it comes in chunks.
#[tokio::test]
async fn an_api_body_over_16_kib_is_too_large() {
    let server = TestServer::start(&["--tick-rate", "0"]).await;
    let name = json!({"name": "Ada"}).to_string();
    let at_limit = format!("{name:<16384}");
    assert_eq!(at_limit.len(), 16 * 1024);
    let (status, answer) = http_post(server.addr, "/api/login", None, &at_limit).await;
    assert_eq!(status, 200, "{answer}");

    let past_limit = format!("{name:<16385}");
    let (status, answer) = http_post(server.addr, "/api/login", None, &past_limit).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "too_large", "{answer}");

    // Chunked: no Content-Length to refuse early, so the limit is counted.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut request = format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.addr
    );
    for chunk in past_limit.as_bytes().chunks(4096) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    request.push_str("0\r\n\r\n");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(common::PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time");
    let response = common::parse_response(&String::from_utf8_lossy(&raw));
    assert_eq!(response.status, 413, "{}", response.body);
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["error"]["code"], "too_large", "{body}");
}
