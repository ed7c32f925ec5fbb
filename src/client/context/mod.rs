//! The page's state, one context per feature, each provided on its own (a
//! view takes what it uses: `expect_context::<Chat>()`):
//! - [`Connection`] (`connection.rs`): the badge's status, the resume
//!   points, the outbox, and the way to the socket driver;
//! - [`Identity`] (`identity.rs`): the signed-in user and who is online;
//! - [`Watchlist`] (`watchlist.rs`): the symbols and one quote per symbol;
//! - [`Chat`] (`chat.rs`): the rooms and their logs;
//! - [`Notifications`] (`notifications.rs`): unread, the count, the toast;
//! - [`SharedNote`] (`note.rs`, `note/sync.rs`): the note's replica and editing.
//!
//! [`Live`] holds one handle of each for the socket driver: [`Live::apply`]
//! routes each server message to the feature that owns it, and
//! `outbox.rs` is the outbox's life across features. The features do no IO:
//! the login request, cookies, `localStorage` and timers are the driver's,
//! asked for with [`ToDriver`].

mod chat;
mod connection;
mod identity;
mod note;
mod notifications;
mod outbox;
mod watchlist;

pub use chat::{Chat, DEFAULT_ROOM};
pub use connection::{Connection, ConnectionStatus, ToDriver};
pub use identity::Identity;
pub use note::{NoteEditor, SharedNote};
pub use notifications::Notifications;
pub use watchlist::{Watchlist, WatchlistError};

use leptos::prelude::*;

use super::initial::InitialState;
use super::note::NOTE_DOC;
use super::store::Renewal;
use crate::protocol::{Channel, ServerMessage, Subscribed};

/// One handle of each feature (the socket driver's view of the page);
/// cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    pub connection: Connection,
    pub identity: Identity,
    pub watchlist: Watchlist,
    pub chat: Chat,
    pub notifications: Notifications,
    pub note: SharedNote,
}

impl Live {
    /// The features seeded with what the server rendered.
    pub fn new(initial: InitialState) -> Self {
        let connection = Connection::new(initial.user.as_ref());
        let identity = Identity::new(initial.user, connection);
        let chat = Chat::new(connection, identity);
        let live = Live {
            connection,
            identity,
            watchlist: Watchlist::new(initial.watchlist, connection),
            chat,
            notifications: Notifications::new(connection, identity, chat),
            note: SharedNote::new(initial.note.as_ref(), connection, identity),
        };
        let rendered = initial
            .tickers
            .into_iter()
            .chain(initial.presence)
            .chain(initial.chat)
            .chain(initial.inbox);
        for answer in rendered {
            live.apply(ServerMessage::Subscribed(answer));
        }
        live
    }

    /// Applies one server message: the resume points drop what was seen,
    /// and the feature that owns the message takes the rest.
    pub fn apply(&self, message: ServerMessage) {
        let connection = self.connection;
        // A guard that accepts records the offset: a message seen before
        // falls through to `_` and changes nothing.
        match message {
            ServerMessage::Subscribed(answer) => self.subscribed(answer),
            ServerMessage::PresenceDiff(diff) if connection.accept(&diff.channel, diff.offset) => {
                self.identity.changed(&diff);
            }
            ServerMessage::Tick(tick) if connection.accept(&tick.channel, tick.offset) => {
                self.watchlist.tick(&tick);
            }
            ServerMessage::Chat(message) if connection.accept(&message.channel, message.offset) => {
                self.chat.received(&message);
            }
            ServerMessage::Ack(ack) => {
                connection.settle(&ack.id);
                self.chat.acked(&ack);
            }
            ServerMessage::DocUpdate(event)
                if connection.accept(&event.channel, event.offset) && event.doc == NOTE_DOC =>
            {
                self.note.updated(&event);
            }
            ServerMessage::DocAwareness(event) if event.doc == NOTE_DOC => self.note.aware(&event),
            ServerMessage::History(page) => self.chat.older(&page),
            ServerMessage::Notification(notification)
                if connection.accept(&notification.channel, notification.offset) =>
            {
                self.notifications.received(notification);
            }
            _ => {}
        }
    }

    /// A `subscribed`, once the resume points have recorded it.
    fn subscribed(&self, answer: Subscribed) {
        let Some(renewal) = self.connection.subscribed(&answer) else {
            return;
        };
        match (answer.channel.parse(), renewal) {
            (Ok(Channel::Ticker(symbol)), Renewal::Replace(view)) => {
                self.watchlist.quote(&symbol).set(view);
            }
            (Ok(Channel::Chat(room)), renewal) => self.chat.subscribed(&room, renewal, &answer),
            (Ok(Channel::User(_)), Renewal::Replace(_)) => {
                self.notifications.subscribed(answer.snapshot);
            }
            (Ok(Channel::Doc(doc)), renewal) if doc == NOTE_DOC => {
                self.note.subscribed(renewal, &answer);
            }
            (Ok(Channel::Presence), Renewal::Replace(_)) => {
                self.identity.subscribed(answer.snapshot);
            }
            _ => {}
        }
    }
}

/// Creates the features from what the server rendered, provides each as
/// context and, once the page runs in a browser, starts the socket driver.
pub fn provide_live() -> Live {
    // Serialised into the page by the server, read back while hydrating.
    let initial = SharedValue::new(|| {
        use_context::<InitialState>().unwrap_or_else(super::browser::initial_state)
    })
    .into_inner();
    let live = Live::new(initial);
    provide_context(live.connection);
    provide_context(live.identity);
    provide_context(live.watchlist);
    provide_context(live.chat);
    provide_context(live.notifications);
    provide_context(live.note);
    // Effects run only in the browser, after hydration: the server renders
    // the initial state and opens no socket.
    Effect::new(move |started: Option<()>| {
        if started.is_none() {
            super::socket::start(live);
        }
    });
    live
}

/// What the features' tests share.
#[cfg(test)]
mod testing {
    use super::Live;
    use crate::client::InitialState;
    use crate::protocol::{ErrorBody, ErrorCode, UserRef};

    pub fn ann() -> UserRef {
        UserRef {
            id: "guest:ann".into(),
            name: "ann".into(),
        }
    }

    pub fn signed_in() -> Live {
        Live::new(InitialState {
            user: Some(ann()),
            ..InitialState::default()
        })
    }

    pub fn error(code: ErrorCode, id: &str) -> ErrorBody {
        ErrorBody::new(code, "m").with_id(Some(id.to_owned()))
    }
}
