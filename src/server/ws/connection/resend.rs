//! What `chat_send` and `doc_update` share: both need an identified sender
//! and an envelope id (their idempotency key), and both ack a resend of
//! something already stored even when the sender is over its rate limit
//! (PROTOCOL 1.1 Limits: a resend is recognised before it is rate-limited).

use super::Connection;
use crate::protocol::{Ack, ErrorBody, ErrorCode, ServerMessage, UserRef};

impl Connection {
    /// The sender and the envelope id of a stored message `kind`, or the
    /// error to answer (`unauthorized`, `invalid`).
    pub(super) fn author(
        &self,
        kind: &str,
        id: &Option<String>,
    ) -> Result<(UserRef, String), ErrorBody> {
        let Some(user) = self.user.clone() else {
            let message =
                format!("{kind}: only identified users may send it; send hello with a token");
            return Err(ErrorBody::new(ErrorCode::Unauthorized, message).with_id(id.clone()));
        };
        let Some(client_id) = id.clone() else {
            let message = format!("id: {kind} needs an envelope id (its idempotency key)");
            return Err(ErrorBody::new(ErrorCode::Invalid, message));
        };
        Ok((user, client_id))
    }

    /// Over the rate limit: acks `client_id` again if `user` already stored
    /// it, else answers `rate_limited` with `message`.
    pub(super) async fn resend_or_limited(
        &mut self,
        user: &UserRef,
        client_id: String,
        message: String,
    ) {
        let store = self.context.store.clone();
        let user_id = user.id.clone();
        let resent = client_id.clone();
        let stored = self
            .wait(async move { store.sent(user_id, resent).await })
            .await;
        if let Ok(Some((channel, offset))) = stored {
            return self.send(ServerMessage::Ack(Ack::stored(client_id, channel, offset)));
        }
        self.context.metrics.rate_limited.inc();
        let body = ErrorBody::new(ErrorCode::RateLimited, message).with_id(Some(client_id));
        self.send_error(body);
    }
}
