//! Owns who is online: a plain data structure, free of IO, with time passed
//! in. A user is online while at least one identified connection is alive;
//! tabs collapse into `connections: N`; when the last one goes, the leave
//! waits for a grace period so a reload or a blip does not flap the list.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::protocol::{PresenceUser, UserRef, UserStatus};

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
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    /// Each live connection's own status (a hidden tab is `away`).
    connections: BTreeMap<ConnectionId, UserStatus>,
    /// What the other users were last told about this user.
    shown: PresenceUser,
    /// When the last connection closed; the user leaves after the grace.
    gone_since: Option<Instant>,
}

impl Entry {
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
}

/// Everyone online, by user id.
#[derive(Debug, Default)]
pub struct Presence {
    users: BTreeMap<String, Entry>,
}

impl Presence {
    /// A connection of `user` opened (status `online`).
    pub fn connect(&mut self, user: &UserRef, connection: ConnectionId) -> Change {
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
                gone_since: None,
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
        Self::updated(&user.id, entry)
    }

    /// A connection closed at `now`. The last one starts the grace period.
    pub fn disconnect(&mut self, user_id: &str, connection: ConnectionId, now: Instant) -> Change {
        let Some(entry) = self.users.get_mut(user_id) else {
            return Change::default();
        };
        if entry.connections.remove(&connection).is_none() {
            return Change::default();
        }
        if entry.connections.is_empty() {
            entry.gone_since = Some(now);
            return Change::default();
        }
        Self::updated(user_id, entry)
    }

    /// A connection said it is `online` or `away`.
    pub fn set_status(
        &mut self,
        user_id: &str,
        connection: ConnectionId,
        status: UserStatus,
    ) -> Change {
        let Some(entry) = self.users.get_mut(user_id) else {
            return Change::default();
        };
        let Some(slot) = entry.connections.get_mut(&connection) else {
            return Change::default();
        };
        *slot = status;
        Self::updated(user_id, entry)
    }

    /// Removes the users whose grace has run out by `now`.
    pub fn expire(&mut self, now: Instant, grace: Duration) -> Change {
        let gone: Vec<String> = self
            .users
            .iter()
            .filter(|(_, e)| {
                e.gone_since
                    .is_some_and(|since| now.saturating_duration_since(since) >= grace)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let leaves = gone
            .iter()
            .filter_map(|id| self.users.remove(id))
            .map(|entry| entry.shown)
            .collect();
        Change {
            leaves,
            ..Change::default()
        }
    }

    /// Everyone online (users in their grace period included), by id.
    pub fn users(&self) -> Vec<PresenceUser> {
        self.users
            .iter()
            .map(|(id, entry)| entry.current(id))
            .collect()
    }

    /// An `update` when what others see of the user changed.
    fn updated(id: &str, entry: &mut Entry) -> Change {
        let now = entry.current(id);
        if now == entry.shown {
            return Change::default();
        }
        entry.shown = now.clone();
        Change {
            updates: vec![now],
            ..Change::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    fn user(id: &str) -> UserRef {
        UserRef {
            id: id.into(),
            name: id.to_uppercase(),
        }
    }

    fn shown(id: &str, status: UserStatus, connections: u32) -> PresenceUser {
        PresenceUser {
            id: id.into(),
            name: id.to_uppercase(),
            status,
            connections,
        }
    }

    #[test]
    fn the_first_connection_joins_and_more_tabs_update_the_count() {
        let mut presence = Presence::default();
        let change = presence.connect(&user("ann"), 1);
        assert_eq!(change.joins, [shown("ann", UserStatus::Online, 1)]);
        let change = presence.connect(&user("ann"), 2);
        assert_eq!(change.updates, [shown("ann", UserStatus::Online, 2)]);
        assert!(change.joins.is_empty());
        assert_eq!(presence.users(), [shown("ann", UserStatus::Online, 2)]);
    }

    #[test]
    fn closing_one_tab_of_two_keeps_the_user() {
        let mut presence = Presence::default();
        let t0 = Instant::now();
        presence.connect(&user("ann"), 1);
        presence.connect(&user("ann"), 2);
        let change = presence.disconnect("ann", 1, t0);
        assert_eq!(change.updates, [shown("ann", UserStatus::Online, 1)]);
        assert!(presence.expire(t0 + GRACE * 10, GRACE).is_empty());
    }

    #[test]
    fn the_last_tab_leaves_only_after_the_grace() {
        let mut presence = Presence::default();
        let t0 = Instant::now();
        presence.connect(&user("ann"), 1);
        assert!(
            presence.disconnect("ann", 1, t0).is_empty(),
            "no leave at once"
        );
        assert_eq!(presence.users().len(), 1, "still listed during the grace");
        assert!(presence
            .expire(t0 + GRACE - Duration::from_millis(1), GRACE)
            .is_empty());
        let change = presence.expire(t0 + GRACE, GRACE);
        assert_eq!(change.leaves, [shown("ann", UserStatus::Online, 1)]);
        assert!(presence.users().is_empty());
    }

    #[test]
    fn a_reload_within_the_grace_does_not_flap() {
        let mut presence = Presence::default();
        let t0 = Instant::now();
        presence.connect(&user("ann"), 1);
        presence.disconnect("ann", 1, t0);
        let change = presence.connect(&user("ann"), 2);
        assert!(
            change.is_empty(),
            "no leave, no join, nothing changed: {change:?}"
        );
        assert!(presence.expire(t0 + GRACE * 2, GRACE).is_empty());
    }

    #[test]
    fn a_user_is_away_when_every_tab_is_away() {
        let mut presence = Presence::default();
        presence.connect(&user("ann"), 1);
        presence.connect(&user("ann"), 2);
        assert!(
            presence.set_status("ann", 1, UserStatus::Away).is_empty(),
            "tab 2 is still online"
        );
        let change = presence.set_status("ann", 2, UserStatus::Away);
        assert_eq!(change.updates, [shown("ann", UserStatus::Away, 2)]);
        let change = presence.set_status("ann", 1, UserStatus::Online);
        assert_eq!(change.updates, [shown("ann", UserStatus::Online, 2)]);
    }

    #[test]
    fn unknown_users_and_connections_change_nothing() {
        let mut presence = Presence::default();
        assert!(presence.disconnect("nobody", 1, Instant::now()).is_empty());
        assert!(presence
            .set_status("nobody", 1, UserStatus::Away)
            .is_empty());
        presence.connect(&user("ann"), 1);
        assert!(presence.disconnect("ann", 9, Instant::now()).is_empty());
    }

    #[test]
    fn users_are_listed_by_id() {
        let mut presence = Presence::default();
        for id in ["cid", "ann", "bob"] {
            presence.connect(&user(id), 1);
        }
        let ids: Vec<_> = presence.users().into_iter().map(|u| u.id).collect();
        assert_eq!(ids, ["ann", "bob", "cid"]);
    }
}
