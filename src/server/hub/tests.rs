//! The hub without a network: subscribers are bare outboxes.

use super::*;
use crate::protocol::{
    ChatMessage, Notification, PresenceDiff, PresenceUser, ServerEnvelope, Snapshot, Tick, UserRef,
    UserStatus,
};
use crate::server::store::{StoredChat, StoredDoc, StoredInbox, Unread, UNREAD_SNAPSHOT};
use crate::server::ws::outbox::{Next, Outbox, PushError};
use axum::extract::ws::Utf8Bytes;
use base64::Engine as _;

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
        let Next::Frames(frames, _) = outbox.next(usize::MAX).await else {
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
async fn persisted_channels_and_documents_must_be_loaded() {
    let hub = hub();
    let outbox = Outbox::new(1 << 20);
    let chat = Channel::Chat("general".into());
    assert_eq!(
        hub.subscribe(1, &outbox, &chat, None),
        Err(SubscribeError::NotLoaded)
    );
    let doc: Channel = "doc:notes".parse().unwrap();
    assert_eq!(
        hub.subscribe(1, &outbox, &doc, None),
        Err(SubscribeError::NotLoaded)
    );
}

fn chat_message(room: &str, offset: u64, text: &str) -> ChatMessage {
    ChatMessage {
        channel: format!("chat:{room}"),
        offset,
        room: room.into(),
        msg_id: format!("m{offset}"),
        user: UserRef {
            id: "ann".into(),
            name: "Ann".into(),
        },
        text: text.into(),
        sent_at: crate::protocol::Timestamp::parse("2026-11-25T17:30:00.000000Z").unwrap(),
    }
}

fn empty_room() -> StoredChat {
    StoredChat {
        epoch: "stored".into(),
        latest: 0,
        recent: Vec::new(),
    }
}

/// A resume whose replay would be larger than the replay limit gets the
/// snapshot instead, and neither counts against the outbox budget.
#[tokio::test]
async fn a_replay_over_the_limit_is_answered_with_the_snapshot_outside_the_budget() {
    let hub = hub();
    let room = Channel::Chat("big".into());
    hub.install_chat(&room, empty_room());
    let epoch = hub.peek(&room).epoch;
    let text = "x".repeat(8000);
    for offset in 1..=160 {
        hub.publish_chat(&chat_message("big", offset, &text));
    }
    // A budget far smaller than either answer: neither may close the client.
    let outbox = Outbox::new(1024);
    let since = Since {
        offset: 0,
        epoch: epoch.clone(),
    };
    hub.subscribe(1, &outbox, &room, Some(&since)).unwrap();
    let messages = drain(&outbox).await;
    let answer = subscribed(&messages[0]);
    assert!(!answer.recovered, "1.3 MB is over the replay limit");
    let Some(Snapshot::Chat(snapshot)) = &answer.snapshot else {
        panic!("{:?}", answer.snapshot)
    };
    assert_eq!(snapshot.messages.len(), CHAT_SNAPSHOT);
    assert_eq!(messages.len(), 1, "no replay after a snapshot");

    // A gap within the limit is replayed, also outside the budget.
    let outbox = Outbox::new(1024);
    let since = Since { offset: 150, epoch };
    hub.subscribe(2, &outbox, &room, Some(&since)).unwrap();
    let messages = drain(&outbox).await;
    assert!(subscribed(&messages[0]).recovered);
    assert_eq!(messages.len(), 11);
    // Live messages still count: one 8 KB message is over this budget.
    hub.publish_chat(&chat_message("big", 161, &text));
    assert_eq!(
        outbox.push(Utf8Bytes::from_static("x")),
        Err(PushError::Closed)
    );
}

/// The user snapshot holds the newest 100 unread and the total.
#[tokio::test]
async fn the_unread_snapshot_is_bounded_and_counts_them_all() {
    let hub = hub();
    let channel = Channel::User("ann".into());
    hub.install_inbox(
        &channel,
        StoredInbox {
            epoch: "stored".into(),
            latest: 0,
            recent: Vec::new(),
            unread: Unread::default(),
        },
    );
    for offset in 1..=300 {
        hub.publish_notification(&note(offset));
    }
    let Some(Snapshot::Unread(snapshot)) = hub.peek(&channel).snapshot else {
        panic!()
    };
    assert_eq!(snapshot.total_unread, 300);
    assert_eq!(snapshot.unread.len(), UNREAD_SNAPSHOT);
    assert_eq!(snapshot.unread[0].offset, 201, "the newest, oldest first");
}

/// Rooms and inboxes nobody subscribes to leave memory; the default room
/// stays (pages render it).
#[tokio::test]
async fn unused_persisted_channels_are_dropped_except_the_default_room() {
    let hub = hub();
    let general = Channel::Chat(crate::client::DEFAULT_ROOM.into());
    hub.install_chat(&general, empty_room());
    let outbox = Outbox::new(1 << 20);
    for n in 0..5000 {
        let room = Channel::Chat(format!("room-{n}"));
        hub.install_chat(&room, empty_room());
        hub.subscribe(1, &outbox, &room, None).unwrap();
        hub.unsubscribe(1, &room);
        drain(&outbox).await;
    }
    hub.subscribe(1, &outbox, &general, None).unwrap();
    hub.unsubscribe(1, &general);
    assert_eq!(hub.channel_count(), 1, "only the default room");
    assert!(hub.has(&general));
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

fn diffs(messages: &[ServerMessage]) -> Vec<PresenceDiff> {
    messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::PresenceDiff(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn person(id: &str) -> UserRef {
    UserRef {
        id: id.into(),
        name: id.to_uppercase(),
    }
}

/// The leave after the last disconnect comes from the hub's one presence
/// task once the grace is over, and disconnects start no task each.
#[tokio::test(start_paused = true)]
async fn leaves_come_from_one_task_after_the_grace() {
    let hub = hub(); // grace 50 ms
    let observer = Outbox::new(1 << 20);
    hub.subscribe(1, &observer, &Channel::Presence, None)
        .unwrap();
    drain(&observer).await;
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    for n in 0..100 {
        hub.presence_connect(&person(&format!("u{n}")), n);
    }
    for n in 0..100 {
        hub.presence_disconnect(&format!("u{n}"), n);
    }
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        tasks,
        "no task per disconnect"
    );
    let joined = diffs(&drain(&observer).await);
    assert_eq!(joined.len(), 100);
    // The leaves wait for the grace and for the 250 ms since each join.
    tokio::time::sleep(PRESENCE_COALESCE - Duration::from_millis(1)).await;
    assert!(diffs(&drain(&observer).await).is_empty(), "nobody left yet");
    tokio::time::sleep(Duration::from_millis(2)).await;
    let left = diffs(&drain(&observer).await);
    let leaves: usize = left.iter().map(|d| d.leaves.len()).sum();
    assert_eq!(leaves, 100);
    let offsets: Vec<u64> = joined.iter().chain(&left).map(|d| d.offset).collect();
    assert_eq!(
        offsets,
        (1..=offsets.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    assert!(hub.presence_users().is_empty());
}

/// A reconnect within the grace cancels the leave: the task sends nothing.
#[tokio::test(start_paused = true)]
async fn a_reconnect_within_the_grace_sends_nothing_later() {
    let hub = hub();
    let observer = Outbox::new(1 << 20);
    hub.subscribe(1, &observer, &Channel::Presence, None)
        .unwrap();
    hub.presence_connect(&person("ann"), 10);
    tokio::time::sleep(PRESENCE_COALESCE).await;
    drain(&observer).await;
    hub.presence_disconnect("ann", 10);
    tokio::time::sleep(Duration::from_millis(10)).await;
    hub.presence_connect(&person("ann"), 11);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(diffs(&drain(&observer).await).is_empty());
    assert_eq!(hub.presence_users().len(), 1);
}

/// A flood of status changes reaches observers as at most one diff per
/// 250 ms, ending with the user's final status.
#[tokio::test(start_paused = true)]
async fn status_changes_coalesce_to_one_diff_per_window() {
    let hub = hub();
    let observer = Outbox::new(1 << 20);
    hub.subscribe(1, &observer, &Channel::Presence, None)
        .unwrap();
    hub.presence_connect(&person("ann"), 10);
    drain(&observer).await;
    let start = tokio::time::Instant::now();
    for n in 0..1000u32 {
        let status = if n.is_multiple_of(2) {
            UserStatus::Away
        } else {
            UserStatus::Online
        };
        hub.presence_status("ann", 10, status);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    hub.presence_status("ann", 10, UserStatus::Away);
    tokio::time::sleep(PRESENCE_COALESCE).await;
    let elapsed = start.elapsed();
    let seen = diffs(&drain(&observer).await);
    let windows = (elapsed.as_millis() / PRESENCE_COALESCE.as_millis()) as usize + 1;
    assert!(
        !seen.is_empty() && seen.len() <= windows,
        "{} diffs in {elapsed:?}",
        seen.len()
    );
    let last = seen.last().unwrap();
    assert_eq!(last.updates[0].status, UserStatus::Away);
}

/// A committed message whose offset skips some (a commit whose answer was
/// lost, or another instance's writes with no relay) does not stop the
/// room: it and every later message reach subscribers, and a resume from
/// before the gap gets a snapshot, not a replay with a hole in it.
#[tokio::test]
async fn a_room_goes_on_after_a_gap_in_its_offsets() {
    let hub = hub();
    let room = Channel::Chat("general".into());
    hub.install_chat(&room, empty_room());
    let epoch = hub.peek(&room).epoch;
    let outbox = Outbox::new(1 << 20);
    hub.subscribe(1, &outbox, &room, None).unwrap();
    hub.publish_chat(&chat_message("general", 1, "one"));
    hub.publish_chat(&chat_message("general", 3, "three"));
    hub.publish_chat(&chat_message("general", 4, "four"));
    let offsets: Vec<u64> = drain(&outbox)
        .await
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Chat(chat) => Some(chat.offset),
            _ => None,
        })
        .collect();
    assert_eq!(offsets, [1, 3, 4]);
    assert_eq!(hub.latest(&room), 4);

    let resumed = Outbox::new(1 << 20);
    let since = Since { offset: 1, epoch };
    hub.subscribe(2, &resumed, &room, Some(&since)).unwrap();
    let messages = drain(&resumed).await;
    assert!(!subscribed(&messages[0]).recovered, "offset 2 is not held");
}

/// A hub whose presence the cluster decides, with the queue it reports on.
fn shared_presence_hub() -> (Hub, tokio::sync::mpsc::UnboundedReceiver<PresenceEvent>) {
    let hub = hub();
    let (link, reported) = tokio::sync::mpsc::unbounded_channel();
    hub.share_presence(link);
    (hub, reported)
}

fn present(id: &str) -> PresenceUser {
    PresenceUser {
        id: id.into(),
        name: id.to_uppercase(),
        status: UserStatus::Online,
        connections: 1,
    }
}

/// A diff as the cluster's leader publishes it, with its frame.
fn leader_diff(offset: u64, joins: &[&str], leaves: &[&str]) -> (PresenceDiff, Utf8Bytes) {
    let diff = PresenceDiff {
        channel: "presence".into(),
        offset,
        joins: joins.iter().map(|id| present(id)).collect(),
        leaves: leaves.iter().map(|id| present(id)).collect(),
        updates: Vec::new(),
    };
    let frame = frames::encode(ServerMessage::PresenceDiff(diff.clone()));
    (diff, frame)
}

/// With shared presence a connection is reported, not decided here: no
/// diff comes from this hub, and the list is what the leader's diffs say.
#[tokio::test]
async fn shared_presence_reports_connections_and_follows_the_leader() {
    let (hub, mut reported) = shared_presence_hub();
    let observer = Outbox::new(1 << 20);
    hub.subscribe(1, &observer, &Channel::Presence, None)
        .unwrap();
    drain(&observer).await;
    hub.presence_connect(&person("ann"), 7);
    hub.presence_status("ann", 7, UserStatus::Away);
    hub.presence_disconnect("ann", 7);
    let mut events = Vec::new();
    while let Ok(event) = reported.try_recv() {
        events.push(event);
    }
    assert_eq!(
        events,
        [
            PresenceEvent::Connect(7, person("ann")),
            PresenceEvent::Status(7, UserStatus::Away),
            PresenceEvent::Disconnect(7),
        ]
    );
    assert!(drain(&observer).await.is_empty(), "the leader decides");

    // The first diff of an epoch is the leader's whole list: subscribers
    // get a fresh `subscribed` with it.
    let (diff, frame) = leader_diff(1, &["ann", "bob"], &[]);
    assert_eq!(
        hub.deliver_presence("e1", &diff, frame),
        Delivery::Delivered
    );
    let got = drain(&observer).await;
    let renewed = subscribed(&got[0]);
    assert_eq!(
        (renewed.epoch.as_str(), renewed.offset, renewed.recovered),
        ("e1", 1, false)
    );
    // Then diffs in offset order; known ones and gaps are not delivered.
    let (diff, frame) = leader_diff(2, &[], &["bob"]);
    assert_eq!(
        hub.deliver_presence("e1", &diff, frame.clone()),
        Delivery::Delivered
    );
    assert_eq!(hub.deliver_presence("e1", &diff, frame), Delivery::Known);
    let (diff, frame) = leader_diff(4, &["cid"], &[]);
    assert_eq!(
        hub.deliver_presence("e1", &diff, frame),
        Delivery::Gap { latest: 2 }
    );
    assert_eq!(diffs(&drain(&observer).await).len(), 1);
    assert_eq!(hub.presence_users(), [present("ann")]);
    // A diff of another epoch that is not its start: reload.
    let (diff, frame) = leader_diff(9, &[], &[]);
    assert_eq!(
        hub.deliver_presence("e2", &diff, frame),
        Delivery::Gap { latest: 0 }
    );

    // A resume in the leader's epoch replays.
    let resumer = Outbox::new(1 << 20);
    let since = Since {
        epoch: "e1".into(),
        offset: 1,
    };
    hub.subscribe(2, &resumer, &Channel::Presence, Some(&since))
        .unwrap();
    let got = drain(&resumer).await;
    assert!(subscribed(&got[0]).recovered);
    assert_eq!(
        diffs(&got).iter().map(|d| d.offset).collect::<Vec<_>>(),
        [2]
    );
    // A new epoch; a late diff of the old one never takes the list back.
    drain(&observer).await;
    let (diff, frame) = leader_diff(1, &["cid"], &[]);
    assert_eq!(
        hub.deliver_presence("e2", &diff, frame),
        Delivery::Delivered
    );
    for offset in [1, 3] {
        let (diff, frame) = leader_diff(offset, &["old"], &[]);
        assert_eq!(hub.deliver_presence("e1", &diff, frame), Delivery::Known);
    }
    assert_eq!(hub.presence_users(), [present("cid")]);
    let got = drain(&observer).await;
    assert_eq!(got.len(), 1, "one fresh subscribed: {got:?}");
    assert_eq!(subscribed(&got[0]).epoch, "e2");
}

/// Installing what Redis holds: diffs this hub lacks in the same epoch are
/// delivered as diffs; beyond what is kept, or in another epoch, the list
/// starts again from Redis's and subscribers get a fresh `subscribed`.
#[tokio::test]
async fn installed_presence_fills_gaps_or_starts_again() {
    let (hub, _reported) = shared_presence_hub();
    let observer = Outbox::new(1 << 20);
    hub.subscribe(1, &observer, &Channel::Presence, None)
        .unwrap();
    drain(&observer).await;
    let (d1, f1) = leader_diff(1, &["ann"], &[]);
    hub.deliver_presence("e1", &d1, f1.clone());
    drain(&observer).await;
    let (d2, f2) = leader_diff(2, &["bob"], &[]);
    let (d3, f3) = leader_diff(3, &[], &["ann"]);
    let kept = vec![(d1, f1), (d2, f2), (d3, f3)];
    hub.install_presence("e1".into(), 3, vec![present("bob")], kept);
    let got = drain(&observer).await;
    assert_eq!(
        diffs(&got).iter().map(|d| d.offset).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(hub.presence_users(), [present("bob")]);

    // More was missed than Redis keeps: start again from its list.
    let (d9, f9) = leader_diff(9, &["cid"], &[]);
    hub.install_presence(
        "e1".into(),
        9,
        vec![present("bob"), present("cid")],
        vec![(d9, f9)],
    );
    let got = drain(&observer).await;
    let renewed = subscribed(&got[0]);
    assert_eq!((renewed.offset, renewed.recovered), (9, false));
    assert_eq!(hub.presence_users(), [present("bob"), present("cid")]);
    // A resume from before the restart gets a snapshot; from 8, diff 9.
    let resumer = Outbox::new(1 << 20);
    let since = Since {
        epoch: "e1".into(),
        offset: 8,
    };
    hub.subscribe(2, &resumer, &Channel::Presence, Some(&since))
        .unwrap();
    assert_eq!(diffs(&drain(&resumer).await).len(), 1);
    // The list goes on in the same epoch after starting again.
    let (d10, f10) = leader_diff(10, &[], &["cid"]);
    assert_eq!(hub.deliver_presence("e1", &d10, f10), Delivery::Delivered);
    assert_eq!(hub.presence_users(), [present("bob")]);
}

fn cluster_tick(offset: u64, price: f64) -> (Tick, Utf8Bytes) {
    let tick = Tick {
        channel: "ticker:AAPL".into(),
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

fn note(offset: u64) -> Notification {
    Notification {
        channel: "user:ann".into(),
        offset,
        notification_id: format!("n{offset}"),
        title: "t".into(),
        body: String::new(),
        created_at: crate::protocol::Timestamp::parse("2026-11-25T17:30:00.000000Z").unwrap(),
    }
}

fn unread_snapshot(hub: &Hub, channel: &Channel) -> (Vec<u64>, u64) {
    match hub.peek(channel).snapshot {
        Some(Snapshot::Unread(unread)) => (
            unread.unread.iter().map(|n| n.offset).collect(),
            unread.total_unread,
        ),
        other => panic!("an unread snapshot: {other:?}"),
    }
}

/// Another instance marked notifications read: the store's unread list
/// replaces this hub's, except that what this hub got after the store's
/// read stays unread, and what the store has that this hub has not
/// delivered yet is counted once, at its delivery.
#[tokio::test]
async fn unread_read_again_from_the_store_counts_each_notification_once() {
    let hub = hub();
    let channel = Channel::User("ann".into());
    let stored = StoredInbox {
        epoch: "stored".into(),
        latest: 0,
        recent: Vec::new(),
        unread: Unread::default(),
    };
    hub.install_inbox(&channel, stored);
    for offset in 1..=2 {
        assert_eq!(hub.deliver_notification(&note(offset)), Delivery::Delivered);
    }
    // The store, read after n1 was marked read and n3 was committed (not
    // delivered here yet): unread n2 and n3.
    let unread = Unread {
        newest: vec![note(2), note(3)],
        total: 2,
    };
    hub.inbox_unread("user:ann", 3, unread);
    assert_eq!(unread_snapshot(&hub, &channel), (vec![2], 1));
    assert_eq!(hub.deliver_notification(&note(3)), Delivery::Delivered);
    assert_eq!(unread_snapshot(&hub, &channel), (vec![2, 3], 2));
    // A read as of offset 1, reaching this hub after n2 and n3: both stay.
    let unread = Unread {
        newest: Vec::new(),
        total: 0,
    };
    hub.inbox_unread("user:ann", 1, unread);
    assert_eq!(unread_snapshot(&hub, &channel), (vec![2, 3], 2));
    // This instance's own read mark, whose snapshot (read in its
    // transaction) lists n4 committed elsewhere and not delivered here yet.
    let unread = Unread {
        newest: vec![note(3), note(4)],
        total: 2,
    };
    hub.inbox_read("user:ann", unread);
    assert_eq!(hub.deliver_notification(&note(4)), Delivery::Delivered);
    assert_eq!(unread_snapshot(&hub, &channel), (vec![3, 4], 2));
}

/// A document as the store loads it: `text` in its `Y.Text`, at offset
/// `latest`, with no update kept for replay.
fn stored_note(latest: u64, text: &str) -> StoredDoc {
    use yrs::{Text, Transact};
    let doc = yrs::Doc::new();
    let content = doc.get_or_insert_text("text");
    content.insert(&mut doc.transact_mut(), 0, text);
    StoredDoc {
        epoch: "stored".into(),
        latest,
        recent: Vec::new(),
        doc,
        compacted_upto: latest,
    }
}

/// A document reloaded whole (more was missed than the store replays)
/// renews its subscribers with a `subscribed` the server sends on its own.
/// That is a subscribe answer: a subscriber with live traffic queued near
/// its budget is not closed by a ~750 KB one, and gets both, in order.
#[tokio::test]
async fn a_reloaded_document_renews_subscribers_outside_the_live_budget() {
    let hub = hub();
    let channel = Channel::Doc("notes".into());
    hub.install_doc(&channel, stored_note(1, "short"));
    let outbox = Outbox::new(1 << 20);
    hub.subscribe(1, &outbox, &channel, None).unwrap();
    drain(&outbox).await;
    let live = frames::encode(ServerMessage::Pong(crate::protocol::Empty {}));
    let mut queued = 0;
    while queued + live.len() <= 1_000_000 {
        outbox.push(live.clone()).unwrap();
        queued += live.len();
    }

    let text = "n".repeat(560_000);
    hub.reinstall_doc(&channel, stored_note(5_000, &text));
    assert_eq!(outbox.push(live.clone()), Ok(()), "not closed");
    let got = drain(&outbox).await;
    let renewed = got
        .iter()
        .find(|m| matches!(m, ServerMessage::Subscribed(_)))
        .map(subscribed)
        .expect("a fresh subscribed");
    assert_eq!((renewed.offset, renewed.recovered), (5_000, false));
    let Some(Snapshot::Doc(snapshot)) = &renewed.snapshot else {
        panic!("a document snapshot: {:?}", renewed.snapshot)
    };
    assert!(snapshot.state.len() > 700_000, "{}", snapshot.state.len());
    let state = BASE64.decode(&snapshot.state).unwrap();
    assert_eq!(text_of(&rebuild(&state, [])), text);
    assert_eq!(got.len(), 1_000_000 / live.len() + 2, "every live frame");
}
/// What the server sends on its own is still bounded: a subscriber that
/// never reads is closed once the renewals it holds pass the answer bound
/// (`MAX_ANSWER_BYTES`), although they never touch its live budget.
#[tokio::test]
async fn renewals_a_subscriber_never_reads_are_bounded() {
    use crate::server::ws::outbox::MAX_ANSWER_BYTES;
    let hub = hub();
    let channel = Channel::Doc("notes".into());
    hub.install_doc(&channel, stored_note(1, "short"));
    // A live budget far above the answer bound: only the latter can close it.
    let outbox = Outbox::new(16 * MAX_ANSWER_BYTES);
    hub.subscribe(1, &outbox, &channel, None).unwrap();
    let text = "n".repeat(560_000);
    let mut reloads = 0;
    while outbox.push(frames::encode(ServerMessage::Pong(
        crate::protocol::Empty {},
    ))) == Ok(())
    {
        reloads += 1;
        assert!(reloads <= 20, "still open after {reloads} renewals");
        hub.reinstall_doc(&channel, stored_note(1 + reloads, &text));
    }
    assert!(reloads * 747_000 > MAX_ANSWER_BYTES as u64, "{reloads}");
    assert_eq!(
        outbox.push(frames::encode(ServerMessage::Pong(
            crate::protocol::Empty {}
        ))),
        Err(PushError::Closed)
    );
}
