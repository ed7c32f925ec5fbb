//! Owns delivering committed messages to this hub's subscribers in offset
//! order, whoever committed them (this instance, or another one through the
//! broker, `server/broker/`), and the hub's side of the broker seam: which
//! broker the hub talks to, and what it asks of it. A delivery answers
//! `Gap` when messages before it are missing; the broker fills the gap.
//!
//! The hub names no Redis type: it talks to a [`Broker`].

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use tokio::sync::oneshot;

use super::ticker::{TickEntry, TickerHistory, HISTORY as TICKER_HISTORY};
use super::{
    frames, lock, resubscribe, ChannelState, ChatHistory, History, Hub, Quote, Ring, CHAT_HISTORY,
    DOC_HISTORY, INBOX_HISTORY,
};
use crate::protocol::{Channel, ChatMessage, Notification, ServerMessage, Tick};
use crate::server::broker::{memory::Memory, Broker, Publication, Sequencing};
use crate::server::store::StoredDoc;

/// What delivering one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Kept and queued for every subscriber.
    Delivered,
    /// Its offset was delivered before (a message from this instance that
    /// a fill delivered already, or its own copy back from Redis): nothing to do.
    Known,
    /// Messages between `latest` (the last delivered) and it are missing.
    Gap { latest: u64 },
    /// This hub does not hold the channel: the store alone has the message.
    NotHeld,
}

impl Hub {
    /// From now on, committed messages go to the other instances through
    /// `broker`, and loads of persisted channels wait until it hears them
    /// (`watch`). Without one the hub serves one instance alone.
    pub fn use_broker(&self, broker: Arc<dyn Broker>) {
        let _ = self.inner.broker.set(broker);
    }

    /// The broker this hub talks to.
    pub(super) fn broker(&self) -> &dyn Broker {
        match self.inner.broker.get() {
            Some(broker) => broker.as_ref(),
            None => &Memory,
        }
    }

    /// Waits until the broker hears the other instances' messages of
    /// `channel`; call before loading a persisted channel from the store.
    pub async fn watch(&self, channel: &Channel) {
        self.broker().watch(channel).await;
    }

    /// Tells the other instances that a resend found `channel`'s message at
    /// `offset` already stored (it may never have been published).
    pub fn stored_head(&self, channel: &Channel, offset: u64) {
        self.broker()
            .publish(Publication::Head(channel.clone(), offset));
    }

    /// Asks the broker to hear `channel`, held already, unless it does.
    pub fn ensure_watched(&self, channel: &Channel) {
        self.broker().ensure(channel);
    }

    /// Tells the broker that `channel` was loaded into memory.
    pub fn loaded(&self, channel: &Channel) {
        self.broker().loaded(channel);
    }

    /// Delivers a chat message to this hub's subscribers if it is the next
    /// offset of its room.
    pub fn deliver_chat(&self, message: &ChatMessage) -> Delivery {
        self.deliver_chat_with(message, false)
    }

    /// Delivers a chat message after a gap the store could not fill (more
    /// was missed than a room keeps): the room's history starts again at it,
    /// so a resume from before it is answered with a snapshot.
    pub fn deliver_chat_after_gap(&self, message: &ChatMessage) -> Delivery {
        self.deliver_chat_with(message, true)
    }

    fn deliver_chat_with(&self, message: &ChatMessage, restart: bool) -> Delivery {
        let Ok(channel) = Channel::chat(&message.room) else {
            return Delivery::NotHeld;
        };
        let Some(state) = lock(&self.inner.channels).get(&channel).cloned() else {
            return Delivery::NotHeld;
        };
        let mut state = lock(&state);
        let state = &mut *state;
        let History::Chat(history) = &mut state.history else {
            return Delivery::NotHeld;
        };
        let latest = history.ring.latest();
        let starts_again = match placement(latest, message.offset, restart) {
            Ok(starts_again) => starts_again,
            Err(delivery) => return delivery,
        };
        if starts_again {
            tracing::warn!(channel = %state.name, from = latest, to = message.offset, "chat history restarted after a gap");
            *history = ChatHistory {
                epoch: history.epoch.clone(),
                ring: Ring::after_offset(CHAT_HISTORY, message.offset - 1),
            };
        }
        let frame = frames::encode(ServerMessage::Chat(message.clone()));
        history.ring.push((message.clone(), frame.clone()));
        for outbox in state.subscribers.values() {
            let _ = outbox.deliver(frame.clone());
        }
        Delivery::Delivered
    }

    /// Delivers a notification to its user's tabs on this instance if it is
    /// the next offset of their channel.
    pub fn deliver_notification(&self, notification: &Notification) -> Delivery {
        self.deliver_notification_with(notification, false)
    }

    /// Delivers a notification after a gap nothing can fill: the channel's
    /// history starts again at it (a resume from before gets a snapshot).
    pub fn deliver_notification_after_gap(&self, notification: &Notification) -> Delivery {
        self.deliver_notification_with(notification, true)
    }

    fn deliver_notification_with(&self, notification: &Notification, restart: bool) -> Delivery {
        let mut delivery = Delivery::NotHeld;
        self.with_inbox(&notification.channel, |name, history, subscribers| {
            let latest = history.ring.latest();
            let starts_again = match placement(latest, notification.offset, restart) {
                Ok(starts_again) => starts_again,
                Err(refused) => {
                    delivery = refused;
                    return;
                }
            };
            if starts_again {
                tracing::warn!(channel = %name, from = latest, to = notification.offset, "notification history restarted after a gap");
                history.ring = Ring::after_offset(INBOX_HISTORY, notification.offset - 1);
            }
            history.accept(notification.clone(), subscribers.values().map(Arc::clone));
            delivery = Delivery::Delivered;
        });
        delivery
    }

    /// Hands a `doc_awareness` frame this hub sent its subscribers to the
    /// broker for the other instances (live only: the latest are kept).
    pub(super) fn share_awareness(&self, channel: &Channel, frame: Utf8Bytes) {
        self.broker().share_awareness(channel, frame);
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
            super::doc::after_reload(doc, &state.subscribers);
        }
    }

    /// Publishes a price from an outside feed and returns its offset: the
    /// cluster's when instances run as one (`None` if Redis could not take
    /// it), else this hub's.
    pub async fn publish_tick_shared(&self, quote: Quote) -> Option<u64> {
        let (answer, offset) = oneshot::channel();
        match self.broker().publish_tick(quote, Some(answer)) {
            Sequencing::Here(quote) => Some(self.publish_tick_here(quote)),
            Sequencing::Broker => offset.await.ok().flatten(),
        }
    }

    /// Installs a ticker channel as the cluster knows it (its epoch, and its
    /// newest ticks, oldest first, ending at offset `latest`), unless this
    /// hub holds it already.
    pub fn install_ticker(&self, channel: &Channel, epoch: String, latest: u64, recent: Vec<Tick>) {
        if self.has(channel) {
            return;
        }
        let mut ring = Ring::after_offset(TICKER_HISTORY, latest - recent.len() as u64);
        for tick in recent {
            let frame = frames::encode(ServerMessage::Tick(tick.clone()));
            ring.push(TickEntry { tick, frame });
        }
        let history = TickerHistory {
            ring,
            epoch: Some(epoch),
        };
        self.install(channel, History::Ticker(history));
    }

    /// Gives a ticker this hub holds with no tick yet the epoch the cluster
    /// holds for it now (Redis lost the one it had, or this hub served one
    /// of its own while Redis was away): its subscribers get a fresh
    /// `subscribed` in it, so their cursor is one the first tick continues.
    /// A ticker that had a tick learns a new epoch from the next tick.
    pub fn reopen_ticker(&self, channel: &Channel, epoch: String) {
        let Some(state) = lock(&self.inner.channels).get(channel).cloned() else {
            return;
        };
        let mut state = lock(&state);
        let state: &mut ChannelState = &mut state;
        let History::Ticker(history) = &mut state.history else {
            return;
        };
        if history.ring.latest() > 0 || history.epoch.as_deref() == Some(epoch.as_str()) {
            return;
        }
        history.epoch = Some(epoch);
        resubscribe(state, &self.inner.epoch);
    }

    /// Delivers a tick the broker brought (offset given by the cluster, in
    /// the cluster's `epoch`): the next offset goes to subscribers; an
    /// older one is known; a skipped one is a gap. A new epoch (Redis lost
    /// its keys) starts the history again from this tick.
    pub fn deliver_tick(&self, epoch: &str, tick: Tick, frame: Utf8Bytes) -> Delivery {
        self.deliver_tick_with(epoch, tick, frame, false)
    }

    /// Delivers a tick after a gap nothing can fill: the history starts
    /// again at it (a resume from before gets a snapshot).
    pub fn deliver_tick_after_gap(&self, epoch: &str, tick: Tick, frame: Utf8Bytes) -> Delivery {
        self.deliver_tick_with(epoch, tick, frame, true)
    }

    fn deliver_tick_with(
        &self,
        epoch: &str,
        tick: Tick,
        frame: Utf8Bytes,
        restart: bool,
    ) -> Delivery {
        let Ok(channel) = tick.channel.parse::<Channel>() else {
            return Delivery::NotHeld;
        };
        let Some(state) = lock(&self.inner.channels).get(&channel).cloned() else {
            return Delivery::NotHeld;
        };
        let mut state = lock(&state);
        let state: &mut ChannelState = &mut state;
        let History::Ticker(history) = &mut state.history else {
            return Delivery::NotHeld;
        };
        // A new epoch (Redis lost its keys) always starts the history again,
        // and subscribers get a fresh `subscribed`: their cursor's epoch is
        // gone.
        let new_epoch = history.epoch.as_deref() != Some(epoch);
        let starts_again = new_epoch
            || match placement(history.ring.latest(), tick.offset, restart) {
                Ok(starts_again) => starts_again,
                Err(delivery) => return delivery,
            };
        if starts_again {
            *history = TickerHistory {
                ring: Ring::after_offset(TICKER_HISTORY, tick.offset - 1),
                epoch: Some(epoch.to_owned()),
            };
        }
        if new_epoch {
            history.ring.push(TickEntry { tick, frame });
            self.inner.metrics.ticks_published.inc();
            resubscribe(state, &self.inner.epoch);
            return Delivery::Delivered;
        }
        self.push_tick(state, tick, Some(frame));
        Delivery::Delivered
    }

    /// The epoch of `channel` as this hub serves it, if it holds it.
    pub fn epoch_of(&self, channel: &Channel) -> Option<String> {
        let state = lock(&self.inner.channels).get(channel).cloned()?;
        let state = lock(&state);
        Some(
            state
                .history
                .epoch()
                .map_or_else(|| self.inner.epoch.clone(), str::to_owned),
        )
    }

    /// The latest offset this hub holds of `channel`, if it holds it.
    pub fn held_latest(&self, channel: &Channel) -> Option<u64> {
        let state = lock(&self.inner.channels).get(channel).cloned()?;
        let latest = lock(&state).history.latest();
        Some(latest)
    }
}

/// How a message at `offset` meets a history whose newest offset is
/// `latest`: `Err` with the answer when it is not taken (known already, or a
/// gap when not `restart`), `Ok(true)` when the history must start again at
/// it (a gap, with `restart`), `Ok(false)` when it is simply the next.
pub(super) fn placement(latest: u64, offset: u64, restart: bool) -> Result<bool, Delivery> {
    if offset <= latest {
        Err(Delivery::Known)
    } else if offset == latest + 1 {
        Ok(false)
    } else if restart {
        Ok(true)
    } else {
        Err(Delivery::Gap { latest })
    }
}
