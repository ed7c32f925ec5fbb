//! Owns the Redis broker (`--redis`): several Pulse instances as one, for
//! chat rooms, users' notification channels, documents, tickers and
//! presence. Each instance delivers what it commits to its own subscribers
//! at once and publishes it for the others; what it hears from the others
//! reaches its subscribers in offset order, and what it missed (it was not
//! listening yet, or Redis was away) is filled in from the shared store
//! (or, for tickers and presence, Redis's history). The market simulator
//! runs on one instance at a time, and one instance at a time decides who
//! is online.
//!
//! One job per file: `keys.rs` names every key under the deployment's
//! prefix; `wire.rs` is the inter-instance format; `publish.rs` sends the
//! queue (`broker/queue.rs`) in pipelines; `listen.rs` holds the pub/sub
//! connection and its subscriptions; `fill.rs` runs each channel's gap
//! fills and loads on a task of its own, and `history.rs` reads tickers'
//! and presence's history from Redis for it; `ticker.rs` holds the tickers'
//! Lua; `presence/` reports this instance's connections (`report.rs`) and,
//! on the leader, decides who is online (`leader.rs`, `stream.rs`); `lease.rs` decides which instance does
//! each once-per-cluster job; `forward.rs` carries fallback POSTs to the
//! instance holding their session, and its answer back.

mod fill;
mod forward;
mod history;
mod keys;
mod lease;
mod listen;
mod presence;
mod publish;
mod ticker;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

pub use keys::Keys;
pub use lease::Lease;

use super::queue::Outgoing;
use super::{Broker, ForwardOutcome, Gap, Held, PostInbox, Publication, Sequencing, TickAnswer};
use crate::protocol::Channel;
use crate::server::hub::{Hub, Quote};
use crate::server::metrics::Metrics;
use crate::server::store::Store;

/// Why the cluster link could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("Redis (--redis): {0}")]
    Redis(#[from] redis::RedisError),
}

/// The hub's handle on the Redis broker: queues only, nothing that waits.
struct RedisBroker {
    /// To the publisher task (`publish.rs`).
    queue: Arc<Outgoing>,
    /// To the listener (`listen.rs`): loads waiting to hear a channel.
    watches: mpsc::Sender<listen::Watch>,
    /// To the listener: channels to hear and catch up, without waiting.
    asks: Arc<listen::Asks>,
    /// To the channel tasks (`fill.rs`).
    worker: fill::Worker,
    /// To the instance holding a fallback session (`forward.rs`).
    forwarder: Arc<forward::Forwarder>,
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl Broker for RedisBroker {
    fn publish(&self, publication: Publication) {
        if let Publication::Head(channel, offset) = &publication {
            // This hub may lack it too (its publisher died before it came).
            self.worker.catch_up_to(channel, *offset);
        }
        self.queue.push(publication);
    }

    fn publish_tick(&self, quote: Quote, answer: Option<TickAnswer>) -> Sequencing {
        self.queue.push_tick(quote, answer);
        Sequencing::Broker
    }

    fn sequences_ticks(&self) -> bool {
        true
    }

    fn share_awareness(&self, channel: &Channel, frame: Utf8Bytes) {
        self.queue.push_awareness(channel, frame);
    }

    fn watch(&self, channel: &Channel) -> BoxFuture<'static, ()> {
        let watches = self.watches.clone();
        let channel = channel.clone();
        async move {
            let (done, listening) = oneshot::channel();
            if watches.send((channel, done)).await.is_ok() {
                // A listener that cannot listen (Redis is down) still
                // answers: the load goes on, and a gap is filled when Redis
                // is back.
                let _ = listening.await;
            }
        }
        .boxed()
    }

    fn loaded(&self, channel: &Channel) {
        self.asks.loaded(channel);
    }

    fn ensure(&self, channel: &Channel) {
        self.asks.ensure(channel);
    }

    fn gap(&self, held: Held) -> Gap {
        let channel = held.channel();
        self.worker.run(&channel, |jobs| jobs.hold(held));
        Gap::Filling
    }

    fn forward(
        &self,
        owner: &str,
        session: &str,
        envelopes: Vec<String>,
    ) -> BoxFuture<'static, ForwardOutcome> {
        self.forwarder.send(owner, session, envelopes)
    }
}

/// Connects to Redis at `url`, makes it the hub's broker and routes the
/// hub's presence through it, and starts competing for the leases; returns
/// the simulator's lease. Fails when Redis cannot be reached at start;
/// later outages are ridden out. `grace` is presence's grace period (used
/// while this instance leads presence). `instance` names this process (its
/// hash of connections, its leases, its forwarding channel); `inbox` takes
/// the fallback POSTs other instances forward to it.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    url: &str,
    hub: Hub,
    store: Store,
    grace: Duration,
    instance: &str,
    prefix: &str,
    metrics: &Metrics,
    inbox: Arc<dyn PostInbox>,
) -> Result<Lease, RelayError> {
    let keys = Keys::new(prefix);
    let client = redis::Client::open(url)?;
    let publisher = client.get_connection_manager().await?;
    let instance = instance.to_owned();
    let (report, reported) = crate::server::hub::presence_reports();
    hub.share_presence(report);
    // The presence channel exists from the start: the broker keeps it.
    let _ = hub.presence_users();

    let gauges = metrics.relay();
    let queue = Arc::new(Outgoing::new(gauges.clone()));
    let worker = fill::Worker::new(
        hub.clone(),
        store,
        publisher.clone(),
        keys.clone(),
        gauges.clone(),
    );
    let asks = Arc::new(listen::Asks::default());
    let (watches, watched) = mpsc::channel(listen::WATCHES);
    let forwarder =
        forward::Forwarder::new(publisher.clone(), keys.clone(), instance.clone(), inbox);
    let listener = listen::Listener::new(
        client.clone(),
        worker.clone(),
        asks.clone(),
        (instance.clone(), forwarder.clone()),
    );
    tokio::spawn(listener.run(watched));
    tokio::spawn(publish::publish(
        publisher.clone(),
        queue.clone(),
        instance.clone(),
        keys.clone(),
        gauges,
    ));
    hub.use_broker(Arc::new(RedisBroker {
        queue,
        watches,
        asks,
        worker,
        forwarder,
    }));

    tokio::spawn(presence::report(
        publisher.clone(),
        (instance.clone(), keys.clone()),
        reported,
    ));
    let leading = Lease::spawn(
        publisher.clone(),
        keys.presence_leader(),
        instance.clone(),
        keys.quotes(),
        metrics.lease(&keys.presence_leader()),
    );
    let lead = presence::lead(
        client,
        publisher.clone(),
        (leading, instance.clone(), keys.clone()),
        grace,
        hub.downgrade(),
    );
    tokio::spawn(lead);
    let simulator = metrics.lease(&keys.simulator());
    Ok(Lease::spawn(
        publisher,
        keys.simulator(),
        instance,
        keys.quotes(),
        simulator,
    ))
}
