//! Owns the reconnection delay: PROTOCOL.md's schedule 1, 2, 4, 8, 16, then
//! 30 s, each drawn uniformly between half of it and all of it, reset after a
//! connection that stayed open for 30 s. Pure: randomness is an argument.

/// The schedule's delays, in milliseconds; the last one repeats.
pub const SCHEDULE_MS: [u32; 6] = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000];
/// A connection open at least this long resets the schedule.
pub const RESET_AFTER_MS: f64 = 30_000.0;

/// Where in the schedule the next reconnection attempt is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    attempt: usize,
}

impl Backoff {
    /// The delay before the next attempt, given `random` uniform in [0, 1).
    pub fn next_delay_ms(&mut self, random: f64) -> u32 {
        let full = SCHEDULE_MS[self.attempt.min(SCHEDULE_MS.len() - 1)];
        self.attempt += 1;
        let half = full / 2;
        half + (random.clamp(0.0, 1.0) * f64::from(half)).round() as u32
    }

    /// Tells the schedule how long the connection that just closed was open.
    pub fn connection_lasted(&mut self, open_ms: f64) {
        if open_ms >= RESET_AFTER_MS {
            self.attempt = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_follow_the_schedule_within_their_jitter() {
        let mut low = Backoff::default();
        let mut high = Backoff::default();
        let lows: Vec<u32> = (0..8).map(|_| low.next_delay_ms(0.0)).collect();
        let highs: Vec<u32> = (0..8).map(|_| high.next_delay_ms(1.0)).collect();
        assert_eq!(
            lows,
            [500, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000]
        );
        assert_eq!(
            highs,
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
    }

    #[test]
    fn a_long_connection_resets_the_schedule_and_a_short_one_does_not() {
        let mut backoff = Backoff::default();
        backoff.next_delay_ms(1.0);
        backoff.next_delay_ms(1.0);
        backoff.connection_lasted(29_999.0);
        assert_eq!(backoff.next_delay_ms(1.0), 4_000);
        backoff.connection_lasted(30_000.0);
        assert_eq!(backoff.next_delay_ms(1.0), 1_000);
    }
}
