//! The notifications feature: the unread list (the newest hundred at most)
//! and the count of all unread, the toast of the newest, and read marks,
//! which go through the outbox (so they survive a lost connection and a
//! reload) and are never undone by a snapshot taken before their `ack`.

use leptos::prelude::*;

use super::chat::Chat;
use super::connection::Connection;
use super::identity::Identity;
use crate::protocol::{ClientEnvelope, ClientMessage, MarkRead, Notification, Snapshot};

/// The user's notifications; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Notifications {
    /// Unread notifications, oldest first (the newest 100 at most).
    pub unread: RwSignal<Vec<Notification>>,
    /// How many notifications are unread in all (more than `unread` holds
    /// when over a hundred wait).
    pub total_unread: RwSignal<u64>,
    /// The one the toast shows.
    pub toast: RwSignal<Option<Notification>>,
    connection: Connection,
    identity: Identity,
    /// Where read marks are queued: the outbox they share with chat lines
    /// (a full one drops its oldest message, which may be a line).
    chat: Chat,
}

impl Notifications {
    pub fn new(connection: Connection, identity: Identity, chat: Chat) -> Self {
        Notifications {
            unread: RwSignal::new(Vec::new()),
            total_unread: RwSignal::new(0),
            toast: RwSignal::new(None),
            connection,
            identity,
            chat,
        }
    }

    /// Marks these notifications read, on the server too: through the outbox
    /// under a fresh id, so it survives a lost connection and a reload.
    pub fn mark_read(&self, ids: Vec<String>) {
        self.forget_unread(&ids);
        let Some(user) = self.identity.user.get_untracked() else {
            return;
        };
        let message = ClientMessage::MarkRead(MarkRead {
            notification_ids: ids,
        });
        let envelope = ClientEnvelope::new(message).with_id(crate::client::new_envelope_id("r"));
        self.chat.enqueue(&user, envelope);
    }

    /// Removes notifications that queued read marks cover from the list.
    pub(super) fn hide_pending_reads(&self) {
        let read: Vec<String> = self
            .connection
            .with_outbox(|outbox| outbox.pending_reads().map(str::to_owned).collect())
            .unwrap_or_default();
        if !read.is_empty() {
            self.forget_unread(&read);
        }
    }

    /// Takes notifications `ids` off the list and the count.
    fn forget_unread(&self, ids: &[String]) {
        let mut gone = 0;
        self.unread.update(|unread| {
            let before = unread.len();
            unread.retain(|n| !ids.contains(&n.notification_id));
            gone = (before - unread.len()) as u64;
        });
        self.total_unread
            .update(|total| *total = total.saturating_sub(gone));
    }

    /// Signed out: nothing is unread.
    pub(super) fn signed_out(&self) {
        self.unread.set(Vec::new());
        self.total_unread.set(0);
    }

    /// The unread list of a `subscribed` snapshot of the user's channel.
    pub(super) fn subscribed(&self, snapshot: Option<Snapshot>) {
        if let Some(Snapshot::Unread(snapshot)) = snapshot {
            self.unread.set(snapshot.unread);
            self.total_unread.set(snapshot.total_unread);
            // Read marks still queued are not undone.
            self.hide_pending_reads();
        }
    }

    /// A new notification: listed (once) and toasted.
    pub(super) fn received(&self, notification: Notification) {
        let mut added = false;
        self.unread.update(|unread| {
            if !unread
                .iter()
                .any(|n| n.notification_id == notification.notification_id)
            {
                unread.push(notification.clone());
                added = true;
            }
        });
        if added {
            self.total_unread.update(|total| *total += 1);
        }
        self.toast.set(Some(notification));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::signed_in;
    use crate::protocol::{Notification, ServerMessage, Snapshot};
    use leptos::prelude::*;

    #[test]
    fn mark_read_is_queued_with_a_fresh_id_and_a_snapshot_does_not_undo_it() {
        let owner = Owner::new();
        owner.set();
        let live = signed_in();
        let note = |id: &str| Notification {
            channel: "user:guest:ann".parse().unwrap(),
            offset: 1,
            notification_id: id.into(),
            title: "t".into(),
            body: "b".into(),
            created_at: crate::protocol::Timestamp::parse("2026-11-25T17:30:05Z").unwrap(),
        };
        let snapshot = |unread: Vec<Notification>| {
            ServerMessage::Subscribed(crate::protocol::Subscribed {
                channel: "user:guest:ann".into(),
                epoch: "e".into(),
                offset: 2,
                recovered: false,
                snapshot: Some(Snapshot::Unread(crate::protocol::UnreadSnapshot {
                    total_unread: unread.len() as u64,
                    unread,
                })),
            })
        };
        live.apply(snapshot(vec![note("n1"), note("n2")]));
        // Offline: nothing can be sent, and nothing is lost.
        live.notifications.mark_read(vec!["n1".into()]);
        live.notifications.mark_read(vec!["n2".into()]);
        let due = live.connection.outbox_due(0.0).send;
        let ids: Vec<_> = due.iter().filter_map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1], "each read mark has its own id");
        // Reconnected before the acks: the server still lists them unread.
        live.disconnected();
        live.apply(snapshot(vec![note("n1"), note("n2")]));
        assert!(live.notifications.unread.get_untracked().is_empty());
        assert_eq!(live.notifications.total_unread.get_untracked(), 0);
    }
}
