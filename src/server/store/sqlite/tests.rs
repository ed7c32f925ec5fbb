//! What only the SQLite backend has, against real files in a temporary
//! folder: the file and its folder created, rows written only by writes, WAL
//! checkpoints off the commit path; the writer's group commit and the read
//! pool in `tests/writer.rs`. What both databases promise is tested once for
//! both, in `store/tests/`.

mod writer;

use super::*;
use crate::server::store::tests::{ann, draft, now};
use crate::server::store::Appended;

fn temp_db() -> (std::path::PathBuf, Sqlite) {
    let dir = std::env::temp_dir().join(format!("pulse-store-{}", uuid::Uuid::new_v4().simple()));
    let path = dir.join("nested").join("pulse.db");
    let store = Sqlite::open(&path).expect("opens");
    (path, store)
}

async fn send(store: &Sqlite, user: crate::protocol::UserRef, id: &str, text: &str) -> Appended {
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
    let reopened = Sqlite::open(&path).unwrap();
    let loaded = reopened
        .load_chat("chat:general".into(), 50, |s| s)
        .await
        .unwrap();
    assert_eq!((loaded.epoch, loaded.latest), (room.epoch, 1));
    let loaded = reopened.load_inbox("ann".into(), 10, |i| i).await.unwrap();
    assert_eq!((loaded.epoch, loaded.latest), (inbox.epoch, 1));
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
