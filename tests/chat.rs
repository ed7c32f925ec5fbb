//! Chat rooms against a real server and a real SQLite file: ack, broadcast,
//! exactly-once on replay, history, resume, validation, rate limit, and
//! persistence across a restart on the same file.

mod common;

use common::{temp_db, Client, TestServer};
use pulse::protocol::{ChatMessage, ServerMessage, Snapshot, Subscribed};
use serde_json::json;

async fn server_on(db: &str, extra: &[&str]) -> TestServer {
    let mut flags = vec![
        "--tick-rate",
        "0",
        "--jwt-secret",
        "chat-test-secret-0123456789abcdef",
        "--db",
        db,
    ];
    flags.extend_from_slice(extra);
    TestServer::start(&flags).await
}

impl Client {
    async fn join_room(&mut self, room: &str, since: Option<serde_json::Value>) -> Subscribed {
        let mut entry = json!({ "channel": format!("chat:{room}") });
        if let Some(since) = since {
            entry["since"] = since;
        }
        self.send(&json!({"type": "subscribe", "data": {"channels": [entry]}}).to_string())
            .await;
        loop {
            match self.recv().await.message {
                ServerMessage::Subscribed(s) => return s,
                ServerMessage::PresenceDiff(_) => continue,
                other => panic!("expected subscribed, got {other:?}"),
            }
        }
    }

    async fn say(&mut self, room: &str, id: &str, text: &str) {
        let frame = json!({"type": "chat_send", "data": {"room": room, "text": text}, "id": id});
        self.send(&frame.to_string()).await;
    }

    /// The next message that is not presence: a chat, an ack or an error.
    async fn next(&mut self) -> ServerMessage {
        loop {
            match self.recv().await.message {
                ServerMessage::PresenceDiff(_) => continue,
                other => return other,
            }
        }
    }

    /// Sends until acked: a `rate_limited` answer is waited out and the same
    /// id sent again.
    async fn say_acked(&mut self, room: &str, id: &str, text: &str) {
        loop {
            self.say(room, id, text).await;
            match self.next().await {
                ServerMessage::Ack(_) => return,
                ServerMessage::Error(error) if error.code.as_str() == "rate_limited" => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => panic!("expected an ack, got {other:?}"),
            }
        }
    }

    async fn chat(&mut self) -> ChatMessage {
        match self.next().await {
            ServerMessage::Chat(message) => message,
            other => panic!("expected chat, got {other:?}"),
        }
    }
}

fn messages(subscribed: &Subscribed) -> Vec<ChatMessage> {
    match &subscribed.snapshot {
        Some(Snapshot::Chat(snapshot)) => snapshot.messages.clone(),
        other => panic!("expected a chat snapshot, got {other:?}"),
    }
}

/// The sender gets an `ack` with the offset; every subscriber, the sender
/// included, gets the message stamped with the user and the time.
#[tokio::test]
async fn a_message_is_acked_and_reaches_every_subscriber() {
    let server = server_on(&temp_db(), &[]).await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    let mut bob = Client::signed_in(&server, "Bob").await;
    assert_eq!(alice.join_room("general", None).await.offset, 0);
    bob.join_room("general", None).await;

    alice.say("general", "a-1", "  hello <b>bob</b>  ").await;
    let mut acked = None;
    let mut seen = None;
    for _ in 0..2 {
        match alice.next().await {
            ServerMessage::Ack(ack) => acked = Some(ack),
            ServerMessage::Chat(message) => seen = Some(message),
            other => panic!("{other:?}"),
        }
    }
    let ack = acked.expect("an ack");
    assert_eq!(
        (
            ack.id.as_str(),
            ack.channel.as_ref().map(ToString::to_string).as_deref(),
            ack.offset
        ),
        ("a-1", Some("chat:general"), Some(1))
    );
    let message = bob.chat().await;
    assert_eq!(
        Some(&message),
        seen.as_ref(),
        "the sender sees the same message"
    );
    assert_eq!((message.offset, message.room.as_str()), (1, "general"));
    assert_eq!(
        message.text, "hello <b>bob</b>",
        "trimmed, never interpreted"
    );
    assert_eq!(
        (message.user.id.as_str(), message.user.name.as_str()),
        ("guest:alice", "Alice")
    );
}

/// Replaying a `chat_send` with the same envelope id gets the original ack
/// and no second copy reaches anyone.
#[tokio::test]
async fn a_replayed_send_is_acked_again_and_delivered_once() {
    let server = server_on(&temp_db(), &[]).await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    let mut bob = Client::signed_in(&server, "Bob").await;
    bob.join_room("general", None).await;
    alice.say("general", "a-1", "once").await;
    assert!(matches!(alice.next().await, ServerMessage::Ack(ack) if ack.offset == Some(1)));
    drop(alice);

    // Reconnected, replaying the outbox.
    let mut alice = Client::signed_in(&server, "Alice").await;
    alice.say("general", "a-1", "once").await;
    assert!(
        matches!(alice.next().await, ServerMessage::Ack(ack) if ack.offset == Some(1) && ack.id == "a-1")
    );
    alice.say("general", "a-2", "twice?").await;
    alice.next().await;
    let offsets = [bob.chat().await.offset, bob.chat().await.offset];
    assert_eq!(offsets, [1, 2], "no copy of the replayed message");
}

/// The subscribe snapshot holds the last 50 messages, oldest first.
#[tokio::test]
async fn the_snapshot_is_the_last_fifty_messages() {
    let server = server_on(&temp_db(), &["--chat-rate", "1000"]).await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    for n in 1..=60 {
        alice
            .say_acked("general", &format!("a-{n}"), &format!("m{n}"))
            .await;
    }
    let mut bob = Client::signed_in(&server, "Bob").await;
    let answer = bob.join_room("general", None).await;
    assert_eq!(answer.offset, 60);
    let texts: Vec<String> = messages(&answer).into_iter().map(|m| m.text).collect();
    assert_eq!(texts.len(), 50);
    assert_eq!((texts[0].as_str(), texts[49].as_str()), ("m11", "m60"));
}

/// A resume replays exactly the missed messages, even after the server
/// restarted on the same file (the epoch is stable; history is on disk).
#[tokio::test]
async fn history_and_resume_survive_a_restart() {
    let db = temp_db();
    let server = server_on(&db, &[]).await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    let epoch = alice.join_room("general", None).await.epoch;
    for n in 1..=3 {
        alice
            .say("general", &format!("a-{n}"), &format!("m{n}"))
            .await;
    }
    let mut seen = 0;
    while seen < 3 {
        if let ServerMessage::Chat(_) = alice.next().await {
            seen += 1;
        }
    }
    server.shutdown().await;

    // The room had no row when Alice joined it empty (subscribing stores
    // nothing), yet its first message stored the epoch she was given: after
    // a restart she resumes with a replay, not a snapshot.
    let server = server_on(&db, &[]).await;
    let mut bob = Client::signed_in(&server, "Bob").await;
    let answer = bob
        .join_room("general", Some(json!({"offset": 1, "epoch": epoch})))
        .await;
    assert!(answer.recovered, "{answer:?}");
    assert_eq!((answer.epoch.as_str(), answer.offset), (epoch.as_str(), 3));
    assert_eq!([bob.chat().await.text, bob.chat().await.text], ["m2", "m3"]);
    let mut carol = Client::signed_in(&server, "Carol").await;
    let fresh = carol.join_room("general", None).await;
    assert_eq!(messages(&fresh).len(), 3, "history survived the restart");
}

/// Bad sends get clear errors naming the field and close nothing.
#[tokio::test]
async fn bad_sends_are_refused_with_clear_errors() {
    let server = server_on(&temp_db(), &[]).await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    let long = "x".repeat(2001);
    for (frame, code, says) in [
        (
            json!({"type":"chat_send","data":{"room":"General","text":"hi"},"id":"1"}),
            "invalid",
            "room",
        ),
        (
            json!({"type":"chat_send","data":{"room":"general","text":"   "},"id":"2"}),
            "invalid",
            "text",
        ),
        (
            json!({"type":"chat_send","data":{"room":"general","text": long},"id":"3"}),
            "too_large",
            "2000",
        ),
        (
            json!({"type":"chat_send","data":{"room":"general","text":"hi"}}),
            "invalid",
            "id",
        ),
        // U+0000: SQLite would store it, PostgreSQL cannot; both refuse it.
        (
            json!({"type":"chat_send","data":{"room":"general","text":"a\u{0}b"},"id":"4"}),
            "invalid",
            "NUL",
        ),
        (
            json!({"type":"chat_send","data":{"room":"general","text":"hi"},"id":"5\u{0}"}),
            "invalid",
            "id",
        ),
    ] {
        alice.send(&frame.to_string()).await;
        match alice.next().await {
            ServerMessage::Error(error) => {
                assert_eq!(error.code.as_str(), code, "{frame}");
                assert!(error.message.contains(says), "{frame}: {}", error.message);
            }
            other => panic!("{frame}: expected an error, got {other:?}"),
        }
    }
    alice.say("general", "ok", &"y".repeat(2000)).await;
    assert!(
        matches!(alice.next().await, ServerMessage::Ack(_)),
        "2000 characters pass"
    );
}

/// Anonymous connections may neither send nor subscribe.
#[tokio::test]
async fn anonymous_connections_cannot_chat() {
    let server = server_on(&temp_db(), &[]).await;
    let mut anonymous = Client::connected(&server).await;
    anonymous.say("general", "x", "hi").await;
    assert_eq!(anonymous.recv_json().await["data"]["code"], "unauthorized");
    anonymous
        .send(r#"{"type":"subscribe","data":{"channels":[{"channel":"chat:general"}]}}"#)
        .await;
    assert_eq!(anonymous.recv_json().await["data"]["code"], "unauthorized");
}

/// Past the burst, sends are answered `rate_limited` without closing.
#[tokio::test]
async fn a_flood_is_rate_limited_without_closing() {
    let server = server_on(&temp_db(), &["--chat-rate", "1"]).await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    let mut limited = 0;
    for n in 0..15 {
        alice.say("general", &format!("f-{n}"), "spam").await;
        if let ServerMessage::Error(error) = alice.next().await {
            assert_eq!(error.code.as_str(), "rate_limited");
            limited += 1;
        }
    }
    assert!(limited >= 4, "only {limited} of 15 limited");
    alice.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(
        matches!(alice.next().await, ServerMessage::Pong(_)),
        "still connected"
    );
}

/// Older messages load in pages before a given offset (the view's scroll-back).
#[tokio::test]
async fn older_history_loads_in_pages() {
    let server = server_on(&temp_db(), &["--chat-rate", "1000"]).await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    for n in 1..=8 {
        alice
            .say_acked("general", &format!("a-{n}"), &format!("m{n}"))
            .await;
    }
    alice
        .send(r#"{"type":"history","data":{"channel":"chat:general","before":6,"limit":3}}"#)
        .await;
    match alice.next().await {
        ServerMessage::History(page) => {
            let offsets: Vec<u64> = page.messages.iter().map(|m| m.offset).collect();
            assert_eq!(offsets, [3, 4, 5]);
        }
        other => panic!("expected history, got {other:?}"),
    }
    alice
        .send(r#"{"type":"history","data":{"channel":"ticker:AAPL","before":6}}"#)
        .await;
    assert!(matches!(alice.next().await, ServerMessage::Error(e) if e.code.as_str() == "invalid"));
}

/// A resend of a message the server already stored is acked with its
/// original offset even when the sender is over the rate limit (PROTOCOL 1.1
/// Limits), so a client replaying its outbox never sees a stored message fail.
#[tokio::test]
async fn a_resend_over_the_rate_limit_is_acked_with_its_original_offset() {
    let server = server_on(&temp_db(), &["--chat-rate", "1"]).await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    // The burst of 10 passes; the 11th new message is rate limited.
    for n in 1..=10 {
        let frame = json!({"type":"chat_send","data":{"room":"general","text":format!("m{n}")},"id":format!("a-{n}")});
        alice.send(&frame.to_string()).await;
    }
    let mut acks = 0;
    while acks < 10 {
        if let ServerMessage::Ack(_) = alice.recv().await.message {
            acks += 1;
        }
    }
    let new = json!({"type":"chat_send","data":{"room":"general","text":"m11"},"id":"a-11"});
    alice.send(&new.to_string()).await;
    let answer = alice.recv_json().await;
    assert_eq!(
        (&answer["data"]["code"], &answer["id"]),
        (&json!("rate_limited"), &json!("a-11"))
    );
    // Still over the limit, the resend of message 3 is acked as stored.
    let resend = json!({"type":"chat_send","data":{"room":"general","text":"m3"},"id":"a-3"});
    alice.send(&resend.to_string()).await;
    match alice.recv().await.message {
        ServerMessage::Ack(ack) => assert_eq!(
            (
                ack.id.as_str(),
                ack.channel.as_ref().map(ToString::to_string).as_deref(),
                ack.offset
            ),
            ("a-3", Some("chat:general"), Some(3))
        ),
        other => panic!("expected the original ack, got {other:?}"),
    }
}
