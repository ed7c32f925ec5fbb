//! Owns the storm's report: how many clients came back and how fast, and
//! what their channels' offsets said about the resume, added up from every
//! client's outcome (one JSON line with `--json`, read by `bench/bench.py`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::channel::ChannelView;
use super::client::StormOutcome;

/// Millisecond percentiles of the reconnect times.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut values: Vec<Duration>) -> Option<Self> {
        values.sort_unstable();
        let at = |q: f64| {
            let index = ((values.len() as f64 - 1.0) * q).round() as usize;
            values[index].as_secs_f64() * 1000.0
        };
        (!values.is_empty()).then(|| Percentiles {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// The storm's report.
#[derive(Debug, Default, Serialize)]
pub struct StormReport {
    pub clients_requested: u64,
    pub channels_per_client: usize,
    /// Clients subscribed before the drop.
    pub subscribed_before_drop: u64,
    pub failed_before_drop: u64,
    /// Sockets the server closed before the drop, per code.
    pub closed_before_drop_by_code: BTreeMap<u16, u64>,
    /// Clients the load generator dropped.
    pub dropped: u64,
    /// Clients back and resubscribed (every channel answered).
    pub back: u64,
    pub gave_up: u64,
    /// From the drop until the last client was back and resubscribed; `None`
    /// when some never came back.
    pub all_back_secs: Option<f64>,
    /// Each client's time from the drop until it was back and resubscribed.
    pub back_ms: Option<Percentiles>,
    /// Clients whose every channel recovered and whose offsets afterwards
    /// had no gap and no repeat, up to the announced offset at least.
    pub resumed_without_gap: u64,
    /// Clients whose every channel recovered with a complete replay (no
    /// skipped or repeated offset up to the announced one); live ticks
    /// after it may have been conflated, as the protocol allows for tickers.
    pub resumed_with_complete_replay: u64,
    pub clients_with_recovered_false: u64,
    pub channels_recovered_true: u64,
    pub channels_recovered_false: u64,
    /// Channels with a gap after a `recovered: true`, and offsets missed.
    pub channels_with_gap: u64,
    pub offsets_missing: u64,
    /// Of those, gaps inside the replay (a broken resume), and offsets missed there.
    pub channels_with_replay_gap: u64,
    pub offsets_missing_in_replay: u64,
    pub duplicate_ticks: u64,
    /// Offset jumps seen before the drop (conflation), for comparison.
    pub gaps_before_drop: u64,
    /// 1013 answers before the drop (ramp-up) and during the storm.
    pub refused_1013_ramp_up: u64,
    pub refused_1013_storm: u64,
    /// Connection attempts after the drop, and those beyond each client's first.
    pub attempts_storm: u64,
    pub retries_storm: u64,
    /// Failures other than 1013, per kind (both phases).
    pub errors: BTreeMap<String, u64>,
    /// Sockets the server closed after the resume, per code.
    pub closed_after_resume_by_code: BTreeMap<u16, u64>,
    pub ticks_after_resume: u64,
    pub unfinished_clients: u64,
    /// From the start until the drop (for the CPU window of bench/bench.py).
    pub ramp_up_secs: f64,
    /// From the drop to the end of the checks.
    pub duration_secs: f64,
    pub verify_secs: f64,
}

impl StormReport {
    pub fn add(&mut self, outcome: StormOutcome) {
        if outcome.subscribed_first {
            self.subscribed_before_drop += 1;
            self.dropped += 1;
        } else {
            self.failed_before_drop += 1;
        }
        if let Some(code) = outcome.closed_before_drop {
            *self.closed_before_drop_by_code.entry(code).or_default() += 1;
        }
        if let Some(code) = outcome.closed_after_resume {
            *self.closed_after_resume_by_code.entry(code).or_default() += 1;
        }
        if outcome.resumed_after.is_some() {
            self.back += 1;
            let channels = &outcome.channels;
            if channels.iter().all(ChannelView::resumed_without_gap) {
                self.resumed_without_gap += 1;
            }
            if channels.iter().all(ChannelView::replay_complete) {
                self.resumed_with_complete_replay += 1;
            }
            if channels.iter().any(|c| c.recovered == Some(false)) {
                self.clients_with_recovered_false += 1;
            }
            for channel in channels {
                match channel.recovered {
                    Some(true) => self.channels_recovered_true += 1,
                    Some(false) => self.channels_recovered_false += 1,
                    None => {}
                }
                if channel.recovered == Some(true) && channel.gaps > 0 {
                    self.channels_with_gap += 1;
                }
                if channel.recovered == Some(true) && channel.replay_gaps > 0 {
                    self.channels_with_replay_gap += 1;
                }
            }
        } else if outcome.subscribed_first {
            self.gave_up += 1;
        }
        for channel in &outcome.channels {
            self.offsets_missing += channel.missing;
            self.offsets_missing_in_replay += channel.replay_missing;
            self.duplicate_ticks += channel.duplicates;
            self.gaps_before_drop += channel.gaps_before;
        }
        self.refused_1013_ramp_up += outcome.refused_first;
        self.refused_1013_storm += outcome.refused_storm;
        self.attempts_storm += outcome.attempts;
        self.retries_storm += outcome.attempts.saturating_sub(1);
        for (kind, count) in outcome.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        self.ticks_after_resume += outcome.ticks_after_resume;
    }
}
