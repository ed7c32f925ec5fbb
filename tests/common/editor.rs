//! A yrs replica of `doc:notes` behind a real socket, as the document
//! tests drive it: it types, sends, keeps an outbox, applies what arrives
//! and checks that no offset comes twice.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pulse::protocol::{Ack, ErrorBody, ErrorCode, ServerMessage, Snapshot, Subscribed};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, GetString, ReadTxn, Text, Transact, Update};

use super::{Client, TestServer};

/// A client with its own replica of `doc:notes`.
pub struct Editor {
    pub client: Client,
    pub doc: Doc,
    /// Updates sent and not acknowledged yet, by envelope id (the outbox).
    pub outbox: BTreeMap<String, Vec<u8>>,
    /// Offsets acknowledged to this editor, by envelope id.
    pub acked: BTreeMap<String, u64>,
    /// The last offset and epoch seen on the channel.
    pub offset: u64,
    pub epoch: String,
    /// Offsets of `doc_update`s received (to see none twice).
    pub seen: Vec<u64>,
    /// The latest awareness state per client id, as received.
    pub awareness: BTreeMap<u64, serde_json::Value>,
    pub errors: Vec<ErrorBody>,
    pub next_id: usize,
    pub name: String,
    /// Whether a `rate_limited` update is sent again (as an outbox does).
    pub retry_limited: bool,
}

impl Editor {
    pub async fn join(addr: SocketAddr, name: &str, client_id: u64) -> Editor {
        let client = Client::signed_in_to(addr, name).await;
        let mut editor = Editor {
            client,
            doc: Doc::with_client_id(client_id),
            outbox: BTreeMap::new(),
            acked: BTreeMap::new(),
            offset: 0,
            epoch: String::new(),
            seen: Vec::new(),
            awareness: BTreeMap::new(),
            errors: Vec::new(),
            next_id: 0,
            name: name.to_owned(),
            retry_limited: true,
        };
        editor.subscribe(None).await;
        editor
    }

    /// Subscribes (resuming from `since` when given) and applies the answer.
    pub async fn subscribe(&mut self, since: Option<(u64, String)>) -> Subscribed {
        let mut entry = json!({"channel": "doc:notes"});
        if let Some((offset, epoch)) = since {
            entry["since"] = json!({"offset": offset, "epoch": epoch});
        }
        let frame = json!({"type": "subscribe", "data": {"channels": [entry]}});
        self.client.send(&frame.to_string()).await;
        loop {
            match self.client.recv().await.message {
                ServerMessage::Subscribed(subscribed) => {
                    if let Some(Snapshot::Doc(snapshot)) = &subscribed.snapshot {
                        apply(&self.doc, &BASE64.decode(&snapshot.state).unwrap());
                        self.take_awareness(&snapshot.awareness);
                    }
                    // A recovered subscription replays what follows; a
                    // snapshot stands for everything up to its offset.
                    if !subscribed.recovered {
                        self.offset = subscribed.offset;
                    }
                    self.epoch = subscribed.epoch.clone();
                    return subscribed;
                }
                ServerMessage::PresenceDiff(_) => continue,
                other => panic!("expected subscribed, got {other:?}"),
            }
        }
    }

    /// Types `what` at `at` in the replica; sends the update unless offline.
    pub async fn type_at(&mut self, at: u32, what: &str, online: bool) -> String {
        let before = self.doc.transact().state_vector();
        let text = self.doc.get_or_insert_text("text");
        text.insert(&mut self.doc.transact_mut(), at, what);
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        self.next_id += 1;
        let id = format!("{}-{}", self.name, self.next_id);
        self.outbox.insert(id.clone(), update.clone());
        if online {
            self.send_update(&id, &update).await;
        }
        id
    }

    pub async fn send_update(&mut self, id: &str, update: &[u8]) {
        let frame = json!({"type": "doc_update", "id": id,
            "data": {"doc": "notes", "update": BASE64.encode(update)}});
        self.client.send(&frame.to_string()).await;
    }

    /// Sends every update of the outbox again, in order.
    pub async fn replay(&mut self) {
        for (id, update) in self.outbox.clone() {
            self.send_update(&id, &update).await;
        }
    }

    pub fn take_awareness(&mut self, update: &str) {
        if update.is_empty() {
            return;
        }
        let update = AwarenessUpdate::decode_v1(&BASE64.decode(update).unwrap()).unwrap();
        for (client, entry) in update.clients {
            let state: serde_json::Value = serde_json::from_str(&entry.json).unwrap();
            if state.is_null() {
                self.awareness.remove(&client.get());
            } else {
                self.awareness.insert(client.get(), state);
            }
        }
    }

    /// Reads one message and applies it.
    pub async fn pump(&mut self) {
        match self.client.recv().await.message {
            ServerMessage::DocUpdate(event) => {
                assert!(
                    event.offset > self.offset,
                    "offset {} seen again",
                    event.offset
                );
                self.offset = event.offset;
                self.seen.push(event.offset);
                apply(&self.doc, &BASE64.decode(&event.update).unwrap());
            }
            ServerMessage::Ack(Ack { id, offset, .. }) => {
                self.outbox.remove(&id);
                self.acked.insert(id, offset.unwrap());
            }
            ServerMessage::DocAwareness(event) => self.take_awareness(&event.update),
            ServerMessage::Error(body) => {
                let resend = body.id.as_ref().filter(|id| self.outbox.contains_key(*id));
                match resend {
                    // Waited out and sent again, as a client's outbox does
                    // (too fast, or ahead of an earlier update still to go).
                    Some(id) if later(&body) && self.retry_limited => {
                        let (id, update) = (id.clone(), self.outbox[id].clone());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        self.send_update(&id, &update).await;
                    }
                    _ => self.errors.push(body),
                }
            }
            _ => {}
        }
    }

    /// Pumps until the outbox is empty and the channel reached `offset`.
    pub async fn settle(&mut self, offset: u64) {
        while !self.outbox.is_empty() || self.offset < offset {
            self.pump().await;
        }
    }

    pub fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("text");
        let txn = self.doc.transact();
        text.get_string(&txn)
    }

    pub async fn send_awareness(&mut self, client: u64, clock: u32, state: &str) {
        let mut clients = std::collections::HashMap::new();
        clients.insert(
            ClientID::new(client),
            AwarenessUpdateEntry {
                clock,
                json: state.into(),
            },
        );
        let update = AwarenessUpdate { clients }.encode_v1();
        let frame = json!({"type": "doc_awareness",
            "data": {"doc": "notes", "update": BASE64.encode(update)}});
        self.client.send(&frame.to_string()).await;
    }
}

/// An answer that means "send it again later": over the rate, or an update
/// that got ahead of an earlier one of its client (which is being resent).
pub fn later(body: &ErrorBody) -> bool {
    body.code == ErrorCode::RateLimited
        || (body.code == ErrorCode::Invalid && body.message.contains("send that one first"))
}

pub fn apply(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).expect("the server sends Yjs v1 updates");
    doc.transact_mut().apply_update(update).unwrap();
}

pub async fn server(extra: &[&str]) -> TestServer {
    let mut flags = vec![
        "--tick-rate",
        "0",
        "--jwt-secret",
        "doc-test-secret-0123456789abcdef",
    ];
    flags.extend_from_slice(extra);
    TestServer::start(&flags).await
}

/// What a newcomer reads from the server: the snapshot's text and offset.
pub async fn server_text(addr: SocketAddr) -> (String, u64) {
    let reader = Editor::join(addr, "Reader", 999).await;
    (reader.text(), reader.offset)
}
