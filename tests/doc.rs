//! Shared documents over real sockets, with yrs replicas as clients: edits
//! at the same spot converge, an editor that worked offline resumes and
//! nothing is applied twice, a kill in the middle of an edit burst loses no
//! acknowledged update, awareness is stamped and leaves with its connection,
//! every limit answers with its error, editors on different instances
//! (`--redis`) edit one document with one offset sequence, and a note
//! reloaded whole renews its subscribers without closing them.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::editor::{apply, later, server, server_text, Editor};
use common::process::Pulse;
use common::{Client, PATIENCE};
use pulse::protocol::{ErrorCode, ServerMessage, Snapshot};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use yrs::{Doc, GetString, ReadTxn, Text, Transact};

/// Ada and Bob each type three words at position 0 before either hears of
/// the other; both end with the same text, all six words in it.
async fn type_at_the_same_spot_at_once(ada: &mut Editor, bob: &mut Editor) {
    for (a, b) in ["one ", "two ", "three "]
        .iter()
        .zip(["uno ", "dos ", "tres "])
    {
        ada.type_at(0, a, true).await;
        bob.type_at(0, b, true).await;
    }
    ada.settle(6).await;
    bob.settle(6).await;
    assert_eq!(ada.text(), bob.text());
    assert_eq!(ada.text().len(), "one two three uno dos tres ".len());
}

#[tokio::test]
async fn two_editors_typing_at_the_same_spot_at_once_converge() {
    let server = server(&[]).await;
    let mut ada = Editor::join(server.addr, "Ada", 1).await;
    let mut bob = Editor::join(server.addr, "Bob", 2).await;
    // Both type at position 0 before either hears of the other.
    type_at_the_same_spot_at_once(&mut ada, &mut bob).await;
    assert_eq!(server_text(server.addr).await, (ada.text(), 6));
    // Each saw every offset once, its own included, in order.
    assert_eq!(ada.seen, (1..=6).collect::<Vec<_>>());
    assert_eq!(bob.seen, (1..=6).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_editor_that_worked_offline_resumes_and_nothing_is_applied_twice() {
    let server = server(&[]).await;
    let mut ada = Editor::join(server.addr, "Ada", 1).await;
    let mut bob = Editor::join(server.addr, "Bob", 2).await;
    ada.type_at(0, "shared ", true).await;
    ada.settle(1).await;
    bob.settle(1).await;
    // Ada's next update is stored (Bob sees it), but her connection drops
    // before she reads the ack: it stays in her outbox.
    let sent = ada.type_at(7, "draft ", true).await;
    bob.settle(2).await;
    let (offset, epoch) = (ada.offset, ada.epoch.clone());
    ada.client = Client::signed_in_to(server.addr, "Ada").await;
    // Offline, she keeps typing; Bob types too.
    ada.type_at(0, "offline ", false).await;
    bob.type_at(0, "bob ", true).await;
    bob.settle(3).await;

    let resumed = ada.subscribe(Some((offset, epoch))).await;
    assert!(resumed.recovered, "resumed by replay");
    ada.replay().await;
    // The resent update is acked with its first offset; the offline one is new.
    ada.settle(4).await;
    bob.settle(4).await;
    assert_eq!(ada.acked[&sent], 2);
    assert_eq!(ada.seen, [1, 2, 3, 4], "every offset once");
    assert_eq!(ada.text(), bob.text());
    assert_eq!(server_text(server.addr).await, (bob.text(), 4));
    let text = bob.text();
    let words: Vec<&str> = text.split_whitespace().collect();
    let distinct: HashSet<&&str> = words.iter().collect();
    assert_eq!(words.len(), 4, "{words:?}");
    assert_eq!(distinct.len(), 4, "nothing twice: {words:?}");
}

#[tokio::test]
async fn a_kill_in_the_middle_of_an_edit_burst_loses_no_acknowledged_update() {
    let db = common::temp_db();
    let pulse = Pulse::start(
        &db,
        &["--jwt-secret", "doc-test-secret-0123456789abcdef"],
        &[],
    );
    let mut ada = Editor::join(pulse.addr, "Ada", 1).await;
    // 200 words typed at the end, sent without waiting for acks.
    let mut typed = 0;
    for n in 0..200 {
        let word = format!("w{n} ");
        ada.type_at(typed, &word, true).await;
        typed += word.len() as u32;
    }
    while ada.acked.len() < 40 {
        ada.pump().await;
    }
    let mut pulse = pulse;
    pulse.kill();
    // Whatever else was acked before the socket died counts too.
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(
        Duration::from_millis(200),
        futures::StreamExt::next(&mut ada.client.ws),
    )
    .await
    {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let envelope = pulse::protocol::ServerEnvelope::from_json(&text).unwrap();
            for message in envelope.unpack() {
                if let ServerMessage::Ack(ack) = message.message {
                    ada.acked.insert(ack.id, ack.offset.unwrap());
                }
            }
        }
    }
    let acked: HashSet<String> = ada.acked.keys().cloned().collect();
    assert!(acked.len() < 200, "the kill came after the last ack");

    let pulse = Pulse::start(
        &db,
        &["--jwt-secret", "doc-test-secret-0123456789abcdef"],
        &[],
    );
    let (text, offset) = server_text(pulse.addr).await;
    for id in &acked {
        let n: usize = id.trim_start_matches("Ada-").parse().unwrap();
        let word = format!("w{} ", n - 1);
        assert!(text.contains(&word), "acknowledged {id} ({word:?}) lost");
    }
    assert!(offset >= acked.len() as u64);
    // And the editor's outbox, replayed, completes the text exactly once.
    let mut again = Editor::join(pulse.addr, "Ada", 1).await;
    again.doc = ada.doc;
    again.outbox = ada
        .outbox
        .into_iter()
        .filter(|(id, _)| !acked.contains(id))
        .collect();
    again.subscribe(None).await;
    again.replay().await;
    again.settle(0).await;
    let (text, _) = server_text(pulse.addr).await;
    let expected: String = (0..200).map(|n| format!("w{n} ")).collect();
    assert_eq!(text, expected);
}

#[tokio::test]
async fn awareness_is_stamped_relayed_and_leaves_with_its_connection() {
    let server = server(&["--heartbeat-ms", "1000"]).await;
    let mut ada = Editor::join(server.addr, "Ada", 1).await;
    let mut bob = Editor::join(server.addr, "Bob", 2).await;
    let forged = r##"{"user":{"id":"guest:bob","name":"Bob","color":"#336699"},"cursor":null}"##;
    ada.send_awareness(1, 1, forged).await;
    while !bob.awareness.contains_key(&1) {
        bob.pump().await;
    }
    let state = &bob.awareness[&1];
    assert_eq!(
        state["user"]["name"], "Ada",
        "stamped with the sender's identity"
    );
    assert_eq!(state["user"]["id"], "guest:ada");
    assert_eq!(state["user"]["color"], "#336699");
    // A newcomer gets it in the snapshot.
    let carol = Editor::join(server.addr, "Carol", 3).await;
    assert_eq!(carol.awareness[&1]["user"]["name"], "Ada");
    // Ada's connection goes silent (it never reads or answers a Ping
    // again): the server drops it after two heartbeats, and her state goes
    // with it.
    let silent = ada;
    let gone = tokio::time::timeout(Duration::from_millis(2 * 1000 + 1500), async {
        while bob.awareness.contains_key(&1) {
            bob.pump().await;
        }
    })
    .await;
    assert!(gone.is_ok(), "Ada's cursor is still shown");
    drop(silent);
}

#[tokio::test]
async fn awareness_is_paced_and_the_latest_state_always_arrives() {
    let server = server(&[]).await;
    let mut ada = Editor::join(server.addr, "Ada", 1).await;
    let mut bob = Editor::join(server.addr, "Bob", 2).await;
    // 40 cursor moves in a burst: far over 10 a second.
    for clock in 1..=40 {
        let state = format!(r#"{{"cursor":{{"anchor":{clock},"head":{clock}}}}}"#);
        ada.send_awareness(1, clock, &state).await;
    }
    let started = tokio::time::Instant::now();
    let mut relays = 0;
    while bob.awareness.get(&1).map(|s| s["cursor"]["head"].clone()) != Some(json!(40)) {
        if let ServerMessage::DocAwareness(event) = bob.client.recv().await.message {
            relays += 1;
            bob.take_awareness(&event.update);
        }
    }
    let elapsed = started.elapsed();
    // At most one relay per 100 ms (plus the first), and the last is the
    // latest state.
    assert!(
        relays <= 2 + elapsed.as_millis() / 100,
        "{relays} relays in {elapsed:?}"
    );
    assert!(relays < 40, "{relays} relays: nothing was paced");
}

#[tokio::test]
async fn bad_updates_and_floods_get_their_errors_and_change_nothing() {
    let server = server(&[]).await;
    let mut ada = Editor::join(server.addr, "Ada", 1).await;
    ada.type_at(0, "kept", true).await;
    ada.settle(1).await;
    let send = |id: &str, update: &str| {
        json!({"type": "doc_update", "id": id, "data": {"doc": "notes", "update": update}})
            .to_string()
    };
    let expect_error = |ada: &mut Editor| ada.errors.pop();
    for (id, update, code) in [
        ("bad-1", "not base64!", ErrorCode::Invalid),
        ("bad-2", "AQID", ErrorCode::Invalid),
        ("bad-3", "", ErrorCode::Invalid),
    ] {
        ada.client.send(&send(id, update)).await;
        while ada.errors.is_empty() {
            ada.pump().await;
        }
        let error = expect_error(&mut ada).unwrap();
        assert_eq!((error.code, error.id.as_deref()), (code, Some(id)));
    }
    // Awareness needs a subscription; editing needs an identity.
    let mut carol = Client::signed_in(&server, "Carol").await;
    let awareness = json!({"type": "doc_awareness", "data": {"doc": "notes", "update": "AA=="}});
    carol.send(&awareness.to_string()).await;
    let ServerMessage::Error(error) = carol.recv().await.message else {
        panic!("an error")
    };
    assert_eq!(error.code, ErrorCode::Invalid);
    let mut anon = Client::connected(&server).await;
    anon.send(&send("anon-1", "AAA=")).await;
    let ServerMessage::Error(error) = anon.recv().await.message else {
        panic!("an error")
    };
    assert_eq!(error.code, ErrorCode::Unauthorized);

    // Growing past 1 MiB: 45 KB updates until one is refused.
    let mut refused = None;
    let mut at = 4;
    for n in 0..40 {
        let chunk = "y".repeat(45_000);
        let id = ada.type_at(at, &chunk, true).await;
        at += chunk.len() as u32;
        loop {
            ada.pump().await;
            if ada.acked.contains_key(&id) {
                break;
            }
            if let Some(error) = ada.errors.pop() {
                if error.code == ErrorCode::RateLimited {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let update = ada.outbox[&id].clone();
                    ada.send_update(&id, &update).await;
                    continue;
                }
                refused = Some((n, error));
                break;
            }
        }
        if refused.is_some() {
            break;
        }
    }
    let (n, error) = refused.expect("refused before 40 × 45 KB");
    assert_eq!(error.code, ErrorCode::TooLarge);
    assert!((20..=24).contains(&n), "refused at update {n}");
    let (text, _) = server_text(server.addr).await;
    assert_eq!(
        text.len(),
        4 + n * 45_000,
        "the refused update is not applied"
    );
}

#[tokio::test]
async fn a_document_nobody_wrote_to_has_an_empty_but_decodable_snapshot() {
    let server = server(&[]).await;
    let mut ada = Client::signed_in(&server, "Ada").await;
    let frame = json!({"type": "subscribe", "data": {"channels": [{"channel": "doc:empty"}]}});
    ada.send(&frame.to_string()).await;
    let subscribed = loop {
        if let ServerMessage::Subscribed(subscribed) = ada.recv().await.message {
            break subscribed;
        }
    };
    assert_eq!(subscribed.offset, 0);
    let Some(Snapshot::Doc(snapshot)) = subscribed.snapshot else {
        panic!("a doc snapshot: {subscribed:?}")
    };
    assert_eq!(
        (snapshot.state.as_str(), snapshot.awareness.as_str()),
        ("AAA=", "AA==")
    );
    // Subscribing stored nothing: the document has no row until its first update.
    drop(ada);
    let (text, offset) = server_text(server.addr).await;
    assert_eq!((text.as_str(), offset), ("", 0));
}

#[tokio::test]
async fn an_envelope_id_used_again_with_other_bytes_changes_nothing() {
    let server = server(&[]).await;
    let mut ada = Editor::join(server.addr, "Ada", 1).await;
    let first = ada.type_at(0, "kept", true).await;
    ada.settle(1).await;
    // The same id again, carrying another edit: acked with its first place,
    // and the other edit is neither applied nor stored.
    let mut other = Doc::with_client_id(5);
    let update = {
        let text = other.get_or_insert_text("text");
        text.insert(&mut other.transact_mut(), 0, "ZZZ");
        other
            .transact()
            .encode_state_as_update_v1(&Default::default())
    };
    ada.acked.clear();
    ada.outbox.insert(first.clone(), update.clone());
    ada.send_update(&first, &update).await;
    ada.settle(1).await;
    assert_eq!(ada.acked[&first], 1);
    let (text, offset) = server_text(server.addr).await;
    assert_eq!((text.as_str(), offset), ("kept", 1));
    other = Doc::new();
    drop(other);
}

/// Updates in the flood: five times the burst of 60 (`DOC_BURST`), so even
/// a slow store leaves the rate far behind (30 a second refill).
const FLOOD: usize = 300;

#[tokio::test]
async fn a_flood_is_rate_limited_and_a_resend_is_still_acked() {
    let server = server(&[]).await;
    // A flood is rate-limited, and a resend over the limit is still acked
    // with its first offset.
    let mut bob = Editor::join(server.addr, "Bob", 2).await;
    bob.retry_limited = false;
    let first = bob.type_at(0, "b", true).await;
    let first_bytes = bob.outbox[&first].clone();
    bob.settle(0).await;
    let first_offset = bob.acked.remove(&first).unwrap();
    // Typed first, then sent back to back, so the flood's pace is the
    // socket's, not the test's (a loaded machine types slowly).
    let flood: Vec<String> = {
        let mut ids = Vec::new();
        for n in 0..FLOOD {
            ids.push(bob.type_at(0, &format!("{}", n % 10), false).await);
        }
        ids
    };
    for id in &flood {
        let update = bob.outbox[id].clone();
        bob.send_update(id, &update).await;
    }
    bob.send_update(&first, &first_bytes).await;
    tokio::time::timeout(PATIENCE, async {
        while !bob.acked.contains_key(&first) {
            bob.pump().await;
        }
    })
    .await
    .expect("the resend is acked");
    assert_eq!(bob.acked[&first], first_offset);
    // Past the burst, updates are refused as too fast (and the ones after a
    // refused one as out of order); none of them was acked.
    let limited = bob.errors.iter().filter(|e| later(e)).count();
    assert!(
        bob.errors.iter().any(|e| e.code == ErrorCode::RateLimited),
        "a flood of {FLOOD} updates is limited"
    );
    assert_eq!(
        bob.acked.len() + limited,
        FLOOD + 1,
        "each update acked or refused once"
    );
}

/// Several instances as one (`--redis`): editors on two instances typing
/// at the same spot at once converge, with one offset sequence everywhere
/// (no "out of order" on the instance that did not commit an update), and
/// a newcomer on a third instance reads the same text at the same offset;
/// an editor resumes on another instance with exactly what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editors_on_different_instances_converge_with_one_offset_sequence() {
    let redis = common::redis::Redis::start();
    let url = common::postgres::shared().create_database();
    let redis_url = redis.url();
    let flags = common::shared_flags(&url, &redis_url);
    let servers = [
        server(&flags).await,
        server(&flags).await,
        server(&flags).await,
    ];
    let mut ada = Editor::join(servers[0].addr, "Ada", 1).await;
    let mut bob = Editor::join(servers[1].addr, "Bob", 2).await;
    type_at_the_same_spot_at_once(&mut ada, &mut bob).await;
    assert_eq!(ada.seen, (1..=6).collect::<Vec<_>>());
    assert_eq!(bob.seen, (1..=6).collect::<Vec<_>>());
    assert!(ada.errors.is_empty() && bob.errors.is_empty());
    assert_eq!(server_text(servers[2].addr).await, (ada.text(), 6));

    // A caret on one instance shows on the other, stamped, and goes when
    // its editor leaves.
    let caret = r##"{"user":{"color":"#336699"},"cursor":null}"##;
    bob.send_awareness(2, 1, caret).await;
    while !ada.awareness.contains_key(&2) {
        ada.pump().await;
    }
    assert_eq!(ada.awareness[&2]["user"]["name"], "Bob");
    bob.client
        .send(r#"{"type":"unsubscribe","data":{"channels":["doc:notes"]}}"#)
        .await;
    while ada.awareness.contains_key(&2) {
        ada.pump().await;
    }
    while !matches!(
        bob.client.recv().await.message,
        ServerMessage::Unsubscribed(_)
    ) {}
    bob.subscribe(None).await;

    // Ada leaves; Bob types on; Ada comes back on the third instance.
    let (offset, epoch) = (ada.offset, ada.epoch.clone());
    ada.client = Client::signed_in_to(servers[2].addr, "Ada").await;
    bob.type_at(0, "after ", true).await;
    bob.settle(7).await;
    let resumed = ada.subscribe(Some((offset, epoch))).await;
    assert!(resumed.recovered, "one epoch on every instance");
    ada.seen.clear();
    ada.settle(7).await;
    assert_eq!(ada.seen, [7], "exactly what it missed, once");
    assert_eq!(ada.text(), bob.text());
}

/// Issue 21 point 8: a note of ~850 KB reloaded whole on an instance (it
/// missed, while Redis was away, more updates than the store keeps to
/// replay) renews its subscriber there with a `subscribed` the server sends
/// on its own, ~1.1 MB: more than the 1 MiB outbox budget, but a subscribe
/// answer, so the subscriber, reading all along, is not closed with 4008;
/// its renewed replica is the whole note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_reloaded_whole_renews_its_subscribers_without_4008() {
    let redis = common::redis::Redis::start();
    let url = common::postgres::shared().create_database();
    let redis_url = redis.url();
    let flags = common::shared_flags(&url, &redis_url);
    let servers = [server(&flags).await, server(&flags).await];
    let mut reader = Editor::join(servers[0].addr, "Reader", 900).await;

    redis.stop();
    // 20 writers on the other instance, 56 updates of 760 characters each
    // (under the burst of 60): 1,120 updates, more than the 1,000 the store
    // keeps to replay, and 851,200 characters of text.
    let (writers, updates, length) = (20u64, 56, 760u32);
    // Every update applied here too: the note the store ends with.
    let note = Doc::new();
    let mut sessions = Vec::new();
    for w in 0..writers {
        let mut client = Client::signed_in_to(servers[1].addr, &format!("Writer{w}")).await;
        let doc = Doc::with_client_id(100 + w);
        let text = doc.get_or_insert_text("text");
        for n in 0..updates {
            let before = doc.transact().state_vector();
            let filler = char::from(b'a' + (n % 26) as u8).to_string();
            text.insert(
                &mut doc.transact_mut(),
                n * length,
                &filler.repeat(length as usize),
            );
            let update = doc.transact().encode_state_as_update_v1(&before);
            apply(&note, &update);
            let frame = json!({"type": "doc_update", "id": format!("w{w}-{n}"),
                "data": {"doc": "notes", "update": BASE64.encode(update)}});
            client.send(&frame.to_string()).await;
        }
        sessions.push(client);
    }
    let mut offsets = HashSet::new();
    for client in &mut sessions {
        let mut acks = 0;
        while acks < updates {
            match client.recv().await.message {
                ServerMessage::Ack(ack) => {
                    acks += 1;
                    offsets.insert(ack.offset.unwrap());
                }
                ServerMessage::Error(body) => panic!("{body:?}"),
                _ => {}
            }
        }
    }
    let latest = writers * updates as u64;
    assert_eq!(offsets.len() as u64, latest);
    assert_eq!(offsets.iter().max(), Some(&latest));
    let expected = note.get_or_insert_text("text").get_string(&note.transact());
    assert_eq!(
        expected.len(),
        (writers as usize) * (updates * length) as usize
    );

    redis.restart();
    let renewed = loop {
        let envelope = reader
            .client
            .recv_within(Duration::from_secs(30))
            .await
            .expect("the reloaded note arrives");
        match envelope.message {
            ServerMessage::Subscribed(answer) if answer.channel == "doc:notes" => break answer,
            _ => continue,
        }
    };
    assert!(!renewed.recovered);
    assert_eq!(renewed.offset, latest);
    let Some(Snapshot::Doc(snapshot)) = &renewed.snapshot else {
        panic!("a document snapshot: {:?}", renewed.snapshot)
    };
    assert!(
        snapshot.state.len() > 1 << 20,
        "{} bytes",
        snapshot.state.len()
    );
    let replica = Doc::new();
    apply(&replica, &BASE64.decode(&snapshot.state).unwrap());
    let text = replica.get_or_insert_text("text");
    assert!(
        text.get_string(&replica.transact()) == expected,
        "the whole note"
    );
    // Still connected and answering.
    reader.client.send(r#"{"type":"ping","data":{}}"#).await;
    while !matches!(reader.client.recv().await.message, ServerMessage::Pong(_)) {}
}
