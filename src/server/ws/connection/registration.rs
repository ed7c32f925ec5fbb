//! Owns [`Registration`]: what one connection registered outside itself (hub
//! subscriptions, its presence, the open-connections gauge) and the promise to
//! release it exactly once, however the connection's task ends: a return, an
//! error, a panic or an abort (mini-redis' `DbDropGuard` habit).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::protocol::{Channel, CloseCode, UserRef};
use crate::server::hub::{Hub, SubscriberId};
use crate::server::metrics::Metrics;
use crate::server::ws::outbox::Outbox;

use super::Transport;

/// A connection's footprint in the server; released on drop at the latest.
pub struct Registration {
    hub: Hub,
    metrics: Arc<Metrics>,
    /// Which `pulse_connections_by_transport` gauge counts this connection.
    transport: Transport,
    /// The connection's queue: closed on release so its writer task ends too.
    outbox: Arc<Outbox>,
    pub subscriber: SubscriberId,
    /// The channels the hub delivers to this connection.
    pub subscriptions: BTreeSet<Channel>,
    /// The user whose presence this connection counts in, once identified.
    present_as: Option<String>,
    released: bool,
}

impl Registration {
    /// Registers a new connection: counted in `pulse_connections_open` until
    /// this is dropped.
    pub fn new(
        hub: Hub,
        metrics: Arc<Metrics>,
        outbox: Arc<Outbox>,
        subscriber: SubscriberId,
        transport: Transport,
    ) -> Self {
        metrics.connections_open.inc();
        transport.gauge(&metrics).inc();
        metrics.connections_total.inc();
        Registration {
            hub,
            metrics,
            transport,
            outbox,
            subscriber,
            subscriptions: BTreeSet::new(),
            present_as: None,
            released: false,
        }
    }

    /// Notes a channel the hub now delivers to this connection (counted in
    /// `pulse_subscriptions{kind}`).
    pub fn subscribed(&mut self, channel: Channel) {
        let gauge = self.metrics.subscriptions(&channel);
        if self.subscriptions.insert(channel) {
            gauge.inc();
        }
    }

    /// Notes a channel no longer delivered to this connection.
    pub fn unsubscribed(&mut self, channel: &Channel) {
        if self.subscriptions.remove(channel) {
            self.metrics.subscriptions(channel).dec();
        }
    }

    /// Counts this connection in `user`'s presence.
    pub fn join_presence(&mut self, user: &UserRef) {
        self.hub.presence_connect(user, self.subscriber);
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
            self.hub.unsubscribe(self.subscriber, &channel);
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
        self.metrics.connections_open.dec();
        self.transport.gauge(&self.metrics).dec();
    }
}
