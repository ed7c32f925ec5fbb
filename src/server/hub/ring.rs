//! Owns [`Ring`]: a bounded, in-memory channel history addressed by offset.

use std::collections::VecDeque;

/// The last `capacity` messages of a channel, each under its offset. Offsets
/// grow by exactly one per push, so an offset's position is arithmetic.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    entries: VecDeque<T>,
    capacity: usize,
    /// The offset of `entries[0]`; meaningful only when not empty.
    first_offset: u64,
    /// The offset of the newest message ever pushed (0: none yet).
    latest: u64,
}

impl<T> Ring<T> {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a ring holds at least one message");
        Ring {
            // Grows on demand: a channel nobody publishes to (an unknown
            // ticker a client merely subscribed to) allocates nothing.
            entries: VecDeque::new(),
            capacity,
            first_offset: 1,
            latest: 0,
        }
    }

    /// An empty ring whose next push gets offset `latest + 1`: a persisted
    /// channel reloaded with its newest messages pushed back in order.
    pub fn after_offset(capacity: usize, latest: u64) -> Self {
        let mut ring = Ring::new(capacity);
        ring.latest = latest;
        ring.first_offset = latest + 1;
        ring
    }

    /// The offset of the newest message (0 before the first).
    pub fn latest(&self) -> u64 {
        self.latest
    }

    /// Appends the next message and returns its offset, forgetting the oldest
    /// message when full.
    pub fn push(&mut self, entry: T) -> u64 {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
            self.first_offset += 1;
        }
        self.entries.push_back(entry);
        self.latest += 1;
        if self.entries.len() == 1 {
            self.first_offset = self.latest;
        }
        self.latest
    }

    /// Every message after `offset`, oldest first, or `None` when some of
    /// them are no longer held (or `offset` is in the future): then a resume
    /// is impossible and the client needs a fresh snapshot.
    pub fn after(&self, offset: u64) -> Option<impl Iterator<Item = &T>> {
        if offset > self.latest {
            return None;
        }
        if offset == self.latest {
            return Some(self.entries.range(self.entries.len()..));
        }
        if offset + 1 < self.first_offset {
            return None;
        }
        let skip = (offset + 1 - self.first_offset) as usize;
        Some(self.entries.range(skip..))
    }

    /// The newest message.
    pub fn last(&self) -> Option<&T> {
        self.entries.back()
    }

    /// The newest `n` messages, oldest first.
    pub fn recent(&self, n: usize) -> impl Iterator<Item = &T> {
        self.entries.range(self.entries.len().saturating_sub(n)..)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many entries the ring has room for without allocating.
    #[cfg(test)]
    pub fn allocated(&self) -> usize {
        self.entries.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;

    fn ring_with(capacity: usize, count: u32) -> Ring<u32> {
        let mut ring = Ring::new(capacity);
        for n in 1..=count {
            assert_eq!(ring.push(n), u64::from(n), "offsets grow by one from 1");
        }
        ring
    }

    fn after(ring: &Ring<u32>, offset: u64) -> Option<Vec<u32>> {
        ring.after(offset).map(|it| it.copied().collect())
    }

    #[test]
    fn an_empty_ring_allocates_nothing() {
        assert_eq!(Ring::<u32>::new(300).allocated(), 0);
        assert_eq!(Ring::<u32>::after_offset(1000, 40).allocated(), 0);
    }

    #[test]
    fn an_empty_ring_resumes_only_from_zero() {
        let ring = ring_with(3, 0);
        assert_eq!(ring.latest(), 0);
        assert_eq!(after(&ring, 0), Some(vec![]));
        assert_eq!(after(&ring, 1), None);
        assert!(ring.last().is_none());
    }

    #[test]
    fn replays_everything_after_an_offset_it_still_covers() {
        let ring = ring_with(5, 4);
        assert_eq!(after(&ring, 0), Some(vec![1, 2, 3, 4]));
        assert_eq!(after(&ring, 2), Some(vec![3, 4]));
        assert_eq!(after(&ring, 4), Some(vec![]));
    }

    #[test]
    fn forgets_the_oldest_and_refuses_resumes_that_would_have_a_gap() {
        let ring = ring_with(3, 10); // holds 8, 9, 10
        assert_eq!(ring.len(), 3);
        assert_eq!(after(&ring, 7), Some(vec![8, 9, 10]));
        assert_eq!(after(&ring, 9), Some(vec![10]));
        assert_eq!(after(&ring, 6), None, "message 7 is gone");
        assert_eq!(after(&ring, 0), None);
        assert_eq!(after(&ring, 11), None, "an offset from the future");
    }

    #[test]
    fn a_reloaded_ring_continues_the_offsets_and_refuses_what_it_never_held() {
        let mut ring = Ring::after_offset(5, 40);
        assert_eq!(ring.latest(), 40);
        assert_eq!(ring.after(40).map(|it| it.count()), Some(0));
        assert!(ring.after(39).is_none(), "39 is on disk only");
        assert_eq!(ring.push(7), 41);
        assert_eq!(
            ring.after(40).map(|it| it.copied().collect::<Vec<_>>()),
            Some(vec![7])
        );
    }

    #[test]
    fn recent_gives_the_newest_oldest_first() {
        let ring = ring_with(5, 7); // holds 3..=7
        assert_eq!(ring.recent(2).copied().collect::<Vec<_>>(), [6, 7]);
        assert_eq!(
            ring.recent(60).copied().collect::<Vec<_>>(),
            [3, 4, 5, 6, 7]
        );
        assert_eq!(ring.last(), Some(&7));
    }
}
