//! Owns the hub's document channels apart from publishing (`publish.rs`):
//! installing a document loaded from the store and reloading it whole after
//! a gap the store cannot replay, editors' awareness (from this instance's
//! connections, and from the other instances' through the broker), and the
//! text a page renders.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use base64::Engine as _;

use super::{after_reload, DocState};
use crate::protocol::{Channel, DocAwarenessEvent, ServerMessage, UserRef};
use crate::server::hub::{
    frames, loads, lock, resubscribe, AwarenessEntries, History, Hub, Ring, SubscribeError,
    Subscriber, SubscriberId, BASE64, DOC_HISTORY,
};
use crate::server::store::StoredDoc;

impl Hub {
    /// Installs a document loaded from the store (unless one is in memory):
    /// `stored.doc` already holds every stored update.
    pub fn install_doc(&self, channel: &Channel, stored: StoredDoc) {
        if self.has(channel) {
            return;
        }
        self.install(channel, History::Doc(loads::doc_state(stored)));
    }

    /// Runs `work` on a document in memory; `NotLoaded` if it is not (load
    /// it from the store first).
    pub(super) fn with_doc<R>(
        &self,
        channel: &Channel,
        work: impl FnOnce(&Arc<str>, &mut DocState, &HashMap<SubscriberId, Arc<dyn Subscriber>>) -> R,
    ) -> Result<R, SubscribeError> {
        let state = lock(&self.inner.channels)
            .get(channel)
            .cloned()
            .ok_or(SubscribeError::NotLoaded)?;
        let mut state = lock(&state);
        let state = &mut *state;
        if state.dropped {
            return Err(SubscribeError::NotLoaded);
        }
        match &mut state.history {
            History::Doc(doc) => Ok(work(&state.name, doc, &state.subscribers)),
            _ => Err(SubscribeError::NotAvailable),
        }
    }

    /// The store compacted `channel` up to `upto` (or failed to: `None`).
    pub fn doc_compacted(&self, channel: &Channel, upto: Option<u64>) {
        let _ = self.with_doc(channel, |_, doc, _| doc.compacted(upto));
    }

    /// Takes a connection's awareness entries (decoded and checked on its
    /// own task) for a document it subscribes to, stamped with its `user`,
    /// and relays what was accepted to the other subscribers now, or only
    /// keeps it, removals included, when `relay` is false (the connection is
    /// paced; [`Hub::relay_awareness`] sends the latest later).
    pub fn doc_awareness(
        &self,
        channel: &Channel,
        owner: SubscriberId,
        user: &UserRef,
        entries: AwarenessEntries,
        relay: bool,
    ) -> Result<(), SubscribeError> {
        self.with_doc(channel, |_, doc, subscribers| {
            if !subscribers.contains_key(&owner) {
                return;
            }
            if let Some(update) = doc.awareness_from(owner, user, entries, relay) {
                let frame = awareness_frame(channel, &update);
                for (_, outbox) in subscribers.iter().filter(|(id, _)| **id != owner) {
                    let _ = outbox.deliver(frame.clone());
                }
                self.share_awareness(channel, frame);
            }
        })
    }

    /// Relays the awareness states `owner` holds in `channel` now and what
    /// it removed meanwhile (the latest of what it sent while paced).
    pub fn relay_awareness(&self, channel: &Channel, owner: SubscriberId) {
        let _ = self.with_doc(channel, |_, doc, subscribers| {
            if let Some(states) = doc.awareness_of(owner) {
                let frame = awareness_frame(channel, &states);
                for (_, outbox) in subscribers.iter().filter(|(id, _)| **id != owner) {
                    let _ = outbox.deliver(frame.clone());
                }
                self.share_awareness(channel, frame);
            }
        });
    }

    /// The text of a document in memory (what a page renders), if loaded.
    pub fn doc_text(&self, channel: &Channel) -> Option<String> {
        self.with_doc(channel, |_, doc, _| doc.text()).ok()
    }

    /// Queues another instance's `doc_awareness` frame for every subscriber
    /// of a document this hub holds.
    pub fn deliver_awareness(&self, channel: &Channel, frame: Utf8Bytes) {
        let _ = self.with_doc(channel, |_, _, subscribers| {
            for outbox in subscribers.values() {
                let _ = outbox.deliver(frame.clone());
            }
        });
    }

    /// Replaces a document this hub holds with the store's (more was missed
    /// than the store keeps to replay): its subscribers get a fresh
    /// `subscribed` with the whole state. Editors' awareness is kept.
    pub fn reinstall_doc(&self, channel: &Channel, stored: StoredDoc) {
        let Some(state) = lock(&self.inner.channels).get(channel).cloned() else {
            return;
        };
        let mut state = lock(&state);
        let state = &mut *state;
        let History::Doc(doc) = &mut state.history else {
            return;
        };
        if stored.latest <= doc.ring.latest() {
            return;
        }
        tracing::warn!(%channel, from = doc.ring.latest(), to = stored.latest, "document reloaded after a gap");
        let base = stored.latest - stored.recent.len() as u64;
        let mut ring = Ring::after_offset(DOC_HISTORY, base);
        for event in stored.recent {
            ring.push(frames::encode(ServerMessage::DocUpdate(event)));
        }
        doc.reload(stored.epoch, ring, stored.doc, stored.compacted_upto);
        resubscribe(state, &self.inner.epoch);
        // What was held for after the reloaded offsets follows the renewal.
        if let History::Doc(doc) = &mut state.history {
            after_reload(doc, &state.subscribers);
        }
    }
}

/// A `doc_awareness` frame for `channel` carrying `update`.
pub(in crate::server::hub) fn awareness_frame(channel: &Channel, update: &[u8]) -> Utf8Bytes {
    let doc = match channel {
        Channel::Doc(id) => id.clone(),
        _ => String::new(),
    };
    frames::encode(ServerMessage::DocAwareness(DocAwarenessEvent {
        channel: channel.clone(),
        doc,
        update: BASE64.encode(update),
    }))
}
