//! Owns turning this instance's metrics into its admin numbers, once a
//! second. It reads the very OpenMetrics text `/metrics` serves, so the view
//! and an operator's scraper never disagree; it keeps the counters of the
//! last sample for rates, ten seconds of histogram buckets for percentiles,
//! each channel's last offset for its rate, and ten minutes of connection
//! counts for the chart.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::census::Census;
use crate::protocol::admin::{
    ByTransport, ChannelRow, CodeCount, InstanceStats, RelayDepth, RelayStats, HISTORY_POINTS,
    HISTORY_STEP_SECS, TOP_ROWS,
};
use crate::protocol::Channel;

/// Samples the percentiles are computed over (one a second).
const PERCENTILE_WINDOW: usize = 10;

/// One metric line: its labels and value.
type Line = (Vec<(String, String)>, f64);

/// A histogram's cumulative buckets: (upper bound in seconds, count).
type Buckets = Vec<(f64, f64)>;

/// The samples of one OpenMetrics text, by metric name.
#[derive(Debug, Default)]
pub struct Samples(HashMap<String, Vec<Line>>);

impl Samples {
    /// Reads `name{label="value",...} number` lines; comments and lines it
    /// cannot read are skipped.
    pub fn parse(text: &str) -> Samples {
        let mut samples = Samples::default();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            samples
                .0
                .entry(name.to_owned())
                .or_default()
                .push((labels, value));
        }
        samples
    }

    /// The value of the unlabelled sample `name`, 0 if absent.
    pub fn value(&self, name: &str) -> f64 {
        self.0
            .get(name)
            .and_then(|lines| lines.iter().find(|(labels, _)| labels.is_empty()))
            .map_or(0.0, |(_, value)| *value)
    }

    /// Whether the text holds any sample of `name`.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The value of the sample of `name` with exactly these labels, 0 if absent.
    pub fn labelled(&self, name: &str, wanted: &[(&str, &str)]) -> f64 {
        let lines = self.0.get(name).map(Vec::as_slice).unwrap_or_default();
        lines
            .iter()
            .find(|(labels, _)| {
                labels.len() == wanted.len()
                    && wanted
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(key, val)| key == k && val == v))
            })
            .map_or(0.0, |(_, value)| *value)
    }

    /// The samples of `name` by the value of their label `label`.
    pub fn by(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        let lines = self.0.get(name).map(Vec::as_slice).unwrap_or_default();
        lines
            .iter()
            .filter_map(|(labels, value)| {
                let (_, found) = labels.iter().find(|(key, _)| key == label)?;
                Some((found.clone(), *value))
            })
            .collect()
    }

    /// An unlabelled histogram's cumulative buckets: (upper bound, count).
    pub fn buckets(&self, histogram: &str) -> Buckets {
        let mut buckets: Buckets = self
            .by(&format!("{histogram}_bucket"), "le")
            .into_iter()
            .filter_map(|(bound, count)| Some((bound.parse::<f64>().ok()?, count)))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// `a="x",b="y"` (label values here never hold quotes or commas).
fn labels(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((
                key.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            ))
        })
        .collect()
}

/// The `q` quantile, in milliseconds, of the observations between two
/// readings of a histogram's cumulative buckets (seconds), interpolated
/// within its bucket the way Prometheus' `histogram_quantile` does. `None`
/// when nothing was observed in between.
pub fn quantile_ms(older: &[(f64, f64)], newer: &[(f64, f64)], q: f64) -> Option<f64> {
    let counts: Vec<(f64, f64)> = newer
        .iter()
        .map(|&(bound, count)| {
            let before = older
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0.0, |(_, c)| *c);
            (bound, count - before)
        })
        .collect();
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in &counts {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0 * 1000.0);
            }
            let within = if count > lower.1 {
                (rank - lower.1) / (count - lower.1)
            } else {
                1.0
            };
            return Some((lower.0 + (bound - lower.0) * within) * 1000.0);
        }
        lower = (bound, count);
    }
    Some(lower.0 * 1000.0)
}

/// What one instance remembers between samples.
pub struct Sampler {
    instance: String,
    /// `--redis-prefix` and a colon: stripped from lease names.
    lease_prefix: String,
    last: Option<(Instant, f64, f64)>,
    delivery: VecDeque<Buckets>,
    commits: VecDeque<Buckets>,
    offsets: HashMap<Channel, u64>,
    history: VecDeque<u64>,
    samples_taken: u64,
}

impl Sampler {
    pub fn new(instance: &str, redis_prefix: &str) -> Self {
        Sampler {
            instance: instance.to_owned(),
            lease_prefix: format!("{redis_prefix}:"),
            last: None,
            delivery: VecDeque::new(),
            commits: VecDeque::new(),
            offsets: HashMap::new(),
            history: VecDeque::new(),
            samples_taken: 0,
        }
    }

    /// This instance's numbers now: `text` is its metrics' OpenMetrics
    /// text, `latest` a channel's latest offset (the hub's).
    pub fn sample(
        &mut self,
        text: &str,
        now: Instant,
        at_ms: u64,
        census: &Census,
        latest: impl Fn(&Channel) -> u64,
    ) -> InstanceStats {
        let samples = Samples::parse(text);
        let connections = samples.value("pulse_connections_open") as u64;
        let messages_in = samples.value("pulse_messages_in_total");
        let messages_out = samples.value("pulse_messages_out_total");
        let elapsed = self
            .last
            .map(|(then, _, _)| now.saturating_duration_since(then).as_secs_f64());
        let rate = |now_count: f64, then_count: f64| match elapsed {
            Some(secs) if secs > 0.0 => ((now_count - then_count) / secs).max(0.0),
            _ => 0.0,
        };
        let (in_per_second, out_per_second) = match self.last {
            Some((_, then_in, then_out)) => {
                (rate(messages_in, then_in), rate(messages_out, then_out))
            }
            None => (0.0, 0.0),
        };
        self.last = Some((now, messages_in, messages_out));

        let delivery = window(
            &mut self.delivery,
            samples.buckets("pulse_delivery_latency_seconds"),
        );
        let commits = window(
            &mut self.commits,
            samples.buckets("pulse_store_commit_seconds"),
        );

        let mut rows: Vec<ChannelRow> = Vec::new();
        let mut offsets = HashMap::new();
        for (channel, subscribers) in census.channels() {
            let offset = latest(&channel);
            let before = self.offsets.get(&channel).copied().unwrap_or(offset);
            offsets.insert(channel.clone(), offset);
            rows.push(ChannelRow {
                channel: channel.to_string(),
                subscribers,
                per_second: rate(offset as f64, before.min(offset) as f64),
            });
        }
        self.offsets = offsets;
        let mut top_by_subscribers = rows.clone();
        top_by_subscribers.sort_by(|a, b| {
            b.subscribers
                .cmp(&a.subscribers)
                .then_with(|| a.channel.cmp(&b.channel))
        });
        top_by_subscribers.truncate(TOP_ROWS);
        let mut top_by_rate: Vec<ChannelRow> = rows
            .into_iter()
            .filter(|row| row.per_second > 0.0)
            .collect();
        top_by_rate.sort_by(|a, b| {
            b.per_second
                .total_cmp(&a.per_second)
                .then_with(|| a.channel.cmp(&b.channel))
        });
        top_by_rate.truncate(TOP_ROWS);

        self.remember(connections);
        InstanceStats {
            instance: self.instance.clone(),
            at_ms,
            connections,
            history: self.history.iter().copied().collect(),
            messages_in: messages_in as u64,
            messages_out: messages_out as u64,
            in_per_second,
            out_per_second,
            delivery_p50_ms: delivery
                .as_ref()
                .and_then(|(old, new)| quantile_ms(old, new, 0.5)),
            delivery_p99_ms: delivery
                .as_ref()
                .and_then(|(old, new)| quantile_ms(old, new, 0.99)),
            commit_p50_ms: commits
                .as_ref()
                .and_then(|(old, new)| quantile_ms(old, new, 0.5)),
            commit_p99_ms: commits
                .as_ref()
                .and_then(|(old, new)| quantile_ms(old, new, 0.99)),
            slowest: census.slowest(TOP_ROWS),
            top_by_subscribers,
            top_by_rate,
            errors: counts(samples.by("pulse_protocol_errors_total", "code")),
            closes: counts(samples.by("pulse_closes_total", "code")),
            leases: samples
                .by("pulse_lease_held", "lease")
                .into_iter()
                .filter(|(_, held)| *held >= 1.0)
                .map(|(lease, _)| {
                    let short = lease.strip_prefix(&self.lease_prefix).unwrap_or(&lease);
                    short.to_owned()
                })
                .collect(),
            relay: relay(&samples),
            by_transport: by_transport(&samples),
            // Measured by the snapshot task (`feed.rs`), not read from text.
            redis_rtt_ms: None,
            postgres_rtt_ms: None,
        }
    }

    /// Adds this second's connection count to the chart: one point per
    /// [`HISTORY_STEP_SECS`], the most seen in it.
    fn remember(&mut self, connections: u64) {
        if self.samples_taken.is_multiple_of(HISTORY_STEP_SECS) {
            self.history.push_back(connections);
            if self.history.len() > HISTORY_POINTS {
                self.history.pop_front();
            }
        } else if let Some(last) = self.history.back_mut() {
            *last = (*last).max(connections);
        }
        self.samples_taken += 1;
    }
}

/// Keeps the last [`PERCENTILE_WINDOW`] + 1 readings of a histogram and
/// returns the oldest and the newest (`None` before the second reading).
fn window(kept: &mut VecDeque<Buckets>, newest: Buckets) -> Option<(Buckets, Buckets)> {
    kept.push_back(newest);
    if kept.len() > PERCENTILE_WINDOW + 1 {
        kept.pop_front();
    }
    let oldest = kept.front()?.clone();
    let newest = kept.back()?.clone();
    (kept.len() > 1).then_some((oldest, newest))
}

/// The relay's numbers, when this instance has one (its gauges are
/// registered only with `--redis`).
fn relay(samples: &Samples) -> Option<RelayStats> {
    if !samples.has("pulse_relay_queue_depth") {
        return None;
    }
    let depths = samples.by("pulse_relay_queue_depth", "kind");
    let depth = |kind: &str| {
        depths
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0, |(_, depth)| depth.max(0.0) as u64)
    };
    Some(RelayStats {
        depth: RelayDepth {
            ordered: depth("ordered"),
            ticks: depth("ticks"),
            awareness: depth("awareness"),
        },
        lag_seconds: samples.value("pulse_relay_lag_seconds"),
        behind: samples.value("pulse_relay_behind_total") as u64,
    })
}

/// `pulse_connections_by_transport{transport, tls}`.
fn by_transport(samples: &Samples) -> ByTransport {
    let open = |transport: &str, tls: &str| {
        let value = samples.labelled(
            "pulse_connections_by_transport",
            &[("transport", transport), ("tls", tls)],
        );
        value.max(0.0) as u64
    };
    ByTransport {
        websocket: open("websocket", "false"),
        websocket_tls: open("websocket", "true"),
        sse: open("sse", "false"),
        sse_tls: open("sse", "true"),
    }
}

/// Counts by code, largest first, without the zeros.
fn counts(by_code: Vec<(String, f64)>) -> Vec<CodeCount> {
    let mut counts: Vec<CodeCount> = by_code
        .into_iter()
        .filter(|(_, count)| *count > 0.0)
        .map(|(code, count)| CodeCount {
            code,
            count: count as u64,
        })
        .collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP pulse_connections_open WebSocket connections open now.\n\
        # TYPE pulse_connections_open gauge\n\
        pulse_connections_open 3\n\
        pulse_messages_in_total 10\n\
        pulse_protocol_errors_total{code=\"invalid\"} 2\n\
        pulse_lease_held{lease=\"pulse:simulator\"} 1\n\
        pulse_lease_held{lease=\"pulse:presence:leader\"} 0\n\
        pulse_delivery_latency_seconds_bucket{le=\"0.001\"} 50\n\
        pulse_delivery_latency_seconds_bucket{le=\"0.002\"} 100\n\
        pulse_delivery_latency_seconds_bucket{le=\"+Inf\"} 100\n\
        # EOF\n";

    #[test]
    fn reads_values_labels_and_buckets() {
        let samples = Samples::parse(TEXT);
        assert_eq!(samples.value("pulse_connections_open"), 3.0);
        assert_eq!(samples.value("pulse_absent"), 0.0);
        assert_eq!(
            samples.by("pulse_protocol_errors_total", "code"),
            vec![("invalid".to_owned(), 2.0)]
        );
        let buckets = samples.buckets("pulse_delivery_latency_seconds");
        assert_eq!(buckets.len(), 3);
        assert!(buckets[2].0.is_infinite());
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let none = [(0.001, 0.0), (0.002, 0.0), (f64::INFINITY, 0.0)];
        let some = [(0.001, 50.0), (0.002, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile_ms(&none, &none, 0.5), None);
        let p50 = quantile_ms(&none, &some, 0.5).unwrap();
        assert!((p50 - 1.0).abs() < 1e-9, "{p50}");
        let p99 = quantile_ms(&none, &some, 0.99).unwrap();
        assert!((p99 - 1.98).abs() < 1e-9, "{p99}");
        // Only what happened between the two readings counts.
        let later = [(0.001, 50.0), (0.002, 110.0), (f64::INFINITY, 110.0)];
        let p50 = quantile_ms(&some, &later, 0.5).unwrap();
        assert!((1.0..=2.0).contains(&p50), "{p50}");
    }

    #[test]
    fn a_sample_has_rates_leases_and_a_ten_second_history() {
        let census = Census::default();
        let mut sampler = Sampler::new("i1", "pulse");
        let start = Instant::now();
        let first = sampler.sample(TEXT, start, 0, &census, |_| 0);
        assert_eq!(first.connections, 3);
        assert_eq!(first.leases, vec!["simulator".to_owned()]);
        assert_eq!(first.errors[0].count, 2);
        assert_eq!(first.relay, None, "no relay gauges, no relay");
        let transports = format!(
            "{TEXT}pulse_connections_by_transport{{transport=\"websocket\",tls=\"false\"}} 2\n\
             pulse_connections_by_transport{{transport=\"sse\",tls=\"true\"}} 1\n"
        );
        let by = Sampler::new("i1", "pulse")
            .sample(&transports, start, 0, &census, |_| 0)
            .by_transport;
        assert_eq!((by.websocket, by.sse_tls, by.sse), (2, 1, 0));
        let relayed = format!(
            "{TEXT}pulse_relay_queue_depth{{kind=\"ordered\"}} 4\n\
             pulse_relay_queue_depth{{kind=\"ticks\"}} 2\n\
             pulse_relay_queue_depth{{kind=\"awareness\"}} 0\n\
             pulse_relay_lag_seconds 0.25\npulse_relay_behind_total 7\n"
        );
        let relay = Sampler::new("i1", "pulse")
            .sample(&relayed, start, 0, &census, |_| 0)
            .relay
            .expect("relay numbers");
        assert_eq!((relay.depth.ordered, relay.depth.ticks), (4, 2));
        assert_eq!((relay.lag_seconds, relay.behind), (0.25, 7));
        let more = TEXT.replace("pulse_messages_in_total 10", "pulse_messages_in_total 30");
        let second = sampler.sample(
            &more,
            start + std::time::Duration::from_secs(2),
            0,
            &census,
            |_| 0,
        );
        assert_eq!(second.in_per_second, 10.0);
        assert_eq!(second.history, vec![3], "one point per ten seconds");
        for _ in 0..9 {
            sampler.sample(TEXT, start, 0, &census, |_| 0);
        }
        assert_eq!(sampler.history.len(), 2);
    }
}
