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
                "pulse_hub_channels",
                "gauge",
                "channels held in memory by the hub",
                &self.hub_channels,
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Relaxed)
            );
        }
        out
    }
}
