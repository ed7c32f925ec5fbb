//! The store against real SQLite files in a temporary folder: what it keeps
//! here; the writer's group commit and the read pool in `tests/writer.rs`;
//! mentions in `tests/mentions.rs`; shared documents in `tests/docs.rs`.

mod docs;
mod mentions;
mod writer;

use super::*;
use crate::protocol::{Timestamp, UserRef};

fn temp_db() -> (std::path::PathBuf, Store) {
    let dir = std::env::temp_dir().join(format!("pulse-store-{}", uuid::Uuid::new_v4().simple()));
    let path = dir.join("nested").join("pulse.db");
    let store = Store::open(&path).expect("opens");
    (path, store)
}

fn ann() -> UserRef {
    UserRef {
        id: "ann".into(),
        name: "Ann".into(),
    }
}

fn now() -> Timestamp {
    Timestamp::parse("2026-11-25T17:30:00.123456Z").unwrap()
}

fn draft(user: UserRef, id: &str, text: &str) -> ChatDraft {
    ChatDraft {
        room: "general".into(),
        user,
        client_id: id.into(),
        text: text.into(),
        sent_at: now(),
        mentioned: mentions(text),
    }
}

async fn send(store: &Store, user: UserRef, id: &str, text: &str) -> Appended {
    store
        .append_chat(draft(user, id, text), |_, _| {})
        .await
        .unwrap()
}

#[tokio::test]
async fn a_new_file_and_its_folder_are_created_and_migrated() {
    let (path, store) = temp_db();
    assert!(path.exists());
    let version: usize = store
        .read(|db| Ok(db.pragma_query_value(None, "user_version", |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(version, migrations::latest_version());
}

#[tokio::test]
async fn messages_get_consecutive_offsets_and_survive_a_reopen() {
    let (path, store) = temp_db();
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

    let reopened = Store::open(&path).unwrap();
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

#[tokio::test]
async fn the_same_id_from_the_same_user_is_stored_once() {
    let (_, store) = temp_db();
    send(&store, ann(), "c-1", "hello").await;
    let again = send(&store, ann(), "c-1", "hello").await;
    assert_eq!(
        again,
        Appended::Duplicate {
            channel: "chat:general".into(),
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

#[tokio::test]
async fn older_history_comes_in_pages_oldest_first() {
    let (_, store) = temp_db();
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

#[tokio::test]
async fn on_commit_sees_what_was_stored() {
    let (_, store) = temp_db();
    let (tx, rx) = std::sync::mpsc::channel();
    store
        .append_chat(draft(ann(), "c-1", "x"), move |a, _| {
            tx.send(a.channel_offset().1).unwrap();
        })
        .await
        .unwrap();
    assert_eq!(rx.recv().unwrap(), 1);
}

#[tokio::test]
async fn notifications_are_kept_per_user_until_read() {
    let (path, store) = temp_db();
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
    let reopened = Store::open(&path).unwrap();
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

fn channel_rows(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM channels", [], |row| row.get(0))
        .unwrap()
}

/// Loading a room or inbox nobody wrote to stores nothing; the epoch it is
/// loaded with is the one its first message stores, so a client that joined
/// it empty resumes with a replay, also after a restart.
#[tokio::test]
async fn loading_a_room_or_inbox_that_never_had_a_message_writes_nothing() {
    let (path, store) = temp_db();
    let room = store
        .load_chat("chat:general".into(), 50, |s| s)
        .await
        .unwrap();
    assert_eq!((room.latest, room.recent.len()), (0, 0));
    let inbox = store.load_inbox("ann".into(), 10, |i| i).await.unwrap();
    assert_eq!(inbox.latest, 0);
    assert_eq!(channel_rows(&path), 0);
    // The first message creates the room, from offset 1, in the epoch the
    // empty room was loaded with; likewise the first notification.
    let Appended::New(first) = send(&store, ann(), "c-1", "hi").await else {
        panic!()
    };
    assert_eq!(first.offset, 1);
    store
        .append_notification("ann".into(), "t".into(), "b".into(), now(), |_| {})
        .await
        .unwrap();
    assert_eq!(channel_rows(&path), 2);
    drop(store);
    let reopened = Store::open(&path).unwrap();
    let loaded = reopened
        .load_chat("chat:general".into(), 50, |s| s)
        .await
        .unwrap();
    assert_eq!((loaded.epoch, loaded.latest), (room.epoch, 1));
    let loaded = reopened.load_inbox("ann".into(), 10, |i| i).await.unwrap();
    assert_eq!((loaded.epoch, loaded.latest), (inbox.epoch, 1));
}

#[tokio::test]
async fn the_unread_window_is_the_newest_hundred_and_a_count() {
    let (_, store) = temp_db();
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

/// Committed pages reach the database file by themselves, copied from the
/// write-ahead log by the checkpoint thread; the writer's own connection
/// never does it inside a commit.
#[tokio::test]
async fn the_log_is_copied_into_the_file_off_the_commit_path() {
    let (path, store) = temp_db();
    let autocheckpoint: i64 = store
        .write(
            |db| Ok(db.pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0))?),
            |pages| pages,
        )
        .await
        .unwrap();
    assert_eq!(autocheckpoint, 0, "no checkpoint inside a commit");

    let before = std::fs::metadata(&path).unwrap().len();
    let text = "x".repeat(400);
    for n in 0..250 {
        send(&store, ann(), &format!("c{n}"), &text).await;
    }
    // 100 KB of messages: far below SQLite's own threshold (1,000 pages).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(&path).unwrap().len() < before + 100_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the file is still {} bytes",
            std::fs::metadata(&path).unwrap().len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
