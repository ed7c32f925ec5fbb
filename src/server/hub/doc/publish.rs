//! Owns the hub's side of a document update's way from check to commit to
//! subscribers: the check against the committed document (changing
//! nothing), the growth it reserves until its commit, and applying what the
//! store committed (this instance's commits and, through the broker, other
//! instances') in offset order, holding what comes past a gap until the
//! fill from the store (`fill.rs`) closes it.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use yrs::Update;

use super::order::{Order, Place};
use super::{DocError, DocState, Fit};
use crate::protocol::{Channel, DocUpdateEvent, ServerMessage};
use crate::server::broker::Publication;
use crate::server::frames;
use crate::server::hub::{Delivery, Hub, SubscribeError, Subscriber, SubscriberId};

/// What publishing a document update this instance committed asks of its
/// caller.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DocPublished {
    /// Compact the stored log up to this offset now (it is due).
    pub compact_upto: Option<u64>,
    /// Updates before it are missing here: start a fill from the store
    /// ([`super::fill`]); nobody else does.
    pub fill: bool,
}

/// The growth an update claimed at its check, given back when dropped
/// (after its commit, or when it failed or its connection went away).
pub struct Reservation {
    hub: Hub,
    channel: Channel,
    len: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let len = self.len;
        let _ = self
            .hub
            .with_doc(&self.channel, |_, doc, _| doc.reserve(len, false));
    }
}

/// Applies a committed update to the document, keeps its frame for resume
/// and queues it for every subscriber; then whatever was held for after it.
pub(in crate::server::hub) fn accept(
    doc: &mut DocState,
    subscribers: &HashMap<SubscriberId, Arc<dyn Subscriber>>,
    event: DocUpdateEvent,
) {
    let mut next = Some(event);
    while let Some(event) = next {
        match crate::server::hub::BASE64.decode(&event.update) {
            Ok(update) => doc.apply_committed(&update),
            Err(err) => {
                tracing::error!(%err, offset = event.offset, "a stored update is not base64")
            }
        }
        let frame = frames::encode(ServerMessage::DocUpdate(event));
        doc.ring.push(frame.clone());
        for outbox in subscribers.values() {
            let _ = outbox.deliver(frame.clone());
        }
        next = doc.order.next_after(doc.ring.latest());
    }
}

/// Takes a committed update in offset order: applied now if it is the
/// next, ignored if known; past a gap it is held when `hold` (then the
/// second answer says whether a fill must start), else left to its
/// deliverer's own fill.
fn take(
    doc: &mut DocState,
    subscribers: &HashMap<SubscriberId, Arc<dyn Subscriber>>,
    event: &DocUpdateEvent,
    hold: bool,
) -> (Delivery, bool) {
    let latest = doc.ring.latest();
    match Order::place(latest, event.offset) {
        Place::Next => {
            accept(doc, subscribers, event.clone());
            (Delivery::Delivered, false)
        }
        Place::Known => (Delivery::Known, false),
        Place::Gap => (Delivery::Gap { latest }, hold && doc.order.hold(event)),
    }
}

/// Applies the held updates that follow a document just reloaded whole.
pub(in crate::server::hub) fn after_reload(
    doc: &mut DocState,
    subscribers: &HashMap<SubscriberId, Arc<dyn Subscriber>>,
) {
    if let Some(next) = doc.order.next_after(doc.ring.latest()) {
        accept(doc, subscribers, next);
    }
}

impl Hub {
    /// Checks a client's update (decoded from `len` bytes) against the
    /// committed document without changing it, and reserves its growth
    /// until the returned [`Reservation`] is dropped. `NotLoaded` if the
    /// document is not in memory (load it first).
    pub fn check_doc_update(
        &self,
        channel: &Channel,
        update: &Update,
        len: usize,
    ) -> Result<Result<(Fit, Reservation), DocError>, SubscribeError> {
        self.with_doc(channel, |_, doc, _| {
            let fit = doc.check_update(update, len)?;
            doc.reserve(len, true);
            let reservation = Reservation {
                hub: self.clone(),
                channel: channel.clone(),
                len,
            };
            Ok((fit, reservation))
        })
    }

    /// Whether a client's pre-scanned update integrates fully into a loaded
    /// document: its state vector is taken under the channel's lock, the
    /// check runs after the lock is released. The document only grows, so
    /// what is admitted against it now stays admissible.
    pub fn admit_doc_update(
        &self,
        channel: &Channel,
        shape: &super::scan::Shape,
    ) -> Result<Result<(), DocError>, SubscribeError> {
        let known = self.with_doc(channel, |_, doc, _| doc.state_vector())?;
        Ok(shape.admit(&known).map_err(DocError::from))
    }

    /// Publishes a document update this instance just committed (called in
    /// commit order): applied here in offset order and queued for every
    /// subscriber, the sender included, and handed to the broker for the
    /// other instances. Says whether the stored log is due for a
    /// compaction (counted on the instance that committed the update) and
    /// whether a gap before it needs a fill from the store.
    pub fn publish_doc(&self, event: &DocUpdateEvent) -> DocPublished {
        self.broker().publish(Publication::Doc(event.clone()));
        let channel = Channel::Doc(event.doc.clone());
        // A load under way may have read the store before this commit.
        self.keep_for_loads(&channel, event);
        self.with_doc(&channel, |name, doc, subscribers| {
            let (delivery, fill) = take(doc, subscribers, event, true);
            if let Delivery::Gap { latest } = delivery {
                tracing::warn!(channel = %name, latest, offset = event.offset, "document updates missing here; filling from the store");
            }
            DocPublished {
                compact_upto: doc.compaction_due(event.offset, event.update.len()),
                fill,
            }
        })
        .unwrap_or_default()
    }

    /// Delivers a committed document update (another instance's, brought by
    /// the broker, or one a fill read from the store) to a document this hub
    /// holds, in offset order: `Gap` when updates before it are missing
    /// (then its deliverer fills them from the store and delivers it again).
    pub fn deliver_doc(&self, event: &DocUpdateEvent) -> Delivery {
        let channel = Channel::Doc(event.doc.clone());
        self.with_doc(&channel, |_, doc, subscribers| {
            take(doc, subscribers, event, false).0
        })
        .unwrap_or(Delivery::NotHeld)
    }

    /// The newest offset a document in memory applied, if it is held.
    pub fn doc_latest(&self, channel: &Channel) -> Option<u64> {
        self.with_doc(channel, |_, doc, _| doc.ring.latest()).ok()
    }

    /// A fill reached the end of what the store had: whether it must go on
    /// (updates still wait behind a gap). When not, the fill is over.
    pub fn doc_filled(&self, channel: &Channel) -> bool {
        self.with_doc(channel, |_, doc, subscribers| {
            // Whatever the fill's reads made the next is applied.
            if let Some(next) = doc.order.next_after(doc.ring.latest()) {
                accept(doc, subscribers, next);
            }
            doc.order.filled(doc.ring.latest())
        })
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests;
