//! Chat rooms on either database: offsets, the epoch across a restart,
//! one row per envelope id, history pages, and two instances appending to
//! one room at once.

use super::*;

async fn messages_get_consecutive_offsets_and_survive_a_reopen(place: Place) {
    let store = place.open().await;
    for (n, text) in ["one", "two", "three"].iter().enumerate() {
        let Appended::New(message) = send(&store, ann(), &format!("c-{n}"), text).await else {
            panic!()
        };
        assert_eq!(message.offset, n as u64 + 1);
        assert_eq!(message.channel, "chat:general");
    }
    let epoch = store
        .load_chat("chat:general".into(), 50, |s| s)
        .await
        .unwrap()
        .epoch;
    drop(store);

    let reopened = place.open().await;
    let loaded = reopened
        .load_chat("chat:general".into(), 2, |s| s)
        .await
        .unwrap();
    assert_eq!(loaded.epoch, epoch, "the epoch is stable across restarts");
    assert_eq!(loaded.latest, 3);
    let texts: Vec<_> = loaded.recent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["two", "three"]);
    assert_eq!(loaded.recent[1].sent_at, now());
    let Appended::New(next) = send(&reopened, ann(), "c-9", "four").await else {
        panic!()
    };
    assert_eq!(next.offset, 4);
}

async fn the_same_id_from_the_same_user_is_stored_once(place: Place) {
    let store = place.open().await;
    send(&store, ann(), "c-1", "hello").await;
    let again = send(&store, ann(), "c-1", "hello").await;
    assert_eq!(
        again,
        Appended::Duplicate {
            channel: "chat:general".parse().unwrap(),
            offset: 1
        }
    );
    let bob = UserRef {
        id: "bob".into(),
        name: "Bob".into(),
    };
    assert!(matches!(send(&store, bob, "c-1", "hi").await, Appended::New(m) if m.offset == 2));
    assert_eq!(
        store
            .load_chat("chat:general".into(), 10, |s| s)
            .await
            .unwrap()
            .recent
            .len(),
        2
    );
}

async fn older_history_comes_in_pages_oldest_first(place: Place) {
    let store = place.open().await;
    for n in 1..=10 {
        send(&store, ann(), &format!("c-{n}"), &format!("m{n}")).await;
    }
    let page = store
        .chat_before("chat:general".into(), 6, 3)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|m| m.offset).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(store
        .chat_before("chat:general".into(), 1, 3)
        .await
        .unwrap()
        .is_empty());
}

async fn on_commit_sees_what_was_stored(place: Place) {
    let store = place.open().await;
    let (tx, rx) = std::sync::mpsc::channel();
    store
        .append_chat(draft(ann(), "c-1", "x"), move |a, _| {
            tx.send(a.channel_offset().1).unwrap();
        })
        .await
        .unwrap();
    assert_eq!(rx.recv().unwrap(), 1);
}

/// Two instances on one database (two stores opened on the same place, each
/// with its own writer), many senders on each appending to one room at once,
/// and every envelope id sent twice, once to each instance: every offset
/// from 1 to N exactly once, each instance's acks in the order it committed
/// them, and each id stored once, whichever instance won the race.
async fn two_instances_append_to_one_room_without_gap_or_double(place: Place) {
    const SENDERS: usize = 8;
    const EACH: usize = 25;
    let (a, b) = (place.open().await, place.open().await);
    let instances = [a.clone(), b.clone()];
    // (instance, offset) of each new message, as its callback saw it.
    let (order_tx, order_rx) = std::sync::mpsc::channel::<(usize, u64)>();
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        for (which, store) in instances.iter().enumerate() {
            let (store, order_tx) = (store.clone(), order_tx.clone());
            tasks.push(tokio::spawn(async move {
                let user = UserRef {
                    id: format!("u{sender}"),
                    name: format!("U{sender}"),
                };
                let mut acks = Vec::new();
                for n in 0..EACH {
                    // Both instances get the same (user, id): a resend racing.
                    let order_tx = order_tx.clone();
                    let appended = store
                        .append_chat(
                            draft(user.clone(), &format!("c-{n}"), &format!("{sender}/{n}")),
                            move |appended, _| {
                                if let Appended::New(message) = appended {
                                    let _ = order_tx.send((which, message.offset));
                                }
                            },
                        )
                        .await
                        .expect("stored");
                    acks.push(appended);
                }
                acks
            }));
        }
    }
    drop(order_tx);
    let mut new = Vec::new();
    let mut duplicates = 0;
    for task in tasks {
        for appended in task.await.unwrap() {
            match appended {
                Appended::New(message) => new.push(message),
                Appended::Duplicate { .. } => duplicates += 1,
            }
        }
    }
    let total = SENDERS * EACH;
    assert_eq!(new.len(), total, "each id stored once");
    assert_eq!(duplicates, total, "and found by its racing twin");
    let mut offsets: Vec<u64> = new.iter().map(|m| m.offset).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (1..=total as u64).collect::<Vec<_>>());
    // Each instance ran its callbacks (what it publishes) in commit order:
    // the offsets of its new messages only ever grow.
    let order: Vec<(usize, u64)> = order_rx.iter().collect();
    assert_eq!(order.len(), total);
    for which in 0..2 {
        let published: Vec<u64> = order
            .iter()
            .filter(|(w, _)| *w == which)
            .map(|(_, offset)| *offset)
            .collect();
        assert!(
            published.windows(2).all(|w| w[0] < w[1]),
            "instance {which} published out of commit order: {published:?}"
        );
    }
    // The room as a third instance loads it: every message, in order.
    let loaded = place
        .open()
        .await
        .load_chat("chat:general".into(), total, |s| s)
        .await
        .unwrap();
    assert_eq!(loaded.latest, total as u64);
    assert_eq!(loaded.recent.len(), total);
}

both!(
    messages_get_consecutive_offsets_and_survive_a_reopen,
    the_same_id_from_the_same_user_is_stored_once,
    older_history_comes_in_pages_oldest_first,
    on_commit_sees_what_was_stored,
    two_instances_append_to_one_room_without_gap_or_double,
);
