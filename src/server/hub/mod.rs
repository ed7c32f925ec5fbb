//! The hub: the one owner of channels, their offsets, epochs, history and
//! subscribers. Everyone else holds a [`Hub`] handle.
//!
//! A channel's state sits behind its own lock, taken for one publish or one
//! subscribe and never across an `.await`. Subscribing answers, replays and
//! registers under that lock, so no live message can slip between the replay
//! and the first live one: a recovered subscription has no gap and no double.
//!
//! A channel costs memory only while it is used: one nobody subscribes to is
//! dropped (a persisted one is reloaded from the store when next needed;
//! the last few documents released stay warm, `warm.rs`), and a ticker
//! nobody published to allocates no history.

mod chat;
mod deliver;
mod doc;
mod history;
mod inbox;
mod loads;
mod online;
mod presence;
mod reports;
mod ring;
mod subscriber;
mod ticker;
mod warm;

pub use deliver::Delivery;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

use super::broker::Broker;
use super::frames;
use super::metrics::Metrics;
use crate::protocol::{Channel, ServerMessage, Since, Subscribed};
pub use doc::admission::Refusal;
pub use doc::awareness::{decode as decode_awareness, Entries as AwarenessEntries};
use doc::channel::awareness_frame;
pub use doc::scan::{scan as scan_update, Shape as UpdateShape};
use doc::DocState;
pub use doc::{
    decode_update, encode_state, fill as fill_doc, measure as measure_doc_update, rebuild, text_of,
    DocError, DocPublished, Fit, Reservation, DOC_HISTORY, MAX_DOC_BYTES,
};
use history::History;
pub use loads::{LoadError, LOAD_KEPT, LOAD_KEPT_BYTES};
use online::PresenceHistory;
pub use online::{now as presence_now, PresenceEvent};
pub use reports::{reports as presence_reports, Reported, Reports};
use ring::Ring;
pub use subscriber::{Gone, Subscriber};
use ticker::TickerHistory;
pub use ticker::{HISTORY as TICKER_HISTORY, RECENT as TICKER_RECENT};
pub use warm::WARM_DOCS;

/// Presence diffs kept for resume, so a short blip recovers without a snapshot.
pub const PRESENCE_HISTORY: usize = 256;
/// Chat messages a room keeps in memory for resume (older ones are on disk).
pub const CHAT_HISTORY: usize = 1000;
/// Chat messages in a room's subscribe snapshot.
pub const CHAT_SNAPSHOT: usize = 50;
/// Notifications a user's channel keeps in memory for resume.
pub const INBOX_HISTORY: usize = 200;
/// The most bytes a subscribe replays; a resume needing more is answered
/// `recovered: false` with the (bounded) snapshot instead.
pub const REPLAY_MAX_BYTES: usize = 256 * 1024;
pub use presence::COALESCE as PRESENCE_COALESCE;
pub use presence::{Change as PresenceChange, Presence};

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
    /// A persisted channel that is not in memory (never loaded, or dropped
    /// when its last subscriber left): load it from the store and retry.
    #[error("the channel is not loaded")]
    NotLoaded,
    #[error("the connection is closing")]
    Closing,
}

/// A handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A handle that does not keep the hub alive, for a task that must end
/// with the server.
#[derive(Clone)]
pub struct WeakHub(std::sync::Weak<Inner>);

impl WeakHub {
    /// The hub, while the server holds it.
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

struct Inner {
    channels: Mutex<HashMap<Channel, Arc<Mutex<ChannelState>>>>,
    /// Documents being loaded from the store and what was published for
    /// them meanwhile (`loads.rs`). Taken after `channels` when both are.
    loads: Mutex<HashMap<Channel, loads::Loading>>,
    /// Documents nobody subscribes to that stay in memory (`warm.rs`).
    /// Taken only under `channels`.
    warm: Mutex<warm::Warm>,
    /// The epoch of every in-memory channel: new with each server start,
    /// because that is when their history is lost.
    epoch: String,
    metrics: Arc<Metrics>,
    /// How long a user whose last connection closed stays listed.
    presence_grace: Duration,
    /// Wakes the presence task (`online::expire`) when presence got an
    /// earlier deadline, or when the hub is dropped (so the task ends).
    presence_wake: Arc<Notify>,
    /// The seam to the other instances (`broker/`), set when several run
    /// as one; until then (and for one instance alone) the memory broker.
    broker: std::sync::OnceLock<Arc<dyn Broker>>,
    /// Set when instances share presence (`online.rs`): this hub's
    /// connections are reported through it (to the broker's presence
    /// reporter, `broker/redis/presence/report.rs`), and the cluster decides.
    presence_link: std::sync::OnceLock<Reports>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.presence_wake.notify_one();
    }
}

struct ChannelState {
    /// The channel name as a shared string, the outboxes' conflation key.
    name: Arc<str>,
    /// The channel itself, which the messages built here carry.
    channel: Channel,
    history: History,
    /// Who gets this channel's live messages, by subscriber.
    subscribers: HashMap<SubscriberId, Arc<dyn Subscriber>>,
    /// Set when the channel was dropped from the hub's map: whoever still
    /// holds this state must look the channel up again.
    dropped: bool,
}

impl ChannelState {
    fn new(channel: &Channel, history: History) -> Self {
        ChannelState {
            name: channel.to_string().into(),
            channel: channel.clone(),
            history,
            subscribers: HashMap::new(),
            dropped: false,
        }
    }
}

/// Tells every subscriber of a channel whose history started again what it
/// holds now: a `subscribed` with `recovered: false` and a snapshot, as if
/// they had just subscribed (a client replaces its view). It is a subscribe
/// answer and goes out as one: however large (a reloaded document), it never
/// counts against a subscriber's live budget, only toward its bound on
/// answers not yet read.
fn resubscribe(state: &ChannelState, hub_epoch: &str) {
    if state.subscribers.is_empty() {
        return;
    }
    let frame = frames::encode(ServerMessage::Subscribed(Subscribed {
        channel: state.name.to_string(),
        epoch: state.history.epoch().unwrap_or(hub_epoch).to_owned(),
        offset: state.history.latest(),
        recovered: false,
        snapshot: state.history.snapshot(),
    }));
    for outbox in state.subscribers.values() {
        let _ = outbox.deliver_answer(vec![frame.clone()]);
    }
}

/// Drops `channel` from `channels` (the hub's map, locked by the caller)
/// if nobody subscribes to it.
fn drop_if_unused(channels: &mut HashMap<Channel, Arc<Mutex<ChannelState>>>, channel: &Channel) {
    let Some(state) = channels.get(channel) else {
        return;
    };
    let mut state = lock(state);
    if state.subscribers.is_empty() && state.history.droppable() && !pinned(channel) {
        state.dropped = true;
        drop(state);
        channels.remove(channel);
    }
}

/// The default room and the note stay in memory: every page renders them.
fn pinned(channel: &Channel) -> bool {
    match channel {
        Channel::Chat(room) => room == crate::client::DEFAULT_ROOM,
        Channel::Doc(id) => id == crate::client::note::NOTE_DOC,
        _ => false,
    }
}

/// Yjs updates and awareness travel as standard base64 (with padding).
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A fresh epoch: 12 random hex digits.
pub fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a lock poisoned
    // by a panic elsewhere is still safe to use.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    /// A hub with no channel yet. Inside a tokio runtime it also starts the
    /// one task that expires presence (`online::expire`), which ends with the hub.
    pub fn new(metrics: Arc<Metrics>, presence_grace: Duration) -> Self {
        let epoch = new_epoch();
        let hub = Hub {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::new()),
                loads: Mutex::new(HashMap::new()),
                warm: Mutex::new(warm::Warm::default()),
                epoch,
                metrics,
                presence_grace,
                presence_wake: Arc::new(Notify::new()),
                broker: std::sync::OnceLock::new(),
                presence_link: std::sync::OnceLock::new(),
            }),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(online::expire(
                Arc::downgrade(&hub.inner),
                hub.inner.presence_wake.clone(),
            ));
        }
        hub
    }

    /// A handle that does not keep this hub alive.
    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// Inserts or removes a channel, keeping the gauge of channels in memory.
    fn counted<R>(
        &self,
        change: impl FnOnce(&mut HashMap<Channel, Arc<Mutex<ChannelState>>>) -> R,
    ) -> R {
        let mut channels = lock(&self.inner.channels);
        let result = change(&mut channels);
        let count = channels.len() as u64;
        self.inner.metrics.hub_channels.set(count as i64);
        result
    }

    /// The state of `channel`, created on first use when its kind lives in
    /// memory only (persisted kinds are installed from the store, and so is
    /// a ticker when instances run as one: from Redis, with the cluster's
    /// epoch, which its first tick will carry).
    fn channel(&self, channel: &Channel) -> Result<Arc<Mutex<ChannelState>>, SubscribeError> {
        self.counted(|channels| {
            if let Some(state) = channels.get(channel) {
                return Ok(state.clone());
            }
            let history = match channel {
                Channel::Ticker(_) if self.broker().sequences_ticks() => {
                    return Err(SubscribeError::NotLoaded)
                }
                Channel::Ticker(_) => History::Ticker(TickerHistory::default()),
                Channel::Presence => History::Presence(PresenceHistory::new(
                    self.inner.presence_grace,
                    self.inner.presence_link.get().is_some(),
                )),
                Channel::Chat(_) | Channel::User(_) | Channel::Doc(_) => {
                    return Err(SubscribeError::NotLoaded)
                }
            };
            let state = Arc::new(Mutex::new(ChannelState::new(channel, history)));
            channels.insert(channel.clone(), state.clone());
            Ok(state)
        })
    }

    /// Runs `work` on the live state of `channel` under its lock, looking the
    /// channel up again if it was dropped meanwhile (so nothing is ever
    /// registered on, or published to, a state the hub no longer holds).
    fn with_channel<R>(
        &self,
        channel: &Channel,
        work: impl FnOnce(&mut ChannelState) -> R,
    ) -> Result<R, SubscribeError> {
        loop {
            let state = self.channel(channel)?;
            let mut state = lock(&state);
            if !state.dropped {
                return Ok(work(&mut state));
            }
        }
    }

    /// Subscribes `subscriber` to `channel`. The `subscribed` answer, then
    /// any replayed messages, are queued before any live message.
    pub fn subscribe<S: Subscriber + 'static>(
        &self,
        id: SubscriberId,
        subscriber: &Arc<S>,
        channel: &Channel,
        since: Option<&Since>,
    ) -> Result<(), SubscribeError> {
        let subscriber: Arc<dyn Subscriber> = subscriber.clone();
        self.with_channel(channel, |state| {
            self.subscribe_locked(id, &subscriber, state, since)
        })?
    }

    fn subscribe_locked(
        &self,
        id: SubscriberId,
        outbox: &Arc<dyn Subscriber>,
        state: &mut ChannelState,
        since: Option<&Since>,
    ) -> Result<(), SubscribeError> {
        let epoch = self.inner.epoch.clone();
        let history = &state.history;
        let epoch = history.epoch().map_or(epoch, str::to_owned);
        // A replay is part of the answer the client asked for, so it never
        // counts against the live budget; it is bounded here instead (a
        // longer gap is answered with the bounded snapshot), and the answers
        // a subscriber leaves unread are bounded by the subscriber.
        let replay = since
            .filter(|since| since.epoch == epoch)
            .and_then(|since| history.after(since.offset))
            .filter(|frames| {
                frames.iter().map(|frame| frame.len()).sum::<usize>() <= REPLAY_MAX_BYTES
            });
        let snapshot = if replay.is_some() {
            None
        } else {
            history.snapshot()
        };
        let latest = history.latest();
        let recovered = replay.is_some();
        let answer = frames::encode(ServerMessage::Subscribed(Subscribed {
            channel: state.name.to_string(),
            epoch,
            offset: latest,
            recovered,
            snapshot,
        }));
        // A document resumed by replay has no snapshot to say who is editing:
        // their states follow the replay.
        let editors = match (&history, recovered) {
            (History::Doc(doc), true) => Some(doc.awareness_frame(&state.channel)),
            _ => None,
        };
        let answer = std::iter::once(answer)
            .chain(replay.into_iter().flatten())
            .chain(editors.flatten())
            .collect();
        if outbox.deliver_answer(answer).is_err() {
            return Err(SubscribeError::Closing);
        }
        state.subscribers.insert(id, outbox.clone());
        Ok(())
    }

    /// Stops delivering `channel` to subscriber `id`; a channel nobody
    /// subscribes to any more is dropped unless that would lose something.
    pub fn unsubscribe(&self, id: SubscriberId, channel: &Channel) {
        self.drop_unused(channel, Some(id));
    }

    /// Drops `channel` from memory if nobody subscribes to it and nothing
    /// would be lost (for a page that loaded an inbox only to render it).
    pub fn release(&self, channel: &Channel) {
        self.drop_unused(channel, None);
    }

    fn drop_unused(&self, channel: &Channel, leaving: Option<SubscriberId>) {
        self.counted(|channels| {
            let Some(state) = channels.get(channel) else {
                return;
            };
            let mut guard = lock(state);
            if let Some(id) = leaving {
                guard.subscribers.remove(&id);
                let guard = &mut *guard;
                if let History::Doc(doc) = &mut guard.history {
                    // Whoever leaves a document takes their cursor along.
                    if let Some(removal) = doc.remove_editor(id) {
                        let frame = awareness_frame(channel, &removal);
                        for outbox in guard.subscribers.values() {
                            let _ = outbox.deliver(frame.clone());
                        }
                        self.share_awareness(channel, frame);
                    }
                }
            }
            let droppable =
                guard.subscribers.is_empty() && guard.history.droppable() && !pinned(channel);
            if !droppable {
                return;
            }
            if let History::Doc(_) = guard.history {
                // Kept warm: the next update or subscribe needs no reload.
                drop(guard);
                let past = lock(&self.inner.warm).released(channel);
                for cold in past {
                    drop_if_unused(channels, &cold);
                }
                return;
            }
            guard.dropped = true;
            drop(guard);
            channels.remove(channel);
        });
    }

    /// What a `subscribed` to `channel` would say now, for server-side
    /// rendering: the page then resumes from exactly this offset.
    /// A channel never published to peeks as offset 0 and no snapshot.
    pub fn peek(&self, channel: &Channel) -> Subscribed {
        let state = lock(&self.inner.channels).get(channel).cloned();
        let (offset, snapshot, epoch) = match state.as_deref().map(lock) {
            Some(state) => (
                state.history.latest(),
                state.history.snapshot(),
                state.history.epoch().map(str::to_owned),
            ),
            None => (0, None, None),
        };
        Subscribed {
            channel: channel.to_string(),
            epoch: epoch.unwrap_or_else(|| self.inner.epoch.clone()),
            offset,
            recovered: false,
            snapshot,
        }
    }

    /// Whether `channel` is in memory (a chat room must be installed from the
    /// store before it can be subscribed or published to).
    pub fn has(&self, channel: &Channel) -> bool {
        lock(&self.inner.channels).contains_key(channel)
    }

    /// Puts a loaded channel in memory unless one is there already.
    fn install(&self, channel: &Channel, history: History) {
        self.counted(|channels| {
            channels
                .entry(channel.clone())
                .or_insert_with(|| Arc::new(Mutex::new(ChannelState::new(channel, history))));
        });
    }

    /// The latest offset of a channel in memory (0 when not installed).
    pub fn latest(&self, channel: &Channel) -> u64 {
        lock(&self.inner.channels)
            .get(channel)
            .map_or(0, |state| lock(state).history.latest())
    }

    /// How many subscribers `channel` has (for tests and metrics).
    pub fn subscriber_count(&self, channel: &Channel) -> usize {
        lock(&self.inner.channels)
            .get(channel)
            .map_or(0, |state| lock(state).subscribers.len())
    }

    /// How many channels the hub holds in memory (for tests and metrics).
    pub fn channel_count(&self) -> usize {
        lock(&self.inner.channels).len()
    }
}

#[cfg(test)]
mod tests;
