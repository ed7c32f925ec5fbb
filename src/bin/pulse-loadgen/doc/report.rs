//! Owns the doc run's report: its fields (one JSON line with `--json`, read
//! by `bench/bench.py`) and the clients' outcomes added up into it, their
//! replicas compared with the final snapshot's text.

use std::collections::BTreeMap;

use serde::Serialize;

use super::client::DocOutcome;
use super::join::FinalSnapshot;
use super::EditAt;
use crate::latency::LatencyMs;

/// The run's report (one JSON line with `--json`).
#[derive(Debug, Default, Serialize)]
pub struct DocReport {
    pub mode: &'static str,
    pub url: String,
    pub channel: String,
    pub editors: u64,
    pub readers: u64,
    /// Fresh updates per second per editor, and all editors together.
    pub edit_rate: f64,
    pub offered_per_sec: f64,
    pub total_updates: Option<u64>,
    pub subscribed: u64,
    pub join_errors: u64,
    pub join_error_kinds: BTreeMap<String, u64>,
    /// From the start until editing began (every client subscribed).
    pub ramp_up_secs: f64,
    /// From the start of editing until the last ack.
    pub edit_secs: f64,
    /// From the start of editing until every client had every update (or
    /// the drain gave up): the window bench/bench.py reads CPU over.
    pub duration_secs: f64,
    /// Whether every update was settled and every open client caught up.
    pub drained: bool,
    /// Fresh updates sent, sends of one again, acked, refused (dropped on an
    /// error other than `rate_limited`/`internal`) and given up.
    pub updates_sent: u64,
    pub resends: u64,
    pub acked: u64,
    pub refused: u64,
    pub abandoned: u64,
    /// Acknowledged updates per second of editing.
    pub acked_per_sec: f64,
    pub rate_limited: u64,
    /// Edits skipped: a refused update, or `--max-in-flight` updates, waited
    /// for their acks.
    pub edits_held: u64,
    pub send_past_retries: bool,
    pub max_in_flight: usize,
    pub edit_at: Option<EditAt>,
    /// Editors that stopped after an update of theirs was refused for good.
    pub editors_stopped: u64,
    /// Updates acknowledged when the server first answered `too_large`
    /// (the document reached its 1 MiB).
    pub full_at_acked: Option<u64>,
    pub server_errors_by_code: BTreeMap<String, u64>,
    /// Send to each peer's receipt of the `doc_update` (other editors and readers).
    pub update_to_peer_ms: Option<LatencyMs>,
    /// Send to the sender's `ack` (the update is on disk).
    pub ack_ms: Option<LatencyMs>,
    /// `doc_update`s received by all clients together (own copies included).
    pub received: u64,
    pub received_per_sec: f64,
    /// Receipts of offsets no editor of this run acknowledged.
    pub unmatched_receipts: u64,
    pub offset_gaps: u64,
    pub offset_repeats: u64,
    pub bad_updates: u64,
    pub bad_frames: u64,
    pub stray_acks: u64,
    pub closed_early: u64,
    pub closed_early_by_code: BTreeMap<u16, u64>,
    pub unfinished_clients: u64,
    /// A fresh subscriber's view after the run.
    pub final_snapshot: Option<FinalSnapshot>,
    /// Replicas whose text equals the final snapshot's, and those that differ
    /// (of these, editors whose own edits the server refused are expected
    /// to: they hold letters the document never took).
    pub replicas_converged: u64,
    pub replicas_diverged: u64,
    pub diverged_with_refused_edits: u64,
    pub interrupted: bool,
}

impl DocReport {
    pub fn add(&mut self, outcome: DocOutcome) {
        if let Some(kind) = outcome.join_error {
            *self.join_error_kinds.entry(kind).or_default() += 1;
            self.join_errors += 1;
            return;
        }
        if let Some(code) = outcome.closed_early {
            self.closed_early += 1;
            *self.closed_early_by_code.entry(code).or_default() += 1;
        }
        for (code, count) in outcome.errors {
            *self
                .server_errors_by_code
                .entry(code.to_owned())
                .or_default() += count;
        }
        self.rate_limited += outcome.rate_limited;
        self.offset_gaps += outcome.gaps;
        self.offset_repeats += outcome.repeats;
        self.bad_updates += outcome.bad_updates;
        self.bad_frames += outcome.bad_frames;
        self.stray_acks += outcome.stray_acks;
        self.edits_held += outcome.edits_held;
        let expected = self.final_snapshot.as_ref().and_then(|s| s.text_print());
        match (outcome.text, expected) {
            (Some(text), Some(expected)) if text == expected => self.replicas_converged += 1,
            (Some(_), _) => {
                self.replicas_diverged += 1;
                self.diverged_with_refused_edits += u64::from(outcome.refused > 0);
            }
            (None, _) => {}
        }
    }
}
