//! Owns [`Registration`]: what one connection registered outside itself (hub
//! subscriptions, the `admin` channel, its presence, its place in the admin
//! census, the open-connections gauge) and the promise to
//! release it exactly once, however the connection's task ends: a return, an
//! error, a panic or an abort (mini-redis' `DbDropGuard` habit).

use prometheus_client::metrics::gauge::Gauge;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::protocol::{Channel, CloseCode, UserRef};
use crate::server::admin::Admin;
use crate::server::hub::{Hub, SubscriberId};
use crate::server::metrics::Metrics;
use crate::server::ws::outbox::Outbox;

/// A connection's footprint in the server; released on drop at the latest.
pub struct Registration {
    hub: Hub,
    metrics: Arc<Metrics>,
    /// This connection's gauge in `pulse_connections_by_transport`.
    transport: Gauge,
    /// The connection's queue: closed on release so its writer task ends too.
    outbox: Arc<Outbox>,
    pub subscriber: SubscriberId,
    /// The channels the hub delivers to this connection.
    pub subscriptions: BTreeSet<Channel>,
    /// The user whose presence this connection counts in, once identified.
    present_as: Option<String>,
    /// The census this connection counts in, and the `admin` channel.
    admin: Admin,
    /// Whether the connection subscribes to `admin`.
    pub watches_admin: bool,
    released: bool,
}

impl Registration {
    /// Registers a new connection: counted in `pulse_connections_open` (and
    /// by transport, `tls` or not) until this is dropped.
    pub fn new(
        hub: Hub,
        metrics: Arc<Metrics>,
        outbox: Arc<Outbox>,
        (subscriber, connection_id): (SubscriberId, &str),
        admin: Admin,
        transport: Gauge,
    ) -> Self {
        admin.census().opened(subscriber, connection_id, &outbox);
        metrics.connections_open.inc();
        transport.inc();
        metrics.connections_total.inc();
        Registration {
            hub,
            metrics,
            transport,
            outbox,
            subscriber,
            subscriptions: BTreeSet::new(),
            present_as: None,
            admin,
            watches_admin: false,
            released: false,
        }
    }

    /// Notes a channel the hub now delivers to this connection (counted in
    /// `pulse_subscriptions{kind}`).
    pub fn subscribed(&mut self, channel: Channel) {
        let gauge = self.metrics.subscriptions(&channel);
        if !self.subscriptions.contains(&channel) {
            gauge.inc();
            self.admin.census().subscribed(&channel);
            self.subscriptions.insert(channel);
        }
    }

    /// Notes a channel no longer delivered to this connection.
    pub fn unsubscribed(&mut self, channel: &Channel) {
        if self.subscriptions.remove(channel) {
            self.metrics.subscriptions(channel).dec();
            self.admin.census().unsubscribed(channel);
        }
    }

    /// Counts this connection in `user`'s presence.
    pub fn join_presence(&mut self, user: &UserRef) {
        self.hub.presence_connect(user, self.subscriber);
        self.admin.census().signed_in(self.subscriber, &user.id);
        self.present_as = Some(user.id.clone());
    }

    /// Leaves every channel and presence (the user leaves after the grace
    /// unless another connection of theirs remains). Idempotent.
    pub fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        for channel in std::mem::take(&mut self.subscriptions) {
            self.metrics.subscriptions(&channel).dec();
            self.admin.census().unsubscribed(&channel);
            self.hub.unsubscribe(self.subscriber, &channel);
        }
        if std::mem::take(&mut self.watches_admin) {
            self.admin.unsubscribe(self.subscriber);
        }
        if let Some(user_id) = self.present_as.take() {
            self.hub.presence_disconnect(&user_id, self.subscriber);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.released {
            // The task ended without its orderly goodbye (a panic or an
            // abort): say 1011 to the peer if the writer is still there.
            self.release();
            self.outbox
                .close_now(CloseCode::Internal.code(), "internal error");
        }
        self.admin.census().closed(self.subscriber);
        self.metrics.connections_open.dec();
        self.transport.dec();
    }
}
