//! `chat_send` and `history` (extension): validating a message, the rate
//! limit (after the resend check), storing it with its mentions in one
//! transaction, the ack after the commit, and older pages from disk.

use tokio::time::Instant;

use super::Connection;
use crate::protocol::{
    Ack, Channel, ChatSend, ErrorBody, ErrorCode, HistoryPage, HistoryRequest, ServerMessage,
};
use crate::server::frames;
use crate::server::store::{mentions, Appended, ChatDraft};

/// The longest chat message, in characters after trimming.
pub const MAX_CHAT_CHARS: usize = 2000;

/// Messages in a `history` page unless the client asks for fewer or more.
const HISTORY_PAGE: u32 = 50;
/// The most messages one `history` page holds.
const MAX_HISTORY_PAGE: u32 = 100;

impl Connection {
    /// Validated, stored (exactly once per envelope id), then acknowledged
    /// to the sender and published to the room in commit order (the sender
    /// gets its `ack` before its own copy).
    pub(super) async fn chat_send(&mut self, send: ChatSend, id: Option<String>) {
        let fail = |code, message: &str| ErrorBody::new(code, message).with_id(id.clone());
        let (user, client_id) = match self.author("chat_send", &id) {
            Ok(author) => author,
            Err(body) => return self.send_error(body),
        };
        if let Err(err) = Channel::chat(&send.room) {
            return self.send_error(fail(ErrorCode::Invalid, &format!("room: {err}")));
        }
        let text = send.text.trim();
        if text.is_empty() {
            return self.send_error(fail(ErrorCode::Invalid, "text: must not be empty"));
        }
        if text.chars().count() > MAX_CHAT_CHARS {
            return self.send_error(fail(ErrorCode::TooLarge, "text: at most 2000 characters"));
        }
        // Neither database should get what only one of them can store.
        if text.contains('\0') {
            return self.send_error(fail(
                ErrorCode::Invalid,
                "text: must not contain U+0000 (NUL)",
            ));
        }
        let store = self.context.store.clone();
        if !self.chat_bucket.try_take(Instant::now().into_std()) {
            let message = format!(
                "chat_send: at most {} messages per second; wait a moment",
                self.context.config.chat_rate
            );
            return self.resend_or_limited(&user, client_id, message).await;
        }
        let (hub, outbox) = (self.context.hub.clone(), self.outbox.clone());
        let acked = client_id.clone();
        // The message and its mentions' notifications are one transaction.
        let draft = ChatDraft {
            room: send.room,
            user,
            client_id: client_id.clone(),
            text: text.to_owned(),
            sent_at: frames::now(),
            mentioned: mentions(text),
        };
        let stored = self
            .wait(async move {
                store
                    .append_chat(draft, move |appended, notified| {
                        if let Appended::New(message) = appended {
                            // The sender hears its ack before its own copy,
                            // so a page can turn its pending line into the
                            // message in place instead of showing it twice.
                            let ack = Ack::stored(acked, message.channel.clone(), message.offset);
                            let _ = outbox.push(frames::encode(ServerMessage::Ack(ack)));
                            hub.publish_chat(message);
                        }
                        for notification in notified {
                            hub.publish_notification(notification);
                        }
                    })
                    .await
            })
            .await;
        match stored {
            // Acked at the commit, above.
            Ok(Appended::New(_)) => {}
            Ok(appended) => {
                let (channel, offset) = appended.channel_offset();
                // Its first send was stored; if its instance died before
                // publishing it, every instance now catches up.
                self.context.hub.stored_head(channel, offset);
                let ack = Ack::stored(client_id, channel.clone(), offset);
                self.send(ServerMessage::Ack(ack));
            }
            Err(err) => {
                tracing::error!(%err, "cannot store a chat message");
                self.send_error(fail(
                    ErrorCode::Internal,
                    "chat_send: the message could not be stored; send it again",
                ));
            }
        }
    }

    /// Older messages of a chat channel, from disk (a read: it never waits
    /// for the writer).
    pub(super) async fn history(&mut self, request: HistoryRequest, id: Option<String>) {
        let channel = match request.channel.parse::<Channel>() {
            Ok(channel @ Channel::Chat(_)) => channel,
            _ => {
                let body = ErrorBody::new(
                    ErrorCode::Invalid,
                    "channel: history is kept for chat: channels",
                );
                return self.send_error(body.with_id(id).with_channel(request.channel));
            }
        };
        if let Err(body) = self.may_subscribe(&channel) {
            return self.send_error(body.with_id(id).with_channel(request.channel));
        }
        let limit = request
            .limit
            .unwrap_or(HISTORY_PAGE)
            .clamp(1, MAX_HISTORY_PAGE) as usize;
        let store = self.context.store.clone();
        let (name, before) = (channel.to_string(), request.before);
        let page = self
            .wait(async move { store.chat_before(name, before, limit).await })
            .await;
        match page {
            Ok(messages) => self.send(ServerMessage::History(HistoryPage { channel, messages })),
            Err(err) => {
                tracing::error!(%err, "cannot read chat history");
                let body =
                    ErrorBody::new(ErrorCode::Internal, "history: could not be read; try again");
                self.send_error(body.with_id(id));
            }
        }
    }
}
