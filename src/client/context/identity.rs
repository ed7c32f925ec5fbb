//! The identity feature: who the page is signed in as (written by the socket
//! driver: `welcome`, a sign-in's answer, sign-out), the Join form's problem,
//! and who is online (the `presence` channel, signed-in users only).

use leptos::prelude::*;

use super::connection::{Connection, ToDriver};
use crate::client::store::{apply_presence, sort_people};
use crate::protocol::{check_guest_name, PresenceDiff, PresenceUser, Snapshot, UserRef};

/// The signed-in user and the people online; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// The signed-in user (`None`: anonymous), as the server's `welcome` said.
    pub user: RwSignal<Option<UserRef>>,
    /// Who is online, in name order (signed-in users only).
    pub people: RwSignal<Vec<PresenceUser>>,
    /// Why the last attempt to join failed, for the form.
    pub join_problem: RwSignal<Option<String>>,
    connection: Connection,
}

impl Identity {
    pub fn new(user: Option<UserRef>, connection: Connection) -> Self {
        Identity {
            user: RwSignal::new(user),
            people: RwSignal::new(Vec::new()),
            join_problem: RwSignal::new(None),
            connection,
        }
    }

    /// Signs in as a guest named `name` (the driver asks the server, then
    /// reconnects with the new token).
    pub fn join(&self, name: String) {
        if let Err(problem) = check_guest_name(&name) {
            self.join_problem.set(Some(format!("name: {problem}")));
            return;
        }
        self.connection.ask(ToDriver::Join(name));
    }

    /// Signs out (the driver forgets the token and reconnects anonymously).
    pub fn leave(&self) {
        self.connection.ask(ToDriver::Leave);
    }

    /// The server signed the page in as `user` (the driver calls this).
    pub fn joined(&self, user: UserRef) {
        self.join_problem.set(None);
        self.user.set(Some(user));
    }

    /// Forgets the user and who is online.
    pub(super) fn signed_out(&self) {
        self.user.set(None);
        self.people.set(Vec::new());
    }

    /// The presence list of a `subscribed` snapshot.
    pub(super) fn subscribed(&self, snapshot: Option<Snapshot>) {
        let mut users = match snapshot {
            Some(Snapshot::Presence(snapshot)) => snapshot.users,
            _ => Vec::new(),
        };
        sort_people(&mut users);
        self.people.set(users);
    }

    /// A new `presence_diff`.
    pub(super) fn changed(&self, diff: &PresenceDiff) {
        self.people.update(|users| apply_presence(users, diff));
    }
}
