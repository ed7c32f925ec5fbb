//! Pulse on PostgreSQL (`--database-url`), with a real cluster started for
//! the test (`common/postgres.rs`): two `pulse` processes sharing one
//! database (no Redis yet) keep a room's offsets gap-free and each envelope
//! id stored once; and a database that goes away while clients chat makes
//! `chat_send` fail with `internal` (never a false ack) while tickers keep
//! flowing, and chat works again once it is back, with no restart.

mod common;

use common::postgres::{shared, Cluster};
use common::process::Pulse;
use common::{Client, TestServer, PATIENCE};
use futures::{SinkExt, StreamExt};
use pulse::protocol::{ErrorCode, ServerEnvelope, ServerMessage};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use tokio_tungstenite::tungstenite::Message;

/// One secret for both instances, so a token minted by one is good on both.
const SECRET: &str = "a-secret-shared-by-both-instances-0123456789";
const ADMIN_KEY: &str = "an-admin-key-for-the-fault-test";
const USERS: usize = 6;
const EACH: usize = 40;

/// A user signed in on `first` and, with the same token, on `second`.
async fn on_both(first: SocketAddr, second: SocketAddr, name: &str) -> (Client, Client) {
    let body = json!({ "name": name }).to_string();
    let (status, answer) = common::http_post(first, "/api/login", None, &body).await;
    assert_eq!(status, 200, "{answer}");
    let hello = json!({"type": "hello", "data": {"token": answer["token"]}}).to_string();
    let mut clients = Vec::new();
    for addr in [first, second] {
        let mut client = Client::connect_to(addr, None).await;
        client.send(&hello).await;
        match client.recv().await.message {
            ServerMessage::Welcome(welcome) => assert!(welcome.user.is_some()),
            other => panic!("expected welcome, got {other:?}"),
        }
        clients.push(client);
    }
    let second = clients.pop().unwrap();
    (clients.pop().unwrap(), second)
}

/// Sends `EACH` messages (ids `0..EACH`) without waiting and returns the
/// offset of each ack, in the order the acks came.
async fn send_all(client: Client, user: usize) -> Vec<(String, u64)> {
    let (mut write, mut read) = client.ws.split();
    let writing = tokio::spawn(async move {
        for n in 0..EACH {
            let frame = json!({
                "type": "chat_send",
                "id": format!("m{n}"),
                "data": {"room": "general", "text": format!("u{user}-m{n}")},
            });
            write.send(Message::text(frame.to_string())).await.unwrap();
        }
        write
    });
    let mut acks = Vec::new();
    while acks.len() < EACH {
        let frame = tokio::time::timeout(PATIENCE * 4, read.next())
            .await
            .expect("acks in time")
            .expect("open")
            .expect("healthy");
        let Message::Text(text) = frame else { continue };
        for envelope in ServerEnvelope::from_json(&text).unwrap().unpack() {
            match envelope.message {
                ServerMessage::Ack(ack) => {
                    assert_eq!(
                        ack.channel.as_ref().map(ToString::to_string).as_deref(),
                        Some("chat:general")
                    );
                    acks.push((ack.id, ack.offset.unwrap()));
                }
                ServerMessage::Error(error) => panic!("refused: {error:?}"),
                _ => {}
            }
        }
    }
    drop(writing.await.unwrap());
    acks
}

/// Every message of `chat:general` on disk, by offset, read in `history`
/// pages from the newest back (history is read from the database).
async fn stored_messages(addr: SocketAddr, newest: u64) -> BTreeMap<u64, String> {
    let mut reader = Client::signed_in_to(addr, "Reader").await;
    let mut stored = BTreeMap::new();
    let mut before = newest + 1;
    while before > 1 {
        let request = json!({"type": "history", "data": {"channel": "chat:general", "before": before, "limit": 100}});
        reader.send(&request.to_string()).await;
        let page = loop {
            if let ServerMessage::History(page) = reader.recv().await.message {
                break page;
            }
        };
        let Some(first) = page.messages.first().map(|m| m.offset) else {
            break;
        };
        stored.extend(page.messages.into_iter().map(|m| (m.offset, m.text)));
        before = first;
    }
    stored
}

/// Two instances, each user on both at once sending the same ids to each
/// (every message is a resend racing on two instances): each id is stored
/// once and both acks name its one offset; the room's offsets are 1..N with
/// no gap or double; each connection's acks come in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_append_without_gap_or_double() {
    let url = shared().create_database();
    let flags = ["--database-url", url.as_str(), "--chat-rate", "1000"];
    let env = [("PULSE_JWT_SECRET", SECRET)];
    let a = Pulse::start(&common::temp_db(), &flags, &env);
    let b = Pulse::start(&common::temp_db(), &flags, &env);

    let mut sending = Vec::new();
    for user in 0..USERS {
        let (on_a, on_b) = on_both(a.addr, b.addr, &format!("User{user}")).await;
        sending.push(tokio::spawn(send_all(on_a, user)));
        sending.push(tokio::spawn(send_all(on_b, user)));
    }
    let mut offset_of: HashMap<(usize, String), u64> = HashMap::new();
    for (index, task) in sending.into_iter().enumerate() {
        let acks = task.await.unwrap();
        let offsets: Vec<u64> = acks.iter().map(|(_, offset)| *offset).collect();
        // A connection's messages are stored in the order it sent them
        // (each after the one before, on whichever instance stored it), and
        // its acks come in that order.
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "acks out of commit order: {offsets:?}"
        );
        for (id, offset) in acks {
            let user = index / 2;
            if let Some(other) = offset_of.insert((user, id.clone()), offset) {
                assert_eq!(
                    other, offset,
                    "both instances ack {id} of user {user} alike"
                );
            }
        }
    }
    let total = (USERS * EACH) as u64;
    assert_eq!(offset_of.len() as u64, total);
    let mut offsets: Vec<u64> = offset_of.values().copied().collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (1..=total).collect::<Vec<_>>(), "1..N, once each");

    // What either instance reads back from the database: every message
    // once, at the offset its acks named.
    for addr in [a.addr, b.addr] {
        let stored = stored_messages(addr, total).await;
        assert_eq!(stored.len() as u64, total);
        for ((user, id), offset) in &offset_of {
            let n = id.trim_start_matches('m');
            assert_eq!(stored[offset], format!("u{user}-m{n}"));
        }
    }

    // Each instance's PostgreSQL writer timed every group it committed.
    for addr in [a.addr, b.addr] {
        let (_, metrics) = common::http_get(addr, "/metrics").await;
        let value = |name: &str| -> u64 {
            let line = metrics.lines().find_map(|line| line.strip_prefix(name));
            line.unwrap_or_else(|| panic!("no {name} in {metrics}"))
                .trim()
                .parse()
                .unwrap()
        };
        let commits = value("pulse_store_commits_total ");
        assert!(commits >= 1, "{metrics}");
        assert_eq!(value("pulse_store_commit_seconds_count "), commits);
    }
}

/// The next `chat_send` answer for `id`: its ack's offset, or its error code.
async fn answer(
    client: &mut Client,
    id: &str,
    wait: std::time::Duration,
) -> Result<u64, ErrorCode> {
    let started = tokio::time::Instant::now();
    loop {
        assert!(started.elapsed() < wait, "no answer to {id}");
        match client.recv().await.message {
            ServerMessage::Ack(ack) if ack.id == id => return Ok(ack.offset.unwrap()),
            ServerMessage::Error(error) if error.id.as_deref() == Some(id) => {
                return Err(error.code)
            }
            _ => {}
        }
    }
}

async fn chat(client: &mut Client, id: &str, text: &str) {
    let frame = json!({"type": "chat_send", "id": id, "data": {"room": "general", "text": text}});
    client.send(&frame.to_string()).await;
}

/// Ticks a subscribed client receives within `window` that the server sent
/// after `after` (so not ticks queued before, still unread).
async fn ticks_sent_after(
    client: &mut Client,
    after: std::time::SystemTime,
    window: std::time::Duration,
) -> usize {
    let after = after
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let deadline = tokio::time::Instant::now() + window;
    let mut ticks = 0;
    while tokio::time::Instant::now() < deadline {
        let envelope = client.recv().await;
        if let ServerMessage::Tick(_) = envelope.message {
            if envelope.timestamp.unix_micros() > after {
                ticks += 1;
            }
        }
    }
    ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_fails_cleanly_while_the_database_is_down_and_recovers_by_itself() {
    let cluster = Cluster::start();
    let url = cluster.create_database();
    let server = TestServer::start(&[
        "--database-url",
        &url,
        "--symbols",
        "AAPL",
        "--tick-rate",
        "20",
        "--admin-key",
        ADMIN_KEY,
    ])
    .await;
    let mut watcher = Client::connected(&server).await;
    let subscribe =
        json!({"type": "subscribe", "data": {"channels": [{"channel": "ticker:AAPL"}]}});
    watcher.send(&subscribe.to_string()).await;
    let mut ann = Client::signed_in(&server, "Ann").await;
    chat(&mut ann, "c-1", "before").await;
    assert_eq!(answer(&mut ann, "c-1", PATIENCE).await, Ok(1));

    cluster.stop();
    let stopped = std::time::SystemTime::now();
    // Every send while the database is down is refused as `internal`: none
    // is acknowledged, so the client keeps it to send again.
    for id in ["c-2", "c-3"] {
        chat(&mut ann, id, "during").await;
        assert_eq!(
            answer(&mut ann, id, PATIENCE * 3).await,
            Err(ErrorCode::Internal),
            "{id} while the database is down"
        );
    }
    // Meanwhile the ticker flows on (20 a second), and a user can still sign
    // in and be online (remembering them for mentions fails, and only that).
    let ticks = ticks_sent_after(&mut watcher, stopped, std::time::Duration::from_secs(2)).await;
    assert!(ticks >= 10, "{ticks} ticks sent after the database stopped");
    let _bob = Client::signed_in(&server, "Bob").await;
    let (status, online) = common::http_get_bearer(server.addr, "/api/presence", ADMIN_KEY).await;
    assert_eq!(status, 200, "{online}");
    assert!(online.contains("guest:bob"), "{online}");

    cluster.restart();
    // The pool connects again by itself: the client's resend is stored
    // (once), and so is what comes after it.
    let mut stored = None;
    let started = tokio::time::Instant::now();
    while stored.is_none() {
        assert!(started.elapsed() < PATIENCE * 4, "chat never came back");
        chat(&mut ann, "c-2", "during").await;
        stored = answer(&mut ann, "c-2", PATIENCE * 3).await.ok();
    }
    assert_eq!(stored, Some(2));
    chat(&mut ann, "c-3", "during").await;
    assert_eq!(answer(&mut ann, "c-3", PATIENCE).await, Ok(3));
    chat(&mut ann, "c-2", "during").await;
    assert_eq!(
        answer(&mut ann, "c-2", PATIENCE).await,
        Ok(2),
        "a resend is stored once"
    );
    let stored = stored_messages(server.addr, 3).await;
    assert_eq!(
        stored.into_iter().collect::<Vec<_>>(),
        [
            (1, "before".into()),
            (2, "during".into()),
            (3, "during".into())
        ]
    );
}
