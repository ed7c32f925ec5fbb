//! A shared document in memory holds exactly what its store committed:
//! an envelope id sent from two sockets at once changes it once, a failed
//! append changes nothing, and an instance that missed another's commit
//! (one database, no Redis) fills the gap from the store instead of going
//! silent. Every check compares three readings of one document: a live
//! subscriber's replica, a newcomer's snapshot, and the store's reload.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::editor::{server, server_text, Editor};
use common::Client;
use pulse::protocol::{ErrorCode, ServerMessage};
use serde_json::json;
use std::time::Duration;
use yrs::{Doc, ReadTxn, Text, Transact};

/// How long a test waits for what a store round trip (or a busy timeout of
/// SQLite, 5 s) precedes.
const SLOW: Duration = Duration::from_secs(30);

/// An update that types `what` into an empty document of Yjs client
/// `client`: it depends on nothing, so it applies anywhere.
fn standalone(client: u64, what: &str) -> Vec<u8> {
    let doc = Doc::with_client_id(client);
    let text = doc.get_or_insert_text("text");
    text.insert(&mut doc.transact_mut(), 0, what);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&Default::default());
    update
}

/// Sends `update` as `doc_update` with envelope id `id`.
async fn send(client: &mut Client, id: &str, update: &[u8]) {
    let frame = json!({"type": "doc_update", "id": id,
        "data": {"doc": "notes", "update": BASE64.encode(update)}});
    client.send(&frame.to_string()).await;
}

/// Reads until the answer to envelope `id`: its offset, or the error code.
async fn answer(client: &mut Client, id: &str) -> Result<u64, ErrorCode> {
    loop {
        let envelope = client
            .recv_within(SLOW)
            .await
            .unwrap_or_else(|| panic!("an answer to {id}"));
        match envelope.message {
            ServerMessage::Ack(ack) if ack.id == id => return Ok(ack.offset.unwrap()),
            ServerMessage::Error(body) if body.id.as_deref() == Some(id) => return Err(body.code),
            _ => continue,
        }
    }
}

/// Issue 21 point 3: two sockets of one user send `doc_update` with the same
/// envelope id and different bytes at once, round after round. One of each
/// pair is stored, and memory holds exactly that: a newcomer's snapshot
/// reads what a subscriber built live from the updates, and so does the
/// note reloaded from the file after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_sent_from_two_sockets_at_once_changes_memory_once() {
    let db = common::temp_db();
    let pulse = server(&["--db", &db]).await;
    let mut watcher = Editor::join(pulse.addr, "Watcher", 900).await;
    let mut first = Client::signed_in_to(pulse.addr, "Ada").await;
    let mut second = Client::signed_in_to(pulse.addr, "Ada").await;
    let rounds = 20;
    for round in 0..rounds {
        let id = format!("same-{round}");
        // Fresh Yjs clients each round: every update stands alone.
        let (a, b) = (
            standalone(1000 + 2 * round, "a"),
            standalone(1001 + 2 * round, "b"),
        );
        send(&mut first, &id, &a).await;
        send(&mut second, &id, &b).await;
        let (one, other) = (
            answer(&mut first, &id).await,
            answer(&mut second, &id).await,
        );
        assert_eq!(one, other, "one place for one id");
        assert_eq!(one, Ok(round + 1));
    }
    watcher.settle(rounds).await;
    assert_eq!(watcher.text().len() as u64, rounds, "one letter a round");
    let live = watcher.text();
    assert_eq!(
        server_text(pulse.addr).await,
        (live.clone(), rounds),
        "a newcomer's snapshot is what the updates built"
    );
    pulse.shutdown().await;
    let reloaded = server(&["--db", &db]).await;
    assert_eq!(
        server_text(reloaded.addr).await,
        (live, rounds),
        "the store holds what memory held"
    );
}

/// Issue 21 point 3: an append that fails (SQLite's write lock held by
/// another process past the busy timeout) changes nothing in memory: the
/// snapshot stays as it was, and the next edit of another user, typed after
/// what he sees, reaches live subscribers and survives a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_leaves_the_document_as_it_was() {
    let db = common::temp_db();
    let pulse = server(&["--db", &db]).await;
    let mut watcher = Editor::join(pulse.addr, "Watcher", 900).await;
    let mut ada = Editor::join(pulse.addr, "Ada", 1).await;
    ada.type_at(0, "kept", true).await;
    ada.settle(1).await;
    watcher.settle(1).await;

    // Another process takes the database's write lock: the server's next
    // commit waits out its busy timeout and fails.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let lost = ada.type_at(4, " lost", true).await;
    let update = ada.outbox[&lost].clone();
    let failed = answer(&mut ada.client, &lost).await;
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(failed, Err(ErrorCode::Internal));
    assert_eq!(
        server_text(pulse.addr).await,
        ("kept".to_owned(), 1),
        "the failed update is not in memory"
    );

    // Bob joins now and types after all he sees.
    let mut bob = Editor::join(pulse.addr, "Bob", 2).await;
    let end = bob.text().len() as u32;
    bob.type_at(end, "!", true).await;
    bob.settle(2).await;
    watcher.settle(2).await;
    assert_eq!(watcher.text(), "kept!");
    assert_eq!(bob.text(), "kept!");
    assert_eq!(server_text(pulse.addr).await, ("kept!".to_owned(), 2));

    // Ada's outbox sends the failed update again: now it is stored, once.
    send(&mut ada.client, &lost, &update).await;
    assert_eq!(answer(&mut ada.client, &lost).await, Ok(3));
    watcher.settle(3).await;
    let live = watcher.text();
    assert_eq!(live.len(), "kept lost!".len());
    pulse.shutdown().await;
    let reloaded = server(&["--db", &db]).await;
    assert_eq!(server_text(reloaded.addr).await, (live, 3));
}

/// Issue 21 point 4: two instances share one PostgreSQL database without
/// Redis. After an edit committed through B, A's own acknowledged edit
/// still reaches A's subscribers, with B's filled in before it from the
/// store; a newcomer on A reads the store's latest offset; and a resume on
/// A from before the gap is never `recovered` without what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_a_documents_offsets_is_filled_from_the_store() {
    let url = common::postgres::shared().create_database();
    let flags = ["--database-url", url.as_str()];
    let (a, b) = (server(&flags).await, server(&flags).await);
    let mut watcher = Editor::join(a.addr, "Watcher", 900).await;
    let mut late = Editor::join(a.addr, "Late", 950).await;
    let mut ada = Editor::join(a.addr, "Ada", 1).await;
    ada.type_at(0, "ada ", true).await;
    ada.settle(1).await;
    // B loads the note now, with A's edit in it.
    let mut bob = Editor::join(b.addr, "Bob", 2).await;
    watcher.settle(1).await;
    late.settle(1).await;
    // `late` goes away before the gap, to resume after it.
    let (pre_gap, epoch) = (late.offset, late.epoch.clone());
    late.client = Client::signed_in_to(a.addr, "Late").await;

    bob.type_at(0, "bob ", true).await;
    bob.settle(2).await;
    ada.type_at(0, "again ", true).await;
    tokio::time::timeout(SLOW, ada.settle(3))
        .await
        .expect("A's editor gets her own edit, after B's");
    tokio::time::timeout(SLOW, watcher.settle(3))
        .await
        .expect("A's subscriber gets B's edit and A's");
    assert_eq!(watcher.seen, [1, 2, 3]);
    assert_eq!(watcher.text(), ada.text());
    assert_eq!(watcher.text().len(), "again bob ada ".len());
    assert_eq!(server_text(a.addr).await, (watcher.text(), 3));

    let resumed = late.subscribe(Some((pre_gap, epoch))).await;
    late.seen.clear();
    tokio::time::timeout(SLOW, late.settle(3))
        .await
        .expect("a resume from before the gap gets what it missed");
    if resumed.recovered {
        assert_eq!(late.seen, [2, 3], "a recovered resume replays the gap");
    }
    assert_eq!(late.text(), watcher.text());

    // The store's reload: a third instance reads the same.
    let c = server(&flags).await;
    assert_eq!(server_text(c.addr).await, (watcher.text(), 3));
}
