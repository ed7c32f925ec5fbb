//! Owns what the server sends about the note before the note's engine is
//! installed ([`PendingNote`]): the note's snapshots, updates and awareness
//! in arrival order, as received (base64, not decoded), so the subscription
//! can start at welcome and the snapshot download while the engine loads.
//! Pure: the install replays it (`install.rs`).

/// The most base64 text held (4 MiB: a snapshot of the largest note the
/// server keeps, 1 MiB of state as base64, with room for updates). Past it
/// the buffer is dropped and the install asks the server for the note's
/// state again.
pub const PENDING_MAX: usize = 4 * 1024 * 1024;

/// One thing the server said about the note, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// A `subscribed` that replaces what the page has: the note's state and
    /// who is editing.
    Snapshot { state: String, awareness: String },
    /// A `doc_update`.
    Update(String),
    /// A `doc_awareness`.
    Awareness(String),
    /// The connection is gone: co-editors are not known any more.
    ForgetPeers,
}

impl Pending {
    fn size(&self) -> usize {
        match self {
            Pending::Snapshot { state, awareness } => state.len() + awareness.len(),
            Pending::Update(text) | Pending::Awareness(text) => text.len(),
            Pending::ForgetPeers => 0,
        }
    }
}

/// What arrived before the engine, in order, within [`PENDING_MAX`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingNote {
    entries: Vec<Pending>,
    size: usize,
    /// More arrived than the bound: everything was dropped, and nothing is
    /// kept until the next snapshot or the install (which then subscribes
    /// again without `since`).
    overflowed: bool,
}

impl PendingNote {
    /// Keeps `entry` after what came before it; a snapshot replaces
    /// everything before it (it holds all of it).
    pub fn push(&mut self, entry: Pending) {
        if matches!(entry, Pending::Snapshot { .. }) {
            // It holds everything, also what an overflow lost.
            self.clear();
        } else if self.overflowed {
            return;
        }
        self.size += entry.size();
        if self.size > PENDING_MAX {
            self.entries = Vec::new();
            self.size = 0;
            self.overflowed = true;
            return;
        }
        self.entries.push(entry);
    }

    /// Forgets everything (a new replica will be filled by a new snapshot).
    pub fn clear(&mut self) {
        *self = PendingNote::default();
    }

    /// Everything held, in arrival order, and whether some was dropped
    /// (then the note's state must be asked for again); empties the buffer.
    pub fn take(&mut self) -> (Vec<Pending>, bool) {
        let taken = std::mem::take(self);
        (taken.entries, taken.overflowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(text: &str) -> Pending {
        Pending::Update(text.into())
    }

    fn snapshot(state: &str) -> Pending {
        Pending::Snapshot {
            state: state.into(),
            awareness: "AA==".into(),
        }
    }

    #[test]
    fn what_arrives_is_kept_in_order() {
        let mut pending = PendingNote::default();
        pending.push(snapshot("s"));
        pending.push(update("a"));
        pending.push(Pending::Awareness("w".into()));
        pending.push(Pending::ForgetPeers);
        pending.push(update("b"));
        let (entries, overflowed) = pending.take();
        assert_eq!(
            entries,
            vec![
                snapshot("s"),
                update("a"),
                Pending::Awareness("w".into()),
                Pending::ForgetPeers,
                update("b")
            ]
        );
        assert!(!overflowed);
        assert_eq!(pending.take(), (Vec::new(), false), "taken: empty");
    }

    #[test]
    fn a_snapshot_drops_what_came_before_it() {
        let mut pending = PendingNote::default();
        pending.push(update("a"));
        pending.push(snapshot("s1"));
        pending.push(update("b"));
        pending.push(Pending::ForgetPeers);
        pending.push(snapshot("s2"));
        pending.push(update("c"));
        assert_eq!(pending.take().0, vec![snapshot("s2"), update("c")]);
    }

    #[test]
    fn at_the_bound_it_is_kept_and_past_it_dropped_until_taken() {
        let mut pending = PendingNote::default();
        pending.push(update(&"x".repeat(PENDING_MAX - 1)));
        pending.push(update("y"));
        let (entries, overflowed) = pending.take();
        assert_eq!(entries.len(), 2, "exactly the bound: kept");
        assert!(!overflowed);

        pending.push(update(&"x".repeat(PENDING_MAX)));
        pending.push(update("y"));
        let (entries, overflowed) = pending.take();
        assert!(entries.is_empty(), "one past the bound: all dropped");
        assert!(overflowed);
        pending.push(update("z"));
        assert_eq!(pending.take(), (vec![update("z")], false), "a fresh start");

        // A snapshot after an overflow holds what was lost.
        pending.push(update(&"x".repeat(PENDING_MAX + 1)));
        pending.push(update("lost"));
        pending.push(snapshot("s"));
        pending.push(update("c"));
        assert_eq!(pending.take(), (vec![snapshot("s"), update("c")], false));
    }
}
