//! Owns [`TokenBucket`]: the rate limits (chat and status per connection,
//! upgrades per address and per server). Pure: time is an argument.

use std::time::Instant;

/// `status` messages a connection may send per second (PROTOCOL.md).
pub const STATUS_RATE: f64 = 2.0;
/// `status` messages a connection may send in a burst (PROTOCOL.md).
pub const STATUS_BURST: f64 = 5.0;

/// Allows `per_second` actions on average and bursts of up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(per_second: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            per_second,
            burst,
            tokens: burst,
            refilled_at: now,
        }
    }

    /// Takes one token if there is one at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full at `now` (its owner has been idle).
    pub fn is_full(&self, now: Instant) -> bool {
        let mut bucket = self.clone();
        bucket.refill(now);
        bucket.tokens >= bucket.burst
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(5.0, 10.0, start);
        let passed = (0..15).filter(|_| bucket.try_take(start)).count();
        assert_eq!(passed, 10, "the burst");
        assert!(
            !bucket.try_take(start + Duration::from_millis(100)),
            "half a token"
        );
        assert!(
            bucket.try_take(start + Duration::from_millis(200)),
            "one token after 200 ms"
        );
        assert!(!bucket.try_take(start + Duration::from_millis(200)));
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(5.0, 10.0, start);
        let later = start + Duration::from_secs(3600);
        assert_eq!((0..20).filter(|_| bucket.try_take(later)).count(), 10);
    }
}
