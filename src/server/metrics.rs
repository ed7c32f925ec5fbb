//! Owns the server's counters and their Prometheus text rendering at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters updated by connections; read by `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub ticks_published: AtomicU64,
    /// Ticks replaced by a newer one before a slow reader got them.
    pub ticks_conflated: AtomicU64,
    /// Connections closed with 4008 (slow consumer).
    pub slow_consumers: AtomicU64,
    /// Upgrades answered 1013 (the cap or an upgrade rate).
    pub upgrades_refused: AtomicU64,
    /// Client messages answered `rate_limited`.
    pub rate_limited: AtomicU64,
    /// Channels the hub holds in memory now (kept by the hub).
    pub hub_channels: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let rows = [
            (
                "pulse_connections_open",
                "gauge",
                "WebSocket connections open now",
                &self.connections_open,
            ),
            (
                "pulse_connections_total",
                "counter",
                "WebSocket connections accepted",
                &self.connections_total,
            ),
            (
                "pulse_messages_in_total",
                "counter",
                "client messages received",
                &self.messages_in,
            ),
            (
                "pulse_messages_out_total",
                "counter",
                "server messages sent",
                &self.messages_out,
            ),
            (
                "pulse_protocol_errors_total",
                "counter",
                "error messages sent to clients",
                &self.protocol_errors,
            ),
            (
                "pulse_ticks_published_total",
                "counter",
                "ticks published on ticker channels",
                &self.ticks_published,
            ),
            (
                "pulse_ticks_conflated_total",
                "counter",
                "ticks dropped for a slow reader because a newer one replaced them",
                &self.ticks_conflated,
            ),
            (
                "pulse_slow_consumers_total",
                "counter",
                "connections closed with 4008 (slow consumer)",
                &self.slow_consumers,
            ),
            (
                "pulse_upgrades_refused_total",
                "counter",
                "WebSocket upgrades closed with 1013 (connection cap, upgrade rate or busy)",
                &self.upgrades_refused,
            ),
            (
                "pulse_rate_limited_total",
                "counter",
                "client messages answered rate_limited",
                &self.rate_limited,
            ),
            (
                "pulse_hub_channels",
                "gauge",
                "channels held in memory by the hub",
                &self.hub_channels,
            ),
        ];
        for (name, kind, help, value) in rows {
            row(&mut out, name, kind, help, value.load(Relaxed));
        }
        out
    }
}

/// Appends the store's commit counter, which the store's writer thread
/// keeps itself: writes minus commits is what group commit saved in fsyncs.
pub fn render_store_commits(out: &mut String, commits: u64) {
    let help = "transactions the store's writer committed (one fsync each)";
    row(out, "pulse_store_commits_total", "counter", help, commits);
}

/// Appends the adaptive upgrade pace (`ws/pace.rs`): the rate allowed now
/// and the smoothed scheduling lag it is decided from.
pub fn render_pace(out: &mut String, rate: f64, lag: std::time::Duration) {
    let rows = [
        (
            "pulse_upgrade_rate",
            "WebSocket upgrades per second the adaptive pace allows now",
            rate,
        ),
        (
            "pulse_scheduling_lag_seconds",
            "how late the runtime runs a task that is ready (smoothed)",
            lag.as_secs_f64(),
        ),
    ];
    for (name, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
}

/// Appends the store's count of documents read back whole (each one a
/// rebuild of the document from its stored state and log).
pub fn render_doc_loads(out: &mut String, loads: u64) {
    let help = "documents loaded whole from the store (each one rebuilt from its state and log)";
    row(out, "pulse_doc_loads_total", "counter", help, loads);
}

fn row(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}
