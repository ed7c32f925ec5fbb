//! The HTTP fallback across instances (docs/EXTENSIONS.md, "A POST on
//! another instance"): a `POST /sse/{session}` that lands on an instance
//! which does not hold the session is forwarded through Redis to the one
//! that does, and is delivered there once; a session no instance holds is
//! refused as on one instance. No sticky sessions.

mod common;

use common::cluster::{instances, SECRET};
use common::redis::Redis;
use common::sse::{post, SseClient};
use common::{http_post, Client};
use jsonwebtoken::{crypto, Algorithm, EncodingKey};
use pulse::protocol::ServerMessage;
use serde_json::json;

/// The next message that is not a presence diff.
async fn next(client: &mut SseClient) -> ServerMessage {
    loop {
        match client.recv().await.message {
            ServerMessage::PresenceDiff(_) => continue,
            other => return other,
        }
    }
}

/// The next chat message a WebSocket client gets (other messages skipped).
async fn next_chat(client: &mut Client) -> (u64, String) {
    loop {
        if let ServerMessage::Chat(chat) = client.recv().await.message {
            return (chat.offset, chat.msg_id);
        }
    }
}

/// A WebSocket client on `addr` subscribed to `chat:general`.
async fn watcher(addr: std::net::SocketAddr, name: &str) -> Client {
    let mut client = Client::signed_in_to(addr, name).await;
    let subscribe =
        json!({"type": "subscribe", "data": {"channels": [{"channel": "chat:general"}]}});
    client.send(&subscribe.to_string()).await;
    loop {
        match client.recv().await.message {
            ServerMessage::Subscribed(_) => return client,
            ServerMessage::Error(error) => panic!("subscribe refused: {error:?}"),
            _ => {}
        }
    }
}

/// A session id signed with the cluster's secret (as `sse/session.rs` signs
/// them), naming `instance`, with a nonce no instance ever minted.
fn signed_id(instance: &str) -> String {
    let key = EncodingKey::from_secret(&[SECRET.as_bytes(), b"|pulse-sse-session"].concat());
    let signed = format!("s1.{instance}.{}", "7".repeat(32));
    let signature = crypto::sign(signed.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{signed}.{signature}")
}

/// A client streams from instance A and POSTs everything to instance B: its
/// hello, subscribe and chat are answered down its stream on A, the chat
/// acked once and delivered once to subscribers on A and on B; the same
/// envelope POSTed again through B is acked again with the same offset and
/// reaches no one twice. A POST through B for a session no instance holds
/// (a signed id A never minted, one naming no running instance) is refused
/// `not_found` as on one instance, and a forged one `forbidden`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_another_instance_reaches_its_session_once() {
    let redis = Redis::start();
    let servers = instances(&redis, 2, &["--tick-rate", "0"]).await;
    let (a, b) = (servers[0].addr, servers[1].addr);
    let mut on_a = watcher(a, "Watcher A").await;
    let mut on_b = watcher(b, "Watcher B").await;

    let mut client = SseClient::open(a).await;
    let session = client.session.clone();
    let via_b = |json: String| {
        let session = session.clone();
        async move {
            let (status, body) = post(b, &session, &[json], None).await;
            assert_eq!(status, 202, "B accepts a POST for A's session: {body}");
        }
    };
    let (status, answer) = http_post(b, "/api/login", None, r#"{"name":"Ada"}"#).await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["token"].as_str().unwrap().to_owned();
    via_b(json!({"type": "hello", "data": {"token": token}}).to_string()).await;
    assert!(matches!(next(&mut client).await, ServerMessage::Welcome(w) if w.user.is_some()));
    via_b(
        json!({"type": "subscribe", "data": {"channels": [{"channel": "chat:general"}]}})
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
    via_b(say("f-1", "forwarded")).await;
    assert!(
        matches!(next(&mut client).await, ServerMessage::Ack(ack) if ack.id == "f-1" && ack.offset == Some(1))
    );
    assert!(matches!(next(&mut client).await, ServerMessage::Chat(c) if c.offset == 1));
    assert_eq!(next_chat(&mut on_a).await.0, 1);
    assert_eq!(next_chat(&mut on_b).await.0, 1);

    // The same envelope again, through B: answered once, delivered to no one.
    via_b(say("f-1", "forwarded")).await;
    assert!(
        matches!(next(&mut client).await, ServerMessage::Ack(ack) if ack.id == "f-1" && ack.offset == Some(1))
    );
    via_b(say("f-2", "after")).await;
    assert!(
        matches!(next(&mut client).await, ServerMessage::Ack(ack) if ack.id == "f-2" && ack.offset == Some(2))
    );
    match next(&mut client).await {
        ServerMessage::Chat(chat) => assert_eq!(chat.offset, 2, "no second copy of f-1"),
        other => panic!("expected chat 2, got {other:?}"),
    }
    assert_eq!(next_chat(&mut on_a).await.0, 2, "no second copy on A");
    assert_eq!(next_chat(&mut on_b).await.0, 2, "no second copy on B");

    // Sessions no instance holds.
    let hello = vec![r#"{"type":"hello","data":{}}"#.to_owned()];
    let instance_a = session.split('.').nth(1).unwrap();
    for unknown in [signed_id(instance_a), signed_id("no-such-instance")] {
        let (status, body) = post(b, &unknown, &hello, None).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }
    let (signed, signature) = session.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{signed}.{flipped}{}", &signature[1..]);
    let (status, body) = post(b, &forged, &hello, None).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = post(a, &forged, &hello, None).await;
    assert_eq!(status, 403, "A refuses it the same way");
}
