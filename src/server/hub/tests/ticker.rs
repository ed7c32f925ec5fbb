//! Tickers: snapshots, live ticks, resume in and across epochs, a stalled
//! subscriber, unknown symbols, and the cluster's epochs when instances run
//! as one.

use super::*;
use crate::protocol::{Snapshot, Tick};
use axum::extract::ws::Utf8Bytes;

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

/// Subscribing to unknown tickers allocates no history, and leaving them
/// leaves nothing in the hub.
#[tokio::test]
async fn unknown_tickers_cost_nothing() {
    assert_eq!(TickerHistory::default().ring.allocated(), 0);
    let hub = hub();
    let outbox = Outbox::new(1 << 20);
    let tickers: Vec<Channel> = (0..256).map(|n| Channel::Ticker(format!("X{n}"))).collect();
    for ticker in &tickers {
        hub.subscribe(1, &outbox, ticker, None).unwrap();
    }
    assert_eq!(hub.channel_count(), 256);
    for ticker in &tickers {
        let state = lock(&hub.inner.channels).get(ticker).cloned().unwrap();
        let History::Ticker(history) = &lock(&state).history else {
            panic!()
        };
        assert_eq!(history.ring.allocated(), 0, "{ticker}");
    }
    for ticker in &tickers {
        hub.unsubscribe(1, ticker);
    }
    assert_eq!(hub.channel_count(), 0);
    assert_eq!(hub.inner.metrics.hub_channels.get(), 0);
}

fn cluster_tick(offset: u64, price: f64) -> (Tick, Utf8Bytes) {
    let tick = Tick {
        channel: "ticker:AAPL".parse().unwrap(),
        offset,
        symbol: "AAPL".into(),
        price,
        change: 0.0,
        change_pct: 0.0,
        volume: 1,
    };
    let frame = frames::encode(ServerMessage::Tick(tick.clone()));
    (tick, frame)
}

/// Ticks the cluster gives offsets to go out in order; when Redis lost its
/// keys (a new epoch, offsets from 1 again) subscribers get a fresh
/// `subscribed` in that epoch instead of a tick their cursor would refuse.
#[tokio::test]
async fn a_new_cluster_epoch_renews_ticker_subscribers() {
    let hub = hub();
    let observer = Outbox::new(1 << 20);
    hub.install_ticker(&aapl(), "e1".into(), 0, Vec::new());
    hub.subscribe(1, &observer, &aapl(), None).unwrap();
    drain(&observer).await;
    let mut seen = Vec::new();
    for offset in 1..=2 {
        let (tick, frame) = cluster_tick(offset, 100.0 + offset as f64);
        assert_eq!(hub.deliver_tick("e1", tick, frame), Delivery::Delivered);
        // Read at once (a reader that falls behind holds the latest only).
        seen.extend(tick_offsets(&drain(&observer).await));
    }
    let (tick, frame) = cluster_tick(1, 50.0);
    assert_eq!(hub.deliver_tick("e1", tick, frame), Delivery::Known);
    assert!(drain(&observer).await.is_empty());
    assert_eq!(seen, [1, 2]);

    let (tick, frame) = cluster_tick(1, 50.0);
    assert_eq!(hub.deliver_tick("e2", tick, frame), Delivery::Delivered);
    let got = drain(&observer).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let renewed = subscribed(&got[0]);
    assert_eq!(
        (renewed.epoch.as_str(), renewed.offset, renewed.recovered),
        ("e2", 1, false)
    );
    let (tick, frame) = cluster_tick(2, 51.0);
    assert_eq!(hub.deliver_tick("e2", tick, frame), Delivery::Delivered);
    assert_eq!(tick_offsets(&drain(&observer).await), [2]);
}

/// A broker that numbers ticks elsewhere and carries nothing anywhere (as
/// the Redis broker with nobody reading its queues).
struct Clustered;

impl crate::server::broker::Broker for Clustered {
    fn publish(&self, _: crate::server::broker::Publication) {}
    fn publish_tick(
        &self,
        _: Quote,
        _: Option<crate::server::broker::TickAnswer>,
    ) -> crate::server::broker::Sequencing {
        crate::server::broker::Sequencing::Broker
    }
    fn sequences_ticks(&self) -> bool {
        true
    }
    fn share_awareness(&self, _: &Channel, _: Utf8Bytes) {}
    fn watch(&self, _: &Channel) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
    fn loaded(&self, _: &Channel) {}
    fn ensure(&self, _: &Channel) {}
    fn gap(&self, _: crate::server::broker::Held) -> crate::server::broker::Gap {
        crate::server::broker::Gap::Filling
    }
}

/// A hub relaying through other instances (the broker's queues, unread).
fn clustered_hub() -> Hub {
    let hub = hub();
    hub.use_broker(Arc::new(Clustered));
    hub
}

/// When instances run as one a ticker is served only as installed from
/// Redis, in the cluster's epoch, never with an epoch of this hub's that
/// its first tick would replace: that tick goes out as a tick.
#[tokio::test]
async fn a_clustered_ticker_is_served_in_the_clusters_epoch_only() {
    let hub = clustered_hub();
    let observer = Outbox::new(1 << 20);
    assert_eq!(
        hub.subscribe(1, &observer, &aapl(), None),
        Err(SubscribeError::NotLoaded)
    );
    hub.install_ticker(&aapl(), "e1".into(), 0, Vec::new());
    hub.subscribe(1, &observer, &aapl(), None).unwrap();
    let got = drain(&observer).await;
    assert_eq!(subscribed(&got[0]).epoch, "e1");
    let (tick, frame) = cluster_tick(1, 100.0);
    assert_eq!(hub.deliver_tick("e1", tick, frame), Delivery::Delivered);
    assert_eq!(tick_offsets(&drain(&observer).await), [1]);
}

/// A ticker with no tick yet whose epoch the cluster replaced (Redis lost
/// it, or this hub served its own while Redis was away) gives its
/// subscribers a fresh `subscribed` in the new one; its first tick then
/// goes out as a tick. Once ticked, only a tick brings a new epoch.
#[tokio::test]
async fn an_unticked_ticker_takes_the_clusters_epoch() {
    let hub = clustered_hub();
    let observer = Outbox::new(1 << 20);
    hub.install_ticker(&aapl(), "mine".into(), 0, Vec::new());
    hub.subscribe(1, &observer, &aapl(), None).unwrap();
    drain(&observer).await;
    hub.reopen_ticker(&aapl(), "mine".into());
    assert!(drain(&observer).await.is_empty(), "the same epoch: nothing");
    hub.reopen_ticker(&aapl(), "e2".into());
    let got = drain(&observer).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let renewed = subscribed(&got[0]);
    assert_eq!(
        (renewed.epoch.as_str(), renewed.offset, renewed.recovered),
        ("e2", 0, false)
    );
    assert!(renewed.snapshot.is_none());
    let (tick, frame) = cluster_tick(1, 100.0);
    assert_eq!(hub.deliver_tick("e2", tick, frame), Delivery::Delivered);
    assert_eq!(tick_offsets(&drain(&observer).await), [1]);
    hub.reopen_ticker(&aapl(), "e3".into());
    assert!(drain(&observer).await.is_empty());
    assert_eq!(hub.epoch_of(&aapl()).as_deref(), Some("e2"));
}
