//! Owns [`SharedHistogram`]: a Prometheus histogram that the delivery path
//! can feed without a lock.
//!
//! Why not `prometheus-client`'s own `Histogram`: its `observe` takes a
//! write lock (`parking_lot::RwLock`) around one shared set of buckets, and
//! it has no bulk observe. The WebSocket writers observe delivery latency
//! once per delivered message and outbox depth once per written frame
//! (100,000 a second at 5,000 clients), from every runtime worker at once,
//! so each observation was a lock plus a cache line bounced between cores.
//! Here each thread adds to a shard of its own: the first
//! [`OWNED_SHARDS`] threads that observe (the runtime's workers) each own
//! one, which only they write, with a plain relaxed load and store (no
//! locked instruction); later threads share one more shard with atomic
//! adds. A writer merges a whole frame's observations in one call
//! ([`SharedHistogram::observe_many`]), and `/metrics` sums the shards
//! (relaxed loads) when scraped. The exposition goes through
//! `prometheus-client`'s own encoder ([`EncodeMetric`]), so the text is the
//! same as before.
//!
//! A scrape that races observations may see a sum a few observations apart
//! from the buckets; the count is always the buckets' total (it is computed
//! from them), so `_count` equals the `+Inf` bucket as Prometheus requires.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Shards per histogram owned by one thread each (the runtime's workers
/// and a few more); threads past them share one more shard.
const OWNED_SHARDS: usize = 8;
/// The owned shards, then the shared one.
const SHARDS: usize = OWNED_SHARDS + 1;

/// The most buckets a histogram has (the bounds given, plus `+Inf`).
pub const MAX_BUCKETS: usize = 24;

/// One thread's part: non-cumulative bucket counts and the sum of the
/// values, on cache lines of its own.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    buckets: [AtomicU64; MAX_BUCKETS],
    /// An `f64`'s bits.
    sum: AtomicU64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// The upper bounds, ascending; `+Inf` (as `f64::MAX`) last.
    bounds: Vec<f64>,
    shards: [Shard; SHARDS],
}

/// A histogram whose handles (clones) share one set of values.
#[derive(Debug, Clone)]
pub struct SharedHistogram {
    inner: Arc<Inner>,
}

thread_local! {
    /// This thread's shard, chosen once: an owned one while any is left,
    /// else the shared one.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The next owned shard handed to a thread.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn shard_index() -> usize {
    SHARD.with(|shard| {
        let mut index = shard.get();
        if index == usize::MAX {
            index = NEXT_SHARD.fetch_add(1, Ordering::Relaxed).min(OWNED_SHARDS);
            shard.set(index);
        }
        index
    })
}

/// Adds `n` to a counter of shard `index`. An owned shard has one writer,
/// this thread, so a plain load and store do (no locked instruction, the
/// point of owning it); the shared shard needs the atomic add.
fn add(index: usize, counter: &AtomicU64, n: u64) {
    if index < OWNED_SHARDS {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    } else {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Adds to an `f64` kept as bits in shard `index` (on the shared shard, a
/// compare-and-swap loop).
fn add_f64(index: usize, cell: &AtomicU64, value: f64) {
    let mut current = cell.load(Ordering::Relaxed);
    if index < OWNED_SHARDS {
        cell.store(
            (f64::from_bits(current) + value).to_bits(),
            Ordering::Relaxed,
        );
        return;
    }
    loop {
        let next = (f64::from_bits(current) + value).to_bits();
        match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

impl SharedHistogram {
    /// A histogram with these upper bounds (ascending) and `+Inf`.
    ///
    /// # Panics
    /// With more than `MAX_BUCKETS - 1` bounds (a programming error: bounds
    /// are constants in [`super::Metrics`]).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let mut bounds: Vec<f64> = bounds.into_iter().collect();
        bounds.push(f64::MAX);
        assert!(bounds.len() <= MAX_BUCKETS, "at most {MAX_BUCKETS} buckets");
        SharedHistogram {
            inner: Arc::new(Inner {
                bounds,
                shards: std::array::from_fn(|_| Shard::default()),
            }),
        }
    }

    /// The bucket `value` falls in: the first whose bound is at or above it.
    fn bucket(&self, value: f64) -> usize {
        let bounds = &self.inner.bounds;
        let last = bounds.len() - 1;
        // NaN and values past every bound go to `+Inf`.
        if value.is_nan() {
            return last;
        }
        bounds.partition_point(|bound| *bound < value).min(last)
    }

    /// Records one value (a NaN counts in `+Inf` and adds nothing to the sum).
    pub fn observe(&self, value: f64) {
        let index = shard_index();
        let shard = &self.inner.shards[index];
        add(index, &shard.buckets[self.bucket(value)], 1);
        if !value.is_nan() {
            add_f64(index, &shard.sum, value);
        }
    }

    /// Records several values with one update of each bucket they touch
    /// and one of the sum.
    pub fn observe_many(&self, values: impl IntoIterator<Item = f64>) {
        let mut values = values.into_iter();
        let Some(first) = values.next() else {
            return;
        };
        let Some(second) = values.next() else {
            // A frame of one message, the common case.
            return self.observe(first);
        };
        let mut counts = [0u64; MAX_BUCKETS];
        let mut sum = 0.0;
        for value in [first, second].into_iter().chain(values) {
            counts[self.bucket(value)] += 1;
            if !value.is_nan() {
                sum += value;
            }
        }
        let index = shard_index();
        let shard = &self.inner.shards[index];
        for (bucket, count) in shard.buckets.iter().zip(counts) {
            if count > 0 {
                add(index, bucket, count);
            }
        }
        add_f64(index, &shard.sum, sum);
    }

    /// The sum, count and non-cumulative buckets over every shard.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &self.inner;
        let mut buckets: Vec<(f64, u64)> = inner.bounds.iter().map(|bound| (*bound, 0)).collect();
        let mut sum = 0.0;
        for shard in &inner.shards {
            for (total, count) in buckets.iter_mut().zip(&shard.buckets) {
                total.1 += count.load(Ordering::Relaxed);
            }
            sum += f64::from_bits(shard.sum.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|(_, count)| count).sum();
        (sum, count, buckets)
    }

    /// Values recorded so far (for tests).
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.snapshot().1
    }
}

impl TypedMetric for SharedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for SharedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    fn rendered(histogram: &SharedHistogram) -> String {
        let mut registry = Registry::default();
        registry.register("h", "a histogram", histogram.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn values_land_in_the_first_bucket_at_or_above_them() {
        let histogram = SharedHistogram::new([1.0, 2.0, 4.0]);
        for value in [0.5, 1.0, 1.5, 4.0, 9.0, f64::NAN] {
            histogram.observe(value);
        }
        let (_, count, buckets) = histogram.snapshot();
        assert_eq!(count, 6);
        let counts: Vec<u64> = buckets.iter().map(|(_, count)| *count).collect();
        assert_eq!(counts, [2, 1, 1, 2]);
        assert_eq!(histogram.snapshot().0, 16.0);
    }

    #[test]
    fn many_values_at_once_count_as_each_one_would() {
        let one_by_one = SharedHistogram::new([1.0, 2.0, 4.0]);
        let at_once = SharedHistogram::new([1.0, 2.0, 4.0]);
        let values = [0.5, 3.0, 3.5, 100.0];
        values.iter().for_each(|value| one_by_one.observe(*value));
        at_once.observe_many(values);
        at_once.observe_many([]);
        assert_eq!(one_by_one.snapshot(), at_once.snapshot());
        assert_eq!(at_once.snapshot().0, 107.0);
    }

    #[test]
    fn threads_add_up_across_shards() {
        let histogram = SharedHistogram::new([1.0]);
        // More threads than owned shards: the later ones share one.
        let threads: Vec<_> = (0..SHARDS * 2)
            .map(|_| {
                let histogram = histogram.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| histogram.observe(0.5)))
            })
            .collect();
        threads
            .into_iter()
            .for_each(|thread| thread.join().unwrap());
        assert_eq!(histogram.count(), (SHARDS * 2 * 1000) as u64);
        assert_eq!(histogram.snapshot().0, (SHARDS * 1000) as f64);
    }

    #[test]
    fn renders_like_the_library_histogram() {
        let ours = SharedHistogram::new([1.0, 2.0]);
        let theirs = prometheus_client::metrics::histogram::Histogram::new([1.0, 2.0]);
        for value in [0.5, 1.5, 3.0] {
            ours.observe(value);
            theirs.observe(value);
        }
        let mut registry = Registry::default();
        registry.register("h", "a histogram", theirs);
        let mut expected = String::new();
        encode(&mut expected, &registry).unwrap();
        assert_eq!(rendered(&ours), expected);
        assert!(expected.contains("h_bucket{le=\"+Inf\"} 3"), "{expected}");
    }
}
