//! Owns the `chat:` channel kind in the hub: a room's window of its newest
//! messages (the rest is in the store), installing a room loaded from the
//! store, publishing what this instance committed, and delivering in offset
//! order what the broker brings from the other instances.

use axum::extract::ws::Utf8Bytes;

use super::deliver::{placement, Delivery};
use super::{frames, lock, History, Hub, Ring, CHAT_HISTORY};
use crate::protocol::{Channel, ChatMessage, ServerMessage};
use crate::server::broker::{Gap, Held, Publication};
use crate::server::store::StoredChat;

/// A chat room: persisted, so its epoch comes from the database and only
/// the newest messages are kept here.
pub(super) struct ChatHistory {
    pub(super) epoch: String,
    pub(super) ring: Ring<(ChatMessage, Utf8Bytes)>,
}

impl Hub {
    /// Installs a chat room loaded from the store, unless another task
    /// installed it meanwhile (then the one in memory is newer).
    ///
    /// A room with no message yet is not on disk; the store hands out the
    /// epoch its first message will store, so a client that joined it empty
    /// resumes with a replay, in this process and after a restart.
    pub fn install_chat(&self, channel: &Channel, stored: StoredChat) {
        if self.has(channel) {
            return;
        }
        let base = stored.latest - stored.recent.len() as u64;
        let mut ring = Ring::after_offset(CHAT_HISTORY, base);
        for message in stored.recent {
            let frame = frames::encode(ServerMessage::Chat(message.clone()));
            ring.push((message, frame));
        }
        let history = History::Chat(ChatHistory {
            epoch: stored.epoch,
            ring,
        });
        self.install(channel, history);
    }

    /// Publishes a chat message just committed to the store (called in commit
    /// order, so offsets arrive in order): kept in memory and queued for this
    /// hub's subscribers at once, then handed to the broker for the other
    /// instances. Never dropped: a subscriber too far behind gets 4008.
    pub fn publish_chat(&self, message: &ChatMessage) {
        // A gap here means other instances' messages are on their way (the
        // broker fills it and delivers this one after), or a commit this
        // instance did not publish (its answer was lost): then the room
        // goes on from this message rather than stop.
        if let Delivery::Gap { .. } = self.deliver_chat(message) {
            if let Gap::Restart(_) = self.broker().gap(Held::Chat(message.clone())) {
                self.deliver_chat_after_gap(message);
            }
        }
        self.broker().publish(Publication::Chat(message.clone()));
    }

    /// Delivers a chat message to this hub's subscribers if it is the next
    /// offset of its room.
    pub fn deliver_chat(&self, message: &ChatMessage) -> Delivery {
        self.deliver_chat_with(message, false)
    }

    /// Delivers a chat message after a gap the store could not fill (more
    /// was missed than a room keeps): the room's history starts again at it,
    /// so a resume from before it is answered with a snapshot.
    pub fn deliver_chat_after_gap(&self, message: &ChatMessage) -> Delivery {
        self.deliver_chat_with(message, true)
    }

    fn deliver_chat_with(&self, message: &ChatMessage, restart: bool) -> Delivery {
        let Ok(channel) = Channel::chat(&message.room) else {
            return Delivery::NotHeld;
        };
        let Some(state) = lock(&self.inner.channels).get(&channel).cloned() else {
            return Delivery::NotHeld;
        };
        let mut state = lock(&state);
        let state = &mut *state;
        let History::Chat(history) = &mut state.history else {
            return Delivery::NotHeld;
        };
        let latest = history.ring.latest();
        let starts_again = match placement(latest, message.offset, restart) {
            Ok(starts_again) => starts_again,
            Err(delivery) => return delivery,
        };
        if starts_again {
            tracing::warn!(channel = %state.name, from = latest, to = message.offset, "chat history restarted after a gap");
            *history = ChatHistory {
                epoch: history.epoch.clone(),
                ring: Ring::after_offset(CHAT_HISTORY, message.offset - 1),
            };
        }
        let frame = frames::encode(ServerMessage::Chat(message.clone()));
        history.ring.push((message.clone(), frame.clone()));
        for outbox in state.subscribers.values() {
            let _ = outbox.deliver(frame.clone());
        }
        Delivery::Delivered
    }
}
