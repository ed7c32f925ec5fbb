//! Chat is durable under a crash: many clients send at once, so the store
//! commits their messages in groups; the process is killed (SIGKILL: no
//! shutdown, no flush) while groups are being written. After a restart on
//! the same file, every message that was acknowledged is there exactly once,
//! the offsets have no gap, and nothing is there twice.

mod common;

use common::process::Pulse;
use common::{Client, PATIENCE};
use futures::{SinkExt, StreamExt};
use pulse::protocol::{ErrorCode, ServerEnvelope, ServerMessage, Snapshot};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

const SENDERS: usize = 16;
const PER_SENDER: usize = 150;
/// Acks seen before the kill: enough that groups are committing, few enough
/// that most messages are still queued or in a transaction.
const KILL_AFTER_ACKS: usize = 400;

#[tokio::test]
async fn acknowledged_messages_survive_a_kill_in_the_middle_of_group_commits() {
    let db = common::temp_db();
    let mut pulse = Pulse::start(&db, &["--chat-rate", "1000"], &[]);
    let acks = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let client = Client::signed_in_to(pulse.addr, &format!("Sender{sender}")).await;
        senders.push(tokio::spawn(send_all(client, sender, acks.clone())));
    }
    let started = tokio::time::Instant::now();
    while acks.load(Relaxed) < KILL_AFTER_ACKS {
        assert!(started.elapsed() < PATIENCE * 6, "too few acks: {acks:?}");
        tokio::task::yield_now().await;
    }
    pulse.kill();
    let mut acked = HashSet::new();
    for sender in senders {
        acked.extend(sender.await.unwrap());
    }
    assert!(acked.len() >= KILL_AFTER_ACKS);
    assert!(
        acked.len() < SENDERS * PER_SENDER,
        "the kill came after the last ack: nothing was in flight"
    );

    let pulse = Pulse::start(&db, &[], &[]);
    let stored = all_messages(pulse.addr).await;
    let offsets: Vec<u64> = stored.keys().copied().collect();
    assert_eq!(
        offsets,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "offsets without a gap"
    );
    let texts: Vec<&String> = stored.values().collect();
    let distinct: HashSet<&String> = texts.iter().copied().collect();
    assert_eq!(distinct.len(), texts.len(), "nothing stored twice");
    let missing: Vec<&String> = acked
        .iter()
        .filter(|text| !distinct.contains(text))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

/// Sends `PER_SENDER` messages without waiting, reading acks as they come;
/// returns the texts acknowledged before the connection died.
async fn send_all(client: Client, sender: usize, acks: Arc<AtomicUsize>) -> Vec<String> {
    let (mut write, mut read) = client.ws.split();
    let writing = tokio::spawn(async move {
        for n in 0..PER_SENDER {
            let frame = json!({
                "type": "chat_send",
                "id": format!("{sender}-{n}"),
                "data": {"room": "general", "text": format!("s{sender}-m{n}")},
            });
            if write.send(Message::text(frame.to_string())).await.is_err() {
                return;
            }
        }
    });
    let mut acked = Vec::new();
    while let Some(Ok(frame)) = read.next().await {
        let Message::Text(text) = frame else { continue };
        for envelope in ServerEnvelope::from_json(&text).unwrap().unpack() {
            match envelope.message {
                ServerMessage::Ack(ack) => {
                    let (sender, n) = ack.id.split_once('-').unwrap();
                    acked.push(format!("s{sender}-m{n}"));
                    acks.fetch_add(1, Relaxed);
                }
                // Faster than 1,000 a second on a fast disk: not stored,
                // not acked, nothing to check.
                ServerMessage::Error(error) if error.code == ErrorCode::RateLimited => {}
                ServerMessage::Error(error) => panic!("refused: {error:?}"),
                _ => {}
            }
        }
    }
    writing.abort();
    acked
}

/// Every message of `chat:general` by offset: the subscribe snapshot, then
/// older pages until the first.
async fn all_messages(addr: std::net::SocketAddr) -> BTreeMap<u64, String> {
    let mut reader = Client::signed_in_to(addr, "Reader").await;
    reader
        .send(
            &json!({"type": "subscribe", "data": {"channels": [{"channel": "chat:general"}]}})
                .to_string(),
        )
        .await;
    let mut stored = BTreeMap::new();
    loop {
        if let ServerMessage::Subscribed(answer) = reader.recv().await.message {
            if let Some(Snapshot::Chat(snapshot)) = answer.snapshot {
                stored.extend(snapshot.messages.into_iter().map(|m| (m.offset, m.text)));
            }
            break;
        }
    }
    while let Some(&oldest) = stored.keys().next().filter(|&&first| first > 1) {
        let request = json!({"type": "history", "data": {"channel": "chat:general", "before": oldest, "limit": 100}});
        reader.send(&request.to_string()).await;
        loop {
            if let ServerMessage::History(page) = reader.recv().await.message {
                assert!(!page.messages.is_empty(), "a page before {oldest}");
                stored.extend(page.messages.into_iter().map(|m| (m.offset, m.text)));
                break;
            }
        }
    }
    stored
}
