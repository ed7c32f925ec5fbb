//! Targeted notifications against a real server and SQLite file: the admin
//! API, delivery to every tab of one user only, offline delivery, refusal for
//! anyone else, marking read (persisted), and `@mentions` from chat.

mod common;

use common::{http_post, temp_db, Client, TestServer};
use pulse::protocol::{Notification, ServerMessage, Snapshot};
use serde_json::json;

const KEY: &str = "notify-admin-key-0123";

async fn server_on(db: &str) -> TestServer {
    TestServer::start(&[
        "--tick-rate",
        "0",
        "--jwt-secret",
        "notifications-test-secret-0123456789",
        "--admin-key",
        KEY,
        "--db",
        db,
    ])
    .await
}

async fn notify(server: &TestServer, user: &str, title: &str) -> (u16, serde_json::Value) {
    let body = json!({"user": user, "title": title, "body": "details"});
    http_post(server.addr, "/api/notify", Some(KEY), &body.to_string()).await
}

impl Client {
    /// Subscribes to `user:{id}`; returns the unread snapshot.
    async fn inbox(&mut self, id: &str) -> Vec<Notification> {
        let frame =
            json!({"type": "subscribe", "data": {"channels": [{"channel": format!("user:{id}")}]}});
        self.send(&frame.to_string()).await;
        loop {
            match self.recv().await.message {
                ServerMessage::Subscribed(s) => match s.snapshot {
                    Some(Snapshot::Unread(u)) => return u.unread,
                    other => panic!("expected an unread snapshot, got {other:?}"),
                },
                ServerMessage::PresenceDiff(_) | ServerMessage::Chat(_) | ServerMessage::Ack(_) => {
                    continue
                }
                other => panic!("expected subscribed, got {other:?}"),
            }
        }
    }

    async fn notification(&mut self) -> Notification {
        loop {
            match self.recv().await.message {
                ServerMessage::Notification(n) => return n,
                ServerMessage::PresenceDiff(_) | ServerMessage::Chat(_) | ServerMessage::Ack(_) => {
                    continue
                }
                other => panic!("expected notification, got {other:?}"),
            }
        }
    }
}

/// The API needs the admin key and a sane body, and answers the id and offset.
#[tokio::test]
async fn the_notify_api_checks_the_key_and_the_body() {
    let server = server_on(&temp_db()).await;
    let body = r#"{"user":"alice","title":"Hi","body":"x"}"#;
    assert_eq!(
        http_post(server.addr, "/api/notify", None, body).await.0,
        401
    );
    assert_eq!(
        http_post(server.addr, "/api/notify", Some("wrong"), body)
            .await
            .0,
        401
    );
    for bad in [
        r#"{"user":"","title":"x"}"#,
        r#"{"user":"alice","title":"  "}"#,
        r#"{"title":"x"}"#,
    ] {
        assert_eq!(
            http_post(server.addr, "/api/notify", Some(KEY), bad)
                .await
                .0,
            400,
            "{bad}"
        );
    }
    let (status, answer) = notify(&server, "guest:alice", "Build green").await;
    assert_eq!(status, 200);
    assert_eq!(answer["offset"], 1);
    assert!(answer["notification_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
}

/// Every tab of the user gets it; nobody else does.
#[tokio::test]
async fn a_notification_reaches_every_tab_of_its_user_only() {
    let server = server_on(&temp_db()).await;
    let mut tab1 = Client::signed_in(&server, "Alice").await;
    let mut tab2 = Client::signed_in(&server, "Alice").await;
    let mut bob = Client::signed_in(&server, "Bob").await;
    tab1.inbox("guest:alice").await;
    tab2.inbox("guest:alice").await;
    bob.inbox("guest:bob").await;
    notify(&server, "guest:alice", "For Alice").await;
    assert_eq!(tab1.notification().await.title, "For Alice");
    assert_eq!(tab2.notification().await.title, "For Alice");
    bob.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(
        matches!(bob.recv().await.message, ServerMessage::Pong(_)),
        "nothing for Bob"
    );
}

/// Someone else's channel is `forbidden`; anonymous connections are `unauthorized`.
#[tokio::test]
async fn only_the_user_may_subscribe_to_their_channel() {
    let server = server_on(&temp_db()).await;
    let mut bob = Client::signed_in(&server, "Bob").await;
    bob.send(r#"{"type":"subscribe","data":{"channels":[{"channel":"user:guest:alice"}]}}"#)
        .await;
    assert_eq!(bob.recv_json().await["data"]["code"], "forbidden");
    let mut anonymous = Client::connected(&server).await;
    anonymous
        .send(r#"{"type":"subscribe","data":{"channels":[{"channel":"user:guest:alice"}]}}"#)
        .await;
    assert_eq!(anonymous.recv_json().await["data"]["code"], "unauthorized");
}

/// A user who was offline finds their notifications unread on the next
/// connect; read ones stay read, across a server restart too.
#[tokio::test]
async fn offline_notifications_wait_unread_and_read_ones_stay_read() {
    let db = temp_db();
    let server = server_on(&db).await;
    notify(&server, "guest:alice", "first").await;
    notify(&server, "guest:alice", "second").await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    let unread = alice.inbox("guest:alice").await;
    assert_eq!(
        unread.iter().map(|n| n.title.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    let first = unread[0].notification_id.clone();
    alice
        .send(
            &json!({"type":"mark_read","data":{"notification_ids":[first]},"id":"r-1"}).to_string(),
        )
        .await;
    match alice.recv().await.message {
        ServerMessage::Ack(ack) => assert_eq!(
            (
                ack.id.as_str(),
                ack.channel.as_ref().map(ToString::to_string).as_deref(),
                ack.offset
            ),
            ("r-1", Some("user:guest:alice"), Some(2))
        ),
        other => panic!("expected ack, got {other:?}"),
    }
    server.shutdown().await;

    let server = server_on(&db).await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    let unread = alice.inbox("guest:alice").await;
    assert_eq!(
        unread.iter().map(|n| n.title.as_str()).collect::<Vec<_>>(),
        ["second"]
    );
}

/// `@alice` in a chat message notifies Alice (a user the server has seen);
/// a mention of nobody known notifies nobody.
#[tokio::test]
async fn a_mention_in_chat_notifies_that_user() {
    let server = server_on(&temp_db()).await;
    let mut alice = Client::signed_in(&server, "Alice").await;
    alice.inbox("guest:alice").await;
    let mut bob = Client::signed_in(&server, "Bob").await;
    let frame = json!({"type":"chat_send","data":{"room":"general","text":"hey @alice and @nobody"},"id":"b-1"});
    bob.send(&frame.to_string()).await;
    let mention = alice.notification().await;
    assert_eq!(mention.title, "Bob mentioned you in #general");
    assert_eq!(mention.body, "hey @alice and @nobody");
}

/// A secret long enough for the 32-byte rule of PROTOCOL.md 1.1.
const LONG_SECRET: &str = "mentions-test-secret-of-at-least-32-bytes";

/// Logs `name` in as a guest and says `hello`; returns the client and the
/// user id the server gave it (whatever form guest ids take).
async fn member(server: &TestServer, name: &str) -> (Client, String) {
    let body = json!({ "name": name }).to_string();
    let (status, answer) = http_post(server.addr, "/api/login", None, &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["user"]["id"].as_str().expect("a user id").to_owned();
    let mut client = Client::connect(server).await;
    let hello = json!({"type": "hello", "data": {"token": answer["token"]}});
    client.send(&hello.to_string()).await;
    match client.recv().await.message {
        ServerMessage::Welcome(welcome) => assert!(welcome.user.is_some()),
        other => panic!("expected welcome, got {other:?}"),
    }
    (client, id)
}

/// One chat message naming 40 known users notifies exactly 10 of them
/// (PROTOCOL.md 1.1, Limits), the first ten named, each once.
#[tokio::test]
async fn a_message_mentioning_forty_users_notifies_ten() {
    let db = temp_db();
    let server =
        TestServer::start(&["--tick-rate", "0", "--jwt-secret", LONG_SECRET, "--db", &db]).await;
    let mut members = Vec::new();
    for n in 0..40 {
        members.push(member(&server, &format!("member{n:02}")).await);
    }
    let (mut author, _) = member(&server, "Author").await;
    let text: String = (0..40).map(|n| format!("@member{n:02} ")).collect();
    let frame = json!({"type":"chat_send","data":{"room":"general","text":text},"id":"a-1"});
    author.send(&frame.to_string()).await;
    loop {
        match author.recv().await.message {
            ServerMessage::Ack(ack) => break assert_eq!(ack.id, "a-1"),
            ServerMessage::PresenceDiff(_) => continue,
            other => panic!("expected ack, got {other:?}"),
        }
    }
    // The ack comes after the commit: every notification is stored by now.
    let mut unread = Vec::new();
    for (client, id) in &mut members {
        unread.push(client.inbox(id).await.len());
    }
    let mut expected = vec![1; 10];
    expected.extend([0; 30]);
    assert_eq!(unread, expected);
}
