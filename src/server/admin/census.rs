//! Owns the [`Census`]: which connections are open (with a handle on each
//! one's outbox, to read its backlog) and how many subscribe to each channel,
//! kept by the connections' registrations, read once a second by the admin
//! sampler. Nothing here is on a connection's hot path but a short lock when
//! it opens, subscribes, unsubscribes and closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::protocol::admin::Consumer;
use crate::protocol::Channel;
use crate::server::hub::SubscriberId;
use crate::server::ws::outbox::Outbox;

/// One open connection as the census knows it.
struct Entry {
    connection_id: String,
    user: Option<String>,
    /// Weak: the census never keeps a closed connection's queue alive.
    outbox: Weak<Outbox>,
}

#[derive(Default)]
struct Inner {
    connections: HashMap<SubscriberId, Entry>,
    /// Subscribers per channel; a channel leaves when its count is 0.
    channels: HashMap<Channel, u64>,
}

/// Open connections and subscriptions; shared by every connection.
#[derive(Default)]
pub struct Census {
    inner: Mutex<Inner>,
}

impl Census {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is one insert or removal: a poisoned lock is whole.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn opened(&self, subscriber: SubscriberId, connection_id: &str, outbox: &Arc<Outbox>) {
        let entry = Entry {
            connection_id: connection_id.to_owned(),
            user: None,
            outbox: Arc::downgrade(outbox),
        };
        self.lock().connections.insert(subscriber, entry);
    }

    pub fn signed_in(&self, subscriber: SubscriberId, user_id: &str) {
        if let Some(entry) = self.lock().connections.get_mut(&subscriber) {
            entry.user = Some(user_id.to_owned());
        }
    }

    pub fn closed(&self, subscriber: SubscriberId) {
        self.lock().connections.remove(&subscriber);
    }

    pub fn subscribed(&self, channel: &Channel) {
        *self.lock().channels.entry(channel.clone()).or_default() += 1;
    }

    pub fn unsubscribed(&self, channel: &Channel) {
        let mut inner = self.lock();
        if let Some(count) = inner.channels.get_mut(channel) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                inner.channels.remove(channel);
            }
        }
    }

    /// Every channel someone subscribes to, with its subscribers.
    pub fn channels(&self) -> Vec<(Channel, u64)> {
        let inner = self.lock();
        inner
            .channels
            .iter()
            .map(|(channel, count)| (channel.clone(), *count))
            .collect()
    }

    /// The `limit` connections with the most bytes queued (none with an
    /// empty queue), largest first.
    pub fn slowest(&self, limit: usize) -> Vec<Consumer> {
        let handles: Vec<(String, Option<String>, Weak<Outbox>)> = {
            let inner = self.lock();
            inner
                .connections
                .values()
                .map(|e| (e.connection_id.clone(), e.user.clone(), e.outbox.clone()))
                .collect()
        };
        // Each outbox is read under its own lock, never under the census'.
        let mut backlogged: Vec<Consumer> = handles
            .into_iter()
            .filter_map(|(connection_id, user, outbox)| {
                let (frames, bytes) = outbox.upgrade()?.backlog();
                (frames > 0).then_some(Consumer {
                    connection_id,
                    user,
                    queued_frames: frames as u64,
                    queued_bytes: bytes as u64,
                })
            })
            .collect();
        backlogged.sort_by(|a, b| {
            b.queued_bytes
                .cmp(&a.queued_bytes)
                .then_with(|| a.connection_id.cmp(&b.connection_id))
        });
        backlogged.truncate(limit);
        backlogged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ws::Utf8Bytes;

    #[test]
    fn channels_count_subscribers_and_leave_at_zero() {
        let census = Census::default();
        let room = Channel::Chat("general".into());
        census.subscribed(&room);
        census.subscribed(&room);
        census.unsubscribed(&room);
        assert_eq!(census.channels(), vec![(room.clone(), 1)]);
        census.unsubscribed(&room);
        census.unsubscribed(&room);
        assert!(census.channels().is_empty());
    }

    #[test]
    fn the_slowest_are_the_largest_backlogs_and_closed_ones_drop_out() {
        let census = Census::default();
        let (idle, busy, gone) = (
            Outbox::new(1 << 20),
            Outbox::new(1 << 20),
            Outbox::new(1 << 20),
        );
        census.opened(1, "idle", &idle);
        census.opened(2, "busy", &busy);
        census.opened(3, "gone", &gone);
        census.signed_in(2, "ann");
        busy.push(Utf8Bytes::from_static("0123456789")).unwrap();
        gone.push(Utf8Bytes::from_static("0123456789abcdef"))
            .unwrap();
        drop(gone);
        let slowest = census.slowest(5);
        assert_eq!(slowest.len(), 1, "{slowest:?}");
        assert_eq!(slowest[0].connection_id, "busy");
        assert_eq!(slowest[0].user.as_deref(), Some("ann"));
        assert_eq!((slowest[0].queued_frames, slowest[0].queued_bytes), (1, 10));
        census.closed(2);
        assert!(census.slowest(5).is_empty());
    }
}
