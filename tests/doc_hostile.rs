//! What a hostile editor of a shared document may cost the others (issue 21,
//! points 2, 5 and 6), over real sockets: awareness that alternates set and
//! remove is paced like any other, tiny frames claiming huge counts are
//! `invalid` while a bystander is answered, the update rate is charged
//! before anything is decoded, and updates that cannot integrate are refused
//! instead of filling the note with invisible content.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::{Client, TestServer};
use pulse::protocol::{ErrorCode, ServerMessage, Snapshot};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, GetString, ReadTxn, Text, Transact, Update};

async fn server() -> TestServer {
    TestServer::start(&[
        "--tick-rate",
        "0",
        "--jwt-secret",
        "doc-test-secret-0123456789abcdef",
    ])
    .await
}

/// A signed-in client subscribed to `doc:notes`, its snapshot applied to
/// `doc` (when given).
async fn editor(server: &TestServer, name: &str) -> (Client, Doc) {
    let mut client = Client::signed_in(server, name).await;
    let frame = json!({"type": "subscribe", "data": {"channels": [{"channel": "doc:notes"}]}});
    client.send(&frame.to_string()).await;
    let doc = Doc::new();
    loop {
        if let ServerMessage::Subscribed(subscribed) = client.recv().await.message {
            if let Some(Snapshot::Doc(snapshot)) = subscribed.snapshot {
                let state = BASE64.decode(&snapshot.state).unwrap();
                let update = Update::decode_v1(&state).unwrap();
                doc.transact_mut().apply_update(update).unwrap();
            }
            return (client, doc);
        }
    }
}

fn awareness(client: u64, clock: u32, state: &str) -> String {
    let clients = HashMap::from([(
        ClientID::new(client),
        AwarenessUpdateEntry {
            clock,
            json: state.into(),
        },
    )]);
    let update = AwarenessUpdate { clients }.encode_v1();
    json!({"type": "doc_awareness", "data": {"doc": "notes", "update": BASE64.encode(update)}})
        .to_string()
}

fn doc_update(id: &str, update: &[u8]) -> String {
    json!({"type": "doc_update", "id": id,
        "data": {"doc": "notes", "update": BASE64.encode(update)}})
    .to_string()
}

/// The next `ack` or `error` for envelope `id` (other messages skipped).
async fn answer(client: &mut Client, id: &str) -> Result<(), ErrorCode> {
    loop {
        match client.recv().await.message {
            ServerMessage::Ack(ack) if ack.id == id => return Ok(()),
            ServerMessage::Error(body) if body.id.as_deref() == Some(id) => return Err(body.code),
            _ => {}
        }
    }
}

/// Applies an awareness frame to `states` (client id → state).
fn take(states: &mut HashMap<u64, serde_json::Value>, update: &str) {
    let update = AwarenessUpdate::decode_v1(&BASE64.decode(update).unwrap()).unwrap();
    for (client, entry) in update.clients {
        let state: serde_json::Value = serde_json::from_str(&entry.json).unwrap();
        if state.is_null() {
            states.remove(&client.get());
        } else {
            states.insert(client.get(), state);
        }
    }
}

/// Point 2: one sender alternating set and remove as fast as it can for
/// two seconds reaches a reading subscriber at most about ten times a
/// second (a removal is folded into the next paced relay, never sent at
/// once), the reader is never closed, and what it ends with is the sender's
/// last word.
#[tokio::test]
async fn awareness_removals_are_paced_like_every_other_awareness() {
    let server = server().await;
    let (mut ada, _) = editor(&server, "Ada").await;
    let (mut bob, _) = editor(&server, "Bob").await;
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let mut clock = 0;
        while started.elapsed() < Duration::from_secs(2) {
            clock += 1;
            let state = format!(r#"{{"cursor":{{"anchor":{clock},"head":{clock}}}}}"#);
            ada.send(&awareness(1, clock, &state)).await;
            clock += 1;
            ada.send(&awareness(1, clock, "null")).await;
        }
        // The last word on client 1 is its removal; client 2 marks the end.
        ada.send(&awareness(2, 1, r#"{"done":true}"#)).await;
        (ada, clock)
    });
    let mut states = HashMap::new();
    let mut relays = 0u128;
    while !states.contains_key(&2) {
        match bob.recv().await.message {
            ServerMessage::DocAwareness(event) => {
                relays += 1;
                take(&mut states, &event.update);
            }
            ServerMessage::Error(body) => panic!("bob got {body:?}"),
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    let (mut ada, sent) = sender.await.unwrap();
    assert!(sent > 40, "the sender sent only {sent}");
    // At most one relay per 100 ms, plus the first and the last.
    let bound = 3 + elapsed.as_millis() / 100;
    assert!(
        relays <= bound,
        "{relays} relays in {elapsed:?} (bound {bound}) for {sent} messages"
    );
    assert!(!states.contains_key(&1), "the last word was a removal");
    // Neither connection was closed: both still answer.
    for client in [&mut ada, &mut bob] {
        client.send(r#"{"type":"ping","data":{}}"#).await;
        while !matches!(client.recv().await.message, ServerMessage::Pong(_)) {}
    }
}

/// A few dozen bytes each: counts of 2^31 clients or structs, a delete set
/// with 2^31 ranges, a value nested thousands deep, an awareness update
/// claiming millions of states.
fn hostile_updates() -> Vec<Vec<u8>> {
    let var = |bytes: &mut Vec<u8>, mut value: u64| {
        while value >= 0x80 {
            bytes.push((value as u8) | 0x80);
            value >>= 7;
        }
        bytes.push(value as u8);
    };
    let mut frames = Vec::new();
    for count in [1u64 << 31, 1 << 26, 1 << 22] {
        // `count` clients.
        let mut bytes = Vec::new();
        var(&mut bytes, count);
        bytes.extend([1, 1, 0, 4, 1, 4, b't', b'e', b'x', b't', 1, b'a', 0]);
        frames.push(bytes);
        // One client with `count` structs.
        let mut bytes = vec![1];
        var(&mut bytes, count);
        bytes.extend([7, 0, 4, 1, 4, b't', b'e', b'x', b't', 1, b'a', 0]);
        frames.push(bytes);
        // A delete set of `count` ranges.
        let mut bytes = vec![0, 1, 7];
        var(&mut bytes, count);
        bytes.extend([0, 1, 0, 1]);
        frames.push(bytes);
        // An array value of `count` elements.
        let mut bytes = vec![1, 1, 7, 0, 8, 1, 4, b't', b'e', b'x', b't', 1, 117];
        var(&mut bytes, count);
        bytes.extend([126, 0]);
        frames.push(bytes);
    }
    // An array nested 20,000 deep.
    let mut deep = vec![1, 1, 7, 0, 8, 1, 4, b't', b'e', b'x', b't', 1];
    for _ in 0..20_000 {
        deep.extend([117, 1]);
    }
    deep.extend([126, 0]);
    frames.push(deep);
    frames
}

/// Point 5: every hostile frame is answered `invalid` and a bystander's
/// ping is answered between them; the server is still whole afterwards.
#[tokio::test]
async fn hostile_frames_are_invalid_and_a_bystander_is_answered_meanwhile() {
    let server = server().await;
    let (mut mallory, _) = editor(&server, "Mallory").await;
    let mut carol = Client::connected(&server).await;
    for (n, update) in hostile_updates().into_iter().enumerate() {
        let id = format!("hostile-{n}");
        mallory.send(&doc_update(&id, &update)).await;
        carol.send(r#"{"type":"ping","data":{}}"#).await;
        while !matches!(carol.recv().await.message, ServerMessage::Pong(_)) {}
        assert_eq!(
            answer(&mut mallory, &id).await,
            Err(ErrorCode::Invalid),
            "frame {n}"
        );
    }
    // Awareness claiming 2^31 and 2^22 states, in a few bytes.
    for claim in [
        [0x80, 0x80, 0x80, 0x80, 0x08],
        [0x80, 0x80, 0x80, 0x02, 0x00],
    ] {
        let mut update = claim.to_vec();
        update.extend([7, 1, 2, b'{', b'}']);
        let frame = json!({"type": "doc_awareness", "id": "aw",
            "data": {"doc": "notes", "update": BASE64.encode(&update)}});
        mallory.send(&frame.to_string()).await;
        assert_eq!(answer(&mut mallory, "aw").await, Err(ErrorCode::Invalid));
        carol.send(r#"{"type":"ping","data":{}}"#).await;
        while !matches!(carol.recv().await.message, ServerMessage::Pong(_)) {}
    }
    // An honest edit still goes through.
    let doc = Doc::with_client_id(5);
    let text = doc.get_or_insert_text("text");
    text.insert(&mut doc.transact_mut(), 0, "fine");
    let update = doc
        .transact()
        .encode_state_as_update_v1(&Default::default());
    mallory.send(&doc_update("honest", &update)).await;
    assert_eq!(answer(&mut mallory, "honest").await, Ok(()));
}

/// Point 5: the rate limit comes before any decoding, so garbage beyond
/// the rate is answered `rate_limited`, not decoded and found `invalid`.
#[tokio::test]
async fn a_doc_update_over_the_rate_is_rate_limited_even_when_it_is_garbage() {
    let server = server().await;
    let mut mallory = Client::signed_in(&server, "Mallory").await;
    let total = 300;
    for n in 0..total {
        mallory
            .send(&doc_update(&format!("g-{n}"), &[1, 2, 3]))
            .await;
    }
    let mut codes = HashMap::new();
    for n in 0..total {
        let code = answer(&mut mallory, &format!("g-{n}")).await.unwrap_err();
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    assert!(
        codes.contains_key("RateLimited"),
        "{total} garbage updates at once, answers: {codes:?}"
    );
}

/// Point 6: updates that skip clocks inside themselves (their middle never
/// sent) are refused `invalid`, so they cannot fill the note with pending
/// content nobody sees or can delete; an honest edit afterwards is accepted
/// and visible, and the note stays small.
#[tokio::test]
async fn updates_that_cannot_integrate_are_refused_and_the_note_stays_open() {
    let server = server().await;
    let (mut mallory, _) = editor(&server, "Mallory").await;
    let filler = "z".repeat(44_000);
    for n in 0..23u64 {
        // A fresh Yjs client: "a", then "b" (never sent), then 44 KB after it.
        let doc = Doc::with_client_id(1_000 + n);
        let text = doc.get_or_insert_text("text");
        let step = |doc: &Doc, at: u32, what: &str| {
            let before = doc.transact().state_vector();
            text.insert(&mut doc.transact_mut(), at, what);
            doc.transact().encode_state_as_update_v1(&before)
        };
        let first = step(&doc, 0, "a");
        let _never_sent = step(&doc, 1, "b");
        let third = step(&doc, 2, &filler);
        let merged = yrs::merge_updates_v1([first.as_slice(), third.as_slice()]).unwrap();
        let id = format!("skip-{n}");
        mallory.send(&doc_update(&id, &merged)).await;
        assert_eq!(
            answer(&mut mallory, &id).await,
            Err(ErrorCode::Invalid),
            "update {n}"
        );
    }
    let (mut bob, doc) = editor(&server, "Bob").await;
    let state = doc
        .transact()
        .encode_state_as_update_v1(&Default::default());
    assert!(state.len() < 1_000, "the note holds {} bytes", state.len());
    let text = doc.get_or_insert_text("text");
    let before = doc.transact().state_vector();
    text.insert(&mut doc.transact_mut(), 0, "honest");
    let update = doc.transact().encode_state_as_update_v1(&before);
    bob.send(&doc_update("honest", &update)).await;
    assert_eq!(answer(&mut bob, "honest").await, Ok(()));
    let (_, reader) = editor(&server, "Reader").await;
    let text = reader.get_or_insert_text("text");
    assert_eq!(text.get_string(&reader.transact()), "honest");
}
