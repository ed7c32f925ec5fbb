//! Owns the order in which a document in memory takes committed updates:
//! strictly by offset, each once. An update past the next offset (another
//! instance committed the ones between, or their publication was lost) is
//! held, not dropped, while the missing ones are read from the store; the
//! held ones follow as soon as the gap before them closes. Plain data, no IO.

use std::collections::BTreeMap;

use crate::protocol::DocUpdateEvent;

/// How many committed updates a document holds back while it waits for the
/// ones before them; past it the newest are let go (the store has them, and
/// the fill reads them with the others).
pub const MAX_HELD: usize = super::DOC_HISTORY;

/// Where a committed update goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// It is the next offset: apply it now.
    Next,
    /// Its offset was taken before (a duplicate, or filled in already).
    Known,
    /// Updates before it are missing.
    Gap,
}

/// A document's updates waiting for a gap to close, and whether a fill from
/// the store is under way.
#[derive(Debug, Default)]
pub struct Order {
    /// Committed updates past the next offset, by offset.
    held: BTreeMap<u64, DocUpdateEvent>,
    /// A fill from the store is under way (at most one per document).
    filling: bool,
    /// Updates were let go while `held` was full: only the store has them.
    overflowed: bool,
}

impl Order {
    /// Where a committed update at `offset` goes, for a document whose
    /// newest applied offset is `latest`.
    pub fn place(latest: u64, offset: u64) -> Place {
        if offset <= latest {
            Place::Known
        } else if offset == latest + 1 {
            Place::Next
        } else {
            Place::Gap
        }
    }

    /// Keeps `event`, which came past a gap, until the gap closes; returns
    /// whether a fill must start (none is under way: the caller starts it).
    pub fn hold(&mut self, event: &DocUpdateEvent) -> bool {
        if self.held.len() < MAX_HELD {
            self.held.insert(event.offset, event.clone());
        } else {
            self.overflowed = true;
        }
        !std::mem::replace(&mut self.filling, true)
    }

    /// The held update that comes right after `latest`, if any (those at or
    /// below it are forgotten: they were applied another way).
    pub fn next_after(&mut self, latest: u64) -> Option<DocUpdateEvent> {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > latest + 1 {
                return None;
            }
            let event = entry.remove();
            if event.offset == latest + 1 {
                return Some(event);
            }
        }
        None
    }

    /// The fill reached what the store had, the document now at `latest`:
    /// whether it must go on (updates still wait behind a gap, or some were
    /// let go). When not, the fill is over and the next gap starts another.
    pub fn filled(&mut self, latest: u64) -> bool {
        self.held.retain(|&offset, _| offset > latest);
        let more = !self.held.is_empty() || std::mem::take(&mut self.overflowed);
        self.filling = more;
        more
    }

    /// Whether a fill is under way.
    pub fn filling(&self) -> bool {
        self.filling
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::UserRef;

    fn event(offset: u64) -> DocUpdateEvent {
        DocUpdateEvent {
            channel: "doc:notes".parse().unwrap(),
            offset,
            doc: "notes".into(),
            update: String::new(),
            user: UserRef {
                id: "u".into(),
                name: "U".into(),
            },
        }
    }

    #[test]
    fn the_next_offset_goes_on_and_an_old_one_is_known() {
        assert_eq!(Order::place(4, 5), Place::Next);
        assert_eq!(Order::place(5, 5), Place::Known);
        assert_eq!(Order::place(5, 2), Place::Known);
        assert_eq!(Order::place(5, 7), Place::Gap);
    }

    #[test]
    fn past_a_gap_updates_are_held_and_one_fill_is_asked_for() {
        let mut order = Order::default();
        assert!(order.hold(&event(4)), "the first gap starts a fill");
        assert!(!order.hold(&event(3)));
        assert!(!order.hold(&event(6)));
        // The fill brings 2; then 3 and 4 follow from what was held.
        assert_eq!(order.next_after(1), None);
        assert_eq!(order.next_after(2).map(|e| e.offset), Some(3));
        assert_eq!(order.next_after(3).map(|e| e.offset), Some(4));
        assert_eq!(order.next_after(4), None, "5 is missing");
        assert!(order.filled(4), "6 still waits: the fill goes on");
        assert!(order.filling());
        // The fill brings 5 and 6 (6 from the store, before its held copy).
        assert_eq!(order.next_after(6), None, "the held 6 is forgotten");
        assert!(!order.filled(6));
        assert!(!order.filling());
        assert!(order.hold(&event(8)), "the next gap starts another");
    }

    #[test]
    fn updates_let_go_when_too_many_wait_keep_the_fill_going_once() {
        let mut order = Order::default();
        for offset in 0..MAX_HELD as u64 + 5 {
            order.hold(&event(offset + 2));
        }
        let mut latest = 1;
        while let Some(next) = order.next_after(latest) {
            latest = next.offset;
        }
        // Everything held was applied meanwhile, but some were let go: the
        // fill reads the store once more.
        assert_eq!(latest, MAX_HELD as u64 + 1);
        assert!(order.filled(latest));
        assert!(!order.filled(latest + 5));
    }
}
