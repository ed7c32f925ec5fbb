//! The hub without a network: subscribers are bare outboxes.

use super::*;
use crate::protocol::ServerEnvelope;
use crate::server::ws::outbox::Next;

fn hub() -> Hub {
    Hub::new(Arc::new(Metrics::default()), Duration::from_millis(50))
}

fn aapl() -> Channel {
    Channel::Ticker("AAPL".into())
}

fn quote(price: f64) -> Quote {
    Quote {
        symbol: "AAPL".into(),
        price,
        change: 0.0,
        change_pct: 0.0,
        volume: 100,
    }
}

/// Everything queued on `outbox` now, parsed.
async fn drain(outbox: &Outbox) -> Vec<ServerMessage> {
    let mut messages = Vec::new();
    while outbox.queued().0 > 0 {
        let Next::Frames(frames) = outbox.next(usize::MAX).await else {
            panic!()
        };
        for frame in frames {
            messages.extend(
                ServerEnvelope::from_json(&frame)
                    .unwrap()
                    .unpack()
                    .into_iter()
                    .map(|e| e.message),
            );
        }
    }
    messages
}

fn subscribed(message: &ServerMessage) -> &Subscribed {
    match message {
        ServerMessage::Subscribed(s) => s,
        other => panic!("expected subscribed, got {other:?}"),
    }
}

fn tick_offsets(messages: &[ServerMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Tick(t) => Some(t.offset),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_symbol_without_ticks_subscribes_with_a_null_snapshot() {
    let hub = hub();
    let outbox = Outbox::new(1 << 20);
    hub.subscribe(1, &outbox, &aapl(), None).unwrap();
    let messages = drain(&outbox).await;
    let answer = subscribed(&messages[0]);
    assert_eq!(
        (answer.offset, answer.recovered, &answer.snapshot),
        (0, false, &None)
    );
    assert_eq!(answer.channel, "ticker:AAPL");
}

#[tokio::test]
async fn subscribers_get_live_ticks_with_growing_offsets() {
    let hub = hub();
    let outbox = Outbox::new(1 << 20);
    hub.subscribe(1, &outbox, &aapl(), None).unwrap();
    drain(&outbox).await;
    for n in 0..3 {
        assert_eq!(hub.publish_tick(quote(100.0 + n as f64)), n + 1);
        assert_eq!(tick_offsets(&drain(&outbox).await), [n + 1]);
    }
}

#[tokio::test]
async fn the_snapshot_holds_the_latest_quote_and_recent_prices() {
    let hub = hub();
    for n in 0..70 {
        hub.publish_tick(quote(n as f64));
    }
    let outbox = Outbox::new(1 << 20);
    hub.subscribe(1, &outbox, &aapl(), None).unwrap();
    let messages = drain(&outbox).await;
    let answer = subscribed(&messages[0]);
    assert_eq!(answer.offset, 70);
    let Some(Snapshot::Ticker(snapshot)) = &answer.snapshot else {
        panic!()
    };
    assert_eq!(snapshot.quote.offset, 70);
    assert_eq!(snapshot.recent.len(), TICKER_RECENT);
    assert_eq!(snapshot.recent.first(), Some(&10.0));
    assert_eq!(snapshot.recent.last(), Some(&69.0));
}

#[tokio::test]
async fn a_resume_in_the_same_epoch_replays_the_gap_then_goes_live() {
    let hub = hub();
    for n in 0..5 {
        hub.publish_tick(quote(n as f64));
    }
    let epoch = hub.peek(&aapl()).epoch;
    let outbox = Outbox::new(1 << 20);
    let since = Since { offset: 2, epoch };
    hub.subscribe(1, &outbox, &aapl(), Some(&since)).unwrap();
    hub.publish_tick(quote(9.0));
    let messages = drain(&outbox).await;
    let answer = subscribed(&messages[0]);
    assert!(answer.recovered);
    assert_eq!(answer.offset, 5);
    assert_eq!(answer.snapshot, None);
    assert_eq!(tick_offsets(&messages), [3, 4, 5, 6]);
}

#[tokio::test]
async fn a_resume_from_another_epoch_or_beyond_the_history_gets_a_snapshot() {
    let hub = hub();
    for n in 0..(TICKER_HISTORY + 10) {
        hub.publish_tick(quote(n as f64));
    }
    let epoch = hub.peek(&aapl()).epoch;
    for since in [
        Since {
            offset: 3,
            epoch: "another".into(),
        },
        Since {
            offset: 3,
            epoch: epoch.clone(),
        },
        Since {
            offset: 10_000,
            epoch: epoch.clone(),
        },
    ] {
        let outbox = Outbox::new(1 << 20);
        hub.subscribe(1, &outbox, &aapl(), Some(&since)).unwrap();
        let messages = drain(&outbox).await;
        let answer = subscribed(&messages[0]);
        assert!(!answer.recovered, "{since:?}");
        assert!(answer.snapshot.is_some());
        assert!(
            tick_offsets(&messages).is_empty(),
            "no replay without recovery"
        );
    }
    // The oldest offset still held resumes.
    let outbox = Outbox::new(1 << 20);
    let since = Since { offset: 10, epoch };
    hub.subscribe(1, &outbox, &aapl(), Some(&since)).unwrap();
    let messages = drain(&outbox).await;
    assert!(subscribed(&messages[0]).recovered);
    assert_eq!(tick_offsets(&messages).len(), TICKER_HISTORY);
}

#[tokio::test]
async fn unsubscribed_connections_get_nothing_more() {
    let hub = hub();
    let outbox = Outbox::new(1 << 20);
    hub.subscribe(1, &outbox, &aapl(), None).unwrap();
    hub.unsubscribe(1, &aapl());
    drain(&outbox).await;
    hub.publish_tick(quote(1.0));
    assert!(drain(&outbox).await.is_empty());
    assert_eq!(hub.subscriber_count(&aapl()), 0);
}

#[tokio::test]
async fn a_stalled_subscriber_holds_one_tick_per_symbol_and_others_get_all() {
    let hub = hub();
    let stalled = Outbox::new(1 << 20);
    let reader = Outbox::new(1 << 20);
    hub.subscribe(1, &stalled, &aapl(), None).unwrap();
    hub.subscribe(2, &reader, &aapl(), None).unwrap();
    drain(&stalled).await;
    drain(&reader).await;
    let mut seen = Vec::new();
    for n in 0..1000 {
        hub.publish_tick(quote(n as f64));
        seen.extend(tick_offsets(&drain(&reader).await));
    }
    assert_eq!(seen, (1..=1000).collect::<Vec<_>>());
    assert_eq!(stalled.queued().0, 1);
    assert_eq!(
        tick_offsets(&drain(&stalled).await),
        [1000],
        "only the latest survives"
    );
}

#[tokio::test]
async fn only_ticker_channels_are_served_for_now() {
    let hub = hub();
    let outbox = Outbox::new(1 << 20);
    let chat = Channel::Chat("general".into());
    assert_eq!(
        hub.subscribe(1, &outbox, &chat, None),
        Err(SubscribeError::NotAvailable)
    );
}
