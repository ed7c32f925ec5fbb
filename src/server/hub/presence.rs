//! Owns who is online: a plain data structure, free of IO, with time passed
//! in. A user is online while at least one identified connection is alive;
//! tabs collapse into `connections: N`; when the last one goes, the leave
//! waits for a grace period so a reload or a blip does not flap the list.
//!
//! Others hear about one user at most once per [`COALESCE`]: a change inside
//! that window is held back, and what the user looks like when the window
//! closes goes out as one update (nothing, if they changed back). Everything
//! held back or waiting for its grace has a deadline in one ordered queue, so
//! a single task can sleep until [`Presence::next_deadline`] and then call
//! [`Presence::due`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::protocol::{PresenceUser, UserRef, UserStatus};

/// The shortest time between two diffs about the same user (PROTOCOL.md:
/// at most one `presence_diff` per user per 250 ms).
pub const COALESCE: Duration = Duration::from_millis(250);

/// Identifies one connection of a user.
pub type ConnectionId = u64;

/// What changed, as a `presence_diff` will tell it (empty: nothing to send).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub joins: Vec<PresenceUser>,
    pub leaves: Vec<PresenceUser>,
    pub updates: Vec<PresenceUser>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty() && self.updates.is_empty()
    }

    /// Adds what `other` tells (about other users: a user is told at most
    /// once per window, so never twice at one instant).
    pub fn merge(&mut self, other: Change) {
        self.joins.extend(other.joins);
        self.leaves.extend(other.leaves);
        self.updates.extend(other.updates);
    }
}

#[derive(Debug, Clone)]
struct Entry<C> {
    name: String,
    /// Each live connection's own status (a hidden tab is `away`).
    connections: BTreeMap<C, UserStatus>,
    /// What the other users were last told about this user.
    shown: PresenceUser,
    /// When the last diff about this user went out (the join, at first).
    told_at: Instant,
    /// A change not told yet because the coalescing window was still open.
    held: bool,
    /// When the last connection closed; the user leaves after the grace.
    gone_since: Option<Instant>,
    /// This user's place in the deadline queue, if any.
    due: Option<Instant>,
}

impl<C> Entry<C> {
    /// The user as they are now; while in grace, as last shown.
    fn current(&self, id: &str) -> PresenceUser {
        if self.connections.is_empty() {
            return self.shown.clone();
        }
        let online = self.connections.values().any(|s| *s == UserStatus::Online);
        PresenceUser {
            id: id.to_owned(),
            name: self.name.clone(),
            status: if online {
                UserStatus::Online
            } else {
                UserStatus::Away
            },
            connections: self.connections.len() as u32,
        }
    }

    /// Whether a diff about this user may go out at `now`.
    fn may_tell(&self, now: Instant) -> bool {
        now >= self.told_at + COALESCE
    }
}

/// Everyone online, by user id, and when each held-back change is due.
/// A connection is named by a `C`: this hub's connection id on one
/// instance; an (instance, connection) pair for the cluster's leader.
#[derive(Debug)]
pub struct Presence<C = ConnectionId> {
    users: BTreeMap<String, Entry<C>>,
    /// (when, user id) for every user with a held change or a pending leave.
    deadlines: BTreeSet<(Instant, String)>,
    /// How long a user whose last connection closed stays listed.
    grace: Duration,
}

impl<C: Ord> Presence<C> {
    pub fn new(grace: Duration) -> Self {
        Presence {
            users: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            grace,
        }
    }

    /// A connection of `user` opened at `now` (status `online`).
    pub fn connect(&mut self, user: &UserRef, connection: C, now: Instant) -> Change {
        let Some(entry) = self.users.get_mut(&user.id) else {
            let mut connections = BTreeMap::new();
            connections.insert(connection, UserStatus::Online);
            let mut entry = Entry {
                name: user.name.clone(),
                connections,
                shown: PresenceUser {
                    id: user.id.clone(),
                    name: user.name.clone(),
                    status: UserStatus::Online,
                    connections: 1,
                },
                told_at: now,
                held: false,
                gone_since: None,
                due: None,
            };
            entry.shown = entry.current(&user.id);
            let joined = entry.shown.clone();
            self.users.insert(user.id.clone(), entry);
            return Change {
                joins: vec![joined],
                ..Change::default()
            };
        };
        entry.name = user.name.clone();
        entry.gone_since = None;
        entry.connections.insert(connection, UserStatus::Online);
        self.changed(&user.id, now)
    }

    /// A connection closed at `now`. The last one starts the grace period.
    pub fn disconnect(&mut self, user_id: &str, connection: &C, now: Instant) -> Change {
        let Some(entry) = self.users.get_mut(user_id) else {
            return Change::default();
        };
        if entry.connections.remove(connection).is_none() {
            return Change::default();
        }
        if entry.connections.is_empty() {
            entry.gone_since = Some(now);
        }
        self.changed(user_id, now)
    }

    /// A connection said at `now` that it is `online` or `away`.
    pub fn set_status(
        &mut self,
        user_id: &str,
        connection: &C,
        status: UserStatus,
        now: Instant,
    ) -> Change {
        let Some(entry) = self.users.get_mut(user_id) else {
            return Change::default();
        };
        let Some(slot) = entry.connections.get_mut(connection) else {
            return Change::default();
        };
        *slot = status;
        self.changed(user_id, now)
    }

    /// Takes over a list others were already shown (a new leader of the
    /// cluster's presence): each user is listed as shown, with no connection
    /// yet, so they leave after `stay` or the grace, whichever is longer,
    /// unless a connection of theirs is found (then nothing changes, and
    /// nothing is told). `stay` covers the time connections take to be
    /// reported again.
    pub fn seed(
        &mut self,
        users: impl IntoIterator<Item = PresenceUser>,
        stay: Duration,
        now: Instant,
    ) {
        let gone_since = now + stay.saturating_sub(self.grace);
        for user in users {
            if self.users.contains_key(&user.id) {
                continue;
            }
            let id = user.id.clone();
            let mut entry = Entry {
                name: user.name.clone(),
                connections: BTreeMap::new(),
                shown: user,
                told_at: now.checked_sub(COALESCE).unwrap_or(now),
                held: false,
                gone_since: Some(gone_since),
                due: None,
            };
            schedule(&mut self.deadlines, self.grace, &id, &mut entry);
            self.users.insert(id, entry);
        }
    }

    /// The earliest time [`Presence::due`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Everything due by `now`: the leaves whose grace has run out and the
    /// held-back updates whose window has closed, as one change.
    pub fn due(&mut self, now: Instant) -> Change {
        let mut change = Change::default();
        while let Some((at, id)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(entry) = self.users.get_mut(&id) else {
                continue;
            };
            entry.due = None;
            let expired = entry
                .gone_since
                .is_some_and(|since| now >= since + self.grace);
            if expired && entry.may_tell(now) {
                if let Some(entry) = self.users.remove(&id) {
                    change.leaves.push(entry.shown);
                }
                continue;
            }
            if entry.held && entry.may_tell(now) {
                entry.held = false;
                let current = entry.current(&id);
                if current != entry.shown {
                    entry.shown = current.clone();
                    entry.told_at = now;
                    change.updates.push(current);
                }
            }
            schedule(&mut self.deadlines, self.grace, &id, entry);
        }
        change
    }

    /// Everyone online (users in their grace period included), by id, as
    /// they are now (a held-back change included).
    pub fn users(&self) -> Vec<PresenceUser> {
        self.users
            .iter()
            .map(|(id, entry)| entry.current(id))
            .collect()
    }

    /// Tells what others see of user `id` now, unless they were told about
    /// this user less than [`COALESCE`] ago: then the change is held back
    /// until the window closes.
    fn changed(&mut self, id: &str, now: Instant) -> Change {
        let Some(entry) = self.users.get_mut(id) else {
            return Change::default();
        };
        let current = entry.current(id);
        let mut change = Change::default();
        if current == entry.shown {
            entry.held = false;
        } else if entry.may_tell(now) {
            entry.held = false;
            entry.shown = current.clone();
            entry.told_at = now;
            change.updates.push(current);
        } else {
            entry.held = true;
        }
        schedule(&mut self.deadlines, self.grace, id, entry);
        change
    }
}

/// Puts user `id` in the deadline queue at the time its next diff may be
/// due (or takes it out when nothing is pending).
fn schedule<C>(
    deadlines: &mut BTreeSet<(Instant, String)>,
    grace: Duration,
    id: &str,
    entry: &mut Entry<C>,
) {
    let window = entry.told_at + COALESCE;
    let due = match entry.gone_since {
        Some(since) => Some((since + grace).max(window)),
        None if entry.held => Some(window),
        None => None,
    };
    if entry.due == due {
        return;
    }
    if let Some(old) = entry.due.take() {
        deadlines.remove(&(old, id.to_owned()));
    }
    if let Some(due) = due {
        deadlines.insert((due, id.to_owned()));
        entry.due = Some(due);
    }
}

#[cfg(test)]
mod tests;
