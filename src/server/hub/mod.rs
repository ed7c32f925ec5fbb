//! The hub: the one owner of channels, their offsets, epochs, history and
//! subscribers. Everyone else holds a [`Hub`] handle.
//!
//! A channel's state sits behind its own lock, taken for one publish or one
//! subscribe and never across an `.await`. Subscribing answers, replays and
//! registers under that lock, so no live message can slip between the replay
//! and the first live one: a recovered subscription has no gap and no double.

mod ring;
mod ticker;

use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use super::frames;
use super::metrics::Metrics;
use super::ws::outbox::{Outbox, PushError};
use crate::protocol::{Channel, ServerMessage, Since, Subscribed, Tick};
use ticker::{TickEntry, TickerHistory};
pub use ticker::{HISTORY as TICKER_HISTORY, RECENT as TICKER_RECENT};

/// Identifies one subscriber (a connection) within the hub.
pub type SubscriberId = u64;

/// A price change to publish on `ticker:{symbol}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub symbol: String,
    pub price: f64,
    pub change: f64,
    pub change_pct: f64,
    pub volume: u64,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("channels of this kind are not available on this server yet")]
    NotAvailable,
    #[error("the connection is closing")]
    Closing,
}

/// A handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    channels: Mutex<HashMap<Channel, Arc<Mutex<ChannelState>>>>,
    /// The epoch of every in-memory channel: new with each server start,
    /// because that is when their history is lost.
    epoch: String,
    metrics: Arc<Metrics>,
}

struct ChannelState {
    /// The channel name as a shared string, the outboxes' conflation key.
    name: Arc<str>,
    history: History,
    /// Who gets this channel's live messages, by subscriber.
    subscribers: HashMap<SubscriberId, Arc<Outbox>>,
}

/// Each channel kind keeps its own history.
enum History {
    Ticker(TickerHistory),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a lock poisoned
    // by a panic elsewhere is still safe to use.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let epoch = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Hub {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::new()),
                epoch,
                metrics,
            }),
        }
    }

    /// The state of `channel`, created on first use when its kind is served.
    fn channel(&self, channel: &Channel) -> Result<Arc<Mutex<ChannelState>>, SubscribeError> {
        let mut channels = lock(&self.inner.channels);
        if let Some(state) = channels.get(channel) {
            return Ok(state.clone());
        }
        let history = match channel {
            Channel::Ticker(_) => History::Ticker(TickerHistory::default()),
            _ => return Err(SubscribeError::NotAvailable),
        };
        let state = Arc::new(Mutex::new(ChannelState {
            name: channel.to_string().into(),
            history,
            subscribers: HashMap::new(),
        }));
        channels.insert(channel.clone(), state.clone());
        Ok(state)
    }

    /// Subscribes `outbox` to `channel`. The `subscribed` answer, then any
    /// replayed messages, are queued on the outbox before any live message.
    pub fn subscribe(
        &self,
        id: SubscriberId,
        outbox: &Arc<Outbox>,
        channel: &Channel,
        since: Option<&Since>,
    ) -> Result<(), SubscribeError> {
        let state = self.channel(channel)?;
        let mut state = lock(&state);
        let epoch = self.inner.epoch.clone();
        let (latest, replay, snapshot) = match &state.history {
            History::Ticker(history) => {
                let replay = since
                    .filter(|since| since.epoch == epoch)
                    .and_then(|since| history.ring.after(since.offset))
                    .map(|entries| entries.map(|e| e.frame.clone()).collect::<Vec<_>>());
                let snapshot = if replay.is_some() {
                    None
                } else {
                    history.snapshot()
                };
                (history.ring.latest(), replay, snapshot)
            }
        };
        let recovered = replay.is_some();
        let answer = frames::encode(ServerMessage::Subscribed(Subscribed {
            channel: state.name.to_string(),
            epoch,
            offset: latest,
            recovered,
            snapshot,
        }));
        let queued = std::iter::once(answer)
            .chain(replay.into_iter().flatten())
            .try_for_each(|frame| outbox.push(frame));
        if queued.is_err() {
            return Err(SubscribeError::Closing);
        }
        state.subscribers.insert(id, outbox.clone());
        Ok(())
    }

    /// Stops delivering `channel` to subscriber `id`; an unused channel
    /// without history is forgotten.
    pub fn unsubscribe(&self, id: SubscriberId, channel: &Channel) {
        let mut channels = lock(&self.inner.channels);
        let Some(state) = channels.get(channel) else {
            return;
        };
        let mut guard = lock(state);
        guard.subscribers.remove(&id);
        let forgettable = guard.subscribers.is_empty()
            && match &guard.history {
                History::Ticker(history) => history.ring.latest() == 0,
            };
        drop(guard);
        if forgettable {
            channels.remove(channel);
        }
    }

    /// Publishes a tick on `ticker:{symbol}`: serialised once, kept in the
    /// history, and queued (conflated) for every subscriber. Returns its offset.
    pub fn publish_tick(&self, quote: Quote) -> u64 {
        let channel = Channel::Ticker(quote.symbol.clone());
        let state = self
            .channel(&channel)
            .expect("ticker channels are always served");
        let mut state = lock(&state);
        let state = &mut *state;
        let History::Ticker(history) = &mut state.history;
        let tick = Tick {
            channel: state.name.to_string(),
            offset: history.ring.latest() + 1,
            symbol: quote.symbol,
            price: quote.price,
            change: quote.change,
            change_pct: quote.change_pct,
            volume: quote.volume,
        };
        let frame: Utf8Bytes = frames::encode(ServerMessage::Tick(tick.clone()));
        let offset = history.ring.push(TickEntry {
            tick,
            frame: frame.clone(),
        });
        let metrics = &self.inner.metrics;
        metrics.ticks_published.fetch_add(1, Relaxed);
        for outbox in state.subscribers.values() {
            match outbox.push_tick(&state.name, frame.clone()) {
                Ok(true) => metrics.ticks_conflated.fetch_add(1, Relaxed),
                Ok(false) => 0,
                Err(PushError::Closed | PushError::SlowConsumer) => 0,
            };
        }
        offset
    }

    /// What a `subscribed` to `channel` would say now, for server-side
    /// rendering: the page then resumes from exactly this offset.
    /// A channel never published to peeks as offset 0 and no snapshot.
    pub fn peek(&self, channel: &Channel) -> Subscribed {
        let state = lock(&self.inner.channels).get(channel).cloned();
        let (offset, snapshot) = match state.as_deref().map(lock) {
            Some(state) => match &state.history {
                History::Ticker(history) => (history.ring.latest(), history.snapshot()),
            },
            None => (0, None),
        };
        Subscribed {
            channel: channel.to_string(),
            epoch: self.inner.epoch.clone(),
            offset,
            recovered: false,
            snapshot,
        }
    }

    /// How many subscribers `channel` has (for tests and metrics).
    pub fn subscriber_count(&self, channel: &Channel) -> usize {
        lock(&self.inner.channels)
            .get(channel)
            .map_or(0, |state| lock(state).subscribers.len())
    }
}

#[cfg(test)]
mod tests;
