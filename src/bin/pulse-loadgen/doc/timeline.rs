//! Owns the run's timeline: when each acknowledged offset was first sent
//! (the sender's ack maps its envelope id's send time to the offset), and
//! the latencies measured from it, send to ack and send to each peer's
//! receipt. A receipt that comes before its sender read the ack waits in the
//! timeline until it does.

use std::collections::HashMap;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::replica::micros_between;
use crate::latency;

/// When each acknowledged offset was first sent, and the latencies measured
/// from it.
pub struct Timeline {
    slots: HashMap<u64, Slot>,
    /// Send to a peer's receipt, in microseconds.
    pub to_peer: Histogram<u64>,
    /// Send to the sender's ack, in microseconds.
    pub to_ack: Histogram<u64>,
}

/// One offset on the timeline.
enum Slot {
    /// Acknowledged: first sent at this moment.
    Sent(Instant),
    /// Received by peers at these moments, before its sender read the ack.
    Waiting(Vec<Instant>),
}

impl Timeline {
    pub fn new() -> Self {
        Timeline {
            slots: HashMap::new(),
            to_peer: latency::histogram(),
            to_ack: latency::histogram(),
        }
    }

    /// The sender read the ack of an update it first sent at `sent`.
    pub fn acked(&mut self, offset: u64, sent: Instant, acked: Instant) {
        self.to_ack.saturating_record(micros_between(sent, acked));
        if let Some(Slot::Waiting(receipts)) = self.slots.insert(offset, Slot::Sent(sent)) {
            for received in receipts {
                self.to_peer
                    .saturating_record(micros_between(sent, received));
            }
        }
    }

    /// A peer received the update with `offset` at `received`.
    pub fn received(&mut self, offset: u64, received: Instant) {
        match self.slots.get_mut(&offset) {
            Some(Slot::Sent(sent)) => {
                let micros = micros_between(*sent, received);
                self.to_peer.saturating_record(micros);
            }
            Some(Slot::Waiting(receipts)) => receipts.push(received),
            None => {
                self.slots.insert(offset, Slot::Waiting(vec![received]));
            }
        }
    }

    /// Receipts of offsets no editor of this run acknowledged.
    pub fn unmatched(&self) -> u64 {
        self.slots
            .values()
            .map(|slot| match slot {
                Slot::Waiting(receipts) => receipts.len() as u64,
                Slot::Sent(_) => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn instant_plus(base: Instant, millis: u64) -> Instant {
        base + Duration::from_millis(millis)
    }

    #[test]
    fn a_receipt_before_the_ack_is_timed_once_the_ack_arrives() {
        let base = Instant::now();
        let mut timeline = Timeline::new();
        timeline.received(7, instant_plus(base, 30));
        assert_eq!(timeline.unmatched(), 1);
        timeline.acked(7, instant_plus(base, 10), instant_plus(base, 25));
        timeline.received(7, instant_plus(base, 40));
        assert_eq!(timeline.unmatched(), 0);
        assert_eq!(timeline.to_peer.len(), 2);
        assert_eq!(timeline.to_ack.len(), 1);
        // 20 ms and 30 ms after the send (3 significant digits).
        assert_eq!(timeline.to_peer.min() / 1000, 20);
        assert_eq!(timeline.to_peer.max() / 1000, 30);
    }
}
