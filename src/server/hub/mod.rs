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

mod deliver;
mod doc;
mod loads;
mod online;
mod presence;
mod ring;
mod subscriber;
mod ticker;
mod warm;

use axum::extract::ws::Utf8Bytes;
pub use deliver::Delivery;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

use super::broker::{Broker, Gap, Held, Publication, Sequencing};
use super::frames;
use super::metrics::Metrics;
use super::store::{StoredChat, StoredDoc, StoredInbox, Unread, UNREAD_SNAPSHOT};
use crate::protocol::{
    Channel, ChatMessage, ChatSnapshot, DocAwarenessEvent, DocSnapshot, Notification,
    PresenceSnapshot, ServerMessage, Since, Snapshot, Subscribed, Tick, UnreadSnapshot, UserRef,
};
use base64::Engine as _;
pub use doc::admission::Refusal;
pub use doc::awareness::{decode as decode_awareness, Entries as AwarenessEntries};
pub use doc::scan::{scan as scan_update, Shape as UpdateShape};
use doc::DocState;
pub use doc::{
    decode_update, encode_state, fill as fill_doc, measure as measure_doc_update, rebuild, text_of,
    DocError, DocPublished, Fit, Reservation, DOC_HISTORY, MAX_DOC_BYTES,
};
pub use loads::{LoadError, LOAD_KEPT, LOAD_KEPT_BYTES};
use online::PresenceHistory;
pub use online::{now as presence_now, PresenceEvent};
use ring::Ring;
pub use subscriber::{Gone, Subscriber};
use ticker::{TickEntry, TickerHistory};
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
    /// connections are reported through it, and the cluster decides.
    presence_link: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<PresenceEvent>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.presence_wake.notify_one();
    }
}

struct ChannelState {
    /// The channel name as a shared string, the outboxes' conflation key.
    name: Arc<str>,
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
            history,
            subscribers: HashMap::new(),
            dropped: false,
        }
    }
}

/// Each channel kind keeps its own history.
enum History {
    Ticker(TickerHistory),
    Presence(PresenceHistory),
    Chat(ChatHistory),
    Inbox(InboxHistory),
    Doc(DocState),
}

/// A user's `user:{id}` channel: persisted notifications, the newest kept
/// for resume, and the newest unread ones with their total (the snapshot).
struct InboxHistory {
    epoch: String,
    ring: Ring<Utf8Bytes>,
    unread: Unread,
}

impl InboxHistory {
    /// Keeps the next notification (in the ring and the unread snapshot)
    /// and queues it for `subscribers`.
    fn accept(
        &mut self,
        notification: Notification,
        subscribers: impl Iterator<Item = Arc<dyn Subscriber>>,
    ) {
        let frame = frames::encode(ServerMessage::Notification(notification.clone()));
        self.ring.push(frame.clone());
        let unread = &mut self.unread;
        // A snapshot read from the store after the commit (a read mark's)
        // may list it already: counted once.
        if !unread
            .newest
            .iter()
            .any(|n| n.offset == notification.offset)
        {
            unread.newest.push(notification);
            unread.total += 1;
            if unread.newest.len() > UNREAD_SNAPSHOT {
                unread.newest.remove(0);
            }
        }
        for outbox in subscribers {
            let _ = outbox.deliver(frame.clone());
        }
    }
}

/// A chat room: persisted, so its epoch comes from the database and only
/// the newest messages are kept here.
struct ChatHistory {
    epoch: String,
    ring: Ring<(ChatMessage, Utf8Bytes)>,
}

impl History {
    fn latest(&self) -> u64 {
        match self {
            History::Ticker(history) => history.ring.latest(),
            History::Presence(history) => history.diffs.latest(),
            History::Chat(history) => history.ring.latest(),
            History::Inbox(history) => history.ring.latest(),
            History::Doc(doc) => doc.ring.latest(),
        }
    }

    /// The channel's own epoch when it outlives the process (persisted).
    fn epoch(&self) -> Option<&str> {
        match self {
            History::Chat(history) => Some(&history.epoch),
            History::Inbox(history) => Some(&history.epoch),
            History::Doc(doc) => Some(&doc.epoch),
            History::Ticker(history) => history.epoch.as_deref(),
            History::Presence(history) => history.epoch.as_deref(),
        }
    }

    /// Every message after `offset`, if all are still held.
    fn after(&self, offset: u64) -> Option<Vec<Utf8Bytes>> {
        match self {
            History::Ticker(history) => history
                .ring
                .after(offset)
                .map(|e| e.map(|e| e.frame.clone()).collect()),
            History::Presence(history) => history.diffs.after(offset).map(|e| e.cloned().collect()),
            History::Chat(history) => history
                .ring
                .after(offset)
                .map(|e| e.map(|(_, frame)| frame.clone()).collect()),
            History::Inbox(history) => history.ring.after(offset).map(|e| e.cloned().collect()),
            History::Doc(doc) => doc.ring.after(offset).map(|e| e.cloned().collect()),
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        match self {
            History::Ticker(history) => history.snapshot(),
            History::Presence(history) => Some(Snapshot::Presence(PresenceSnapshot {
                users: history.users(),
            })),
            History::Chat(history) => Some(Snapshot::Chat(ChatSnapshot {
                messages: history
                    .ring
                    .recent(CHAT_SNAPSHOT)
                    .map(|(message, _)| message.clone())
                    .collect(),
            })),
            History::Inbox(history) => Some(Snapshot::Unread(UnreadSnapshot {
                unread: history.unread.newest.clone(),
                total_unread: history.unread.total,
            })),
            History::Doc(doc) => Some(Snapshot::Doc(DocSnapshot {
                state: BASE64.encode(doc.state()),
                awareness: BASE64.encode(doc.awareness()),
            })),
        }
    }

    /// Whether the channel may be dropped once nobody subscribes: nothing
    /// would be lost (a ticker never published to), or it is all on disk.
    fn droppable(&self) -> bool {
        match self {
            History::Ticker(history) => history.ring.latest() == 0,
            History::Chat(_) | History::Inbox(_) | History::Doc(_) => true,
            History::Presence(_) => false,
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
            (History::Doc(doc), true) => Some(doc.awareness_frame(&state.name)),
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
                        let frame = awareness_frame(&guard.name, channel, &removal);
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

    /// Publishes a tick on `ticker:{symbol}`: serialised once, kept in the
    /// history, and queued (conflated) for every subscriber. Returns its offset.
    ///
    /// When instances run as one, the tick goes to the broker instead (which
    /// gives it the cluster's next offset and brings it back to every
    /// instance), and this returns 0.
    pub fn publish_tick(&self, quote: Quote) -> u64 {
        match self.broker().publish_tick(quote, None) {
            Sequencing::Here(quote) => self.publish_tick_here(quote),
            Sequencing::Broker => 0,
        }
    }

    /// Gives a tick this hub's next offset of its channel and delivers it.
    fn publish_tick_here(&self, quote: Quote) -> u64 {
        let channel = Channel::Ticker(quote.symbol.clone());
        self.with_channel(&channel, |state| self.publish_tick_locked(state, quote))
            .expect("ticker channels are always served")
    }

    fn publish_tick_locked(&self, state: &mut ChannelState, quote: Quote) -> u64 {
        let History::Ticker(history) = &state.history else {
            unreachable!("a ticker: channel always holds a ticker history")
        };
        let tick = Tick {
            channel: state.name.to_string(),
            offset: history.ring.latest() + 1,
            symbol: quote.symbol,
            price: quote.price,
            change: quote.change,
            change_pct: quote.change_pct,
            volume: quote.volume,
        };
        self.push_tick(state, tick, None)
    }

    /// Keeps `tick` (the channel's next offset) in the history and queues it,
    /// conflated, for every subscriber: as `frame` when it came serialised
    /// (from the instance that published it, with that moment's timestamp).
    fn push_tick(&self, state: &mut ChannelState, tick: Tick, frame: Option<Utf8Bytes>) -> u64 {
        let History::Ticker(history) = &mut state.history else {
            unreachable!("a ticker: channel always holds a ticker history")
        };
        let frame: Utf8Bytes =
            frame.unwrap_or_else(|| frames::encode(ServerMessage::Tick(tick.clone())));
        let offset = history.ring.push(TickEntry {
            tick,
            frame: frame.clone(),
        });
        let metrics = &self.inner.metrics;
        metrics.ticks_published.inc();
        for outbox in state.subscribers.values() {
            match outbox.deliver_tick(&state.name, frame.clone()) {
                Ok(true) => metrics.ticks_conflated.inc(),
                Ok(false) => 0,
                Err(Gone) => 0,
            };
        }
        offset
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

    /// Installs a chat room loaded from the store, unless another task
    /// installed it meanwhile (then the one in memory is newer).
    ///
    /// A room with no message yet is not on disk; the store hands out the
    /// epoch its first message will store, so a client that joined it empty
    /// resumes with a replay, in this process and after a restart.
    pub fn install_chat(&self, channel: &Channel, stored: StoredChat) {
        if self.has(channel) {
            return;
        }
        let base = stored.latest - stored.recent.len() as u64;
        let mut ring = Ring::after_offset(CHAT_HISTORY, base);
        for message in stored.recent {
            let frame = frames::encode(ServerMessage::Chat(message.clone()));
            ring.push((message, frame));
        }
        let history = History::Chat(ChatHistory {
            epoch: stored.epoch,
            ring,
        });
        self.install(channel, history);
    }

    /// Puts a loaded channel in memory unless one is there already.
    fn install(&self, channel: &Channel, history: History) {
        self.counted(|channels| {
            channels
                .entry(channel.clone())
                .or_insert_with(|| Arc::new(Mutex::new(ChannelState::new(channel, history))));
        });
    }

    /// Publishes a chat message just committed to the store (called in commit
    /// order, so offsets arrive in order): kept in memory and queued for this
    /// hub's subscribers at once, then handed to the broker for the other
    /// instances. Never dropped: a subscriber too far behind gets 4008.
    pub fn publish_chat(&self, message: &ChatMessage) {
        // A gap here means other instances' messages are on their way (the
        // broker fills it and delivers this one after), or a commit this
        // instance did not publish (its answer was lost): then the room
        // goes on from this message rather than stop.
        if let Delivery::Gap { .. } = self.deliver_chat(message) {
            if let Gap::Restart(_) = self.broker().gap(Held::Chat(message.clone())) {
                self.deliver_chat_after_gap(message);
            }
        }
        self.broker().publish(Publication::Chat(message.clone()));
    }

    /// Installs a user's channel loaded from the store (unless present); a
    /// user without notifications gets this process's epoch, as a new room.
    pub fn install_inbox(&self, channel: &Channel, stored: StoredInbox) {
        if self.has(channel) {
            return;
        }
        let base = stored.latest - stored.recent.len() as u64;
        let mut ring = Ring::after_offset(INBOX_HISTORY, base);
        for notification in stored.recent {
            ring.push(frames::encode(ServerMessage::Notification(notification)));
        }
        let history = History::Inbox(InboxHistory {
            epoch: stored.epoch,
            ring,
            unread: stored.unread,
        });
        self.install(channel, history);
    }

    /// Runs `change` on an installed inbox (a user with no subscriber yet has
    /// none in memory: the store alone holds their notifications).
    fn with_inbox(
        &self,
        channel: &str,
        change: impl FnOnce(&Arc<str>, &mut InboxHistory, &HashMap<SubscriberId, Arc<dyn Subscriber>>),
    ) {
        let Ok(channel) = channel.parse::<Channel>() else {
            return;
        };
        let Some(state) = lock(&self.inner.channels).get(&channel).cloned() else {
            return;
        };
        let mut state = lock(&state);
        let state = &mut *state;
        if let History::Inbox(history) = &mut state.history {
            change(&state.name, history, &state.subscribers);
        }
    }

    /// Publishes a notification just committed to the store, to every tab of
    /// its user here at once, then to the other instances' (the broker).
    pub fn publish_notification(&self, notification: &Notification) {
        if let Delivery::Gap { .. } = self.deliver_notification(notification) {
            let held = Held::Notification(notification.clone());
            if let Gap::Restart(_) = self.broker().gap(held) {
                self.deliver_notification_after_gap(notification);
            }
        }
        self.broker()
            .publish(Publication::Notification(notification.clone()));
    }

    /// Replaces the unread snapshot of `channel` with the store's, read in
    /// the transaction that marked some read (so it refills from older ones
    /// and its total stays exact).
    pub fn inbox_read(&self, channel: &str, unread: Unread) {
        self.with_inbox(channel, |_, history, _| history.unread = unread);
        // Other instances holding the channel read their snapshot again.
        if let Ok(channel) = channel.parse() {
            self.broker().publish(Publication::Read(channel));
        }
    }

    /// Replaces the unread snapshot of a user's channel this hub holds with
    /// the store's as of offset `latest` (another instance marked some
    /// read). The snapshot says what this hub holds: notifications it got
    /// after `latest` stay unread, and those the store has but this hub has
    /// not delivered yet are left to their delivery (which counts them).
    pub fn inbox_unread(&self, channel: &str, latest: u64, mut unread: Unread) {
        self.with_inbox(channel, |_, history, _| {
            let held = history.ring.latest();
            let ahead = unread.newest.iter().filter(|n| n.offset > held).count();
            unread.newest.retain(|n| n.offset <= held);
            unread.total = unread.total.saturating_sub(ahead as u64);
            let newer: Vec<Notification> = history
                .unread
                .newest
                .iter()
                .filter(|n| n.offset > latest)
                .cloned()
                .collect();
            unread.total += newer.len() as u64;
            unread.newest.extend(newer);
            let excess = unread.newest.len().saturating_sub(UNREAD_SNAPSHOT);
            unread.newest.drain(..excess);
            history.unread = unread;
        });
    }

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
    fn with_doc<R>(
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
        self.with_doc(channel, |name, doc, subscribers| {
            if !subscribers.contains_key(&owner) {
                return;
            }
            if let Some(update) = doc.awareness_from(owner, user, entries, relay) {
                let frame = awareness_frame(name, channel, &update);
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
        let _ = self.with_doc(channel, |name, doc, subscribers| {
            if let Some(states) = doc.awareness_of(owner) {
                let frame = awareness_frame(name, channel, &states);
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

/// A `doc_awareness` frame for `channel` carrying `update`.
fn awareness_frame(name: &Arc<str>, channel: &Channel, update: &[u8]) -> Utf8Bytes {
    let doc = match channel {
        Channel::Doc(id) => id.clone(),
        _ => String::new(),
    };
    frames::encode(ServerMessage::DocAwareness(DocAwarenessEvent {
        channel: name.to_string(),
        doc,
        update: BASE64.encode(update),
    }))
}

#[cfg(test)]
mod tests;
