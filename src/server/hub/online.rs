//! Owns the hub's side of presence: connections, disconnections and status
//! changes become `presence_diff`s on the `presence` channel, and one task
//! per hub sends what presence held back (coalesced updates, leaves after
//! the grace) when its deadline comes: no task per disconnect.

use std::sync::{Arc, Weak};
use tokio::sync::Notify;

use super::presence::{Change, Presence};
use super::{frames, History, Hub, Inner, SubscriberId};
use crate::protocol::{Channel, PresenceDiff, PresenceUser, ServerMessage, UserRef, UserStatus};

/// The time presence runs on: tokio's clock (so paused-time tests move it),
/// as the std `Instant` the pure structure takes.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Hub {
    /// Runs `update` on the presence state at `now`, publishes the diff it
    /// makes (one offset per diff, under the channel's lock, so offsets stay
    /// gap-free), and wakes the presence task if a deadline moved earlier.
    fn presence<R>(&self, update: impl FnOnce(&mut Presence) -> (Change, R)) -> R {
        let channel = Channel::Presence;
        let (result, earlier) = self
            .with_channel(&channel, |state| {
                let History::Presence(history) = &mut state.history else {
                    unreachable!("the presence channel always holds presence")
                };
                let before = history.presence.next_deadline();
                let (change, result) = update(&mut history.presence);
                let after = history.presence.next_deadline();
                let earlier = after.is_some_and(|after| before.is_none_or(|b| after < b));
                if change.is_empty() {
                    return (result, earlier);
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
                    let _ = outbox.deliver(frame.clone());
                }
                (result, earlier)
            })
            .expect("presence is always served");
        if earlier {
            self.inner.presence_wake.notify_one();
        }
        result
    }

    /// An identified connection opened.
    pub fn presence_connect(&self, user: &UserRef, connection: SubscriberId) {
        self.presence(|p| (p.connect(user, connection, now()), ()));
    }

    /// An identified connection closed; if it was the user's last, they leave
    /// after the grace period unless they come back (the presence task sends
    /// the leave).
    pub fn presence_disconnect(&self, user_id: &str, connection: SubscriberId) {
        self.presence(|p| (p.disconnect(user_id, connection, now()), ()));
    }

    /// A connection's status changed (`online`, or `away` for a hidden page).
    pub fn presence_status(&self, user_id: &str, connection: SubscriberId, status: UserStatus) {
        self.presence(|p| (p.set_status(user_id, connection, status, now()), ()));
    }

    /// Sends everything presence held back whose time has come; returns
    /// when the next thing is due.
    fn presence_due(&self) -> Option<std::time::Instant> {
        // Nobody ever connected: nothing can be due (and no channel is made).
        if !self.has(&Channel::Presence) {
            return None;
        }
        self.presence(|p| {
            let change = p.due(now());
            let next = p.next_deadline();
            (change, next)
        })
    }

    /// Everyone online now.
    pub fn presence_users(&self) -> Vec<PresenceUser> {
        self.presence(|p| (Change::default(), p.users()))
    }
}

/// The one presence task of a hub: sleeps until presence's next deadline
/// (or until woken because one moved earlier), then sends what is due.
/// Holds the hub only weakly, and ends once it is gone.
pub(super) async fn expire(hub: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let Some(inner) = hub.upgrade() else { return };
        let next = Hub { inner }.presence_due();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}
