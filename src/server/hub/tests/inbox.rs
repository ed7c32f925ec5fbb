//! `user:` inboxes: the bounded unread snapshot, and unread read again
//! from the store.

use super::*;
use crate::protocol::{Notification, Snapshot};
use crate::server::store::{StoredInbox, Unread, UNREAD_SNAPSHOT};

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

fn note(offset: u64) -> Notification {
    Notification {
        channel: "user:ann".parse().unwrap(),
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
    hub.inbox_unread(&"user:ann".parse().unwrap(), 3, unread);
    assert_eq!(unread_snapshot(&hub, &channel), (vec![2], 1));
    assert_eq!(hub.deliver_notification(&note(3)), Delivery::Delivered);
    assert_eq!(unread_snapshot(&hub, &channel), (vec![2, 3], 2));
    // A read as of offset 1, reaching this hub after n2 and n3: both stay.
    let unread = Unread {
        newest: Vec::new(),
        total: 0,
    };
    hub.inbox_unread(&"user:ann".parse().unwrap(), 1, unread);
    assert_eq!(unread_snapshot(&hub, &channel), (vec![2, 3], 2));
    // This instance's own read mark, whose snapshot (read in its
    // transaction) lists n4 committed elsewhere and not delivered here yet.
    let unread = Unread {
        newest: vec![note(3), note(4)],
        total: 2,
    };
    hub.inbox_read(&"user:ann".parse().unwrap(), unread);
    assert_eq!(hub.deliver_notification(&note(4)), Delivery::Delivered);
    assert_eq!(unread_snapshot(&hub, &channel), (vec![3, 4], 2));
}
