//! What only the PostgreSQL backend does, on a throwaway cluster: a job
//! PostgreSQL refuses (text with U+0000, which SQLite would store) fails
//! alone, inside whatever group it was committed with.

use crate::protocol::{Timestamp, UserRef};
use crate::server::store::tests::cluster;
use crate::server::store::{Appended, ChatDraft, Store};

fn draft(n: usize, text: &str) -> ChatDraft {
    ChatDraft {
        room: "general".into(),
        user: UserRef {
            id: format!("u{n}"),
            name: format!("U{n}"),
        },
        client_id: "c-1".into(),
        text: text.into(),
        sent_at: Timestamp::parse("2026-11-25T17:30:00.123456Z").unwrap(),
        mentioned: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_in_a_group_loses_only_itself() {
    let store = Store::connect(&cluster::shared().create_database())
        .await
        .unwrap();
    let appends: Vec<_> = (0..30)
        .map(|n| {
            let store = store.clone();
            let text = if n == 10 { "bad \0 text" } else { "fine" };
            tokio::spawn(async move { store.append_chat(draft(n, text), |_, _| {}).await })
        })
        .collect();
    let mut offsets = Vec::new();
    let mut failed = 0;
    for append in appends {
        match append.await.unwrap() {
            Ok(Appended::New(message)) => offsets.push(message.offset),
            Ok(duplicate) => panic!("{duplicate:?}"),
            Err(_) => failed += 1,
        }
    }
    assert_eq!(failed, 1, "only the refused one");
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (1..=29).collect::<Vec<_>>(),
        "its offset went back"
    );
    // It was never stored, so it can be sent again (fixed) under its id.
    let again = store
        .append_chat(draft(10, "fixed"), |_, _| {})
        .await
        .unwrap();
    assert!(matches!(again, Appended::New(m) if m.offset == 30));
}
