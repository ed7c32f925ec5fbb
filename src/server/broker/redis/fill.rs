//! Owns gap filling and loading, per channel, off the delivery path: the
//! listener (and the hub, for its own commits) hands a channel's work here
//! and goes on at once; one task per channel with work runs it (reads from
//! the store, or for a ticker and presence from Redis), delivers to the
//! hub, retries every second what could not be read, and ends when the
//! channel has nothing left. So a slow fill delays only its own channel.
//!
//! Why a gap can be filled: PostgreSQL gives a channel's offsets in commit
//! order (one group at a time, cluster-wide), so when offset k is known,
//! every offset below it is committed and readable. Gaps come from messages
//! published before this instance listened, from two instances' messages
//! crossing (each instance delivers its own at once, the others' come
//! through Redis), and from Redis being away; each is repaired the moment
//! the next message arrives, when a channel is loaded, and after a
//! reconnect.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use redis::aio::ConnectionManager;
use tokio::sync::oneshot;

use super::keys::Keys;
use super::ticker::Scripts;
use crate::protocol::{Channel, Tick};
use crate::server::broker::Held;
use crate::server::hub::{lock, Delivery, Hub, CHAT_HISTORY, DOC_HISTORY, INBOX_HISTORY};
use crate::server::metrics::RelayGauges;
use crate::server::store::Store;

/// How often work the store (or Redis) could not do yet is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// How long messages held behind a gap wait before the store is read: the
/// usual gap is another instance's message still on its way through Redis
/// (commits cross), which arrives within a round trip and closes it for
/// nothing.
const HOLD_GRACE: Duration = Duration::from_millis(20);

/// Messages read per page when filling a gap from the store.
const FILL_PAGE: usize = 100;

/// Messages held behind a gap per channel, at most: past it the newest
/// is dropped and the channel catches up from the store instead (which
/// has it).
pub(super) const HELD_BOUND: usize = CHAT_HISTORY;

/// What waits to be done for one channel.
#[derive(Default)]
pub(super) struct Jobs {
    /// Deliver what the store (or Redis) has after what this hub holds.
    pub catch_up: bool,
    /// Messages that came after a gap, by offset.
    pub held: BTreeMap<u64, Held>,
    /// Ticks that came after a gap, by offset, with their epoch.
    pub ticks: BTreeMap<u64, (String, Tick, Utf8Bytes)>,
    /// Install the ticker from Redis, then answer these watches.
    pub load_ticker: Option<Vec<oneshot::Sender<()>>>,
    /// Read a user's unread snapshot again (another instance marked read).
    pub reread: bool,
}

impl Jobs {
    fn is_empty(&self) -> bool {
        !self.catch_up
            && self.held.is_empty()
            && self.ticks.is_empty()
            && self.load_ticker.is_none()
            && !self.reread
    }

    /// Adds what `other` asks (work that failed, put back).
    fn merge(&mut self, other: Jobs) {
        self.catch_up |= other.catch_up;
        self.reread |= other.reread;
        self.held.extend(other.held);
        self.ticks.extend(other.ticks);
        if let Some(answers) = other.load_ticker {
            self.load_ticker
                .get_or_insert_with(Vec::new)
                .extend(answers);
        }
    }

    /// Holds a tick that came after a gap, or past the bound catches up
    /// instead (from Redis's history of the ticker).
    pub fn hold_tick(&mut self, epoch: String, tick: Tick, frame: Utf8Bytes) {
        if self.ticks.len() >= HELD_BOUND {
            self.catch_up = true;
            return;
        }
        self.ticks.insert(tick.offset, (epoch, tick, frame));
    }

    /// Holds `held`, or past the bound catches up instead.
    pub fn hold(&mut self, held: Held) {
        if self.held.len() >= HELD_BOUND {
            self.catch_up = true;
            return;
        }
        self.held.insert(held.offset(), held);
    }
}

/// What the channel tasks share.
pub(super) struct Shared {
    pub hub: Hub,
    pub store: Store,
    /// For reading tickers' and presence's history.
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub scripts: Scripts,
    /// Counts this task's reads of the store (`pulse_relay_store_reads`).
    gauges: RelayGauges,
    /// Channels with a task running, and what waits for it.
    jobs: Mutex<HashMap<Channel, Jobs>>,
}

/// Hands work to channel tasks; cheap to clone.
#[derive(Clone)]
pub(super) struct Worker {
    pub shared: Arc<Shared>,
}

impl Worker {
    pub fn new(
        hub: Hub,
        store: Store,
        redis: ConnectionManager,
        keys: Keys,
        gauges: RelayGauges,
    ) -> Self {
        Worker {
            shared: Arc::new(Shared {
                hub,
                store,
                redis,
                keys,
                scripts: Scripts::new(),
                gauges,
                jobs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Adds work for `channel` and starts its task unless it runs.
    pub fn run(&self, channel: &Channel, add: impl FnOnce(&mut Jobs)) {
        let mut jobs = lock(&self.shared.jobs);
        let running = jobs.contains_key(channel);
        add(jobs.entry(channel.clone()).or_default());
        if !running {
            tokio::spawn(work(self.shared.clone(), channel.clone()));
        }
    }

    /// Catches `channel` up if this hub holds it below `offset`.
    pub fn catch_up_to(&self, channel: &Channel, offset: u64) {
        let behind = self
            .shared
            .hub
            .held_latest(channel)
            .is_some_and(|latest| latest < offset);
        if behind {
            self.run(channel, |jobs| jobs.catch_up = true);
        }
    }
}

/// A channel's task: runs what waits for it until nothing does.
async fn work(shared: Arc<Shared>, channel: Channel) {
    loop {
        let jobs = match lock(&shared.jobs).get_mut(&channel) {
            Some(jobs) => std::mem::take(jobs),
            None => return,
        };
        let left = shared.run(&channel, jobs).await;
        let retry = !left.is_empty();
        {
            let mut all = lock(&shared.jobs);
            let Some(waiting) = all.get_mut(&channel) else {
                return;
            };
            waiting.merge(left);
            if waiting.is_empty() {
                all.remove(&channel);
                return;
            }
        }
        if retry {
            tokio::time::sleep(RETRY).await;
        }
    }
}

impl Shared {
    /// Does `jobs`; answers what must be tried again.
    async fn run(&self, channel: &Channel, mut jobs: Jobs) -> Jobs {
        let mut left = Jobs::default();
        if let Some(answers) = jobs.load_ticker.take() {
            self.load_ticker(channel).await;
            for answer in answers {
                let _ = answer.send(());
            }
        }
        if jobs.catch_up && !self.catch_up(channel).await {
            left.catch_up = true;
        }
        if !jobs.held.is_empty() || !jobs.ticks.is_empty() {
            tokio::time::sleep(HOLD_GRACE).await;
        }
        let mut held = std::mem::take(&mut jobs.held).into_values();
        while let Some(message) = held.next() {
            if !self.deliver_held(channel, &message).await {
                left.held.insert(message.offset(), message);
                left.held.extend(held.map(|m| (m.offset(), m)));
                break;
            }
        }
        for (epoch, tick, frame) in std::mem::take(&mut jobs.ticks).into_values() {
            self.deliver_tick_held(channel, &epoch, tick, frame).await;
        }
        if jobs.reread {
            self.reread(channel).await;
        }
        left
    }

    /// Delivers a message that came after a gap, filling the gap from the
    /// store first; false if the store could not be read (tried again).
    async fn deliver_held(&self, channel: &Channel, held: &Held) -> bool {
        let hub = &self.hub;
        let delivered = match held {
            Held::Chat(message) => hub.deliver_chat(message),
            Held::Notification(note) => hub.deliver_notification(note),
        };
        let Delivery::Gap { latest } = delivered else {
            return true;
        };
        let filled = match channel {
            Channel::Chat(_) => self.fill_chat(channel, latest, held.offset()).await,
            Channel::User(_) => self.fill_inbox(channel, latest).await,
            _ => true,
        };
        if !filled {
            return false;
        }
        // More was missed than a channel keeps: its history starts again.
        match held {
            Held::Chat(message) => {
                if let Delivery::Gap { .. } = hub.deliver_chat(message) {
                    hub.deliver_chat_after_gap(message);
                }
            }
            Held::Notification(note) => {
                if let Delivery::Gap { .. } = hub.deliver_notification(note) {
                    hub.deliver_notification_after_gap(note);
                }
            }
        }
        true
    }

    /// Delivers what this hub lacks of a channel it holds, from the store
    /// (or, for a ticker or presence, from Redis); false if it could not be
    /// read (tried again).
    async fn catch_up(&self, channel: &Channel) -> bool {
        if let Channel::Presence = channel {
            return self.load_presence().await;
        }
        let Some(latest) = self.hub.held_latest(channel) else {
            return true;
        };
        match channel {
            Channel::Ticker(_) => self.catch_up_ticker(channel, latest).await,
            Channel::Chat(_) => self.fill_chat(channel, latest, i64::MAX as u64).await,
            Channel::User(_) => self.fill_inbox(channel, latest).await,
            Channel::Doc(_) => self.fill_doc(channel, latest).await,
            Channel::Presence => true,
        }
    }

    /// Delivers the messages of a room after `latest` and before `before`,
    /// read from the store (at most a room's history: beyond that, the room's
    /// history starts again after the gap).
    async fn fill_chat(&self, channel: &Channel, latest: u64, before: u64) -> bool {
        // Pages from the newest back, until `latest` (usually the first
        // page already reaches it), at most a room's history in all.
        let mut missing = Vec::new();
        let mut end = before;
        while end > latest + 1 && missing.len() < CHAT_HISTORY {
            let wanted = (end - latest - 1).min(FILL_PAGE as u64) as usize;
            self.gauges.store_reads.inc();
            let page = match self
                .store
                .chat_before(channel.to_string(), end, wanted)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    tracing::error!(%err, %channel, "cannot fill a gap from the store; retrying");
                    return false;
                }
            };
            let Some(first) = page.first().map(|message| message.offset) else {
                break;
            };
            let reached = first <= latest + 1;
            missing.splice(
                0..0,
                page.into_iter().filter(|message| message.offset > latest),
            );
            if reached {
                break;
            }
            end = first;
        }
        for message in &missing {
            if let Delivery::Gap { .. } = self.hub.deliver_chat(message) {
                self.hub.deliver_chat_after_gap(message);
            }
        }
        true
    }

    /// Delivers the updates of a document after `latest` from the store's
    /// newest ones, or, when more was missed than the store keeps to
    /// replay, reloads the document whole.
    async fn fill_doc(&self, channel: &Channel, latest: u64) -> bool {
        let Channel::Doc(id) = channel else {
            return true;
        };
        self.gauges.store_reads.inc();
        match self.store.load_doc(id.clone(), DOC_HISTORY).await {
            Ok(stored) => {
                let reaches = stored
                    .recent
                    .first()
                    .is_none_or(|first| first.offset <= latest + 1);
                if !reaches {
                    self.hub.reinstall_doc(channel, stored);
                    return true;
                }
                for event in stored.recent.iter().filter(|e| e.offset > latest) {
                    self.hub.deliver_doc(event);
                }
                true
            }
            Err(err) => {
                tracing::error!(%err, %channel, "cannot fill a gap from the store; retrying");
                false
            }
        }
    }

    /// Delivers the notifications of a user's channel after `latest`, from
    /// the store's newest ones.
    async fn fill_inbox(&self, channel: &Channel, latest: u64) -> bool {
        let Channel::User(user) = channel else {
            return true;
        };
        self.gauges.store_reads.inc();
        let stored = self
            .store
            .load_inbox(user.clone(), INBOX_HISTORY, |stored| stored.recent)
            .await;
        match stored {
            Ok(recent) => {
                for notification in recent.iter().filter(|n| n.offset > latest) {
                    if let Delivery::Gap { .. } = self.hub.deliver_notification(notification) {
                        self.hub.deliver_notification_after_gap(notification);
                    }
                }
                true
            }
            Err(err) => {
                tracing::error!(%err, %channel, "cannot fill a gap from the store; retrying");
                false
            }
        }
    }

    /// Reads the unread snapshot of a user's channel this hub holds again.
    async fn reread(&self, channel: &Channel) {
        let Channel::User(user) = channel else {
            return;
        };
        if !self.hub.has(channel) {
            return;
        }
        let stored = self
            .store
            .load_inbox(user.clone(), INBOX_HISTORY, |stored| {
                (stored.latest, stored.unread)
            })
            .await;
        match stored {
            Ok((latest, unread)) => self.hub.inbox_unread(channel, latest, unread),
            Err(err) => tracing::warn!(%err, %channel, "cannot read the unread snapshot again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Notification, Timestamp};

    fn note(offset: u64) -> Held {
        Held::Notification(Notification {
            channel: "user:ann".parse().unwrap(),
            offset,
            notification_id: format!("n{offset}"),
            title: "t".into(),
            body: String::new(),
            created_at: Timestamp::parse("2026-11-25T17:30:00.000000Z").unwrap(),
        })
    }

    /// Held messages wait in offset order up to the bound; past it the
    /// channel catches up from the store instead.
    #[test]
    fn held_messages_are_bounded_and_then_caught_up() {
        let mut jobs = Jobs::default();
        for offset in (1..=HELD_BOUND as u64 + 5).rev() {
            jobs.hold(note(offset));
        }
        assert_eq!(jobs.held.len(), HELD_BOUND);
        assert!(jobs.catch_up, "the rest comes from the store");
        let offsets: Vec<u64> = jobs.held.keys().copied().take(3).collect();
        assert_eq!(offsets, [6, 7, 8], "in offset order");
    }

    /// Work that failed is put back whole, once.
    #[test]
    fn failed_work_is_merged_back() {
        let mut waiting = Jobs::default();
        waiting.hold(note(3));
        let mut failed = Jobs {
            catch_up: true,
            ..Jobs::default()
        };
        failed.hold(note(2));
        failed.hold(note(3));
        waiting.merge(failed);
        assert!(waiting.catch_up);
        assert_eq!(waiting.held.keys().copied().collect::<Vec<_>>(), [2, 3]);
        assert!(!waiting.is_empty());
        assert!(Jobs::default().is_empty());
    }
}
