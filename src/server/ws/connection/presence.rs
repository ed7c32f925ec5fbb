//! `status`: a connection's presence status (online, or away for a hidden
//! page), rate-limited per connection before the hub broadcasts it.

use tokio::time::Instant;

use super::Connection;
use crate::protocol::{ErrorBody, ErrorCode, StatusUpdate};
use crate::server::ws::rate::STATUS_RATE;

impl Connection {
    /// PROTOCOL 1.1 Limits: at most 2 per second per connection, bursts of 5;
    /// more are answered `rate_limited` and not broadcast.
    pub(super) fn status(&mut self, StatusUpdate { status }: StatusUpdate, id: Option<String>) {
        let Some(user) = &self.user else {
            return self.send_error(
                ErrorBody::new(
                    ErrorCode::Unauthorized,
                    "status: anonymous connections have no presence; send hello with a token",
                )
                .with_id(id),
            );
        };
        if !self.status_bucket.try_take(Instant::now().into_std()) {
            self.context.metrics.rate_limited.inc();
            let message = format!("status: at most {STATUS_RATE} per second; wait a moment");
            return self.send_error(ErrorBody::new(ErrorCode::RateLimited, message).with_id(id));
        }
        self.context
            .hub
            .presence_status(&user.id, self.subscriber, status);
    }
}
