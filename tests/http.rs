//! The HTTP side against a real server: the server-rendered page, health,
//! metrics and unknown paths.

mod common;

use common::{http_get, Client, TestServer};

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
