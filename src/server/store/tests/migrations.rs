//! Schemas on either database: a new one gets every migration, and one an
//! older Pulse left (the version before the latest, with data in it) is
//! upgraded at start with its data kept.

use super::*;
use crate::server::hub::DOC_HISTORY;

impl Place {
    /// (the schema version found, the latest the code knows).
    async fn schema_version(&self) -> (usize, usize) {
        match self {
            Place::Sqlite(path) => crate::server::store::sqlite::schema_version(path).unwrap(),
            Place::Postgres(url) => crate::server::store::postgres::schema_version(url)
                .await
                .unwrap(),
        }
    }

    /// What the previous release left: the schema before the latest (on
    /// SQLite no shared documents yet; on PostgreSQL no database epoch)
    /// holding one chat message of Ann's.
    async fn previous_release_with_a_message(&self) {
        match self {
            Place::Sqlite(path) => crate::server::store::sqlite::at_version(
                path,
                3,
                "INSERT INTO channels (name, epoch, latest) VALUES ('chat:general', 'old-epoch', 1);
                 INSERT INTO chat_messages (channel, offset, msg_id, user_id, user_name, text, sent_at)
                 VALUES ('chat:general', 1, 'm-1', 'ann', 'Ann', 'from before', '2026-11-25T17:30:00.123456Z');
                 INSERT INTO sent_ids (user_id, client_id, channel, offset) VALUES ('ann', 'c-1', 'chat:general', 1);",
            )
            .unwrap(),
            Place::Postgres(url) => crate::server::store::postgres::at_version(
                url,
                2,
                "INSERT INTO channels (name, epoch, latest) VALUES ('chat:general', 'old-epoch', 1);
                 INSERT INTO chat_messages (channel, seq, msg_id, user_id, user_name, text, sent_at)
                 VALUES ('chat:general', 1, 'm-1', 'ann', 'Ann', 'from before', '2026-11-25T17:30:00.123456Z');
                 INSERT INTO sent_ids (user_id, client_id, channel, seq) VALUES ('ann', 'c-1', 'chat:general', 1);",
            )
            .await
            .unwrap(),
        }
    }
}

/// Stores an update of one character to document `notes`.
async fn edit_note(store: &Store) -> DocAppended {
    let doc = yrs::Doc::with_client_id(7);
    let update = {
        use yrs::{Text, Transact};
        let text = doc.get_or_insert_text("content");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "x");
        txn.encode_update_v1()
    };
    let draft = DocDraft {
        doc: "notes".into(),
        user: ann(),
        client_id: "d-1".into(),
        update,
    };
    store.append_doc(draft, |_| {}).await.unwrap()
}

async fn a_new_database_gets_the_whole_schema(place: Place) {
    // Two instances starting at once on an empty database: one migrates,
    // the other waits for it and finds the work done.
    let (store, other) = tokio::join!(place.open(), place.open());
    drop(other);
    let (version, latest) = place.schema_version().await;
    assert_eq!(version, latest);
    assert!(matches!(send(&store, ann(), "c-1", "hi").await, Appended::New(m) if m.offset == 1));
    assert!(matches!(edit_note(&store).await, DocAppended::New(e) if e.offset == 1));
    // Opening it again (another instance, or a restart) migrates nothing.
    drop(place.open().await);
    assert_eq!(place.schema_version().await, (latest, latest));
}

async fn the_previous_version_is_upgraded_with_its_data(place: Place) {
    place.previous_release_with_a_message().await;
    let (old, latest) = place.schema_version().await;
    assert_eq!(old + 1, latest, "one migration behind");
    let store = place.open().await;
    assert_eq!(place.schema_version().await, (latest, latest));
    let room = store
        .load_chat("chat:general".into(), 10, |s| s)
        .await
        .unwrap();
    assert_eq!((room.epoch.as_str(), room.latest), ("old-epoch", 1));
    assert_eq!(room.recent[0].text, "from before");
    assert_eq!(room.recent[0].sent_at, now());
    // Its idempotency keys still hold, and offsets go on from there.
    assert!(matches!(
        send(&store, ann(), "c-1", "again").await,
        Appended::Duplicate { offset: 1, .. }
    ));
    assert!(matches!(send(&store, ann(), "c-2", "new").await, Appended::New(m) if m.offset == 2));
    // What the new migration added works.
    assert!(matches!(edit_note(&store).await, DocAppended::New(e) if e.offset == 1));
    let doc = store.load_doc("notes".into(), DOC_HISTORY).await.unwrap();
    assert_eq!(doc.latest, 1);
}

both!(
    a_new_database_gets_the_whole_schema,
    the_previous_version_is_upgraded_with_its_data,
);
