//! Owns a `ticker:` channel's history: the last 300 ticks in memory, and the
//! snapshot a new subscriber gets (the latest quote and up to 60 prices).

use axum::extract::ws::Utf8Bytes;

use super::ring::Ring;
use crate::protocol::{Snapshot, Tick, TickerSnapshot};

/// Ticks a ticker channel keeps for resume (PROTOCOL.md: last 300).
pub const HISTORY: usize = 300;
/// Prices in a ticker snapshot's `recent` (PROTOCOL.md: up to 60).
pub const RECENT: usize = 60;

/// One tick: its typed data (for snapshots) and its frame (for replay).
#[derive(Debug, Clone)]
pub struct TickEntry {
    pub tick: Tick,
    pub frame: Utf8Bytes,
}

/// The history of one symbol.
#[derive(Debug)]
pub struct TickerHistory {
    pub ring: Ring<TickEntry>,
    /// Set when instances run as one (the epoch lives in Redis with the
    /// offsets); else the hub's own epoch applies.
    pub epoch: Option<String>,
}

impl Default for TickerHistory {
    fn default() -> Self {
        TickerHistory {
            ring: Ring::new(HISTORY),
            epoch: None,
        }
    }
}

impl TickerHistory {
    /// `{"quote", "recent"}`, or `None` before the first tick.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let last = self.ring.last()?;
        Some(Snapshot::Ticker(TickerSnapshot {
            quote: last.tick.clone(),
            recent: self.ring.recent(RECENT).map(|e| e.tick.price).collect(),
        }))
    }
}
