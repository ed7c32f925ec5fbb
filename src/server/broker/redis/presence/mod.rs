//! Owns who is online across instances. Each instance writes its own
//! identified connections to Redis (a hash per instance, refreshed by a
//! heartbeat, so an instance that dies takes its connections with it when
//! the hash expires); one instance at a time, the holder of the lease
//! `pulse:presence:leader`, reads them all, decides with the same rules as
//! one instance (tabs collapse, away, the grace, the coalescing window:
//! `hub/presence.rs`) and publishes one stream of diffs with the cluster's
//! offsets. Every instance follows that stream (`listen.rs`).
//!
//! The leader is level-triggered: an event only names the instance whose
//! hash changed, and the leader reads that hash again, so an event lost
//! (Redis away, a new leader) costs nothing but the next heartbeat's read.
//!
//! `report.rs` is every instance's side (its own connections into its
//! hash); `leader.rs` the lease holder's loop (reading the hashes, deciding
//! with one `Presence`); `stream.rs` how the leader publishes what it
//! decided (the Lua that numbers, records and publishes each diff, and
//! starts a new epoch).

use std::time::Duration;

mod leader;
mod report;
mod stream;

pub(super) use leader::lead;
pub(super) use report::report;

/// How often an instance refreshes its hash, and the leader reads them all.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Every how many heartbeats an instance writes its hash whole.
const REWRITE_EVERY: u32 = 10;
/// How long a user a new leader (or a new epoch) takes over stays listed
/// without a connection read: instances that lost Redis too take a few
/// reconnection attempts to write their hashes again.
const SEED_STAY: Duration = Duration::from_secs(6);
/// How long an instance's hash outlives its last heartbeat.
const EXPIRY: Duration = Duration::from_secs(3);

/// One identified connection, as its instance reports it (its form in
/// Redis is `protocol::relay`'s).
type Conn = crate::protocol::relay::PresenceEntry;
