//! The queue's policy per kind: never-dropped messages in order up to the
//! bound, then a head per channel behind; ticks the latest per channel;
//! awareness the latest few per document.

use super::*;
use crate::protocol::{Channel, ChatMessage, Timestamp, UserRef};
use crate::server::metrics::Metrics;

fn chat(room: &str, offset: u64) -> Publication {
    Publication::Chat(ChatMessage {
        channel: Channel::Chat(room.into()),
        room: room.into(),
        offset,
        msg_id: format!("m{offset}"),
        user: UserRef {
            id: "guest:ann".into(),
            name: "Ann".into(),
        },
        text: format!("{offset}"),
        sent_at: Timestamp::parse("2026-11-25T17:30:00.000000Z").unwrap(),
    })
}

fn quote(symbol: &str, price: f64) -> Quote {
    Quote {
        symbol: symbol.into(),
        price,
        change: 0.0,
        change_pct: 0.0,
        volume: 1,
    }
}

fn queue() -> Outgoing {
    Outgoing::new(Metrics::default().relay())
}

fn offsets(batch: &Batch) -> Vec<Option<u64>> {
    batch.ordered.iter().map(Publication::offset).collect()
}

#[tokio::test]
async fn never_dropped_messages_go_in_order_in_batches() {
    let queue = queue();
    for offset in 1..=(BATCH as u64 + 3) {
        queue.push(chat("general", offset));
    }
    let first = queue.next().await.unwrap();
    assert_eq!(first.ordered.len(), BATCH);
    assert_eq!(first.ordered[0], chat("general", 1));
    let second = queue.next().await.unwrap();
    let expected: Vec<Option<u64>> = (BATCH as u64 + 1..=BATCH as u64 + 3).map(Some).collect();
    assert_eq!(offsets(&second), expected);
}

#[tokio::test]
async fn past_the_bound_a_channel_is_marked_behind_and_its_head_follows() {
    let gauges = Metrics::default().relay();
    let queue = Outgoing::new(gauges.clone());
    for offset in 1..=(ORDERED_BOUND as u64 + 10) {
        queue.push(chat("general", offset));
    }
    queue.push(Publication::Read(Channel::User("guest:ann".into())));
    assert_eq!(gauges.behind.get(), 11, "ten messages and a read mark");
    let mut taken = Vec::new();
    while taken.len() < ORDERED_BOUND + 2 {
        taken.extend(queue.next().await.unwrap().ordered);
    }
    assert_eq!(
        taken.len(),
        ORDERED_BOUND + 2,
        "the bound, then one head and one read"
    );
    assert_eq!(
        taken[ORDERED_BOUND - 1],
        chat("general", ORDERED_BOUND as u64)
    );
    let tail = &taken[ORDERED_BOUND..];
    assert!(tail.contains(&Publication::Head(
        Channel::Chat("general".into()),
        ORDERED_BOUND as u64 + 10
    )));
    assert!(tail.contains(&Publication::Read(Channel::User("guest:ann".into()))));
}

#[tokio::test]
async fn a_requeued_batch_goes_first_again() {
    let queue = queue();
    queue.push(chat("general", 1));
    queue.push(chat("general", 2));
    let batch = queue.next().await.unwrap();
    queue.push(chat("general", 3));
    queue.requeue(batch.ordered, batch.since.unwrap());
    let again = queue.next().await.unwrap();
    assert_eq!(offsets(&again), [Some(1), Some(2), Some(3)]);
}

#[tokio::test]
async fn ticks_keep_the_latest_per_channel_and_answer_every_waiter() {
    let gauges = Metrics::default().relay();
    let queue = Outgoing::new(gauges.clone());
    let (first, first_offset) = tokio::sync::oneshot::channel();
    queue.push_tick(quote("AAPL", 1.0), Some(first));
    for n in 2..100 {
        queue.push_tick(quote("AAPL", n as f64), None);
    }
    queue.push_tick(quote("MSFT", 5.0), None);
    let mut batch = queue.next().await.unwrap();
    assert_eq!(batch.ticks.len(), 2, "one per channel");
    batch
        .ticks
        .sort_by(|a, b| a.quote.symbol.cmp(&b.quote.symbol));
    let aapl = batch.ticks.remove(0);
    assert_eq!(aapl.quote.price, 99.0, "the latest");
    assert!(!aapl.fenced, "one waiter came from an outside feed");
    for answer in aapl.answers {
        let _ = answer.send(Some(7));
    }
    assert_eq!(
        first_offset.await.unwrap(),
        Some(7),
        "the replaced one learns the offset"
    );
}

#[tokio::test]
async fn awareness_keeps_the_latest_frames_per_document() {
    let queue = queue();
    let doc = Channel::Doc("note".into());
    for n in 0..20 {
        queue.push_awareness(&doc, Utf8Bytes::from(format!("{n}")));
    }
    let batch = queue.next().await.unwrap();
    let frames: Vec<String> = batch.awareness.iter().map(|(_, f)| f.to_string()).collect();
    let expected: Vec<String> = (20 - AWARENESS_KEPT..20).map(|n| n.to_string()).collect();
    assert_eq!(frames, expected);
}

#[tokio::test]
async fn a_closed_queue_ends_its_publisher() {
    let queue = queue();
    queue.push(chat("general", 1));
    queue.close();
    assert!(queue.next().await.is_none());
}
