//! Owns the hub's side of presence: connections, disconnections and status
//! changes become `presence_diff`s on the `presence` channel, and one task
//! per hub sends what presence held back (coalesced updates, leaves after
//! the grace) when its deadline comes: no task per disconnect.
//!
//! When instances run as one (`server/broker/redis/presence/`) this hub
//! decides nothing: it reports its connections through a queue that keeps
//! each connection's latest state ([`super::reports`]), and follows the diffs the cluster's leader
//! publishes, in offset order, under the cluster's epoch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

use super::deliver::{placement, Delivery};
use super::presence::{Change, Presence};
use super::reports::Reports;
use super::{
    frames, resubscribe, History, Hub, Inner, Ring, Subscriber, SubscriberId, PRESENCE_HISTORY,
};
use crate::protocol::{Channel, PresenceDiff, PresenceUser, ServerMessage, UserRef, UserStatus};

/// What this instance's connections did, for the cluster's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceEvent {
    Connect(SubscriberId, UserRef),
    Disconnect(SubscriberId),
    Status(SubscriberId, UserStatus),
}

/// The presence channel: who is online, and the last diffs for resume.
pub(super) struct PresenceHistory {
    /// Decides who is online (one instance); `None` when instances run as
    /// one: the cluster's leader decides, and `users` follows its diffs.
    presence: Option<Presence>,
    /// Who is online as the leader's diffs tell it (instances as one).
    users: BTreeMap<String, PresenceUser>,
    /// The cluster's epoch of the diffs (instances as one, once known).
    pub(super) epoch: Option<String>,
    /// Epochs this hub followed before (newest last, a few): a late diff of
    /// one of them never takes the list back.
    left: Vec<String>,
    pub(super) diffs: Ring<Utf8Bytes>,
}

/// How many earlier epochs a hub remembers.
const EPOCHS_LEFT: usize = 4;

impl PresenceHistory {
    /// Follows `epoch` from now on.
    fn enter(&mut self, epoch: String) {
        if self.epoch.as_deref() == Some(epoch.as_str()) {
            return;
        }
        if let Some(old) = self.epoch.replace(epoch) {
            self.left.retain(|e| *e != old);
            self.left.push(old);
            if self.left.len() > EPOCHS_LEFT {
                self.left.remove(0);
            }
        }
    }

    pub(super) fn new(grace: Duration, shared: bool) -> Self {
        PresenceHistory {
            presence: (!shared).then(|| Presence::new(grace)),
            users: BTreeMap::new(),
            epoch: None,
            left: Vec::new(),
            diffs: Ring::new(PRESENCE_HISTORY),
        }
    }

    /// Everyone online now.
    pub(super) fn users(&self) -> Vec<PresenceUser> {
        match &self.presence {
            Some(presence) => presence.users(),
            None => self.users.values().cloned().collect(),
        }
    }
}

/// Applies a diff to a list of who is online, by id.
fn apply(users: &mut BTreeMap<String, PresenceUser>, diff: &PresenceDiff) {
    for user in &diff.leaves {
        users.remove(&user.id);
    }
    for user in diff.joins.iter().chain(&diff.updates) {
        users.insert(user.id.clone(), user.clone());
    }
}

/// Keeps the leader's next diff (the list follows it) and queues it for
/// every subscriber.
fn accept_diff(
    history: &mut PresenceHistory,
    subscribers: &HashMap<SubscriberId, Arc<dyn Subscriber>>,
    diff: &PresenceDiff,
    frame: Utf8Bytes,
) {
    apply(&mut history.users, diff);
    history.diffs.push(frame.clone());
    for outbox in subscribers.values() {
        let _ = outbox.deliver(frame.clone());
    }
}

/// The time presence runs on: tokio's clock (so paused-time tests move it),
/// as the std `Instant` the pure structure takes.
pub fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Hub {
    /// From now on this hub's connections are reported on `link` and its
    /// presence channel follows the cluster (`deliver_presence`). Call
    /// before any connection.
    pub fn share_presence(&self, link: Reports) {
        let _ = self.inner.presence_link.set(link);
    }

    /// Reports `event` to the cluster if presence is shared; false if not.
    fn report(&self, event: PresenceEvent) -> bool {
        match self.inner.presence_link.get() {
            Some(link) => {
                link.send(event);
                true
            }
            None => false,
        }
    }

    /// Runs `update` on the presence state at `now`, publishes the diff it
    /// makes (one offset per diff, under the channel's lock, so offsets stay
    /// gap-free), and wakes the presence task if a deadline moved earlier.
    /// `None` when presence is shared (the cluster decides).
    fn presence<R>(&self, update: impl FnOnce(&mut Presence) -> (Change, R)) -> Option<R> {
        let channel = Channel::Presence;
        let (result, earlier) = self
            .with_channel(&channel, |state| {
                let History::Presence(history) = &mut state.history else {
                    unreachable!("the presence channel always holds presence")
                };
                let presence = history.presence.as_mut()?;
                let before = presence.next_deadline();
                let (change, result) = update(presence);
                let after = presence.next_deadline();
                let earlier = after.is_some_and(|after| before.is_none_or(|b| after < b));
                if change.is_empty() {
                    return Some((result, earlier));
                }
                let frame = frames::encode(ServerMessage::PresenceDiff(PresenceDiff {
                    channel: state.channel.clone(),
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
                Some((result, earlier))
            })
            .expect("presence is always served")?;
        if earlier {
            self.inner.presence_wake.notify_one();
        }
        Some(result)
    }

    /// An identified connection opened.
    pub fn presence_connect(&self, user: &UserRef, connection: SubscriberId) {
        if !self.report(PresenceEvent::Connect(connection, user.clone())) {
            self.presence(|p| (p.connect(user, connection, now()), ()));
        }
    }

    /// An identified connection closed; if it was the user's last, they leave
    /// after the grace period unless they come back (the presence task sends
    /// the leave).
    pub fn presence_disconnect(&self, user_id: &str, connection: SubscriberId) {
        if !self.report(PresenceEvent::Disconnect(connection)) {
            self.presence(|p| (p.disconnect(user_id, &connection, now()), ()));
        }
    }

    /// A connection's status changed (`online`, or `away` for a hidden page).
    pub fn presence_status(&self, user_id: &str, connection: SubscriberId, status: UserStatus) {
        if !self.report(PresenceEvent::Status(connection, status)) {
            self.presence(|p| (p.set_status(user_id, &connection, status, now()), ()));
        }
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
        .flatten()
    }

    /// Everyone online now.
    pub fn presence_users(&self) -> Vec<PresenceUser> {
        self.with_channel(&Channel::Presence, |state| match &state.history {
            History::Presence(history) => history.users(),
            _ => Vec::new(),
        })
        .unwrap_or_default()
    }

    /// Delivers a diff the cluster's leader published (offset given by the
    /// cluster, in its `epoch`): the next offset goes to subscribers; an
    /// older one is known; a skipped one is a gap. A diff that starts an
    /// epoch (offset 1: the leader's full list) starts the list again, and
    /// every subscriber gets a fresh `subscribed` with it.
    pub fn deliver_presence(&self, epoch: &str, diff: &PresenceDiff, frame: Utf8Bytes) -> Delivery {
        self.with_channel(&Channel::Presence, |state| {
            let History::Presence(history) = &mut state.history else {
                return Delivery::NotHeld;
            };
            if history.left.iter().any(|e| e == epoch) {
                // From an epoch this hub already moved on from.
                return Delivery::Known;
            }
            if history.epoch.as_deref() != Some(epoch) {
                if diff.offset != 1 {
                    // The start of this epoch was missed: the caller reloads.
                    return Delivery::Gap { latest: 0 };
                }
                history.users.clear();
                history.enter(epoch.to_owned());
                history.diffs = Ring::new(PRESENCE_HISTORY);
                apply(&mut history.users, diff);
                history.diffs.push(frame);
                resubscribe(state, &self.inner.epoch);
                return Delivery::Delivered;
            }
            if let Err(delivery) = placement(history.diffs.latest(), diff.offset, false) {
                return delivery;
            }
            accept_diff(history, &state.subscribers, diff, frame);
            Delivery::Delivered
        })
        .unwrap_or(Delivery::NotHeld)
    }

    /// Installs the cluster's presence as Redis holds it: its epoch, who is
    /// online at offset `latest`, and the diffs kept before it (oldest
    /// first, ending at `latest`). Diffs this hub lacks are delivered; when
    /// they cannot be (another epoch, or more was missed than is kept), the
    /// list starts again from `users` and every subscriber gets a fresh
    /// `subscribed`.
    pub fn install_presence(
        &self,
        epoch: String,
        latest: u64,
        users: Vec<PresenceUser>,
        recent: Vec<(PresenceDiff, Utf8Bytes)>,
    ) {
        let _ = self.with_channel(&Channel::Presence, |state| {
            let History::Presence(history) = &mut state.history else {
                return;
            };
            if history.epoch.as_deref() == Some(epoch.as_str()) {
                let held = history.diffs.latest();
                if held >= latest {
                    return;
                }
                let missing: Vec<_> = recent.iter().filter(|(d, _)| d.offset > held).collect();
                if missing.first().is_some_and(|(d, _)| d.offset == held + 1) {
                    for (diff, frame) in missing {
                        accept_diff(history, &state.subscribers, diff, frame.clone());
                    }
                    return;
                }
            }
            if history.left.contains(&epoch) {
                return;
            }
            let kept = recent.len() as u64;
            history.enter(epoch);
            history.users = users.into_iter().map(|u| (u.id.clone(), u)).collect();
            history.diffs = Ring::after_offset(PRESENCE_HISTORY, latest - kept.min(latest));
            for (_, frame) in recent {
                history.diffs.push(frame);
            }
            resubscribe(state, &self.inner.epoch);
        });
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
