//! What reaches the note from the server (and from other pages' outboxes):
//! remote updates applied with the person's selection kept between the same
//! characters, the `subscribed` snapshot that loads the replica, co-editors'
//! awareness, a refused edit (a new replica from the server's state), and
//! the note going offline or signed out.

use base64::Engine as _;
use leptos::prelude::*;

use super::{new_note, SharedNote, BASE64};
use crate::client::note::{Note, NOTE_DOC};
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
        let moved = self
            .note
            .try_update_value(|note| {
                let stickies = selection.map(|(a, h)| (note.sticky(a), note.sticky(h)));
                if let Err(err) = note.apply_remote(update) {
                    leptos::logging::warn!("note: {err}");
                }
                stickies.and_then(|(a, h)| Some((note.index_of(&a?)?, note.index_of(&h?)?)))
            })
            .flatten();
        self.moved(moved);
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
        let applied = self
            .note
            .try_update_value(|note| note.apply_remote(state))
            .unwrap_or(Ok(()));
        match applied {
            Ok(()) => {
                self.loaded.set(true);
                self.cut.set(false);
                self.changed();
            }
            // Unreadable: the note stays read-only, showing what was rendered.
            Err(err) => leptos::logging::warn!("note: {err}"),
        }
    }

    /// The note's `subscribed`: a snapshot loads (or merges) its state and
    /// says who is editing; either way the note is live again and this
    /// page's caret is shared at once (the server forgot it with the last
    /// connection).
    pub(in crate::client::context) fn subscribed(&self, renewal: Renewal, answer: &Subscribed) {
        if let (Renewal::Replace(_), Some(Snapshot::Doc(snapshot))) = (renewal, &answer.snapshot) {
            if let Ok(state) = BASE64.decode(&snapshot.state) {
                self.state(&state);
            }
            let awareness = BASE64.decode(&snapshot.awareness).unwrap_or_default();
            self.note.update_value(|note| {
                note.forget_peers();
                let _ = note.apply_awareness(&awareness);
            });
            self.changed();
        }
        self.live.set(true);
        self.connection.ask(ToDriver::ShareCursor { renew: true });
    }

    /// A new `doc_update` of the note.
    pub(in crate::client::context) fn updated(&self, event: &DocUpdateEvent) {
        if let Ok(update) = BASE64.decode(&event.update) {
            self.remote(&update);
        }
    }

    /// Co-editors' awareness changed.
    pub(in crate::client::context) fn aware(&self, event: &DocAwarenessEvent) {
        if let Ok(update) = BASE64.decode(&event.update) {
            self.note.update_value(|note| {
                let _ = note.apply_awareness(&update);
            });
            self.peers.set(self.note.with_value(Note::peers));
        }
    }

    /// The note is not live any more: co-editors are not known (the next
    /// subscription's snapshot says who is there).
    pub(in crate::client::context) fn offline(&self) {
        self.live.set(false);
        self.note.update_value(Note::forget_peers);
        self.peers.set(Vec::new());
    }

    /// Signed out: a new replica, so the next user's edits never build on
    /// this one's unsent ones and undo never reaches them. It is empty (and
    /// the note read-only) until the next subscription's snapshot fills it.
    pub(in crate::client::context) fn signed_out(&self) {
        self.note.set_value(new_note());
        self.loaded.set(false);
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
        self.note.set_value(new_note());
        // Read-only until the snapshot asked for below fills the new replica.
        self.loaded.set(false);
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
