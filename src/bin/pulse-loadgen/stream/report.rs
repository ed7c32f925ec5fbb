//! Owns the stream, idle and abuse runs' report: the clients' outcomes
//! added up, the latency percentiles and timings put beside them, and the
//! two ways of printing it (one JSON line, whose field names `bench/bench.py`
//! reads, or aligned text).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::PoisonError;
use std::time::Duration;

use serde::Serialize;

use super::client::ClientOutcome;
use super::Shared;
use crate::abuse;
use crate::args::{Args, Mode};
use crate::latency::LatencyMs;
use crate::plan::Plan;

/// The outcomes of every client added up.
#[derive(Debug, Default)]
pub struct Tally {
    connected: u64,
    connect_errors: BTreeMap<String, u64>,
    closed_early: BTreeMap<u16, u64>,
    open_at_end: u64,
    subscribed: u64,
    errors: BTreeMap<String, u64>,
    bad_frames: u64,
    ticks: u64,
    /// Connected clients that received at least one Ping.
    pinged: u64,
    /// The fewest Pings a connected client received (`None` before the first).
    min_pings: Option<u64>,
    /// Pings received by every client together.
    pings: u64,
    /// Client tasks that did not finish in time (aborted) or panicked.
    pub unfinished: u64,
}

impl Tally {
    /// Adds one client's outcome.
    pub fn add(&mut self, outcome: ClientOutcome) {
        if let Some(err) = outcome.connect_error {
            *self.connect_errors.entry(err).or_default() += 1;
        }
        if outcome.connected {
            self.connected += 1;
            match outcome.closed_early {
                Some(code) => *self.closed_early.entry(code).or_default() += 1,
                None => self.open_at_end += 1,
            }
            self.pinged += u64::from(outcome.pings > 0);
            self.min_pings = Some(
                self.min_pings
                    .map_or(outcome.pings, |m| m.min(outcome.pings)),
            );
        }
        self.pings += outcome.pings;
        self.subscribed += outcome.subscribed;
        for (code, count) in outcome.errors {
            *self.errors.entry(code.to_owned()).or_default() += count;
        }
        self.bad_frames += outcome.bad_frames;
        self.ticks += outcome.ticks;
    }
}

/// The final report; the text and the JSON forms carry the same fields.
#[derive(Debug, Serialize)]
pub struct Report {
    mode: Mode,
    url: String,
    clients_requested: u64,
    pub connected: u64,
    connect_errors: u64,
    /// Connect errors per message, to tell a refused port from a full fd table.
    connect_error_kinds: BTreeMap<String, u64>,
    closed_early: u64,
    closed_early_by_code: BTreeMap<u16, u64>,
    /// Sockets still open when the run ended (the number idle mode is for).
    open_at_end: u64,
    /// Connected sockets that received (and answered) at least one server Ping.
    pinged: u64,
    /// The fewest Pings one connected socket received; 0 when any got none.
    min_pings: u64,
    /// Pings received by all sockets together.
    pings_received: u64,
    subscriptions_requested: u64,
    subscribed: u64,
    server_errors: u64,
    server_errors_by_code: BTreeMap<String, u64>,
    bad_frames: u64,
    unfinished_clients: u64,
    interrupted: bool,
    ramp_up_secs: f64,
    duration_secs: f64,
    /// Ticks received during the measurement window.
    messages_received: u64,
    messages_per_sec: f64,
    latency_ms: Option<LatencyMs>,
    /// Abuse mode: what the two abusers saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abuse: Option<abuse::AbuseReport>,
}

impl Report {
    /// Puts the tally, the histogram and the timings together.
    pub(super) fn new(
        args: &Args,
        plan: &Plan,
        tally: Tally,
        shared: &Shared,
        ramp_up: Duration,
        window: Duration,
    ) -> Self {
        let histogram = shared
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let window_secs = window.as_secs_f64();
        let subscriptions_requested = if plan.mode.subscribes() {
            tally.connected * plan.per_client as u64
        } else {
            0
        };
        Report {
            mode: plan.mode,
            url: plan.url.clone(),
            clients_requested: args.clients,
            connected: tally.connected,
            connect_errors: tally.connect_errors.values().sum(),
            connect_error_kinds: tally.connect_errors,
            closed_early: tally.closed_early.values().sum(),
            closed_early_by_code: tally.closed_early,
            open_at_end: tally.open_at_end,
            pinged: tally.pinged,
            min_pings: tally.min_pings.unwrap_or(0),
            pings_received: tally.pings,
            subscriptions_requested,
            subscribed: tally.subscribed,
            server_errors: tally.errors.values().sum(),
            server_errors_by_code: tally.errors,
            bad_frames: tally.bad_frames,
            unfinished_clients: tally.unfinished,
            interrupted: shared.interrupted.load(Relaxed),
            ramp_up_secs: ramp_up.as_secs_f64(),
            duration_secs: window_secs,
            messages_received: tally.ticks,
            messages_per_sec: if window_secs > 0.0 {
                tally.ticks as f64 / window_secs
            } else {
                0.0
            },
            latency_ms: LatencyMs::from_histogram(&histogram),
            abuse: None,
        }
    }

    /// The report as one JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    }

    /// The report as aligned text lines.
    pub fn to_text(&self) -> String {
        let mut lines = vec![
            format!(
                "pulse-loadgen report ({} mode, {})",
                self.mode.as_str(),
                self.url
            ),
            format!("  clients requested   {}", self.clients_requested),
            format!("  connected           {}", self.connected),
            format!(
                "  connect errors      {}{}",
                self.connect_errors,
                breakdown(&self.connect_error_kinds)
            ),
            format!(
                "  closed early        {}{}",
                self.closed_early,
                breakdown(&self.closed_early_by_code)
            ),
            format!("  open at end         {}", self.open_at_end),
            format!(
                "  pinged              {} sockets got a Ping (at least {} each, {} in all)",
                self.pinged, self.min_pings, self.pings_received
            ),
        ];
        if self.mode.subscribes() {
            lines.push(format!(
                "  subscriptions       {} requested, {} subscribed",
                self.subscriptions_requested, self.subscribed
            ));
        }
        lines.push(format!(
            "  server errors       {}{}",
            self.server_errors,
            breakdown(&self.server_errors_by_code)
        ));
        if self.bad_frames > 0 {
            lines.push(format!("  bad frames          {}", self.bad_frames));
        }
        if self.unfinished_clients > 0 {
            lines.push(format!("  unfinished clients  {}", self.unfinished_clients));
        }
        lines.push(format!("  ramp-up             {:.2} s", self.ramp_up_secs));
        lines.push(format!(
            "  duration            {:.2} s{}",
            self.duration_secs,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        ));
        if self.mode.subscribes() {
            lines.push(format!(
                "  messages received   {} ({:.1} msgs/s)",
                self.messages_received, self.messages_per_sec
            ));
            lines.push(match &self.latency_ms {
                Some(l) => format!(
                    "  latency (ms)        p50 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3} ({} samples)",
                    l.p50, l.p99, l.p99_9, l.max, l.samples
                ),
                None => "  latency (ms)        no ticks received".to_owned(),
            });
        }
        if let Some(abuse) = &self.abuse {
            lines.push(format!(
                "  abuse               {}",
                serde_json::to_string_pretty(abuse).unwrap_or_default()
            ));
        }
        lines.join("\n")
    }
}

/// ` (key: count, key: count)` for a non-empty map, nothing for an empty one.
fn breakdown<K: std::fmt::Display>(counts: &BTreeMap<K, u64>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(key, count)| format!("{key}: {count}"))
        .collect();
    format!(" ({})", parts.join(", "))
}
