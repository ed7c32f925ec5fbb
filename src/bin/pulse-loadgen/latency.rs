//! Owns latency as every mode records and reports it: the histogram bounds
//! (1 µs to one hour, 3 significant digits) and the millisecond percentiles
//! a report prints.

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency the histogram tells apart (one hour, in microseconds).
const LATENCY_MAX_MICROS: u64 = 3_600_000_000;

/// An empty latency histogram, in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
        .expect("constant histogram bounds are valid")
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct LatencyMs {
    pub samples: u64,
    pub p50: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl LatencyMs {
    /// The percentiles of a histogram in microseconds; `None` when it is empty.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Option<Self> {
        let ms = |micros: u64| micros as f64 / 1000.0;
        (!histogram.is_empty()).then(|| LatencyMs {
            samples: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        })
    }
}
