//! Owns delivering committed messages to this hub's subscribers in offset
//! order, whoever committed them (this instance, or another one through the
//! broker, `server/broker/`), and the hub's side of the broker seam: which
//! broker the hub talks to, and what it asks of it. A delivery answers
//! `Gap` when messages before it are missing; the broker fills the gap.
//!
//! The hub names no Redis type: it talks to a [`Broker`].

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use super::{lock, Hub};
use crate::protocol::Channel;
use crate::server::broker::{memory::Memory, Broker, ForwardOutcome, Publication};

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

    /// Hands a fallback POST for a session `owner` holds to that instance
    /// (`Broker::forward`); resolves with its answer.
    pub fn forward_post(
        &self,
        owner: &str,
        session: &str,
        envelopes: Vec<String>,
    ) -> futures_util::future::BoxFuture<'static, ForwardOutcome> {
        self.broker().forward(owner, session, envelopes)
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

    /// Hands a `doc_awareness` frame this hub sent its subscribers to the
    /// broker for the other instances (live only: the latest are kept).
    pub(super) fn share_awareness(&self, channel: &Channel, frame: Utf8Bytes) {
        self.broker().share_awareness(channel, frame);
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
