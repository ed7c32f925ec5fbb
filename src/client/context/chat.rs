//! The chat feature: the rooms joined on this page and the one shown, one
//! log signal per room (the pure [`ChatLog`] inside), and what a person does
//! in them: send a line (pending until acknowledged, queued in the outbox
//! while offline), retry a failed one, join a room, load older messages.
//! The socket driver subscribes every room joined.

use leptos::prelude::*;
use std::collections::HashMap;

use super::connection::Connection;
use super::identity::Identity;
use crate::client::chat::{self, ChatLine, ChatLog};
use crate::client::outbox::OUTBOX_CAPACITY;
use crate::client::store::Renewal;
use crate::protocol::{
    Ack, Channel, ChatMessage, ChatSend, ClientEnvelope, ClientMessage, HistoryPage,
    HistoryRequest, Snapshot, Subscribed, UserRef,
};

/// The room every page starts in.
pub const DEFAULT_ROOM: &str = "general";

/// The rooms and their logs; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Chat {
    /// Chat rooms joined on this page, and the one shown.
    pub rooms: RwSignal<Vec<String>>,
    pub room: RwSignal<String>,
    /// Set when the outbox overflowed and dropped a message (chat lines and
    /// read marks are queued through this feature: `enqueue`).
    pub outbox_warning: RwSignal<Option<String>>,
    /// One signal per room's log.
    lines: StoredValue<HashMap<String, RwSignal<ChatLog>>>,
    connection: Connection,
    identity: Identity,
}

impl Chat {
    pub fn new(connection: Connection, identity: Identity) -> Self {
        Chat {
            rooms: RwSignal::new(vec![DEFAULT_ROOM.to_owned()]),
            room: RwSignal::new(DEFAULT_ROOM.to_owned()),
            outbox_warning: RwSignal::new(None),
            lines: StoredValue::new(HashMap::new()),
            connection,
            identity,
        }
    }

    /// The signal of a room's log.
    pub fn lines(&self, room: &str) -> RwSignal<ChatLog> {
        if let Some(signal) = self.lines.with_value(|lines| lines.get(room).copied()) {
            return signal;
        }
        let signal = self.connection.in_app(|| RwSignal::new(ChatLog::default()));
        self.lines.update_value(|lines| {
            lines.insert(room.to_owned(), signal);
        });
        signal
    }

    /// Sends a chat message to the shown room. It shows as pending until
    /// acknowledged; while disconnected it waits in the outbox (which survives
    /// a reload) and goes out with the same id after the reconnect.
    pub fn say(&self, text: &str, id: String) {
        let Some(user) = self.identity.user.get_untracked() else {
            return;
        };
        let room = self.room.get_untracked();
        let text = text.trim().to_owned();
        if text.is_empty() {
            return;
        }
        self.lines(&room)
            .update(|lines| chat::pending(lines, &id, &user, &text));
        let message = ClientMessage::ChatSend(ChatSend { room, text });
        self.enqueue(&user, ClientEnvelope::new(message).with_id(id));
    }

    /// Puts a message into `user`'s outbox; when the full outbox dropped its
    /// oldest to make room, the panel says so and that line (if it was a
    /// chat line) fails.
    pub(super) fn enqueue(&self, user: &UserRef, envelope: ClientEnvelope) {
        if let Some(dropped) = self.connection.enqueue(user, envelope) {
            self.outbox_warning.set(Some(format!(
                "More than {OUTBOX_CAPACITY} messages were waiting for the connection; the oldest was dropped."
            )));
            self.fail_line(&dropped, "dropped: too many messages waiting");
        }
    }

    /// Sends a failed line again under its own id (exactly once on the server).
    pub fn retry(&self, room: &str, line: &ChatLine) {
        let previous = self.room.get_untracked();
        self.room.set(room.to_owned());
        self.say(&line.text, line.key.clone());
        self.room.set(previous);
    }

    /// Joins (or creates) a room by name and shows it. Room names are
    /// ASCII (`[a-z0-9-]`), so only ASCII capitals are made small: anything
    /// else is refused by the grammar either way.
    pub fn join_room(&self, name: &str) -> Result<(), String> {
        let room = name.trim().trim_start_matches('#').to_ascii_lowercase();
        Channel::chat(&room).map_err(|err| err.to_string())?;
        self.add_room(&room);
        self.room.set(room);
        Ok(())
    }

    /// Adds `room` to the rooms joined, unless it is there.
    fn add_room(&self, room: &str) {
        if !self.rooms.get_untracked().iter().any(|r| r == room) {
            self.rooms.update(|rooms| rooms.push(room.to_owned()));
        }
    }

    /// Asks for the messages before the oldest one shown, unless a request
    /// for them is still unanswered or nothing older exists.
    pub fn load_older(&self, room: &str) {
        let lines = self.lines(room);
        let Some(before) = lines.with_untracked(ChatLog::older_request) else {
            return;
        };
        let request = HistoryRequest {
            channel: Channel::Chat(room.to_owned()).to_string(),
            before,
            limit: Some(50),
        };
        if self.connection.send(ClientMessage::History(request), None) {
            lines.update(|log| log.history_requested(before));
        }
    }

    /// Marks our chat line `id` failed.
    pub(super) fn fail_line(&self, id: &str, reason: &str) {
        for room in self.rooms.get_untracked() {
            let mut hit = false;
            self.lines(&room)
                .update(|lines| hit = chat::failed(lines, id, reason));
            if hit {
                return;
            }
        }
    }

    /// A line another page of `user` left unsent, taken over: shown pending
    /// (its room joined if need be).
    pub(super) fn adopted(&self, user: &UserRef, send: &ChatSend, id: &str) {
        self.add_room(&send.room);
        self.lines(&send.room)
            .update(|lines| chat::pending(lines, id, user, &send.text));
    }

    /// A queued line that will never be sent: its pending line goes.
    pub(super) fn unsent(&self, send: &ChatSend, id: &str) {
        self.lines(&send.room)
            .update(|lines| lines.retain(|line| line.key != id));
    }

    /// Forgets where every joined room resumes from.
    pub(super) fn forget_rooms(&self) {
        for room in self.rooms.get_untracked() {
            self.connection.forget(&Channel::Chat(room).to_string());
        }
    }

    /// A room's `subscribed`: the snapshot replaces the log, or the replay
    /// that follows continues it.
    pub(super) fn subscribed(&self, room: &str, renewal: Renewal, answer: &Subscribed) {
        match renewal {
            Renewal::Replace(_) => {
                let messages = match &answer.snapshot {
                    Some(Snapshot::Chat(snapshot)) => &snapshot.messages[..],
                    _ => &[],
                };
                self.lines(room)
                    .update(|lines| chat::replace(lines, messages, answer.offset));
            }
            Renewal::Keep => self.lines(room).update(ChatLog::resubscribed),
        }
    }

    /// A new message in a room.
    pub(super) fn received(&self, message: &ChatMessage) {
        self.lines(&message.room)
            .update(|lines| chat::received(lines, message));
    }

    /// The server acknowledged one of our lines.
    pub(super) fn acked(&self, ack: &Ack) {
        if let (Some(Channel::Chat(room)), Some(offset)) = (&ack.channel, ack.offset) {
            self.lines(room)
                .update(|lines| chat::acked(lines, &ack.id, offset));
        }
    }

    /// A page of older messages.
    pub(super) fn older(&self, page: &HistoryPage) {
        if let Channel::Chat(room) = &page.channel {
            self.lines(room)
                .update(|lines| chat::older(lines, &page.messages));
        }
    }
}
