use super::awareness::encode_entries;
use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use yrs::{GetString, Text};

fn server() -> DocState {
    DocState::new("e1".into(), Ring::new(DOC_HISTORY), Doc::new())
}

fn alice() -> UserRef {
    UserRef {
        id: "alice".into(),
        name: "Alice".into(),
    }
}

/// The update `edit` makes to `doc` (everything new since before it).
fn edit(doc: &Doc, change: impl FnOnce(&TextRef, &mut yrs::TransactionMut)) -> Vec<u8> {
    let before = doc.transact().state_vector();
    let text = doc.get_or_insert_text("text");
    {
        let mut txn = doc.transact_mut();
        change(&text, &mut txn);
    }
    doc.transact().encode_state_as_update_v1(&before)
}

use yrs::TextRef;

fn insert(doc: &Doc, at: u32, what: &str) -> Vec<u8> {
    edit(doc, |text, txn| text.insert(txn, at, what))
}

fn text(doc: &Doc) -> String {
    let text = doc.get_or_insert_text("text");
    let txn = doc.transact();
    text.get_string(&txn)
}

#[test]
fn an_update_is_applied_and_a_resend_changes_nothing() {
    let mut server = server();
    let client = Doc::new();
    let update = insert(&client, 0, "hello");
    server.apply_update(&update).unwrap();
    server.apply_update(&update).unwrap();
    assert_eq!(server.text(), "hello");
    let again = rebuild(&server.state(), []);
    assert_eq!(text(&again), "hello");
}

#[test]
fn an_update_that_skips_an_earlier_one_of_its_client_is_refused_until_that_one_came() {
    let mut server = server();
    let client = Doc::with_client_id(9);
    let first = insert(&client, 0, "ab");
    let second = insert(&client, 2, "cd");
    assert_eq!(server.apply_update(&second), Err(DocError::Gap(9)));
    assert_eq!(server.text(), "");
    server.apply_update(&first).unwrap();
    server.apply_update(&second).unwrap();
    assert_eq!(server.text(), "abcd");
    // A resend of an update already applied is no gap.
    server.apply_update(&first).unwrap();
}

#[test]
fn a_malformed_update_is_refused_and_changes_nothing() {
    let mut server = server();
    server
        .apply_update(&insert(&Doc::new(), 0, "kept"))
        .unwrap();
    let state = server.state();
    for garbage in [&b"\x01\x02\x03"[..], b"not an update at all", &[0xff; 40]] {
        let refused = server.apply_update(garbage);
        assert!(
            matches!(refused, Err(DocError::Malformed(_))),
            "{refused:?}"
        );
    }
    assert_eq!(server.text(), "kept");
    assert_eq!(server.state(), state);
}

#[test]
fn an_update_that_would_pass_one_mebibyte_is_too_large_and_not_applied() {
    let mut server = server();
    let client = Doc::new();
    // Three updates of 400 KB: the third would pass 1 MiB.
    let chunk = "x".repeat(400_000);
    server.apply_update(&insert(&client, 0, &chunk)).unwrap();
    server.apply_update(&insert(&client, 0, &chunk)).unwrap();
    let third = insert(&client, 0, &chunk);
    assert_eq!(server.apply_update(&third), Err(DocError::TooLarge));
    assert_eq!(server.text().len(), 800_000);
    // Small edits still fit (made on the server's state: the refused third
    // chunk is only in `client`).
    let fresh = rebuild(&server.state(), []);
    server.apply_update(&insert(&fresh, 0, "ok")).unwrap();
    assert_eq!(server.text().len(), 800_002);
    assert!(server.text().starts_with("ok"));
    assert!(server.state().len() <= MAX_DOC_BYTES);
}

#[test]
fn deleting_every_other_character_is_counted_against_the_limit() {
    let mut server = server();
    let client = Doc::new();
    // 900,000 characters in one run: small to store (one item).
    server
        .apply_update(&insert(&client, 0, &"y".repeat(900_000)))
        .unwrap();
    // Deleting every other character splits the run into many items: each
    // update (a hundred deletions) grows the state by far more than its
    // own size. The server refuses before the state passes the limit.
    let mut refused = false;
    for batch in 0..400u32 {
        // Only this batch's deletions (a client sends no more).
        let update = {
            let text = client.get_or_insert_text("text");
            let mut txn = client.transact_mut();
            for n in 0..100 {
                text.remove_range(&mut txn, 1 + batch * 100 + n, 1);
            }
            txn.encode_update_v1()
        };
        if server.apply_update(&update) == Err(DocError::TooLarge) {
            refused = true;
            break;
        }
    }
    assert!(refused, "40,000 splits of one run make more than 1 MiB");
    let size = server.state().len();
    assert!(size <= MAX_DOC_BYTES, "{size} bytes");
}

impl DocState {
    /// An awareness update as a connection that is not paced sends it.
    fn take_awareness(
        &mut self,
        owner: SubscriberId,
        user: &UserRef,
        bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, DocError> {
        Ok(self.awareness_from(owner, user, awareness::decode(bytes)?, true))
    }
}

fn awareness_update(entries: &[(u64, u32, &str)]) -> Vec<u8> {
    encode_entries(
        entries
            .iter()
            .map(|&(client, clock, json)| (client, clock, Arc::from(json))),
    )
}

fn states(bytes: &[u8]) -> HashMap<u64, (u32, serde_json::Value)> {
    yrs::sync::awareness::AwarenessUpdate::decode_v1(bytes)
        .unwrap()
        .clients
        .into_iter()
        .map(|(client, entry)| {
            let json = serde_json::from_str(&entry.json).unwrap();
            (client.get(), (entry.clock, json))
        })
        .collect()
}

#[test]
fn awareness_is_stamped_with_the_connections_identity() {
    let mut server = server();
    let forged = r##"{"user":{"id":"bob","name":"Bob","color":"#ff0000"},"cursor":null}"##;
    let relay = server
        .take_awareness(1, &alice(), &awareness_update(&[(7, 1, forged)]))
        .unwrap()
        .expect("accepted");
    let (clock, state) = &states(&relay)[&7];
    assert_eq!(*clock, 1);
    assert_eq!(state["user"]["id"], "alice");
    assert_eq!(state["user"]["name"], "Alice");
    assert_eq!(state["user"]["color"], "#ff0000");
    assert_eq!(states(&server.awareness())[&7].1, *state);
}

#[test]
fn nobody_can_change_or_remove_another_connections_state() {
    let mut server = server();
    let state = r#"{"cursor":null}"#;
    server
        .take_awareness(1, &alice(), &awareness_update(&[(7, 1, state)]))
        .unwrap();
    let mallory = UserRef {
        id: "mallory".into(),
        name: "Mallory".into(),
    };
    for attempt in [(7, 5, state), (7, 5, "null")] {
        let relay = server
            .take_awareness(2, &mallory, &awareness_update(&[attempt]))
            .unwrap();
        assert_eq!(relay, None);
    }
    assert_eq!(states(&server.awareness())[&7].1["user"]["id"], "alice");
    // Alice's page on a new connection (the old one not noticed dead yet)
    // takes its own client id over; the old connection's end leaves it.
    let taken = server
        .take_awareness(3, &alice(), &awareness_update(&[(7, 2, state)]))
        .unwrap();
    assert!(taken.is_some());
    assert_eq!(server.remove_editor(1), None);
    assert_eq!(states(&server.awareness()).len(), 1);
}

#[test]
fn an_older_state_is_ignored_and_null_removes_ones_own() {
    let mut server = server();
    let update = |clock, json| awareness_update(&[(7, clock, json)]);
    server
        .take_awareness(1, &alice(), &update(3, "{}"))
        .unwrap();
    assert_eq!(
        server
            .take_awareness(1, &alice(), &update(2, "{}"))
            .unwrap(),
        None
    );
    let removal = server
        .take_awareness(1, &alice(), &update(4, "null"))
        .unwrap()
        .expect("relayed");
    assert_eq!(states(&removal)[&7], (4, serde_json::Value::Null));
    assert!(states(&server.awareness()).is_empty());
}

#[test]
fn a_leaving_connection_takes_its_states_along() {
    let mut server = server();
    server
        .take_awareness(
            1,
            &alice(),
            &awareness_update(&[(7, 3, "{}"), (8, 1, "{}")]),
        )
        .unwrap();
    server
        .take_awareness(2, &alice(), &awareness_update(&[(9, 1, "{}")]))
        .unwrap();
    let removal = states(&server.remove_editor(1).expect("had states"));
    assert_eq!(removal[&7], (4, serde_json::Value::Null));
    assert_eq!(removal[&8], (2, serde_json::Value::Null));
    assert_eq!(server.remove_editor(1), None);
    assert_eq!(states(&server.awareness()).keys().collect::<Vec<_>>(), [&9]);
}

#[test]
fn bad_awareness_is_refused() {
    let mut server = server();
    let refused = [
        b"\x05".to_vec(),
        awareness_update(&[(7, 1, "not json")]),
        awareness_update(&[(7, 1, "[1,2]")]),
        awareness_update(&[(7, 1, &format!("{{\"pad\":\"{}\"}}", "x".repeat(5000)))]),
    ];
    for bytes in refused {
        let answer = server.take_awareness(1, &alice(), &bytes);
        assert!(
            matches!(answer, Err(DocError::BadAwareness(_))),
            "{answer:?}"
        );
    }
    assert!(states(&server.awareness()).is_empty());
}

#[test]
fn one_connection_announces_a_bounded_number_of_clients() {
    let mut server = server();
    let many: Vec<_> = (1..=20).map(|client| (client, 1, "{}")).collect();
    server
        .take_awareness(1, &alice(), &awareness_update(&many))
        .unwrap();
    assert_eq!(
        states(&server.awareness()).len(),
        MAX_CLIENTS_PER_CONNECTION
    );
}

#[test]
fn compaction_is_due_by_count_and_only_once_at_a_time() {
    let mut server = server();
    assert_eq!(server.compaction_due(COMPACT_EVERY - 1, 10), None);
    assert_eq!(
        server.compaction_due(COMPACT_EVERY, 10),
        Some(COMPACT_EVERY)
    );
    assert_eq!(
        server.compaction_due(COMPACT_EVERY + 1, 10),
        None,
        "one under way"
    );
    server.compacted(Some(COMPACT_EVERY));
    assert_eq!(server.compaction_due(COMPACT_EVERY + 2, 10), None);
    assert_eq!(
        server.compaction_due(COMPACT_EVERY + 3, COMPACT_BYTES),
        Some(COMPACT_EVERY + 3),
        "by bytes"
    );
    server.compacted(None);
    assert_eq!(
        server.compaction_due(COMPACT_EVERY + 4, 1),
        Some(COMPACT_EVERY + 4)
    );
}

/// A simulated editor: its replica, the updates not acknowledged yet (its
/// outbox), and its socket: what it sent that the server has not read yet,
/// and what the server sent that it has not read yet (each in order, as a
/// WebSocket keeps them).
struct Editor {
    doc: Doc,
    outbox: Vec<Vec<u8>>,
    online: bool,
    sent: VecDeque<Vec<u8>>,
    inbox: VecDeque<Vec<u8>>,
}

impl Editor {
    /// Back online: the subscribe answer's snapshot, then the outbox again.
    fn reconnect(&mut self, server: &DocState) {
        self.online = true;
        apply(&self.doc, decode_update(&server.state()).unwrap()).unwrap();
        self.sent = self.outbox.iter().cloned().collect();
    }
}

/// Three editors make random inserts and deletes; the server reads their
/// sockets in random interleavings, some updates arrive twice (a resend),
/// and an editor that disconnects loses what was in flight both ways, then
/// takes a snapshot and replays its outbox. In the end every replica's text
/// equals the server's.
#[test]
fn random_edits_in_any_order_with_duplicates_and_disconnects_converge() {
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut server = server();
        let mut editors: Vec<Editor> = (1..=3)
            .map(|n| Editor {
                doc: Doc::with_client_id(seed * 10 + n),
                outbox: Vec::new(),
                online: true,
                sent: VecDeque::new(),
                inbox: VecDeque::new(),
            })
            .collect();
        let deliver = |server: &mut DocState, editors: &mut Vec<Editor>, from: usize| {
            let Some(update) = editors[from].sent.pop_front() else {
                return;
            };
            server.apply_update(&update).unwrap();
            // The ack: the update leaves the sender's outbox.
            editors[from].outbox.retain(|queued| *queued != update);
            for editor in editors.iter_mut().filter(|e| e.online) {
                editor.inbox.push_back(update.clone());
            }
        };
        for _ in 0..100 {
            let who = rng.random_range(0..editors.len());
            match rng.random_range(0..10) {
                0..=3 => {
                    let editor = &mut editors[who];
                    let len = text(&editor.doc).len() as u32;
                    let update = if len > 0 && rng.random_bool(0.3) {
                        let at = rng.random_range(0..len);
                        let n = rng.random_range(1..=(len - at).min(4));
                        edit(&editor.doc, |t, txn| t.remove_range(txn, at, n))
                    } else {
                        let at = rng.random_range(0..=len);
                        let word = ["a", "bc", "def", "XY", "z"][rng.random_range(0..5)];
                        insert(&editor.doc, at, word)
                    };
                    editor.outbox.push(update.clone());
                    if editor.online {
                        editor.sent.push_back(update.clone());
                        if rng.random_bool(0.1) {
                            editor.sent.push_back(update); // a resend
                        }
                    }
                }
                4..=6 => deliver(&mut server, &mut editors, who),
                7..=8 => {
                    let editor = &mut editors[who];
                    if let Some(update) = editor.inbox.pop_front() {
                        apply(&editor.doc, decode_update(&update).unwrap()).unwrap();
                    }
                }
                _ => {
                    let editor = &mut editors[who];
                    if editor.online {
                        editor.online = false;
                        editor.sent.clear();
                        editor.inbox.clear();
                    } else {
                        editor.reconnect(&server);
                    }
                }
            }
        }
        // Everyone comes back, and the network delivers everything.
        for editor in editors.iter_mut().filter(|e| !e.online) {
            editor.reconnect(&server);
        }
        for from in 0..editors.len() {
            while !editors[from].sent.is_empty() {
                deliver(&mut server, &mut editors, from);
            }
        }
        let expected = server.text();
        for (who, editor) in editors.iter_mut().enumerate() {
            while let Some(update) = editor.inbox.pop_front() {
                apply(&editor.doc, decode_update(&update).unwrap()).unwrap();
            }
            assert!(
                editor.outbox.is_empty(),
                "seed {seed}: unacknowledged updates"
            );
            assert_eq!(text(&editor.doc), expected, "seed {seed}: editor {who}");
        }
        assert_eq!(text(&rebuild(&server.state(), [])), expected, "seed {seed}");
    }
}
