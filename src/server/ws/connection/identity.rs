//! `refresh`: an open connection's token replaced by a newer one of the same
//! user, so the connection outlives its first token (PROTOCOL 1.1); `hello`
//! itself stays with the loop in `mod.rs`.

use super::Connection;
use crate::protocol::{Ack, ErrorBody, ErrorCode, Refresh, ServerMessage};

impl Connection {
    /// A new token for the same user moves the connection's expiry; a bad one
    /// changes nothing (the connection keeps its old token).
    pub(super) fn refresh(&mut self, refresh: Refresh, id: Option<String>) {
        let refused =
            |message: String| ErrorBody::new(ErrorCode::Unauthorized, message).with_id(id.clone());
        let Some(user) = &self.user else {
            return self.send_error(refused(
                "refresh: an anonymous connection has no token to refresh".into(),
            ));
        };
        match self.context.auth.verify_until(&refresh.token) {
            Ok(verified) if verified.user.id == user.id => {
                self.valid_until = Some(verified.valid_until);
                if let Some(id) = id {
                    self.send(ServerMessage::Ack(Ack::bare(id)));
                }
            }
            Ok(_) => self.send_error(refused(
                "refresh: the token is for another user; the connection keeps its own".into(),
            )),
            Err(err) => self.send_error(refused(format!(
                "refresh: {err}; the connection keeps its old token"
            ))),
        }
    }
}
