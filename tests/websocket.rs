//! The WebSocket endpoint against a real server on port 0: hello, ping, every
//! error path of the walking skeleton, origins, limits, heartbeats, shutdown.

mod common;

use common::{http_get, Client, TestServer};
use futures::SinkExt;
use pulse::protocol::{ErrorCode, ServerMessage};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn error_of(message: ServerMessage) -> pulse::protocol::ErrorBody {
    match message {
        ServerMessage::Error(body) => body,
        other => panic!("expected error, got {other:?}"),
    }
}

/// `hello {}` is answered by `welcome` with the advertised limits, and every
/// server message carries a microsecond UTC timestamp.
#[tokio::test]
async fn hello_is_answered_with_welcome_and_ping_with_pong() {
    let server = TestServer::start(&["--heartbeat-ms", "15000"]).await;
    let mut client = Client::connect(&server).await;
    client.send(r#"{"type":"hello","data":{}}"#).await;
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["data"]["user"], serde_json::Value::Null);
    assert_eq!(welcome["data"]["heartbeat_ms"], 15000);
    assert_eq!(welcome["data"]["max_message_bytes"], 65536);
    assert!(!welcome["data"]["connection_id"]
        .as_str()
        .unwrap()
        .is_empty());
    let stamp = welcome["timestamp"].as_str().unwrap();
    assert!(
        stamp.ends_with('Z') && stamp.split('.').nth(1).unwrap().len() == 7,
        "{stamp}"
    );

    client.send(r#"{"type":"ping","data":{}}"#).await;
    let pong = client.recv_json().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["data"], serde_json::json!({}));
}

/// Two connections get different connection ids.
#[tokio::test]
async fn each_connection_has_its_own_id() {
    let server = TestServer::start(&[]).await;
    let a = Client::connect(&server).await.hello().await;
    let b = Client::connect(&server).await.hello().await;
    assert_ne!(a.connection_id, b.connection_id);
}

/// Anything before `hello` is refused with `hello_required`, echoing the id,
/// and the connection stays usable.
#[tokio::test]
async fn messages_before_hello_get_hello_required() {
    let server = TestServer::start(&[]).await;
    let mut client = Client::connect(&server).await;
    client.send(r#"{"type":"ping","data":{},"id":"p-1"}"#).await;
    let error = error_of(client.recv().await.message);
    assert_eq!(error.code, ErrorCode::HelloRequired);
    assert_eq!(error.id.as_deref(), Some("p-1"));
    client.hello().await;
}

/// Each kind of bad input gets its own error code, and none of them closes
/// the connection.
#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_connection_lives_on() {
    let server = TestServer::start(&[]).await;
    let mut client = Client::connected(&server).await;
    let cases = [
        (r#"{"type":"ping""#, ErrorCode::BadJson, None),
        ("[]", ErrorCode::BadJson, None),
        (
            r#"{"type":"teleport","data":{},"id":"t-1"}"#,
            ErrorCode::UnknownType,
            Some("teleport"),
        ),
        (
            r#"{"type":"chat_send","data":{"room":"general"},"id":"c-1"}"#,
            ErrorCode::Invalid,
            Some("text"),
        ),
        (
            r#"{"type":"subscribe","data":{"channels":"ticker:AAPL"}}"#,
            ErrorCode::Invalid,
            Some("data.channels"),
        ),
        (r#"{"data":{}}"#, ErrorCode::Invalid, Some("type")),
        (
            r#"{"type":"hello","data":{}}"#,
            ErrorCode::Invalid,
            Some("hello"),
        ),
    ];
    for (frame, code, names) in cases {
        client.send(frame).await;
        let error = error_of(client.recv().await.message);
        assert_eq!(error.code, code, "{frame}");
        if let Some(word) = names {
            assert!(error.message.contains(word), "{frame}: {}", error.message);
        }
    }
    client
        .ws
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(
        error_of(client.recv().await.message).code,
        ErrorCode::BadFrame
    );

    client.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(
        client.recv().await.message,
        ServerMessage::Pong(_)
    ));
}

/// A message of exactly `max_message_bytes` is accepted; one byte more
/// closes the connection with 1009, and other connections are unaffected.
#[tokio::test]
async fn messages_over_the_size_limit_close_with_1009() {
    let server = TestServer::start(&[]).await;
    let mut bystander = Client::connected(&server).await;
    let mut client = Client::connected(&server).await;
    let frame_of = |len: usize| {
        let head = r#"{"type":"ping","data":{},"pad":""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
    };
    client.send(&frame_of(65_536)).await;
    assert!(matches!(
        client.recv().await.message,
        ServerMessage::Pong(_)
    ));
    client.send(&frame_of(65_537)).await;
    let frame = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009);

    bystander.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(
        bystander.recv().await.message,
        ServerMessage::Pong(_)
    ));
}

/// Browser pages from a foreign origin are closed with 1008; the server's own
/// origin and clients without an `Origin` header are served.
#[tokio::test]
async fn foreign_origins_are_refused_by_default() {
    let server = TestServer::start(&[]).await;
    let own = format!("http://{}", server.addr);
    Client::connect_with(&server, Some(&own))
        .await
        .hello()
        .await;
    Client::connect(&server).await.hello().await;
    let mut foreign = Client::connect_with(&server, Some("http://evil.test")).await;
    let frame = foreign.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1008);
}

/// `--allowed-origins` replaces the default with an explicit list.
#[tokio::test]
async fn allowed_origins_flag_sets_the_list() {
    let server =
        TestServer::start(&["--allowed-origins", "http://app.test,http://other.test"]).await;
    Client::connect_with(&server, Some("http://app.test"))
        .await
        .hello()
        .await;
    let own = format!("http://{}", server.addr);
    let mut refused = Client::connect_with(&server, Some(&own)).await;
    assert_eq!(u16::from(refused.closed().await.unwrap().code), 1008);
}

/// The server pings every heartbeat; a client that answers (tungstenite
/// answers Pings while it reads) stays connected past 2 × heartbeat.
#[tokio::test]
async fn a_responsive_client_is_pinged_and_kept() {
    let server = TestServer::start(&["--heartbeat-ms", "100"]).await;
    let mut client = Client::connected(&server).await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(600);
    while let Ok(frame) =
        tokio::time::timeout_at(until, futures::StreamExt::next(&mut client.ws)).await
    {
        match frame.expect("open").expect("healthy") {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 3, "only {pings} pings in 6 heartbeats");
    client.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(
        client.recv().await.message,
        ServerMessage::Pong(_)
    ));
}

/// Shutdown closes every socket with 1001 and `serve` returns.
#[tokio::test]
async fn shutdown_closes_every_socket_with_1001() {
    let server = TestServer::start(&[]).await;
    let mut a = Client::connected(&server).await;
    let mut b = Client::connect(&server).await;
    let (closed, ()) = tokio::join!(
        async { (a.closed().await, b.closed().await) },
        server.shutdown()
    );
    assert_eq!(u16::from(closed.0.unwrap().code), 1001);
    assert_eq!(u16::from(closed.1.unwrap().code), 1001);
}

/// A client that vanishes mid-frame does not disturb another one.
#[tokio::test]
async fn a_broken_connection_does_not_affect_others() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(&[]).await;
    let mut healthy = Client::connected(&server).await;
    let mut broken = Client::connected(&server).await;
    // Start a frame header claiming 100 bytes, then drop the TCP stream.
    let raw = broken.ws.get_mut();
    if let tokio_tungstenite::MaybeTlsStream::Plain(stream) = raw {
        stream
            .write_all(&[0x81, 0xE4, 1, 2, 3, 4, b'x'])
            .await
            .unwrap();
    }
    drop(broken);
    healthy.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(
        healthy.recv().await.message,
        ServerMessage::Pong(_)
    ));
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("pulse_connections_total 2"), "{metrics}");
}
