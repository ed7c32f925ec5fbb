//! What reaches the note from the server (and from other pages' outboxes):
//! remote updates applied with the person's selection kept between the same
//! characters, the `subscribed` snapshot that loads the replica, co-editors'
//! awareness, a refused edit (a new replica from the server's state), and
//! the note going offline or signed out. Before the engine is installed,
//! what the server sends waits in the pending buffer, as received.

use base64::Engine as _;
use leptos::prelude::*;

use super::pending::Pending;
use super::{new_client_id, SharedNote, BASE64};
use crate::client::note::NOTE_DOC;
use crate::client::outbox::Outbox;
use crate::client::store::Renewal;
use crate::client::ToDriver;
use crate::protocol::{
    Channel, ClientMessage, DocAwarenessEvent, DocUpdateEvent, ErrorBody, ErrorCode, Snapshot,
    Subscribe, SubscribeChannel, Subscribed,
};

impl SharedNote {
    /// An update from the server (or a taken-over outbox): applied with the
    /// person's selection kept between the same characters.
    pub(in crate::client::context) fn remote(&self, update: &[u8]) {
        let held = self
            .held
            .try_update_value(|held| held.as_mut().map(|held| held.push(update.to_vec())))
            .flatten();
        if held.is_some() {
            return;
        }
        let selection = self.selection.get_value();
        let moved = self.with_engine(|note| match note.apply_remote(update, selection) {
            Ok(moved) => moved,
            Err(err) => {
                leptos::logging::warn!("note: {err}");
                None
            }
        });
        self.moved(moved.flatten());
        self.changed();
    }

    /// The note's state from a `subscribed` snapshot. The first one a
    /// replica gets loads it: the text area's selection, made in the
    /// rendered beginning, holds in the whole text too, so it is kept as is.
    /// A later one (a reconnect that could not resume) is merged like any
    /// remote update, the selection kept between the same characters.
    fn state(&self, state: &[u8]) {
        if self.loaded.get_untracked() {
            return self.remote(state);
        }
        let applied = self.with_engine(|note| note.apply_remote(state, None));
        match applied {
            Some(Ok(_)) => {
                self.loaded.set(true);
                self.cut.set(false);
                self.changed();
            }
            // Unreadable: the note stays read-only, showing what was rendered.
            Some(Err(err)) => leptos::logging::warn!("note: {err}"),
            None => {}
        }
    }

    /// A snapshot's state and awareness (base64): loads or merges the state,
    /// and says who is editing.
    pub(super) fn snapshot(&self, state: &str, awareness: &str) {
        if let Ok(state) = BASE64.decode(state) {
            self.state(&state);
        }
        let awareness = BASE64.decode(awareness).unwrap_or_default();
        self.with_engine(|note| {
            note.forget_peers();
            let _ = note.apply_awareness(&awareness);
        });
        self.changed();
    }

    /// The note's `subscribed`: a snapshot loads (or merges) its state and
    /// says who is editing (or waits for the engine); either way the note is
    /// live again and this page's caret is shared at once (the server forgot
    /// it with the last connection).
    pub(in crate::client::context) fn subscribed(&self, renewal: Renewal, answer: &Subscribed) {
        if let (Renewal::Replace(_), Some(Snapshot::Doc(snapshot))) = (renewal, &answer.snapshot) {
            if self.installed() {
                self.snapshot(&snapshot.state, &snapshot.awareness);
            } else {
                self.pending.update_value(|pending| {
                    pending.push(Pending::Snapshot {
                        state: snapshot.state.clone(),
                        awareness: snapshot.awareness.clone(),
                    })
                });
            }
        }
        self.live.set(true);
        self.connection.ask(ToDriver::ShareCursor { renew: true });
    }

    /// A new `doc_update` of the note.
    pub(in crate::client::context) fn updated(&self, event: &DocUpdateEvent) {
        if !self.installed() {
            let update = Pending::Update(event.update.clone());
            return self.pending.update_value(|pending| pending.push(update));
        }
        if let Ok(update) = BASE64.decode(&event.update) {
            self.remote(&update);
        }
    }

    /// Co-editors' awareness changed.
    pub(in crate::client::context) fn aware(&self, event: &DocAwarenessEvent) {
        if !self.installed() {
            let update = Pending::Awareness(event.update.clone());
            return self.pending.update_value(|pending| pending.push(update));
        }
        self.awareness(&event.update);
    }

    /// Co-editors' awareness (base64).
    pub(super) fn awareness(&self, update: &str) {
        if let Ok(update) = BASE64.decode(update) {
            self.with_engine(|note| {
                let _ = note.apply_awareness(&update);
            });
            self.peers
                .set(self.with_engine(|note| note.peers()).unwrap_or_default());
        }
    }

    /// The note is not live any more: co-editors are not known (the next
    /// subscription's snapshot says who is there).
    pub(in crate::client::context) fn offline(&self) {
        self.live.set(false);
        if !self.installed() {
            self.pending
                .update_value(|pending| pending.push(Pending::ForgetPeers));
        }
        self.with_engine(|note| note.forget_peers());
        self.peers.set(Vec::new());
    }

    /// A new, empty replica (when the engine is here; what waits for it is
    /// dropped either way): the next subscription's snapshot fills it, and
    /// the note is read-only until then.
    fn restart(&self) {
        self.pending.update_value(|pending| pending.clear());
        let client = new_client_id();
        if let Some(engine) = self.engine {
            engine.update_value(|engine| {
                if let Some(old) = engine.take() {
                    *engine = Some(old.fresh(client));
                }
            });
        }
        self.loaded.set(false);
    }

    /// Signed out: a new replica, so the next user's edits never build on
    /// this one's unsent ones and undo never reaches them. It is empty (and
    /// the note read-only) until the next subscription's snapshot fills it.
    pub(in crate::client::context) fn signed_out(&self) {
        self.restart();
    }

    /// The server refused the note's update in flight. `internal` (the
    /// store failed) means "again later", like `rate_limited`. Anything else
    /// (`invalid`, `too_large`) drops it and everything queued after it
    /// (which may build on it), and the page starts again from the server's
    /// state with a new replica, saying so.
    pub(in crate::client::context) fn refused(&self, id: &str, error: &ErrorBody, now_ms: f64) {
        if error.code == ErrorCode::Internal {
            self.connection.with_outbox(|outbox| {
                outbox.retry_later(id, now_ms);
            });
            return;
        }
        self.warning.set(Some(format!(
            "An edit of the note was refused and undone: {}",
            error.message
        )));
        self.connection.with_outbox(Outbox::clear_note);
        self.connection.store_outbox();
        self.restart();
        self.resubscribe();
    }

    /// Asks for the note's state again: the subscription starts over,
    /// without `since`, and its snapshot fills the replica.
    pub(super) fn resubscribe(&self) {
        let channel = Channel::Doc(NOTE_DOC.to_owned()).to_string();
        self.connection.forget(&channel);
        let subscribe = Subscribe {
            channels: vec![SubscribeChannel {
                channel,
                since: None,
            }],
        };
        self.connection
            .send(ClientMessage::Subscribe(subscribe), None);
    }
}
