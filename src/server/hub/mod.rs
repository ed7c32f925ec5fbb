//! The hub: the one owner of channels, their offsets, epochs, history and
//! subscribers. Everyone else holds a [`Hub`] handle.
//!
//! A channel's state sits behind its own lock, taken for one publish or one
//! subscribe and never across an `.await`. Subscribing answers, replays and
//! registers under that lock, so no live message can slip between the replay
//! and the first live one: a recovered subscription has no gap and no double.

mod presence;
mod ring;
mod ticker;

use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::frames;
use super::metrics::Metrics;
use super::store::{StoredChat, StoredInbox};
use super::ws::outbox::{Outbox, PushError};
use crate::protocol::{
    Channel, ChatMessage, ChatSnapshot, Notification, PresenceDiff, PresenceSnapshot, PresenceUser,
    ServerMessage, Since, Snapshot, Subscribed, Tick, UnreadSnapshot, UserRef, UserStatus,
};
use presence::{Change, Presence};
use ring::Ring;
use ticker::{TickEntry, TickerHistory};
pub use ticker::{HISTORY as TICKER_HISTORY, RECENT as TICKER_RECENT};

/// Presence diffs kept for resume, so a short blip recovers without a snapshot.
pub const PRESENCE_HISTORY: usize = 256;
/// Chat messages a room keeps in memory for resume (older ones are on disk).
pub const CHAT_HISTORY: usize = 1000;
/// Chat messages in a room's subscribe snapshot.
pub const CHAT_SNAPSHOT: usize = 50;
/// Notifications a user's channel keeps in memory for resume.
pub const INBOX_HISTORY: usize = 200;

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
    /// How long a user whose last connection closed stays listed.
    presence_grace: Duration,
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
    Presence(PresenceHistory),
    Chat(ChatHistory),
    Inbox(InboxHistory),
}

/// A user's `user:{id}` channel: persisted notifications, the newest kept
/// for resume, and the unread ones (the snapshot).
struct InboxHistory {
    epoch: String,
    ring: Ring<Utf8Bytes>,
    unread: Vec<Notification>,
}

/// A chat room: persisted, so its epoch comes from the database and only
/// the newest messages are kept here.
struct ChatHistory {
    epoch: String,
    ring: Ring<(ChatMessage, Utf8Bytes)>,
}

/// The presence channel: who is online, and the last diffs for resume.
struct PresenceHistory {
    presence: Presence,
    diffs: Ring<Utf8Bytes>,
}

impl History {
    fn latest(&self) -> u64 {
        match self {
            History::Ticker(history) => history.ring.latest(),
            History::Presence(history) => history.diffs.latest(),
            History::Chat(history) => history.ring.latest(),
            History::Inbox(history) => history.ring.latest(),
        }
    }

    /// The channel's own epoch when it outlives the process (persisted).
    fn epoch(&self) -> Option<&str> {
        match self {
            History::Chat(history) => Some(&history.epoch),
            History::Inbox(history) => Some(&history.epoch),
            _ => None,
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
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        match self {
            History::Ticker(history) => history.snapshot(),
            History::Presence(history) => Some(Snapshot::Presence(PresenceSnapshot {
                users: history.presence.users(),
            })),
            History::Chat(history) => Some(Snapshot::Chat(ChatSnapshot {
                messages: history
                    .ring
                    .recent(CHAT_SNAPSHOT)
                    .map(|(message, _)| message.clone())
                    .collect(),
            })),
            History::Inbox(history) => Some(Snapshot::Unread(UnreadSnapshot {
                unread: history.unread.clone(),
            })),
        }
    }

    /// Whether the channel holds nothing worth keeping without subscribers.
    fn is_empty(&self) -> bool {
        match self {
            History::Ticker(history) => history.ring.latest() == 0,
            History::Presence(_) | History::Chat(_) | History::Inbox(_) => false,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a lock poisoned
    // by a panic elsewhere is still safe to use.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>, presence_grace: Duration) -> Self {
        let epoch = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Hub {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::new()),
                epoch,
                metrics,
                presence_grace,
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
            Channel::Presence => History::Presence(PresenceHistory {
                presence: Presence::default(),
                diffs: Ring::new(PRESENCE_HISTORY),
            }),
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
        let history = &state.history;
        let epoch = history.epoch().map_or(epoch, str::to_owned);
        let replay = since
            .filter(|since| since.epoch == epoch)
            .and_then(|since| history.after(since.offset));
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
        let forgettable = guard.subscribers.is_empty() && guard.history.is_empty();
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
        let History::Ticker(history) = &mut state.history else {
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
    pub fn install_chat(&self, channel: &Channel, stored: StoredChat) {
        let mut channels = lock(&self.inner.channels);
        if channels.contains_key(channel) {
            return;
        }
        let base = stored.latest - stored.recent.len() as u64;
        let mut ring = Ring::after_offset(CHAT_HISTORY, base);
        for message in stored.recent {
            let frame = frames::encode(ServerMessage::Chat(message.clone()));
            ring.push((message, frame));
        }
        let state = ChannelState {
            name: channel.to_string().into(),
            history: History::Chat(ChatHistory {
                epoch: stored.epoch,
                ring,
            }),
            subscribers: HashMap::new(),
        };
        channels.insert(channel.clone(), Arc::new(Mutex::new(state)));
    }

    /// Publishes a chat message just committed to the store (called in commit
    /// order, so offsets arrive in order): kept in memory and queued for every
    /// subscriber. Never dropped: a subscriber too far behind gets 4008.
    pub fn publish_chat(&self, message: &ChatMessage) {
        let Ok(channel) = Channel::chat(&message.room) else {
            return;
        };
        let Some(state) = lock(&self.inner.channels).get(&channel).cloned() else {
            // Not installed: nobody subscribed yet; the store has the message.
            return;
        };
        let mut state = lock(&state);
        let state = &mut *state;
        let History::Chat(history) = &mut state.history else {
            return;
        };
        if message.offset != history.ring.latest() + 1 {
            tracing::error!(channel = %state.name, offset = message.offset, "chat offset out of order");
            return;
        }
        let frame = frames::encode(ServerMessage::Chat(message.clone()));
        history.ring.push((message.clone(), frame.clone()));
        for outbox in state.subscribers.values() {
            let _ = outbox.push(frame.clone());
        }
    }

    /// Installs a user's channel loaded from the store (unless present).
    pub fn install_inbox(&self, channel: &Channel, stored: StoredInbox) {
        let mut channels = lock(&self.inner.channels);
        if channels.contains_key(channel) {
            return;
        }
        let base = stored.latest - stored.recent.len() as u64;
        let mut ring = Ring::after_offset(INBOX_HISTORY, base);
        for notification in stored.recent {
            ring.push(frames::encode(ServerMessage::Notification(notification)));
        }
        let state = ChannelState {
            name: channel.to_string().into(),
            history: History::Inbox(InboxHistory {
                epoch: stored.epoch,
                ring,
                unread: stored.unread,
            }),
            subscribers: HashMap::new(),
        };
        channels.insert(channel.clone(), Arc::new(Mutex::new(state)));
    }

    /// Runs `change` on an installed inbox (a user with no subscriber yet has
    /// none in memory: the store alone holds their notifications).
    fn with_inbox(
        &self,
        channel: &str,
        change: impl FnOnce(&Arc<str>, &mut InboxHistory, &HashMap<SubscriberId, Arc<Outbox>>),
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
    /// its user.
    pub fn publish_notification(&self, notification: &Notification) {
        self.with_inbox(&notification.channel, |name, history, subscribers| {
            if notification.offset != history.ring.latest() + 1 {
                tracing::error!(channel = %name, offset = notification.offset, "notification offset out of order");
                return;
            }
            let frame = frames::encode(ServerMessage::Notification(notification.clone()));
            history.ring.push(frame.clone());
            history.unread.push(notification.clone());
            for outbox in subscribers.values() {
                let _ = outbox.push(frame.clone());
            }
        });
    }

    /// Forgets read notifications from the unread snapshot of `channel`.
    pub fn inbox_read(&self, channel: &str, ids: &[String]) {
        self.with_inbox(channel, |_, history, _| {
            history.unread.retain(|n| !ids.contains(&n.notification_id));
        });
    }

    /// The latest offset of a channel in memory (0 when not installed).
    pub fn latest(&self, channel: &Channel) -> u64 {
        lock(&self.inner.channels)
            .get(channel)
            .map_or(0, |state| lock(state).history.latest())
    }

    /// Runs `update` on the presence state and publishes the diff it makes.
    fn presence<R>(&self, update: impl FnOnce(&mut Presence) -> (Change, R)) -> R {
        let state = self
            .channel(&Channel::Presence)
            .expect("presence is always served");
        let mut state = lock(&state);
        let state = &mut *state;
        let History::Presence(history) = &mut state.history else {
            unreachable!("the presence channel always holds presence")
        };
        let (change, result) = update(&mut history.presence);
        if change.is_empty() {
            return result;
        }
        let frame = frames::encode(ServerMessage::PresenceDiff(PresenceDiff {
            channel: state.name.to_string(),
            offset: history.diffs.latest() + 1,
            joins: change.joins,
            leaves: change.leaves,
            updates: change.updates,
        }));
        history.diffs.push(frame.clone());
        for outbox in state.subscribers.values() {
            // An overflowing subscriber is closed with 4008 by its connection.
            let _ = outbox.push(frame.clone());
        }
        result
    }

    /// An identified connection opened.
    pub fn presence_connect(&self, user: &UserRef, connection: SubscriberId) {
        self.presence(|p| (p.connect(user, connection), ()));
    }

    /// An identified connection closed; if it was the user's last, they leave
    /// after the grace period unless they come back.
    pub fn presence_disconnect(&self, user_id: &str, connection: SubscriberId) {
        let now = tokio::time::Instant::now().into_std();
        self.presence(|p| (p.disconnect(user_id, connection, now), ()));
        let hub = self.clone();
        let grace = self.inner.presence_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            hub.presence_expire();
        });
    }

    /// A connection's status changed (`online`, or `away` for a hidden page).
    pub fn presence_status(&self, user_id: &str, connection: SubscriberId, status: UserStatus) {
        self.presence(|p| (p.set_status(user_id, connection, status), ()));
    }

    /// Sends the leaves whose grace has run out.
    pub fn presence_expire(&self) {
        let now = tokio::time::Instant::now().into_std();
        let grace = self.inner.presence_grace;
        self.presence(|p| (p.expire(now, grace), ()));
    }

    /// Everyone online now.
    pub fn presence_users(&self) -> Vec<PresenceUser> {
        self.presence(|p| (Change::default(), p.users()))
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
