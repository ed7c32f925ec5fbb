//! The writer's group commit and the read pool: many writes share one
//! commit, a failing job undoes only itself, and reads never wait for writes.
//! The writer is held on purpose (a job blocked on a channel) so that what
//! queues behind it is known exactly, with no sleeps.

use super::super::testing::hold_writer;
use super::*;
use crate::protocol::UserRef;

/// Yields until `count` jobs wait in the writer's queue.
async fn until_queued(store: &Sqlite, count: usize) {
    while store.jobs.waiting() < count {
        tokio::task::yield_now().await;
    }
}

fn user(n: usize) -> UserRef {
    UserRef {
        id: format!("u{n}"),
        name: format!("U{n}"),
    }
}

/// Fifty appends from fifty tasks: all stored, offsets 1..=50 with no gap
/// or double, in one commit (plus the holder's), not fifty.
#[tokio::test]
async fn concurrent_appends_share_one_commit_and_get_gap_free_offsets() {
    let (_, store) = temp_db();
    let held = hold_writer(&store).await;
    let before = store.commits();
    let appends: Vec<_> = (0..50)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { send(&store, user(n), "c-1", "hello").await })
        })
        .collect();
    until_queued(&store, 50).await;
    held.release().await;
    let mut offsets = Vec::new();
    for append in appends {
        let Appended::New(message) = append.await.unwrap() else {
            panic!("a new message")
        };
        offsets.push(message.offset);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (1..=50).collect::<Vec<u64>>());
    assert_eq!(
        store.commits() - before,
        2,
        "the held job's commit, then one for all fifty appends"
    );
    let stored = store
        .load_chat("chat:general".into(), 100, |s| s)
        .await
        .unwrap();
    assert_eq!(stored.latest, 50);
    assert_eq!(stored.recent.len(), 50);
}

/// In one group: an append, a job that writes then fails, a job that
/// panics, another append. The appends commit together with consecutive
/// offsets; the failing job's own write is rolled back; each failure is
/// answered to its own caller only.
#[tokio::test]
async fn a_failing_job_in_a_group_loses_only_itself() {
    let (_, store) = temp_db();
    let held = hold_writer(&store).await;
    let before = store.commits();
    let first = tokio::spawn({
        let store = store.clone();
        async move { send(&store, ann(), "c-1", "first").await }
    });
    until_queued(&store, 1).await;
    let failing = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .write(
                    |db| {
                        let insert =
                            "INSERT INTO users (id, name, first_seen) VALUES ('x', 'X', 't')";
                        db.execute(insert, [])?;
                        db.execute(insert, [])?; // the primary key is taken
                        Ok(())
                    },
                    |()| (),
                )
                .await
        }
    });
    until_queued(&store, 2).await;
    let panicking = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .write(
                    |_| -> Result<(), StoreError> { panic!("a bug in a job") },
                    |()| (),
                )
                .await
        }
    });
    until_queued(&store, 3).await;
    let second = tokio::spawn({
        let store = store.clone();
        async move { send(&store, user(1), "c-1", "second").await }
    });
    until_queued(&store, 4).await;
    held.release().await;

    assert!(matches!(first.await.unwrap(), Appended::New(m) if m.offset == 1));
    assert!(matches!(failing.await.unwrap(), Err(StoreError::Sqlite(_))));
    assert!(matches!(
        panicking.await.unwrap(),
        Err(StoreError::Panicked)
    ));
    assert!(matches!(second.await.unwrap(), Appended::New(m) if m.offset == 2));
    assert_eq!(store.commits() - before, 2, "the held job, then the group");
    let leaked: i64 = store
        .read(|db| {
            Ok(
                db.query_row("SELECT count(*) FROM users WHERE id = 'x'", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
        .unwrap();
    assert_eq!(leaked, 0, "the failed job's first insert was rolled back");
    let stored = store
        .load_chat("chat:general".into(), 10, |s| s)
        .await
        .unwrap();
    let texts: Vec<_> = stored.recent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["first", "second"]);
}

/// While the writer is busy (a job held inside it, another write queued
/// behind), a history read is answered; the queued write is still waiting.
#[tokio::test]
async fn reads_are_answered_while_the_writer_is_held() {
    let (_, store) = temp_db();
    for n in 1..=3 {
        send(&store, ann(), &format!("c-{n}"), &format!("m{n}")).await;
    }
    let held = hold_writer(&store).await;
    let queued = tokio::spawn({
        let store = store.clone();
        async move { send(&store, ann(), "c-4", "m4").await }
    });
    until_queued(&store, 1).await;

    let page = store
        .chat_before("chat:general".into(), 10, 10)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|m| m.offset).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(!queued.is_finished(), "the write behind the held job waits");

    held.release().await;
    assert!(matches!(queued.await.unwrap(), Appended::New(m) if m.offset == 4));
}

/// Every callback runs after its commit, in queue order: what the hub is
/// told arrives in offset order even for a whole group.
#[tokio::test]
async fn callbacks_run_in_commit_order() {
    let (_, store) = temp_db();
    let held = hold_writer(&store).await;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut appends = Vec::new();
    for n in 0..20 {
        let (sender, tx) = (store.clone(), tx.clone());
        appends.push(tokio::spawn(async move {
            sender
                .append_chat(draft(user(n), "c-1", "x"), move |a, _| {
                    let _ = tx.send(a.channel_offset().1);
                })
                .await
        }));
        until_queued(&store, n + 1).await;
    }
    held.release().await;
    for append in appends {
        append.await.unwrap().unwrap();
    }
    drop(tx);
    assert_eq!(
        rx.iter().collect::<Vec<_>>(),
        (1..=20).collect::<Vec<u64>>()
    );
}

/// On a paused test clock, waiting for the writer does not let time jump to
/// the next timer (which would fire deadlines early in connection tests).
#[tokio::test(start_paused = true)]
async fn a_write_on_a_paused_clock_takes_no_time() {
    let (_, store) = temp_db();
    let deadline = tokio::spawn(tokio::time::sleep(std::time::Duration::from_secs(60)));
    let start = tokio::time::Instant::now();
    send(&store, ann(), "c-1", "hello").await;
    store.remember_user(ann(), now()).await.unwrap();
    assert_eq!(tokio::time::Instant::now(), start);
    assert!(!deadline.is_finished());
}
