//! Loading a shared document over real sockets (issue 21, point 7): a load
//! is a read, so a subscribe is answered while another process holds the
//! database's write lock, and a document nobody subscribes to is not read
//! back from the store again for every update sent to it, nor for every
//! subscribe that comes back to it (`pulse_doc_loads_total` counts loads).

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::{http_get, Client, TestServer};
use pulse::protocol::{ServerMessage, Snapshot, Subscribed};
use serde_json::json;
use std::time::Duration;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

/// Long enough for anything the server does promptly; only a server that
/// waits for a lock it cannot get (SQLite's busy timeout is 5 s) takes it.
const LOCK_PATIENCE: Duration = Duration::from_secs(30);

async fn server(db: &str) -> TestServer {
    TestServer::start(&[
        "--db",
        db,
        "--tick-rate",
        "0",
        "--jwt-secret",
        "doc-loads-secret-0123456789abcdef",
    ])
    .await
}

/// Types `what` at the end of `doc`: the update that makes.
fn type_at_end(doc: &Doc, what: &str) -> Vec<u8> {
    let before = doc.transact().state_vector();
    let text = doc.get_or_insert_text("text");
    let end = text.len(&doc.transact());
    text.insert(&mut doc.transact_mut(), end, what);
    doc.transact().encode_state_as_update_v1(&before)
}

/// Sends `update` to document `id` and waits for its `ack`.
async fn send_update(client: &mut Client, id: &str, envelope: &str, update: &[u8]) {
    let frame = json!({"type": "doc_update", "id": envelope,
        "data": {"doc": id, "update": BASE64.encode(update)}});
    client.send(&frame.to_string()).await;
    loop {
        match client.recv_within(LOCK_PATIENCE).await.map(|e| e.message) {
            Some(ServerMessage::Ack(ack)) if ack.id == envelope => return,
            Some(ServerMessage::Error(error)) => panic!("doc_update {envelope}: {error:?}"),
            Some(_) => continue,
            None => panic!("no ack for {envelope}"),
        }
    }
}

/// Subscribes to `channel` and returns its answer (an error panics).
async fn subscribe(client: &mut Client, channel: &str) -> Subscribed {
    let frame = json!({"type": "subscribe", "data": {"channels": [{"channel": channel}]}});
    client.send(&frame.to_string()).await;
    loop {
        match client.recv_within(LOCK_PATIENCE).await.map(|e| e.message) {
            Some(ServerMessage::Subscribed(answer)) if answer.channel == channel => return answer,
            Some(ServerMessage::Error(error)) => panic!("subscribe {channel}: {error:?}"),
            Some(_) => continue,
            None => panic!("no answer to the subscribe to {channel}"),
        }
    }
}

async fn unsubscribe(client: &mut Client, channel: &str) {
    let frame = json!({"type": "unsubscribe", "data": {"channels": [channel]}});
    client.send(&frame.to_string()).await;
    loop {
        if let ServerMessage::Unsubscribed(gone) = client.recv().await.message {
            if gone.channel == channel {
                return;
            }
        }
    }
}

/// The text of a `subscribed` answer's document snapshot.
fn snapshot_text(answer: &Subscribed) -> String {
    let Some(Snapshot::Doc(snapshot)) = &answer.snapshot else {
        panic!("a document snapshot: {answer:?}")
    };
    let doc = Doc::new();
    let state = BASE64.decode(&snapshot.state).unwrap();
    doc.transact_mut()
        .apply_update(Update::decode_v1(&state).unwrap())
        .unwrap();
    let text = doc.get_or_insert_text("text");
    let txn = doc.transact();
    text.get_string(&txn)
}

/// `pulse_doc_loads_total` from `/metrics`.
async fn doc_loads(server: &TestServer) -> u64 {
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("pulse_doc_loads_total "))
        .expect("the pulse_doc_loads_total counter")
        .trim()
        .parse()
        .unwrap()
}

/// Another process holds the SQLite file's write lock (`BEGIN IMMEDIATE`),
/// so the server's one writer can commit nothing; a subscribe to a stored
/// document that is not in memory (the server was restarted) is still
/// answered with the document's snapshot: loading it is a read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_loads_while_another_process_holds_the_write_lock() {
    let db = common::temp_db();
    let first = server(&db).await;
    let mut ada = Client::signed_in(&first, "Ada").await;
    let doc = Doc::with_client_id(7);
    for (n, word) in ["plans ", "for ", "today"].into_iter().enumerate() {
        send_update(
            &mut ada,
            "plans",
            &format!("p-{n}"),
            &type_at_end(&doc, word),
        )
        .await;
    }
    drop(ada);
    first.shutdown().await;

    let again = server(&db).await;
    let mut bob = Client::signed_in(&again, "Bob").await;
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let answer = subscribe(&mut bob, "doc:plans").await;
    assert_eq!(snapshot_text(&answer), "plans for today");
    assert_eq!(answer.offset, 3);
    lock.execute_batch("ROLLBACK").unwrap();
}

/// Updates sent to a document nobody subscribes to, and a client that
/// subscribes to a document and leaves it again and again, read the
/// document from the store once, not once per update or subscribe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_nobody_holds_is_not_read_back_for_every_update_or_subscribe() {
    let db = common::temp_db();
    let server = server(&db).await;
    let mut ada = Client::signed_in(&server, "Ada").await;
    let before = doc_loads(&server).await;
    let doc = Doc::with_client_id(7);
    for n in 0..6 {
        send_update(
            &mut ada,
            "drafts",
            &format!("d-{n}"),
            &type_at_end(&doc, "word "),
        )
        .await;
    }
    assert_eq!(
        doc_loads(&server).await - before,
        1,
        "one load for six updates"
    );

    let mut bob = Client::signed_in(&server, "Bob").await;
    for _ in 0..6 {
        let answer = subscribe(&mut bob, "doc:drafts").await;
        assert_eq!(snapshot_text(&answer), "word ".repeat(6));
        unsubscribe(&mut bob, "doc:drafts").await;
    }
    assert_eq!(
        doc_loads(&server).await - before,
        1,
        "one load for six subscribes"
    );
}
