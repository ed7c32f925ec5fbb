//! A persisted channel's row on either database: loading a room, an inbox
//! or a document nobody wrote to is a pure read (nothing is stored), and the
//! epoch it is loaded with is the one its first write stores, also after a
//! restart and from another instance.

use super::*;
use crate::server::hub::DOC_HISTORY;
use yrs::{Text, Transact};

/// Every table a load could write to, on either database.
const TABLES: [&str; 6] = [
    "channels",
    "chat_messages",
    "notifications",
    "doc_updates",
    "doc_states",
    "sent_ids",
];

impl Place {
    /// How many rows `table` holds, counted on a connection of its own.
    async fn rows(&self, table: &str) -> i64 {
        let count = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Place::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(&count, [], |row| row.get(0))
                .unwrap(),
            Place::Postgres(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("PostgreSQL connects");
                tokio::spawn(connection);
                client.query_one(&count, &[]).await.unwrap().get(0)
            }
        }
    }

    /// The rows of every table a load could write to, by table.
    async fn all_rows(&self) -> Vec<(&'static str, i64)> {
        let mut all = Vec::new();
        for table in TABLES {
            all.push((table, self.rows(table).await));
        }
        all
    }
}

/// One character typed into a fresh replica: a document's first update.
fn first_update() -> Vec<u8> {
    let doc = yrs::Doc::with_client_id(7);
    let text = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, 0, "x");
    txn.encode_update_v1()
}

async fn loading_what_was_never_written_stores_nothing(place: Place) {
    let store = place.open().await;
    let before = place.all_rows().await;
    let room = store
        .load_chat("chat:general".into(), 50, |s| s)
        .await
        .unwrap();
    assert_eq!((room.latest, room.recent.len()), (0, 0));
    let inbox = store.load_inbox("ann".into(), 10, |i| i).await.unwrap();
    assert_eq!((inbox.latest, inbox.recent.len()), (0, 0));
    let doc = store.load_doc("notes".into(), DOC_HISTORY).await.unwrap();
    assert_eq!((doc.latest, doc.recent.len()), (0, 0));
    assert_eq!(
        place.all_rows().await,
        before,
        "loading a room, an inbox and a document wrote nothing"
    );
}

async fn the_first_write_keeps_the_epoch_an_empty_load_answered(place: Place) {
    let store = place.open().await;
    // A second instance on the same data (for SQLite: a second handle).
    let other = place.open().await;
    let room = store
        .load_chat("chat:general".into(), 50, |s| s)
        .await
        .unwrap();
    let inbox = store.load_inbox("ann".into(), 10, |i| i).await.unwrap();
    let doc = store.load_doc("notes".into(), DOC_HISTORY).await.unwrap();
    let elsewhere = other
        .load_chat("chat:general".into(), 50, |s| s)
        .await
        .unwrap();
    assert_eq!(
        elsewhere.epoch, room.epoch,
        "both instances answer one epoch"
    );

    // The first write of each creates its row, from offset 1, in that epoch.
    let Appended::New(first) = send(&other, ann(), "c-1", "hi").await else {
        panic!()
    };
    assert_eq!(first.offset, 1);
    let notified = other
        .append_notification("ann".into(), "t".into(), "b".into(), now(), |_| {})
        .await
        .unwrap();
    assert_eq!(notified.offset, 1);
    let draft = DocDraft {
        doc: "notes".into(),
        user: ann(),
        client_id: "d-1".into(),
        update: first_update(),
    };
    assert!(matches!(
        other.append_doc(draft, |_| {}).await.unwrap(),
        DocAppended::New(e) if e.offset == 1
    ));
    assert_eq!(place.rows("channels").await, 3);
    drop((store, other));

    let reopened = place.open().await;
    let loaded = reopened
        .load_chat("chat:general".into(), 50, |s| s)
        .await
        .unwrap();
    assert_eq!((loaded.epoch, loaded.latest), (room.epoch, 1));
    let loaded = reopened.load_inbox("ann".into(), 10, |i| i).await.unwrap();
    assert_eq!((loaded.epoch, loaded.latest), (inbox.epoch, 1));
    let loaded = reopened
        .load_doc("notes".into(), DOC_HISTORY)
        .await
        .unwrap();
    assert_eq!((loaded.epoch, loaded.latest), (doc.epoch, 1));
}

both!(
    loading_what_was_never_written_stores_nothing,
    the_first_write_keeps_the_epoch_an_empty_load_answered,
);
