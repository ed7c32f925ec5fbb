//! `@mentions` stored with their chat message: capped at
//! `MAX_MENTIONED_USERS` distinct users, resolved to `name` or
//! `guest:name`, never the author, written once.

use super::*;
use crate::protocol::Notification;
use crate::server::store::model::MAX_MENTIONED_USERS;

fn named(id: &str, name: &str) -> UserRef {
    UserRef {
        id: id.into(),
        name: name.into(),
    }
}

/// Sends `text` as Ann and returns what was stored and what `on_commit` got.
async fn mention(store: &Store, id: &str, text: &str) -> (Appended, Vec<Notification>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let appended = store
        .append_chat(draft(ann(), id, text), move |_, notified| {
            let _ = tx.send(notified.to_vec());
        })
        .await
        .unwrap();
    (appended, rx.recv().unwrap())
}

/// How many notifications each of `ids` has on disk.
async fn inbox_sizes(store: &Store, ids: &[String]) -> Vec<usize> {
    let mut sizes = Vec::new();
    for id in ids {
        let inbox = store.load_inbox(id.clone(), 100, |i| i).await.unwrap();
        sizes.push(inbox.recent.len());
    }
    sizes
}

/// Forty known users named in one message: the first ten are notified, in
/// the message's own transaction (one commit), and after a restart the
/// message and exactly those ten notifications are on disk. A resend of the
/// same envelope id notifies nobody again.
async fn forty_known_names_notify_ten_users_in_the_message_transaction(place: Place) {
    let store = place.open().await;
    // Half are guests (`guest:{name}` ids), half backend users.
    let ids: Vec<String> = (0..40)
        .map(|n| match n % 2 {
            0 => format!("user{n:02}"),
            _ => format!("guest:user{n:02}"),
        })
        .collect();
    for id in &ids {
        store.remember_user(named(id, id), now()).await.unwrap();
    }
    let text: String = (0..40).map(|n| format!("@User{n:02} ")).collect();
    let before = store.commits();
    let (appended, notified) = mention(&store, "c-1", &text).await;
    assert_eq!(store.commits() - before, 1, "one transaction for all of it");
    assert!(matches!(appended, Appended::New(ref m) if m.offset == 1));
    assert_eq!(notified.len(), MAX_MENTIONED_USERS);
    let channels: Vec<_> = notified.iter().map(|n| n.channel.to_string()).collect();
    let first_ten: Vec<_> = ids[..10].iter().map(|id| format!("user:{id}")).collect();
    assert_eq!(channels, first_ten, "the first ten, in order of mention");
    assert_eq!(notified[0].title, "Ann mentioned you in #general");
    drop(store);

    let store = place.open().await;
    let chat = store
        .load_chat("chat:general".into(), 10, |s| s)
        .await
        .unwrap();
    assert_eq!(chat.recent.len(), 1);
    let mut expected = vec![1; 10];
    expected.extend([0; 30]);
    assert_eq!(inbox_sizes(&store, &ids).await, expected);

    let (again, notified) = mention(&store, "c-1", &text).await;
    assert!(matches!(again, Appended::Duplicate { offset: 1, .. }));
    assert!(notified.is_empty(), "a resend notifies nobody");
    assert_eq!(inbox_sizes(&store, &ids).await, expected);
}

/// Exactly `MAX_MENTIONED_USERS` known names are all notified; one more is not.
async fn the_cap_is_ten_users(place: Place) {
    let store = place.open().await;
    for n in 0..11 {
        let id = format!("p{n}");
        store.remember_user(named(&id, &id), now()).await.unwrap();
    }
    let ten: String = (0..10).map(|n| format!("@p{n} ")).collect();
    assert_eq!(mention(&store, "c-1", &ten).await.1.len(), 10);
    let eleven: String = (0..11).map(|n| format!("@p{n} ")).collect();
    assert_eq!(mention(&store, "c-2", &eleven).await.1.len(), 10);
}

/// `@ada` reaches both `ada` and `guest:ada` (two users toward the cap),
/// matching is case-folded, unknown names reach nobody, and the author's own
/// name never notifies the author.
async fn a_name_reaches_its_plain_and_guest_ids_but_not_the_author(place: Place) {
    let store = place.open().await;
    for (id, name) in [
        ("ada", "Ada"),
        ("guest:ada", "ada"),
        ("Bob", "Bob"),
        ("ann", "Ann"),
    ] {
        store.remember_user(named(id, name), now()).await.unwrap();
    }
    let (_, notified) = mention(&store, "c-1", "@ADA @bob @ann @nobody").await;
    let mut channels: Vec<_> = notified.iter().map(|n| n.channel.clone()).collect();
    channels.sort();
    assert_eq!(channels, ["user:Bob", "user:ada", "user:guest:ada"]);

    let nine: String = (0..9).map(|n| format!("@q{n} ")).collect();
    for n in 0..9 {
        let id = format!("q{n}");
        store.remember_user(named(&id, &id), now()).await.unwrap();
    }
    let (_, notified) = mention(&store, "c-2", &format!("{nine} @ada")).await;
    assert_eq!(notified.len(), 10, "nine, then one of ada's two ids");
    assert_eq!(notified[9].channel, "user:ada");
}

both!(
    forty_known_names_notify_ten_users_in_the_message_transaction,
    the_cap_is_ten_users,
    a_name_reaches_its_plain_and_guest_ids_but_not_the_author
);
