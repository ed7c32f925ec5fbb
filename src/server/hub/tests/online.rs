//! Presence (`hub/online.rs`): leaves after the grace from one task,
//! coalesced status changes, and presence the cluster decides (reported,
//! followed, installed).

use super::*;
use crate::protocol::{PresenceDiff, PresenceUser, UserRef, UserStatus};
use axum::extract::ws::Utf8Bytes;

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

/// A hub whose presence the cluster decides, with the queue it reports on.
fn shared_presence_hub() -> (Hub, crate::server::hub::Reported) {
    let hub = hub();
    let (link, reported) = crate::server::hub::presence_reports();
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
        channel: "presence".parse().unwrap(),
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
    assert_eq!(
        reported.try_recv(),
        [
            PresenceEvent::Connect(7, person("ann")),
            PresenceEvent::Status(7, UserStatus::Away),
        ]
    );
    hub.presence_disconnect("ann", 7);
    assert_eq!(reported.try_recv(), [PresenceEvent::Disconnect(7)]);
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
