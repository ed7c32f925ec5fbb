//! What only the SQLite backend has, against real files in a temporary
//! folder: the file and its folder created, WAL checkpoints off the commit
//! path; the writer's group commit and the read
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
