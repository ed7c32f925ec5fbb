//! Notifications on either database: kept per user until read, and the
//! unread window of a snapshot.

use super::*;

async fn notifications_are_kept_per_user_until_read(place: Place) {
    let store = place.open().await;
    for title in ["one", "two", "three"] {
        store
            .append_notification("ann".into(), title.into(), "body".into(), now(), |_| {})
            .await
            .unwrap();
    }
    store
        .append_notification("bob".into(), "bob's".into(), "b".into(), now(), |_| {})
        .await
        .unwrap();
    let inbox = store.load_inbox("ann".into(), 10, |i| i).await.unwrap();
    assert_eq!(inbox.latest, 3);
    assert_eq!(
        inbox
            .unread
            .newest
            .iter()
            .map(|n| n.offset)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(inbox.unread.total, 3);
    let second = inbox.unread.newest[1].notification_id.clone();
    let changed = store
        .mark_read("ann".into(), vec![second.clone(), "nope".into()], |_, _| {})
        .await
        .unwrap();
    assert_eq!(changed, std::slice::from_ref(&second));
    assert!(
        store
            .mark_read("bob".into(), vec![second], |_, _| {})
            .await
            .unwrap()
            .is_empty(),
        "only one's own"
    );
    drop(store);
    let reopened = place.open().await;
    let inbox = reopened.load_inbox("ann".into(), 10, |i| i).await.unwrap();
    assert_eq!(
        inbox
            .unread
            .newest
            .iter()
            .map(|n| n.title.as_str())
            .collect::<Vec<_>>(),
        ["one", "three"]
    );
    assert_eq!(inbox.recent.len(), 3);
}

async fn the_unread_window_is_the_newest_hundred_and_a_count(place: Place) {
    let store = place.open().await;
    for n in 0..(UNREAD_SNAPSHOT + 20) {
        store
            .append_notification("ann".into(), format!("n{n}"), "b".into(), now(), |_| {})
            .await
            .unwrap();
    }
    let inbox = store.load_inbox("ann".into(), 10, |i| i).await.unwrap();
    assert_eq!(inbox.unread.total, 120);
    assert_eq!(inbox.unread.newest.len(), UNREAD_SNAPSHOT);
    assert_eq!(
        inbox.unread.newest[0].offset, 21,
        "oldest of the newest first"
    );
    let newest = inbox.unread.newest.last().unwrap().notification_id.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    store
        .mark_read("ann".into(), vec![newest], move |_, unread| {
            tx.send(unread).unwrap()
        })
        .await
        .unwrap();
    let unread = rx.recv().unwrap();
    assert_eq!(unread.total, 119);
    assert_eq!(
        unread.newest.len(),
        UNREAD_SNAPSHOT,
        "refilled from older ones"
    );
    assert_eq!(unread.newest[0].offset, 20);
}

both!(
    notifications_are_kept_per_user_until_read,
    the_unread_window_is_the_newest_hundred_and_a_count,
);
