//! Owns what the doc run's client tasks and its main task share: the phase
//! tokens (editing started, editing stopped, the end), the counters of
//! updates reserved, sent, acknowledged and refused, every client's position
//! for the drain, and the timeline of send and receipt moments.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::timeline::Timeline;

/// Where one client stands, for the drain: the last offset it received and
/// whether its socket is still open.
#[derive(Default)]
pub struct Position {
    pub last: AtomicU64,
    pub open: AtomicBool,
}

/// What the client tasks and the main task share.
pub struct DocShared {
    /// Clients subscribed, and clients that could not join.
    pub subscribed: AtomicU64,
    pub failed: AtomicU64,
    /// Cancelled when editing starts (every client subscribed).
    pub editing: CancellationToken,
    /// Cancelled when editing stops: no fresh update is sent after it.
    pub stop_editing: CancellationToken,
    /// Cancelled at the end: every client closes its socket.
    pub stop: CancellationToken,
    /// Fresh updates reserved (at most `--total-updates`), sent, acked,
    /// refused by the server (not retried) and given up after [`MAX_TRIES`](super::editor::MAX_TRIES).
    pub reserved: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub refused: AtomicU64,
    pub abandoned: AtomicU64,
    /// Sends of an update again after `rate_limited` or `internal`.
    pub resends: AtomicU64,
    /// The highest offset acknowledged, and when the last ack arrived
    /// (microseconds after editing started).
    pub max_acked: AtomicU64,
    pub last_ack_micros: AtomicU64,
    /// `doc_update`s received by all clients together.
    pub received: AtomicU64,
    /// Editors that stopped because an update of theirs was refused for good.
    pub editors_stopped: AtomicU64,
    /// Updates acknowledged when the first `too_large` arrived.
    pub full_at_acked: OnceLock<u64>,
    pub positions: Vec<Position>,
    pub timeline: Mutex<Timeline>,
    /// When editing started (set before `editing` is cancelled).
    pub started: OnceLock<Instant>,
    pub total: Option<u64>,
}

impl DocShared {
    /// Fresh counters for `clients` clients; `stop` ends the run.
    pub fn new(clients: u64, total: Option<u64>, stop: CancellationToken) -> Self {
        DocShared {
            subscribed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            editing: CancellationToken::new(),
            stop_editing: CancellationToken::new(),
            stop,
            reserved: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            max_acked: AtomicU64::new(0),
            last_ack_micros: AtomicU64::new(0),
            received: AtomicU64::new(0),
            editors_stopped: AtomicU64::new(0),
            full_at_acked: OnceLock::new(),
            positions: (0..clients).map(|_| Position::default()).collect(),
            timeline: Mutex::new(Timeline::new()),
            started: OnceLock::new(),
            total,
        }
    }

    pub fn timeline(&self) -> MutexGuard<'_, Timeline> {
        self.timeline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves one fresh update; false once `--total-updates` are reserved.
    pub fn reserve(&self) -> bool {
        let reserved = self.reserved.fetch_add(1, Relaxed);
        match self.total {
            Some(total) if reserved >= total => {
                self.reserved.fetch_sub(1, Relaxed);
                false
            }
            _ => true,
        }
    }

    /// Updates sent and not settled yet (acked, refused or abandoned).
    pub fn in_flight(&self) -> u64 {
        let settled =
            self.acked.load(Relaxed) + self.refused.load(Relaxed) + self.abandoned.load(Relaxed);
        self.sent.load(Relaxed).saturating_sub(settled)
    }

    /// Open clients that have not received every acknowledged offset yet.
    pub fn lagging(&self) -> usize {
        let target = self.max_acked.load(Relaxed);
        self.positions
            .iter()
            .filter(|p| p.open.load(Relaxed) && p.last.load(Relaxed) < target)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_caps_reservations() {
        let shared = DocShared::new(0, Some(2), CancellationToken::new());
        assert!(shared.reserve());
        assert!(shared.reserve());
        assert!(!shared.reserve());
        assert_eq!(shared.reserved.load(Relaxed), 2);
    }
}
