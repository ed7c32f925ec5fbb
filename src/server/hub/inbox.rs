//! Owns the `user:` channel kind in the hub: a user's notifications (the
//! newest kept for resume) and their unread snapshot, installing one loaded
//! from the store, publishing what this instance committed, read marks here
//! and on other instances, and delivering in offset order what the broker
//! brings.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use super::deliver::{placement, Delivery};
use super::{frames, lock, History, Hub, Ring, Subscriber, SubscriberId, INBOX_HISTORY};
use crate::protocol::{Channel, Notification, ServerMessage};
use crate::server::broker::{Gap, Held, Publication};
use crate::server::store::{StoredInbox, Unread, UNREAD_SNAPSHOT};

/// A user's `user:{id}` channel: persisted notifications, the newest kept
/// for resume, and the newest unread ones with their total (the snapshot).
pub(super) struct InboxHistory {
    pub(super) epoch: String,
    pub(super) ring: Ring<Utf8Bytes>,
    pub(super) unread: Unread,
}

impl InboxHistory {
    /// Keeps the next notification (in the ring and the unread snapshot)
    /// and queues it for `subscribers`.
    pub(super) fn accept(
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

impl Hub {
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
    pub(super) fn with_inbox(
        &self,
        channel: &Channel,
        change: impl FnOnce(&Arc<str>, &mut InboxHistory, &HashMap<SubscriberId, Arc<dyn Subscriber>>),
    ) {
        let Some(state) = lock(&self.inner.channels).get(channel).cloned() else {
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
    pub fn inbox_read(&self, channel: &Channel, unread: Unread) {
        self.with_inbox(channel, |_, history, _| history.unread = unread);
        // Other instances holding the channel read their snapshot again.
        self.broker().publish(Publication::Read(channel.clone()));
    }

    /// Replaces the unread snapshot of a user's channel this hub holds with
    /// the store's as of offset `latest` (another instance marked some
    /// read). The snapshot says what this hub holds: notifications it got
    /// after `latest` stay unread, and those the store has but this hub has
    /// not delivered yet are left to their delivery (which counts them).
    pub fn inbox_unread(&self, channel: &Channel, latest: u64, mut unread: Unread) {
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
}
