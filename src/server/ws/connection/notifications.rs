//! `mark_read` (extension): a user marks notifications of their own channel
//! read; persisted, then acked with the channel's latest offset.

use super::Connection;
use crate::protocol::{Ack, Channel, ErrorBody, ErrorCode, MarkRead, ServerMessage};

impl Connection {
    pub(super) async fn mark_read(&mut self, read: MarkRead, id: Option<String>) {
        let Some(user) = self.user.clone() else {
            let body = ErrorBody::new(
                ErrorCode::Unauthorized,
                "mark_read: only identified users have notifications",
            );
            return self.send_error(body.with_id(id));
        };
        let channel = Channel::User(user.id.clone());
        let (hub, store) = (self.context.hub.clone(), self.context.store.clone());
        let in_memory = channel.clone();
        let done = self
            .wait(async move {
                store
                    .mark_read(user.id, read.notification_ids, move |_, unread| {
                        hub.inbox_read(&in_memory, unread)
                    })
                    .await
            })
            .await;
        match done {
            Ok(_) => {
                let offset = self.context.hub.latest(&channel);
                let id = id.unwrap_or_default();
                self.send(ServerMessage::Ack(Ack::stored(id, channel, offset)));
            }
            Err(err) => {
                tracing::error!(%err, "cannot mark notifications read");
                let body = ErrorBody::new(ErrorCode::Internal, "mark_read: not saved; try again");
                self.send_error(body.with_id(id));
            }
        }
    }
}
