//! The outbox's life across the features, as the socket driver sees it:
//! who it belongs to (`welcome`, sign-out: a user's unsent messages are
//! never sent as anyone else), what another page of the same user left
//! unsent (taken over: chat lines pending again, read marks applied, note
//! edits replayed), answers (`ack` settles; an `error` fails a line, means
//! "later", or restarts the note) and a lost socket.

use base64::Engine as _;
use leptos::prelude::*;

use super::note::BASE64;
use super::{Live, ToDriver};
use crate::client::note::NOTE_DOC;
use crate::client::outbox::Outbox;
use crate::protocol::{Channel, ClientMessage, ErrorBody, ErrorCode, UserRef};

impl Live {
    /// Forgets the user and what only users see (after leave, a 4001 or an
    /// anonymous welcome), and drops their unsent messages: they are never
    /// sent as anyone else.
    pub fn signed_out(&self) {
        self.drop_outbox(Outbox::default());
        self.note.signed_out();
        self.identity.signed_out();
        self.notifications.signed_out();
        self.note.offline();
        self.connection.forget("presence");
        self.connection
            .forget(&Channel::Doc(NOTE_DOC.to_owned()).to_string());
        self.chat.forget_rooms();
    }

    /// `welcome` named `user`. An outbox of someone else is put away (it
    /// stays stored under its own user); the driver then takes over what
    /// pages of `user` that are gone left unsent.
    pub fn welcomed(&self, user: UserRef) {
        if !self.connection.outbox_is(&user) {
            self.drop_outbox(Outbox::for_user(&user.id));
        }
        self.identity.user.set(Some(user));
    }

    /// The socket is gone: unanswered messages go again on the next one,
    /// and the note is not live.
    pub fn disconnected(&self) {
        self.connection.with_outbox(Outbox::disconnected);
        self.note.offline();
    }

    /// Adds another page's unsent messages to this one's (same user only):
    /// chat lines show as pending, read marks apply at once.
    pub fn adopt(&self, adopted: Outbox) {
        let Some(user) = self.identity.user.get_untracked() else {
            return;
        };
        if adopted.owner() != Some(user.id.as_str()) {
            return;
        }
        for envelope in adopted.iter() {
            if let (ClientMessage::ChatSend(send), Some(id)) = (&envelope.message, &envelope.id) {
                self.chat.adopted(&user, send, id);
            }
        }
        let edits: Vec<Vec<u8>> = adopted
            .note()
            .updates()
            .filter_map(|update| BASE64.decode(update).ok())
            .collect();
        self.note.adopted(&edits);
        self.connection.with_outbox(|outbox| {
            if outbox.owner() != Some(user.id.as_str()) {
                *outbox = Outbox::for_user(&user.id);
            }
            outbox.merge(adopted);
        });
        self.notifications.hide_pending_reads();
        self.connection.store_outbox();
        self.connection.ask(ToDriver::Pump);
    }

    /// Replaces the outbox, removing the pending lines of what it held and,
    /// when it belonged to someone, their stored copies.
    fn drop_outbox(&self, replacement: Outbox) {
        let old = self
            .connection
            .with_outbox(|outbox| std::mem::replace(outbox, replacement))
            .unwrap_or_default();
        for envelope in old.iter() {
            if let (ClientMessage::ChatSend(send), Some(id)) = (&envelope.message, &envelope.id) {
                self.chat.unsent(send, id);
            }
        }
        if let Some(owner) = old.owner() {
            self.connection
                .ask(ToDriver::DiscardOutboxes(owner.to_owned()));
        }
    }

    /// An `error` answering one of our messages. `rate_limited` means
    /// "later": the message stays queued (and its line pending). Anything
    /// else settles it, and a chat line of ours fails with the reason.
    pub fn refused(&self, error: &ErrorBody, now_ms: f64) {
        let Some(id) = &error.id else {
            return;
        };
        if error.code == ErrorCode::RateLimited
            && self
                .connection
                .with_outbox(|outbox| outbox.retry_later(id, now_ms))
                .unwrap_or(false)
        {
            return;
        }
        if self
            .connection
            .with_outbox(|outbox| outbox.note().flight_is(id))
            .unwrap_or(false)
        {
            return self.note.refused(id, error, now_ms);
        }
        self.connection.settle(id);
        self.chat.fail_line(id, &error.message);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{error, signed_in};
    use super::super::{Live, DEFAULT_ROOM};
    use crate::client::chat;
    use crate::protocol::{ErrorCode, UserRef};
    use leptos::prelude::*;

    fn states(live: &Live) -> Vec<chat::LineState> {
        live.chat
            .lines(DEFAULT_ROOM)
            .get_untracked()
            .into_iter()
            .map(|line| line.state)
            .collect()
    }

    #[test]
    fn rate_limited_keeps_the_message_queued_and_pending_other_errors_fail_it() {
        let owner = Owner::new();
        owner.set();
        let live = signed_in();
        live.chat.say("one", "c-1".into());
        live.chat.say("two", "c-2".into());
        assert_eq!(live.connection.outbox_due(0.0).send.len(), 2);
        live.refused(&error(ErrorCode::RateLimited, "c-1"), 10.0);
        assert_eq!(
            states(&live),
            [chat::LineState::Pending, chat::LineState::Pending]
        );
        live.refused(&error(ErrorCode::TooLarge, "c-2"), 20.0);
        assert_eq!(
            states(&live),
            [
                chat::LineState::Pending,
                chat::LineState::Failed("m".into())
            ]
        );
        let again = live.connection.outbox_due(10_000.0).send;
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].id.as_deref(),
            Some("c-1"),
            "sent again, not failed"
        );
    }

    #[test]
    fn signing_out_drops_the_outbox_and_its_pending_lines() {
        let owner = Owner::new();
        owner.set();
        let live = signed_in();
        live.chat.say("queued while offline", "c-1".into());
        live.signed_out();
        assert!(live.chat.lines(DEFAULT_ROOM).get_untracked().is_empty());
        assert!(
            live.connection.outbox_due(0.0).send.is_empty(),
            "nothing is sent as anyone"
        );
        // A welcome as someone else starts an empty outbox too.
        let live = signed_in();
        live.chat.say("mine", "c-2".into());
        live.welcomed(UserRef {
            id: "guest:bob".into(),
            name: "bob".into(),
        });
        assert!(
            live.connection.outbox_due(0.0).send.is_empty(),
            "ann's message is not bob's"
        );
    }

    /// Saying more than the outbox holds fails the oldest line, and the
    /// chat feature (whose lines they are) says so: the action writes its
    /// own feature's state, never the connection's signals.
    #[test]
    fn a_full_outbox_fails_the_oldest_line_and_the_chat_panel_says_so() {
        use crate::client::outbox::OUTBOX_CAPACITY;
        let owner = Owner::new();
        owner.set();
        let live = signed_in();
        for n in 0..=OUTBOX_CAPACITY {
            live.chat.say("queued while offline", format!("c-{n}"));
        }
        assert_eq!(
            states(&live)[0],
            chat::LineState::Failed("dropped: too many messages waiting".into())
        );
        assert!(live
            .chat
            .outbox_warning
            .get_untracked()
            .is_some_and(|warning| warning.contains("the oldest was dropped")));
    }
}
