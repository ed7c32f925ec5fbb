//! Owns [`Stamp`]: the one word a queued frame carries besides the frame
//! itself (what it is, whether it opens a timed answer, when it was queued),
//! so an entry of the outbox's queue stays 40 bytes.

use std::time::{Duration, Instant};

use super::Kind;

/// A queued frame's [`Kind`] (bits 0-1), whether it is the first frame of a
/// timed subscribe answer (bit 2; its [`FirstFrame`](super::FirstFrame) waits in
/// `State::firsts`, in queue order), and when it was queued (bits 3-63:
/// nanoseconds since its outbox was made, enough for 73 years).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp(u64);

impl Stamp {
    const KIND_BITS: u64 = 0b011;
    const FIRST: u64 = 0b100;
    const SHIFT: u32 = 3;

    pub(super) fn new(kind: Kind, first: bool, at: Instant, base: Instant) -> Self {
        Stamp(Self::nanos(at, base) << Self::SHIFT | u64::from(first) << 2 | kind as u64)
    }

    /// `at` as nanoseconds since `base`, within the 61 bits a stamp has.
    fn nanos(at: Instant, base: Instant) -> u64 {
        let nanos = at.saturating_duration_since(base).as_nanos();
        u64::try_from(nanos)
            .map_or(u64::MAX, |n| n)
            .min(u64::MAX >> Self::SHIFT)
    }

    pub(super) fn kind(self) -> Kind {
        match self.0 & Self::KIND_BITS {
            0 => Kind::Live,
            1 => Kind::Answer,
            _ => Kind::Tick,
        }
    }

    pub(super) fn first(self) -> bool {
        self.0 & Self::FIRST != 0
    }

    pub(super) fn at(self, base: Instant) -> Instant {
        base + Duration::from_nanos(self.0 >> Self::SHIFT)
    }

    /// The same frame, queued again at `at` (a conflated tick).
    pub(super) fn requeued(self, at: Instant, base: Instant) -> Self {
        Stamp(Self::nanos(at, base) << Self::SHIFT | (self.0 & (Self::KIND_BITS | Self::FIRST)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_gives_back_its_kind_flag_and_time_exactly() {
        let base = Instant::now();
        let at = base + Duration::from_nanos(1_234_567_891);
        for kind in [Kind::Live, Kind::Answer, Kind::Tick] {
            for first in [false, true] {
                let stamp = Stamp::new(kind, first, at, base);
                assert_eq!(
                    (stamp.kind(), stamp.first(), stamp.at(base)),
                    (kind, first, at)
                );
                let later = at + Duration::from_millis(3);
                let again = stamp.requeued(later, base);
                assert_eq!(
                    (again.kind(), again.first(), again.at(base)),
                    (kind, first, later)
                );
            }
        }
    }

    #[test]
    fn a_time_before_the_base_counts_as_the_base() {
        let base = Instant::now() + Duration::from_secs(1);
        let stamp = Stamp::new(Kind::Tick, false, Instant::now(), base);
        assert_eq!(stamp.at(base), base);
    }
}
