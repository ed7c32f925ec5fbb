//! The HTTP fallback transport from a raw HTTP client (docs/EXTENSIONS.md,
//! "HTTP fallback transport"): events down `GET /sse`, envelopes up
//! `POST /sse/{session}`, served by the same connection task as `/ws`.

mod common;

use common::sse::{end, post, SseClient, SseStream};
use common::{http_get, http_post, Client, TestServer};
use pulse::protocol::sse::SseSession;
use pulse::protocol::ServerMessage;
use serde_json::json;

const KEY: &str = "sse-test-admin-key-0123";

async fn server(extra: &[&str]) -> TestServer {
    let mut flags = vec!["--tick-rate", "0", "--symbols", "AAPL", "--admin-key", KEY];
    flags.extend_from_slice(extra);
    TestServer::start(&flags).await
}

/// Publishes a tick of AAPL through the admin API.
async fn publish(server: &TestServer, price: f64) {
    let body = json!({"channel": "ticker:AAPL", "data": {"price": price, "volume": 100}});
    let (status, answer) =
        http_post(server.addr, "/api/publish", Some(KEY), &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
}

/// A guest token for `name`.
async fn token(server: &TestServer, name: &str) -> String {
    let body = json!({ "name": name }).to_string();
    let (status, answer) = http_post(server.addr, "/api/login", None, &body).await;
    assert_eq!(status, 200, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

/// The next message that is not a presence diff.
async fn next(client: &mut SseClient) -> ServerMessage {
    loop {
        match client.recv().await.message {
            ServerMessage::PresenceDiff(_) => continue,
            other => return other,
        }
    }
}

/// A stream opens with its session event and the no-buffering headers;
/// `hello` POSTed is answered `welcome` down the stream, a subscription
/// brings the ticks published after it, and `/metrics` counts the session
/// under `transport="sse"`.
#[tokio::test]
async fn hello_is_welcomed_and_a_subscription_brings_ticks() {
    let server = server(&[]).await;
    let stream = SseStream::open(server.addr, &[]).await;
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-cache"));
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    let mut client = SseClient::on(server.addr, stream).await;
    assert!(client.last_id.as_deref().unwrap().ends_with(":0"));
    let welcome = client.hello().await;
    assert!(welcome.user.is_none());

    client
        .send(
            &json!({"type": "subscribe", "data": {"channels": [{"channel": "ticker:AAPL"}]}})
                .to_string(),
        )
        .await;
    assert!(
        matches!(next(&mut client).await, ServerMessage::Subscribed(s) if s.channel == "ticker:AAPL")
    );
    publish(&server, 101.5).await;
    match next(&mut client).await {
        ServerMessage::Tick(tick) => assert_eq!(tick.offset, 1),
        other => panic!("expected a tick, got {other:?}"),
    }
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(
        metrics.contains(r#"pulse_connections_by_transport{transport="sse",tls="false"} 1"#),
        "{metrics}"
    );
}

/// A chat message POSTed is acked down the stream before its own copy; the
/// same envelope POSTed again is acked with the same offset and reaches no
/// one a second time.
#[tokio::test]
async fn chat_is_acked_and_a_resend_is_answered_once() {
    let server = server(&[]).await;
    let mut client = SseClient::open(server.addr).await;
    let token = token(&server, "Ada").await;
    client
        .send(&json!({"type": "hello", "data": {"token": token}}).to_string())
        .await;
    assert!(matches!(next(&mut client).await, ServerMessage::Welcome(w) if w.user.is_some()));
    client
        .send(
            &json!({"type": "subscribe", "data": {"channels": [{"channel": "chat:general"}]}})
                .to_string(),
        )
        .await;
    assert!(matches!(
        next(&mut client).await,
        ServerMessage::Subscribed(_)
    ));

    let say = |id: &str, text: &str| {
        json!({"type": "chat_send", "data": {"room": "general", "text": text}, "id": id})
            .to_string()
    };
    client.send(&say("c-1", "once")).await;
    assert!(
        matches!(next(&mut client).await, ServerMessage::Ack(a) if a.id == "c-1" && a.offset == Some(1))
    );
    assert!(matches!(next(&mut client).await, ServerMessage::Chat(c) if c.offset == 1));
    client.send(&say("c-1", "once")).await;
    assert!(
        matches!(next(&mut client).await, ServerMessage::Ack(a) if a.id == "c-1" && a.offset == Some(1))
    );
    client.send(&say("c-2", "twice?")).await;
    assert!(
        matches!(next(&mut client).await, ServerMessage::Ack(a) if a.id == "c-2" && a.offset == Some(2))
    );
    match next(&mut client).await {
        ServerMessage::Chat(chat) => assert_eq!(chat.offset, 2, "no second copy of c-1"),
        other => panic!("expected chat 2, got {other:?}"),
    }
}

/// A stream dropped and opened again with `Last-Event-ID` resumes the same
/// session: the events after that id come again (those the dropped stream
/// carried and those queued meanwhile), and POSTs go on. An id naming no
/// open session opens a new one instead.
#[tokio::test]
async fn a_dropped_stream_resumes_with_last_event_id() {
    let server = server(&[]).await;
    let mut client = SseClient::open(server.addr).await;
    client.hello().await;
    let after_welcome = client.last_id.clone().unwrap();
    client
        .send(
            &json!({"type": "subscribe", "data": {"channels": [{"channel": "ticker:AAPL"}]}})
                .to_string(),
        )
        .await;
    assert!(matches!(
        next(&mut client).await,
        ServerMessage::Subscribed(_)
    ));
    let subscribed_id = client.last_id.clone().unwrap();
    // The stream goes; the session stays.
    drop(std::mem::replace(
        &mut client.stream,
        SseStream::open(server.addr, &[("Last-Event-ID", &after_welcome)]).await,
    ));
    publish(&server, 99.0).await;

    let resumed = client.event().await.unwrap();
    assert_eq!(resumed.event, "session");
    let session: SseSession = serde_json::from_str(&resumed.data).unwrap();
    assert!(session.resumed);
    assert_eq!(session.session, client.session);
    assert!(matches!(
        next(&mut client).await,
        ServerMessage::Subscribed(_)
    ));
    assert_eq!(
        client.last_id.as_deref(),
        Some(subscribed_id.as_str()),
        "sent again under its id"
    );
    assert!(matches!(next(&mut client).await, ServerMessage::Tick(t) if t.offset == 1));
    client.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(next(&mut client).await, ServerMessage::Pong(_)));

    // An id of no open session: a new session, which starts with hello.
    let forged = format!("{}x:3", client.session);
    let other = SseStream::open(server.addr, &[("Last-Event-ID", &forged)]).await;
    let mut other = SseClient::on(server.addr, other).await;
    assert_ne!(other.session, client.session);
    other.hello().await;
}

/// A reader that stops reading falls behind; the server gives up on it as
/// on a WebSocket's (4008), and once it reads again the stream ends with a
/// `close` event naming the code. Other clients are not disturbed.
#[tokio::test]
async fn a_reader_that_falls_behind_gets_the_4008_close_event() {
    let server = server(&["--max-outbox-bytes", "16384"]).await;
    let mut hog = SseClient::on(server.addr, SseStream::open_small(server.addr, 4096).await).await;
    hog.hello().await;
    let mut reader = SseClient::open(server.addr).await;
    reader.hello().await;
    let pings: Vec<String> = (0..64)
        .map(|_| r#"{"type":"ping","data":{}}"#.to_owned())
        .collect();
    // Both send the same; the reader reads its pongs, the hog never does.
    // POST until the hog's session is refused (it was closed).
    let mut refused = false;
    for _ in 0..5000 {
        let (status, body) = hog.post(&pings, None).await;
        if status != 202 {
            assert_eq!(status, 404, "{body}");
            refused = true;
            break;
        }
        let (status, body) = reader.post(&pings, None).await;
        assert_eq!(status, 202, "{body}");
        for _ in 0..pings.len() {
            assert!(matches!(next(&mut reader).await, ServerMessage::Pong(_)));
        }
    }
    assert!(refused, "the hog's session is still open");
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    let gave_up = metrics.contains("pulse_slow_consumers_total 1");
    assert!(gave_up, "the server never gave up on the reader");
    let close = hog.closed().await;
    assert_eq!(close.code, 4008, "{close:?}");
    assert!(hog.event().await.is_none(), "nothing after the close event");
    reader.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(next(&mut reader).await, ServerMessage::Pong(_)));
}

/// A POST with a session id that is not one, one whose signature was forged,
/// or one whose session has ended is refused with an HTTP status and the
/// protocol's error code, and delivers nothing.
#[tokio::test]
async fn posts_with_a_wrong_forged_or_ended_session_are_refused() {
    let server = server(&[]).await;
    let ping = vec![r#"{"type":"ping","data":{}}"#.to_owned()];
    let (status, body) = post(server.addr, "not-a-session", &ping, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    let mut client = SseClient::open(server.addr).await;
    let (signed, signature) = client.session.rsplit_once('.').unwrap();
    let (head, _nonce) = signed.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}.{signature}", "f".repeat(32));
    let (status, body) = post(server.addr, &forged, &ping, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    // A bad token ends the session (4001, as on a WebSocket) ...
    client
        .send(r#"{"type":"hello","data":{"token":"not.a.token"}}"#)
        .await;
    assert_eq!(client.closed().await.code, 4001);
    // ... and its id opens nothing any more.
    let (status, body) = client.post(&ping, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
}

/// A page leaving the fallback for a WebSocket ends its session with
/// `DELETE /sse/{session}`: 204, and the session ends at once as after a
/// WebSocket's normal close: its stream gets a `close` event saying 1000 and
/// then the response ends, its presence tab leaves (the user's WebSocket tab
/// stays), and POSTs and DELETEs to it are 404. A forged id or a foreign
/// Origin is refused (403) and ends nothing.
#[tokio::test]
async fn a_session_ended_with_delete_closes_at_once() {
    let server = server(&[]).await;
    let mut watcher = Client::signed_in(&server, "Alice").await;
    watcher
        .send(r#"{"type":"subscribe","data":{"channels":[{"channel":"presence"}]}}"#)
        .await;
    assert!(matches!(
        watcher.recv().await.message,
        ServerMessage::Subscribed(_)
    ));
    let presence = |message: ServerMessage| match message {
        ServerMessage::PresenceDiff(diff) => diff,
        other => panic!("expected presence_diff, got {other:?}"),
    };

    // Bob on the fallback, then (moving back) on a WebSocket too.
    let bob = token(&server, "Bob").await;
    let hello = json!({"type": "hello", "data": {"token": bob}}).to_string();
    let mut fallback = SseClient::open(server.addr).await;
    fallback.send(&hello).await;
    assert!(matches!(next(&mut fallback).await, ServerMessage::Welcome(w) if w.user.is_some()));
    let diff = presence(watcher.recv().await.message);
    assert_eq!(
        (diff.joins[0].id.as_str(), diff.joins[0].connections),
        ("guest:bob", 1)
    );
    let mut socket = Client::connect(&server).await;
    socket.send(&hello).await;
    assert!(matches!(
        socket.recv().await.message,
        ServerMessage::Welcome(_)
    ));
    let diff = presence(watcher.recv().await.message);
    assert_eq!(diff.updates[0].connections, 2, "{diff:?}");

    // A forged id, a foreign page: refused, and nothing ends.
    let (signed, signature) = fallback.session.rsplit_once('.').unwrap();
    let (head, _nonce) = signed.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}.{signature}", "f".repeat(32));
    let (status, body) = end(server.addr, &forged, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = end(server.addr, "not-a-session", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = end(server.addr, &fallback.session, Some("http://evil.example")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    fallback.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(next(&mut fallback).await, ServerMessage::Pong(_)));

    // The page's own DELETE ends the session now.
    let own = format!("http://{}", server.addr);
    let (status, body) = end(server.addr, &fallback.session, Some(&own)).await;
    assert_eq!(status, 204, "{body}");
    let close = fallback.closed().await;
    assert_eq!(close.code, 1000, "{close:?}");
    assert!(
        fallback.event().await.is_none(),
        "the response ends after the close event"
    );
    let diff = presence(watcher.recv().await.message);
    assert_eq!(
        (diff.updates[0].id.as_str(), diff.updates[0].connections),
        ("guest:bob", 1),
        "{diff:?}"
    );
    let ping = vec![r#"{"type":"ping","data":{}}"#.to_owned()];
    let (status, body) = fallback.post(&ping, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = end(server.addr, &fallback.session, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    // Bob's WebSocket goes on.
    socket.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(
        socket.recv().await.message,
        ServerMessage::Pong(_)
    ));
}

/// A page from a foreign origin can neither open a stream nor POST to one;
/// the server's own origin can.
#[tokio::test]
async fn a_foreign_origin_is_refused() {
    let server = server(&[]).await;
    let foreign = [("Origin", "http://evil.example")];
    let refused = SseStream::open(server.addr, &foreign).await;
    assert_eq!(refused.status, 403);

    let own = format!("http://{}", server.addr);
    let mut client = SseClient::on(
        server.addr,
        SseStream::open(server.addr, &[("Origin", &own)]).await,
    )
    .await;
    let hello = vec![r#"{"type":"hello","data":{}}"#.to_owned()];
    let (status, body) = client.post(&hello, Some("http://evil.example")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = client.post(&hello, Some(&own)).await;
    assert_eq!(status, 202, "{body}");
    assert!(matches!(next(&mut client).await, ServerMessage::Welcome(_)));
}

/// Shutdown ends every stream with a `close` event saying 1001, as the
/// WebSocket's close frame does.
#[tokio::test]
async fn shutdown_ends_the_stream_with_1001() {
    let server = server(&[]).await;
    let mut client = SseClient::open(server.addr).await;
    client.hello().await;
    let stopping = tokio::spawn(server.shutdown());
    assert_eq!(client.closed().await.code, 1001);
    stopping.await.unwrap();
}

/// Heartbeats on an attached stream keep a silent session open for many
/// heartbeat periods (and the stream outlives the HTTP head deadline);
/// without a stream the session is closed (the WebSocket's heartbeat
/// timeout) and its POSTs are refused.
#[tokio::test]
async fn a_session_lives_on_its_stream_and_ends_without_one() {
    let server = server(&["--heartbeat-ms", "100", "--http-timeout-ms", "300"]).await;
    let mut client = SseClient::open(server.addr).await;
    client.hello().await;
    // Ten heartbeat periods of silence from the client.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    client.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(next(&mut client).await, ServerMessage::Pong(_)));

    // The stream goes and no new one comes: the session ends.
    let session = client.session.clone();
    drop(client);
    // (Polling /metrics, not POSTing: a POST is a sign of life too.)
    let mut ended = false;
    for _ in 0..200 {
        let (_, metrics) = http_get(server.addr, "/metrics").await;
        if metrics.contains(r#"pulse_connections_by_transport{transport="sse",tls="false"} 0"#) {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ended, "a session without a stream stays open");
    let ping = vec![r#"{"type":"ping","data":{}}"#.to_owned()];
    let (status, body) = post(server.addr, &session, &ping, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
}

/// A POST's bounds, at each bound and one past it: 64 envelopes are taken,
/// 65 refused; a line of `max_message_bytes` is taken, one byte more refused
/// (413 `too_large`, nothing delivered).
#[tokio::test]
async fn a_post_is_bounded_in_envelopes_and_bytes() {
    let server = server(&[]).await;
    let mut client = SseClient::open(server.addr).await;
    client.hello().await;
    let ping = r#"{"type":"ping","data":{}}"#;
    let lines = |n: usize| vec![ping.to_owned(); n];
    let (status, body) = client.post(&lines(65), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    let (status, body) = client.post(&lines(64), None).await;
    assert_eq!(status, 202, "{body}");
    for _ in 0..64 {
        assert!(matches!(next(&mut client).await, ServerMessage::Pong(_)));
    }
    let limit = pulse::protocol::MAX_MESSAGE_BYTES;
    let padded = |len: usize| format!("{ping}{}", " ".repeat(len - ping.len()));
    let (status, body) = client.post(&[padded(limit + 1)], None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    let (status, body) = client.post(&[padded(limit)], None).await;
    assert_eq!(status, 202, "{body}");
    // Nothing of the refused POSTs arrived: the next message is this pong.
    assert!(matches!(next(&mut client).await, ServerMessage::Pong(_)));
    client
        .send(r#"{"type":"unsubscribe","data":{"channels":["ticker:AAPL"]},"id":"u"}"#)
        .await;
    assert!(!matches!(next(&mut client).await, ServerMessage::Pong(_)));
}

/// A session past `--max-connections` is refused as an upgrade would be:
/// `rate_limited`, with `Retry-After`, and a message saying why once.
#[tokio::test]
async fn a_session_past_the_cap_is_refused_with_the_reason() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = server(&["--max-connections", "1"]).await;
    let _holds_the_slot = SseClient::open(server.addr).await;

    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /sse HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_string(&mut response),
    )
    .await
    .expect("an answer in time")
    .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(
        body["error"]["message"], "server full: try again later",
        "{body}"
    );
}
