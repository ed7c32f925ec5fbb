//! Owns the `admin` channel's wire shapes (docs/EXTENSIONS.md, "The admin
//! channel"): the snapshot an operator's page receives once a second, for
//! this instance and, with several instances, for each and the total.

use serde::{Deserialize, Serialize};

/// The name of the admin channel (not a [`super::Channel`]: the hub never
/// holds it; the connection answers it from the server's own numbers).
pub const ADMIN_CHANNEL: &str = "admin";

/// How many points [`InstanceStats::history`] holds: one per
/// [`HISTORY_STEP_SECS`], ten minutes in all.
pub const HISTORY_POINTS: usize = 60;

/// Seconds between two points of [`InstanceStats::history`].
pub const HISTORY_STEP_SECS: u64 = 10;

/// How many rows each "top" list carries (slowest consumers, channels).
pub const TOP_ROWS: usize = 5;

/// `admin` (extension): the whole picture, once a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminSnapshot {
    /// Always [`ADMIN_CHANNEL`].
    pub channel: String,
    /// When this instance took it, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The instance that sent it.
    pub instance: String,
    /// Every instance heard from in the last few seconds, this one first.
    pub instances: Vec<InstanceStats>,
    /// The sums over `instances` (latencies: the worst instance's).
    pub total: Totals,
}

/// One instance's numbers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InstanceStats {
    pub instance: String,
    /// When it was taken, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// WebSocket connections open now (`pulse_connections_open`).
    pub connections: u64,
    /// The most connections open in each [`HISTORY_STEP_SECS`] of the last
    /// ten minutes, oldest first (fewer points after a recent start).
    pub history: Vec<u64>,
    /// `pulse_messages_in_total` and `pulse_messages_out_total` now.
    pub messages_in: u64,
    pub messages_out: u64,
    /// Messages per second over the last second.
    pub in_per_second: f64,
    pub out_per_second: f64,
    /// Delivery latency (queued to written) over the last ten seconds, in
    /// milliseconds; `None` when nothing was delivered.
    pub delivery_p50_ms: Option<f64>,
    pub delivery_p99_ms: Option<f64>,
    /// The store's commit time over the last ten seconds, in milliseconds.
    pub commit_p50_ms: Option<f64>,
    pub commit_p99_ms: Option<f64>,
    /// The connections with the largest outbox backlog, largest first.
    pub slowest: Vec<Consumer>,
    /// Channels by subscribers here, most first.
    pub top_by_subscribers: Vec<ChannelRow>,
    /// Channels by messages per second, fastest first.
    pub top_by_rate: Vec<ChannelRow>,
    /// Error messages sent, by code, since the start.
    pub errors: Vec<CodeCount>,
    /// Connections ended, by close code, since the start.
    pub closes: Vec<CodeCount>,
    /// The leases this instance holds (with `--redis`): `simulator`, `presence`.
    pub leases: Vec<String>,
    /// Its relay towards Redis now; `None` (JSON `null`) without `--redis`.
    pub relay: Option<RelayStats>,
    /// Its open connections by transport (`pulse_connections_by_transport`).
    /// Defaulted so an older instance's numbers (read back from Redis) still
    /// decode.
    #[serde(default)]
    pub by_transport: ByTransport,
    /// Redis's round-trip time (a `PING` on the snapshot's tick), in
    /// milliseconds; `None` without `--redis` or when Redis did not answer.
    #[serde(default)]
    pub redis_rtt_ms: Option<f64>,
    /// PostgreSQL's round-trip time (a `SELECT 1` on the snapshot's tick),
    /// in milliseconds; `None` with SQLite or when it did not answer.
    #[serde(default)]
    pub postgres_rtt_ms: Option<f64>,
}

/// Connections open now by transport and whether TLS ended in Pulse.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ByTransport {
    pub websocket: u64,
    pub websocket_tls: u64,
    /// The HTTP fallback (`/sse`).
    pub sse: u64,
    pub sse_tls: u64,
}

/// One instance's relay towards Redis (`pulse_relay_*` in `/metrics`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RelayStats {
    /// Messages waiting for Redis now, by kind.
    pub depth: RelayDepth,
    /// How long the oldest never-dropped message has waited, in seconds.
    pub lag_seconds: f64,
    /// Messages past the queue's bound since the start (their channel was
    /// caught up from the store instead).
    pub behind: u64,
}

/// `pulse_relay_queue_depth` by `kind`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RelayDepth {
    /// Never-dropped messages (chat, notifications, documents, presence).
    pub ordered: u64,
    /// Ticker channels with a tick waiting (the latest each).
    pub ticks: u64,
    /// Awareness frames (carets, selections).
    pub awareness: u64,
}

/// A connection with queued frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    pub connection_id: String,
    /// The signed-in user, if any.
    pub user: Option<String>,
    pub queued_frames: u64,
    pub queued_bytes: u64,
}

/// One channel's row in a "top" list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelRow {
    pub channel: String,
    pub subscribers: u64,
    pub per_second: f64,
}

/// A count by protocol code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeCount {
    pub code: String,
    pub count: u64,
}

/// The cluster's sums.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub connections: u64,
    pub history: Vec<u64>,
    pub in_per_second: f64,
    pub out_per_second: f64,
    pub delivery_p50_ms: Option<f64>,
    pub delivery_p99_ms: Option<f64>,
    pub errors: Vec<CodeCount>,
    pub closes: Vec<CodeCount>,
    /// The relays summed (depths and messages behind added up, the worst
    /// lag); `None` when no instance has one.
    #[serde(default)]
    pub relay: Option<RelayStats>,
    /// The worst instance's round-trip times.
    #[serde(default)]
    pub redis_rtt_ms: Option<f64>,
    #[serde(default)]
    pub postgres_rtt_ms: Option<f64>,
}

impl Totals {
    /// Sums `instances` (histories aligned on their newest point; latencies
    /// the worst instance's, since percentiles do not add up).
    pub fn of(instances: &[InstanceStats]) -> Totals {
        let mut total = Totals::default();
        let longest = instances.iter().map(|i| i.history.len()).max().unwrap_or(0);
        total.history = vec![0; longest];
        for stats in instances {
            total.connections += stats.connections;
            total.in_per_second += stats.in_per_second;
            total.out_per_second += stats.out_per_second;
            total.delivery_p50_ms = worst(total.delivery_p50_ms, stats.delivery_p50_ms);
            total.delivery_p99_ms = worst(total.delivery_p99_ms, stats.delivery_p99_ms);
            let offset = longest - stats.history.len();
            for (slot, value) in total.history[offset..].iter_mut().zip(&stats.history) {
                *slot += value;
            }
            add_counts(&mut total.errors, &stats.errors);
            add_counts(&mut total.closes, &stats.closes);
            total.redis_rtt_ms = worst(total.redis_rtt_ms, stats.redis_rtt_ms);
            total.postgres_rtt_ms = worst(total.postgres_rtt_ms, stats.postgres_rtt_ms);
            if let Some(relay) = &stats.relay {
                let sum = total.relay.get_or_insert_with(RelayStats::default);
                sum.depth.ordered += relay.depth.ordered;
                sum.depth.ticks += relay.depth.ticks;
                sum.depth.awareness += relay.depth.awareness;
                sum.lag_seconds = sum.lag_seconds.max(relay.lag_seconds);
                sum.behind += relay.behind;
            }
        }
        total
    }
}

fn worst(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn add_counts(into: &mut Vec<CodeCount>, from: &[CodeCount]) {
    for row in from {
        match into.iter_mut().find(|known| known.code == row.code) {
            Some(known) => known.count += row.count,
            None => into.push(row.clone()),
        }
    }
    into.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_instances_up_and_keep_the_worst_latency() {
        let one = InstanceStats {
            connections: 2,
            history: vec![1, 2],
            in_per_second: 1.5,
            delivery_p99_ms: Some(3.0),
            errors: vec![CodeCount {
                code: "invalid".into(),
                count: 1,
            }],
            ..Default::default()
        };
        let two = InstanceStats {
            connections: 3,
            history: vec![4, 5, 6],
            in_per_second: 0.5,
            delivery_p99_ms: Some(7.0),
            errors: vec![CodeCount {
                code: "invalid".into(),
                count: 2,
            }],
            ..Default::default()
        };
        let total = Totals::of(&[one, two]);
        assert_eq!(total.connections, 5);
        assert_eq!(total.history, vec![4, 6, 8]);
        assert_eq!(total.in_per_second, 2.0);
        assert_eq!(total.delivery_p99_ms, Some(7.0));
        assert_eq!(total.delivery_p50_ms, None);
        assert_eq!(total.errors[0].count, 3);
        assert_eq!(total.relay, None);
    }

    #[test]
    fn totals_add_relays_up_and_keep_the_worst_lag_and_round_trips() {
        let relay = |ordered, lag_seconds, behind| RelayStats {
            depth: RelayDepth {
                ordered,
                ticks: 1,
                awareness: 0,
            },
            lag_seconds,
            behind,
        };
        let one = InstanceStats {
            relay: Some(relay(2, 0.5, 1)),
            redis_rtt_ms: Some(0.4),
            postgres_rtt_ms: Some(1.5),
            ..Default::default()
        };
        let two = InstanceStats {
            relay: Some(relay(3, 0.25, 4)),
            redis_rtt_ms: Some(0.9),
            postgres_rtt_ms: None,
            ..Default::default()
        };
        let total = Totals::of(&[one, two]);
        assert_eq!(
            total.relay,
            Some(RelayStats {
                depth: RelayDepth {
                    ordered: 5,
                    ticks: 2,
                    awareness: 0,
                },
                lag_seconds: 0.5,
                behind: 5,
            })
        );
        assert_eq!(total.redis_rtt_ms, Some(0.9));
        assert_eq!(total.postgres_rtt_ms, Some(1.5));
    }
}
