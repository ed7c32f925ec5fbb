//! Shared documents on disk: the update log exactly once per envelope id,
//! offsets and epoch across a reopen, and compaction that keeps the text and
//! every resume point of the kept log.

use super::*;
use crate::server::hub::{text_of, DOC_HISTORY};
use yrs::{Doc, ReadTxn, Text, Transact};

/// A client replica and the updates it makes.
struct Writer {
    doc: Doc,
    typed: usize,
}

impl Writer {
    fn new() -> Self {
        Writer {
            doc: Doc::with_client_id(42),
            typed: 0,
        }
    }

    /// Types `what` at the end: the update that makes.
    fn type_(&mut self, what: &str) -> Vec<u8> {
        let before = self.doc.transact().state_vector();
        let text = self.doc.get_or_insert_text("text");
        text.insert(&mut self.doc.transact_mut(), self.typed as u32, what);
        self.typed += what.len();
        self.doc.transact().encode_state_as_update_v1(&before)
    }
}

fn doc_draft(id: &str, update: Vec<u8>) -> DocDraft {
    DocDraft {
        doc: "notes".into(),
        user: ann(),
        client_id: id.into(),
        update,
    }
}

async fn append(store: &Store, id: &str, update: Vec<u8>) -> DocAppended {
    store
        .append_doc(doc_draft(id, update), |_| {})
        .await
        .unwrap()
}

async fn load(store: &Store) -> StoredDoc {
    load_id(store, "notes").await
}

async fn load_id(store: &Store, id: &str) -> StoredDoc {
    store.load_doc(id.into(), DOC_HISTORY).await.unwrap()
}

async fn updates_get_offsets_once_per_envelope_id_and_survive_a_reopen(place: Place) {
    let store = place.open().await;
    let mut writer = Writer::new();
    let first = writer.type_("hello");
    let DocAppended::New(event) = append(&store, "d-1", first.clone()).await else {
        panic!("stored")
    };
    assert_eq!(
        (event.channel.to_string().as_str(), event.offset),
        ("doc:notes", 1)
    );
    assert_eq!(event.user, ann());
    append(&store, "d-2", writer.type_(" world")).await;
    // A resend of d-1 (even with other bytes) stores nothing new.
    let again = append(&store, "d-1", first).await;
    assert_eq!(
        again,
        DocAppended::Duplicate {
            channel: "doc:notes".parse().unwrap(),
            offset: 1
        }
    );
    let before = load(&store).await;
    drop(store);
    let store = place.open().await;
    let loaded = load(&store).await;
    assert_eq!(text_of(&loaded.doc), "hello world");
    assert_eq!(
        (loaded.latest, loaded.epoch.as_str()),
        (2, before.epoch.as_str())
    );
    let offsets: Vec<u64> = loaded.recent.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [1, 2]);
}

async fn compaction_keeps_the_text_and_the_newest_updates_for_resume(place: Place) {
    let store = place.open().await;
    let mut writer = Writer::new();
    let total = DOC_HISTORY as u64 + 300;
    let appends: Vec<_> = (1..=total)
        .map(|n| {
            let update = writer.type_(&format!("{} ", n % 10));
            let store = store.clone();
            async move { append(&store, &format!("d-{n}"), update).await }
        })
        .collect();
    futures::future::join_all(appends).await;
    let expected = text_of(&writer.doc);
    assert_eq!(text_of(&load(&store).await.doc), expected);

    let upto = total - 100;
    assert_eq!(store.compact_doc("notes".into(), upto).await.unwrap(), upto);
    // Compacting to an older offset again changes nothing.
    assert_eq!(store.compact_doc("notes".into(), 10).await.unwrap(), upto);
    // The log keeps the newest DOC_HISTORY before the compaction point and
    // everything after it.
    assert_eq!(
        store.doc_rows("notes".into()).await.unwrap(),
        DOC_HISTORY as u64 + 100
    );
    drop(store);
    let store = place.open().await;
    let loaded = load(&store).await;
    assert_eq!(
        text_of(&loaded.doc),
        expected,
        "the state and the log make the text"
    );
    assert_eq!(loaded.latest, total);
    assert_eq!(loaded.compacted_upto, upto);
    // Every offset of the last DOC_HISTORY is there, in order, for replay.
    let offsets: Vec<u64> = loaded.recent.iter().map(|e| e.offset).collect();
    let expected_offsets: Vec<u64> = (total - DOC_HISTORY as u64 + 1..=total).collect();
    assert_eq!(offsets, expected_offsets);
}

/// A gap's fill reads the updates after an offset, a page at a time,
/// exactly as they were stored and appended.
async fn the_updates_after_an_offset_are_read_a_page_at_a_time(place: Place) {
    let store = place.open().await;
    let mut writer = Writer::new();
    let mut stored = Vec::new();
    for n in 1..=5 {
        let DocAppended::New(event) = append(&store, &format!("d-{n}"), writer.type_("ab")).await
        else {
            panic!("stored")
        };
        stored.push(event);
    }
    let after = |offset, limit| store.doc_updates_after("notes".into(), offset, limit);
    assert_eq!(after(1, 2).await.unwrap(), stored[1..3]);
    assert_eq!(after(3, 10).await.unwrap(), stored[3..]);
    assert_eq!(after(5, 10).await.unwrap(), []);
    assert_eq!(
        store
            .doc_updates_after("other".into(), 0, 10)
            .await
            .unwrap(),
        []
    );
}

/// Issue 21 point 7: loading a document is a read. With the writers' lock
/// held from outside (SQLite's write lock; on PostgreSQL the advisory lock
/// of every instance's writer), a stored document still loads whole, and so
/// does one nobody wrote to; the epoch that load hands out is the one its
/// first update keeps.
async fn a_document_loads_while_the_writers_lock_is_held(place: Place) {
    let store = place.open().await;
    let mut writer = Writer::new();
    append(&store, "d-1", writer.type_("hello")).await;
    append(&store, "d-2", writer.type_(" world")).await;
    let held = place.hold_write_lock().await;
    let loaded = load(&store).await;
    assert_eq!(text_of(&loaded.doc), "hello world");
    assert_eq!(loaded.latest, 2);
    let fresh = load_id(&store, "fresh").await;
    assert_eq!((fresh.latest, fresh.recent.len()), (0, 0));
    drop(held);
    let draft = DocDraft {
        doc: "fresh".into(),
        ..doc_draft("f-1", Writer::new().type_("x"))
    };
    let DocAppended::New(event) = store.append_doc(draft, |_| {}).await.unwrap() else {
        panic!("stored")
    };
    assert_eq!(event.offset, 1);
    let again = load_id(&store, "fresh").await;
    assert_eq!(
        (again.epoch.as_str(), text_of(&again.doc).as_str()),
        (fresh.epoch.as_str(), "x")
    );
}

both!(
    updates_get_offsets_once_per_envelope_id_and_survive_a_reopen,
    compaction_keeps_the_text_and_the_newest_updates_for_resume,
    the_updates_after_an_offset_are_read_a_page_at_a_time,
    a_document_loads_while_the_writers_lock_is_held
);
