//! Identity and presence against a real server: guest login, tokens (ours,
//! another backend's, expired, forged), who is online across tabs, the leave
//! grace, abrupt drops noticed by the heartbeat, and `away`.

mod common;

use common::{http_get_bearer, http_post, Client, TestServer};
use jsonwebtoken::{encode, EncodingKey, Header};
use pulse::protocol::{PresenceDiff, PresenceUser, ServerMessage, Snapshot, UserStatus};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "presence-test-secret-0123456789ab";

async fn server(extra: &[&str]) -> TestServer {
    let mut flags = vec![
        "--tick-rate",
        "0",
        "--jwt-secret",
        SECRET,
        "--presence-grace-ms",
        "300",
    ];
    flags.extend_from_slice(extra);
    TestServer::start(&flags).await
}

async fn login(server: &TestServer, name: &str) -> String {
    let (status, answer) = http_post(
        server.addr,
        "/api/login",
        None,
        &json!({ "name": name }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

/// A token signed with `secret`, as another backend would mint it.
fn token(secret: &str, sub: &str, name: &str, exp_from_now: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({ "sub": sub, "name": name, "exp": now + exp_from_now });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

impl Client {
    /// Connects and says `hello` with `token`; returns the welcome's user id.
    async fn identified(server: &TestServer, token: &str) -> Client {
        let mut client = Client::connect(server).await;
        client
            .send(&json!({"type": "hello", "data": {"token": token}}).to_string())
            .await;
        match client.recv().await.message {
            ServerMessage::Welcome(welcome) => assert!(welcome.user.is_some()),
            other => panic!("expected welcome, got {other:?}"),
        }
        client
    }

    /// Subscribes to `presence` and returns the users of its snapshot.
    async fn watch_presence(&mut self) -> Vec<PresenceUser> {
        self.send(r#"{"type":"subscribe","data":{"channels":[{"channel":"presence"}]}}"#)
            .await;
        match self.recv().await.message {
            ServerMessage::Subscribed(s) => match s.snapshot {
                Some(Snapshot::Presence(p)) => p.users,
                other => panic!("expected a presence snapshot, got {other:?}"),
            },
            other => panic!("expected subscribed, got {other:?}"),
        }
    }

    async fn diff(&mut self) -> PresenceDiff {
        loop {
            match self.recv().await.message {
                ServerMessage::PresenceDiff(diff) => return diff,
                ServerMessage::Pong(_) => continue,
                other => panic!("expected presence_diff, got {other:?}"),
            }
        }
    }

    /// Asserts nothing arrives for `wait` (a `ping` answered proves the socket works).
    async fn quiet_for(&mut self, wait: Duration) {
        tokio::time::sleep(wait).await;
        self.send(r#"{"type":"ping","data":{}}"#).await;
        match self.recv().await.message {
            ServerMessage::Pong(_) => {}
            other => panic!("expected nothing before the pong, got {other:?}"),
        }
    }
}

/// Guest login answers a token whose user is the trimmed name with a
/// case-folded id, and `hello` with it identifies the connection.
#[tokio::test]
async fn guest_login_gives_a_token_that_identifies_the_connection() {
    let server = server(&[]).await;
    let (status, answer) =
        http_post(server.addr, "/api/login", None, r#"{"name":"  Alice "}"#).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["user"],
        json!({"id": "guest:alice", "name": "Alice"})
    );
    let token = answer["token"].as_str().unwrap();
    let mut client = Client::connect(&server).await;
    client
        .send(&json!({"type": "hello", "data": {"token": token}}).to_string())
        .await;
    let welcome = client.recv_json().await;
    assert_eq!(
        welcome["data"]["user"],
        json!({"id": "guest:alice", "name": "Alice"})
    );
}

/// Names must be 1 to 32 visible characters; the API says which rule failed.
#[tokio::test]
async fn bad_names_get_clear_400s() {
    let server = server(&[]).await;
    for (body, says) in [
        (json!({"name": "   "}), "empty"),
        (json!({"name": "x".repeat(33)}), "32"),
        (json!({"name": "a\u{0007}b"}), "visible"),
        (json!({"name": 5}), "name"),
        (json!({}), "name"),
    ] {
        let (status, answer) = http_post(server.addr, "/api/login", None, &body.to_string()).await;
        assert_eq!(status, 400, "{body}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
}

/// `--guest-login false` turns the login API off.
#[tokio::test]
async fn guest_login_can_be_turned_off() {
    let server = server(&["--guest-login", "false"]).await;
    let (status, _) = http_post(server.addr, "/api/login", None, r#"{"name":"Alice"}"#).await;
    assert_eq!(status, 404);
}

/// Tokens minted by another backend with the same secret work; expired,
/// forged and garbled ones close the connection with 4001.
#[tokio::test]
async fn tokens_from_elsewhere_work_and_bad_ones_close_with_4001() {
    let server = server(&[]).await;
    let mut client = Client::connect(&server).await;
    client
        .send(
            &json!({"type":"hello","data":{"token": token(SECRET, "u-123", "Carol", 60)}})
                .to_string(),
        )
        .await;
    let welcome = client.recv_json().await;
    assert_eq!(
        welcome["data"]["user"],
        json!({"id": "u-123", "name": "Carol"})
    );

    for (bad, reason) in [
        (token(SECRET, "u-123", "Carol", -3600), "token expired"),
        (
            token("another secret", "u-123", "Carol", 60),
            "invalid token",
        ),
        ("garbage".to_owned(), "invalid token"),
    ] {
        let mut client = Client::connect(&server).await;
        client
            .send(&json!({"type":"hello","data":{"token": bad}}).to_string())
            .await;
        let frame = client.closed().await.expect("a close frame");
        assert_eq!(
            (u16::from(frame.code), frame.reason.as_str()),
            (4001, reason)
        );
    }
}

/// Anonymous connections may not subscribe to presence or set a status.
#[tokio::test]
async fn anonymous_connections_have_no_presence() {
    let server = server(&[]).await;
    let mut client = Client::connected(&server).await;
    client
        .send(r#"{"type":"subscribe","data":{"channels":[{"channel":"presence"}]},"id":"p"}"#)
        .await;
    let error = client.recv_json().await;
    assert_eq!(error["data"]["code"], "unauthorized");
    assert_eq!(error["data"]["channel"], "presence");
    client
        .send(r#"{"type":"status","data":{"status":"away"}}"#)
        .await;
    assert_eq!(client.recv_json().await["data"]["code"], "unauthorized");
    let observer = token(SECRET, "observer", "Observer", 60);
    let (_, presence) = http_get_bearer(server.addr, "/api/presence", &observer).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&presence).unwrap(),
        json!({"users": []})
    );
}

/// Each user sees the other join; a second tab updates the count; closing
/// one tab of two keeps the user; closing the last leaves after the grace.
#[tokio::test]
async fn tabs_collapse_and_the_last_one_leaves_after_the_grace() {
    let server = server(&[]).await;
    let (alice, bob) = (login(&server, "Alice").await, login(&server, "Bob").await);
    let mut watcher = Client::identified(&server, &alice).await;
    let users = watcher.watch_presence().await;
    assert_eq!(
        users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["guest:alice"]
    );

    let bob_tab_1 = Client::identified(&server, &bob).await;
    let diff = watcher.diff().await;
    assert_eq!(
        (diff.joins[0].id.as_str(), diff.joins[0].connections),
        ("guest:bob", 1)
    );
    let bob_tab_2 = Client::identified(&server, &bob).await;
    assert_eq!(watcher.diff().await.updates[0].connections, 2);

    drop(bob_tab_1);
    assert_eq!(watcher.diff().await.updates[0].connections, 1);
    let (_, listed) = http_get_bearer(server.addr, "/api/presence", &alice).await;
    assert!(listed.contains("\"guest:bob\""), "{listed}");

    drop(bob_tab_2);
    let diff = watcher.diff().await;
    assert_eq!(diff.leaves[0].id, "guest:bob", "{diff:?}");
    let (_, listed) = http_get_bearer(server.addr, "/api/presence", &alice).await;
    assert!(!listed.contains("\"guest:bob\""), "{listed}");
}

/// A reload (close and reconnect within the grace) does not flap the list.
#[tokio::test]
async fn a_reload_within_the_grace_sends_nothing() {
    let server = server(&[]).await;
    let (alice, bob) = (login(&server, "Alice").await, login(&server, "Bob").await);
    let mut watcher = Client::identified(&server, &alice).await;
    watcher.watch_presence().await;
    let bob_tab = Client::identified(&server, &bob).await;
    watcher.diff().await;
    drop(bob_tab);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _bob_again = Client::identified(&server, &bob).await;
    watcher.quiet_for(Duration::from_millis(600)).await;
}

/// `status away` shows as an update; every tab away makes the user away.
#[tokio::test]
async fn a_hidden_page_shows_away() {
    let server = server(&[]).await;
    let (alice, bob) = (login(&server, "Alice").await, login(&server, "Bob").await);
    let mut watcher = Client::identified(&server, &alice).await;
    watcher.watch_presence().await;
    let mut bob_tab = Client::identified(&server, &bob).await;
    watcher.diff().await;
    bob_tab
        .send(r#"{"type":"status","data":{"status":"away"}}"#)
        .await;
    let update = &watcher.diff().await.updates[0];
    assert_eq!(
        (update.id.as_str(), update.status),
        ("guest:bob", UserStatus::Away)
    );
    bob_tab
        .send(r#"{"type":"status","data":{"status":"online"}}"#)
        .await;
    assert_eq!(watcher.diff().await.updates[0].status, UserStatus::Online);
}

/// A client that vanishes without a close frame is noticed by the heartbeat
/// and leaves within 2 × heartbeat + grace.
#[tokio::test]
async fn an_abrupt_drop_leaves_after_the_heartbeat_and_the_grace() {
    let server = server(&["--heartbeat-ms", "100"]).await;
    let (alice, bob) = (login(&server, "Alice").await, login(&server, "Bob").await);
    let mut watcher = Client::identified(&server, &alice).await;
    watcher.watch_presence().await;
    let bob_tab = Client::identified(&server, &bob).await;
    watcher.diff().await;
    // Bob's socket stays open but he never reads nor answers a Ping again:
    // the TCP connection is alive, the client is not.
    let started = tokio::time::Instant::now();
    let diff = loop {
        // The watcher must keep reading (and so answering Pings) meanwhile.
        let diff = watcher.diff().await;
        if !diff.leaves.is_empty() {
            break diff;
        }
    };
    assert_eq!(diff.leaves[0].id, "guest:bob");
    // 2 × 100 ms heartbeat + 300 ms grace; generous bound for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    drop(bob_tab);
}
