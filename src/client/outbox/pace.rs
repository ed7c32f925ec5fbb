//! Owns the outbox's pace: a token bucket slightly slower than the server's
//! chat rate ([`PACE_BURST`] at once, then [`PACE_PER_SEC`] a second), so a
//! replay of a long queue does not run into `rate_limited`.

use super::{PACE_BURST, PACE_PER_SEC};

/// A token bucket slightly slower than the server's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Pace {
    tokens: f64,
    at: f64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            tokens: PACE_BURST,
            at: f64::MIN,
        }
    }
}

impl Pace {
    fn refill(&mut self, now: f64) {
        if now > self.at {
            let gained = (now - self.at) * PACE_PER_SEC / 1_000.0;
            self.tokens = (self.tokens + gained).min(PACE_BURST);
            self.at = now;
        }
    }

    pub(super) fn take(&mut self, now: f64) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next message may go (after [`Pace::take`] said no).
    pub(super) fn next_at(&self) -> f64 {
        self.at + (1.0 - self.tokens).max(0.0) * 1_000.0 / PACE_PER_SEC
    }

    /// The server said "too fast": nothing goes before `until`.
    pub(super) fn pause_until(&mut self, until: f64) {
        self.tokens = 0.0;
        self.at = self.at.max(until);
    }
}
