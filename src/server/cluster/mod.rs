//! Owns running several Pulse instances as one, through Redis (`--redis`):
//! chat rooms, users' notification channels, documents, tickers and
//! presence. What one instance commits or publishes reaches every
//! instance's subscribers in offset order, and an instance that missed
//! something (it was not listening yet, or Redis was away) fills it in from
//! the shared store (or, for tickers and presence, Redis's history). The market simulator runs on
//! one instance at a time, and one instance at a time decides who is
//! online.
//!
//! `relay.rs` is the link: one task publishes what this instance committed,
//! one listens to the channels this instance holds and delivers to its hub.
//! `presence.rs` reports this instance's connections and, on the leader,
//! decides who is online. `lease.rs` decides which instance does each
//! once-per-cluster job.

mod keys;
mod lease;
mod presence;
mod relay;

use std::time::Duration;

pub use keys::Keys;
pub use lease::Lease;

use crate::server::hub::Hub;
use crate::server::metrics::Metrics;
use crate::server::store::Store;

/// Why the cluster link could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("Redis (--redis): {0}")]
    Redis(#[from] redis::RedisError),
}

/// Connects to Redis at `url`, routes the hub's relayed channels and its
/// presence through it, and starts competing for the leases; returns the
/// simulator's lease. Fails when Redis cannot be reached at start; later
/// outages are ridden out. `grace` is presence's grace period (used while
/// this instance leads presence). `instance` names this process (its hash of
/// connections, its leases).
pub async fn start(
    url: &str,
    hub: Hub,
    store: Store,
    grace: Duration,
    instance: &str,
    prefix: &str,
    metrics: &Metrics,
) -> Result<Lease, RelayError> {
    let keys = Keys::new(prefix);
    let client = redis::Client::open(url)?;
    let publisher = client.get_connection_manager().await?;
    let instance = instance.to_owned();
    let (report, reported) = tokio::sync::mpsc::unbounded_channel();
    hub.share_presence(report);
    // The presence channel exists from the start: the relay keeps it.
    let _ = hub.presence_users();
    relay::start(
        client.clone(),
        publisher.clone(),
        hub.clone(),
        store,
        instance.clone(),
        keys.clone(),
    );
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
