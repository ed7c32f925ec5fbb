//! The pure reducer: how server messages change what the page shows. No
//! signals and no IO here, so every rule is tested natively.

use std::collections::HashMap;

use crate::protocol::{
    PresenceDiff, PresenceUser, Since, Snapshot, Subscribed, Tick, TickerSnapshot,
};

/// Prices a row's sparkline shows (the server's snapshot holds as many).
pub const SPARKLINE_POINTS: usize = 60;

/// Which way the last tick moved the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    Up,
    Down,
    #[default]
    Flat,
}

/// One watched symbol as the table shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuoteView {
    pub price: f64,
    pub change: f64,
    pub change_pct: f64,
    pub volume: u64,
    /// Recent prices, oldest first, at most [`SPARKLINE_POINTS`].
    pub recent: Vec<f64>,
    pub direction: Direction,
    /// Counts ticks applied since the page started; the flash restarts on each.
    pub ticks_seen: u64,
}

impl QuoteView {
    pub fn from_snapshot(snapshot: &TickerSnapshot) -> Self {
        let quote = &snapshot.quote;
        let mut recent = snapshot.recent.clone();
        if recent.is_empty() {
            recent.push(quote.price);
        }
        let skip = recent.len().saturating_sub(SPARKLINE_POINTS);
        QuoteView {
            price: quote.price,
            change: quote.change,
            change_pct: quote.change_pct,
            volume: quote.volume,
            recent: recent.split_off(skip),
            direction: Direction::Flat,
            ticks_seen: 0,
        }
    }

    /// The first tick of a symbol that had none at subscribe time.
    pub fn from_tick(tick: &Tick) -> Self {
        let mut view = QuoteView::default();
        view.apply(tick);
        view.direction = Direction::Flat;
        view
    }

    pub fn apply(&mut self, tick: &Tick) {
        self.direction = if self.recent.is_empty() || tick.price == self.price {
            Direction::Flat
        } else if tick.price > self.price {
            Direction::Up
        } else {
            Direction::Down
        };
        self.price = tick.price;
        self.change = tick.change;
        self.change_pct = tick.change_pct;
        self.volume = tick.volume;
        if self.recent.len() == SPARKLINE_POINTS {
            self.recent.remove(0);
        }
        self.recent.push(tick.price);
        self.ticks_seen += 1;
    }
}

/// Applies a `presence_diff` to the list of who is online (kept in name order).
pub fn apply_presence(users: &mut Vec<PresenceUser>, diff: &PresenceDiff) {
    users.retain(|u| !diff.leaves.iter().any(|gone| gone.id == u.id));
    for user in diff.joins.iter().chain(&diff.updates) {
        match users.iter_mut().find(|u| u.id == user.id) {
            Some(known) => *known = user.clone(),
            None => users.push(user.clone()),
        }
    }
    sort_people(users);
}

/// Orders people by name (case-insensitively), then id.
pub fn sort_people(users: &mut [PresenceUser]) {
    users.sort_by_cached_key(|user| (super::case::lower(&user.name), user.id.clone()));
}

/// What a `subscribed` means for the view of its channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Renewal {
    /// Recovered: keep the view, the replay follows.
    Keep,
    /// Not recovered: replace the view with this snapshot (`None`: no ticks yet).
    Replace(Option<QuoteView>),
}

/// The last `{offset, epoch}` seen per channel: what a resume sends, and the
/// filter that keeps any offset from being applied twice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cursors {
    seen: HashMap<String, Since>,
}

impl Cursors {
    /// Records a `subscribed` and says what happens to the view.
    pub fn subscribed(&mut self, answer: &Subscribed) -> Renewal {
        if answer.recovered && self.seen.contains_key(&answer.channel) {
            // The replay of everything after our last offset follows; the
            // cursor stays there so each replayed message is applied.
            return Renewal::Keep;
        }
        // A snapshot covers everything up to the channel's latest offset.
        self.seen.insert(
            answer.channel.clone(),
            Since {
                offset: answer.offset,
                epoch: answer.epoch.clone(),
            },
        );
        if answer.recovered {
            return Renewal::Keep;
        }
        Renewal::Replace(match &answer.snapshot {
            Some(Snapshot::Ticker(snapshot)) => Some(QuoteView::from_snapshot(snapshot)),
            _ => None,
        })
    }

    /// Whether a message at `offset` on `channel` is new; records it if so.
    /// Offsets may jump (conflated ticks) but never go back.
    pub fn accept(&mut self, channel: &str, offset: u64) -> bool {
        match self.seen.get_mut(channel) {
            Some(since) if offset <= since.offset => false,
            Some(since) => {
                since.offset = offset;
                true
            }
            // Not subscribed (any more): ignore stragglers.
            None => false,
        }
    }

    /// Where to resume `channel` from.
    pub fn since(&self, channel: &str) -> Option<Since> {
        self.seen.get(channel).cloned()
    }

    pub fn forget(&mut self, channel: &str) {
        self.seen.remove(channel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(offset: u64, price: f64) -> Tick {
        Tick {
            channel: "ticker:AAPL".parse().unwrap(),
            offset,
            symbol: "AAPL".into(),
            price,
            change: price - 100.0,
            change_pct: price - 100.0,
            volume: offset * 10,
        }
    }

    fn subscribed(offset: u64, recovered: bool, snapshot: Option<Snapshot>) -> Subscribed {
        Subscribed {
            channel: "ticker:AAPL".into(),
            epoch: "e1".into(),
            offset,
            recovered,
            snapshot,
        }
    }

    #[test]
    fn a_fresh_subscription_replaces_the_view_with_its_snapshot() {
        let mut cursors = Cursors::default();
        let snapshot = Snapshot::Ticker(TickerSnapshot {
            quote: tick(7, 101.0),
            recent: vec![99.0, 101.0],
        });
        let Renewal::Replace(Some(view)) =
            cursors.subscribed(&subscribed(7, false, Some(snapshot)))
        else {
            panic!()
        };
        assert_eq!(
            (view.price, view.recent.as_slice(), view.direction),
            (101.0, &[99.0, 101.0][..], Direction::Flat)
        );
        assert_eq!(
            cursors.since("ticker:AAPL"),
            Some(Since {
                offset: 7,
                epoch: "e1".into()
            })
        );
        assert_eq!(
            cursors.subscribed(&subscribed(0, false, None)),
            Renewal::Replace(None)
        );
    }

    #[test]
    fn a_recovered_subscription_keeps_the_view() {
        let mut cursors = Cursors::default();
        assert_eq!(
            cursors.subscribed(&subscribed(7, true, None)),
            Renewal::Keep
        );
    }

    #[test]
    fn the_replay_after_a_recovered_subscription_is_applied() {
        let mut cursors = Cursors::default();
        cursors.subscribed(&subscribed(3, false, None));
        // Reconnected: two messages were missed; `subscribed` says latest 5.
        assert_eq!(
            cursors.subscribed(&subscribed(5, true, None)),
            Renewal::Keep
        );
        let applied: Vec<u64> = [4, 5, 5, 6]
            .into_iter()
            .filter(|&offset| cursors.accept("ticker:AAPL", offset))
            .collect();
        assert_eq!(applied, [4, 5, 6], "the replay, then live, each once");
    }

    #[test]
    fn offsets_are_applied_once_and_may_jump_but_never_go_back() {
        let mut cursors = Cursors::default();
        cursors.subscribed(&subscribed(3, false, None));
        let accepted: Vec<u64> = [2, 3, 4, 4, 9, 5, 10]
            .into_iter()
            .filter(|&offset| cursors.accept("ticker:AAPL", offset))
            .collect();
        assert_eq!(accepted, [4, 9, 10]);
        assert_eq!(cursors.since("ticker:AAPL").unwrap().offset, 10);
        assert!(!cursors.accept("ticker:MSFT", 1), "not subscribed");
        cursors.forget("ticker:AAPL");
        assert!(!cursors.accept("ticker:AAPL", 11));
    }

    fn person(id: &str, name: &str, connections: u32) -> PresenceUser {
        PresenceUser {
            id: id.into(),
            name: name.into(),
            status: crate::protocol::UserStatus::Online,
            connections,
        }
    }

    #[test]
    fn presence_diffs_join_update_and_leave_in_name_order() {
        let mut users = vec![person("bob", "Bob", 1)];
        let diff = PresenceDiff {
            channel: "presence".parse().unwrap(),
            offset: 2,
            joins: vec![person("ann", "ann", 1)],
            leaves: vec![],
            updates: vec![person("bob", "Bob", 2)],
        };
        apply_presence(&mut users, &diff);
        assert_eq!(users, [person("ann", "ann", 1), person("bob", "Bob", 2)]);
        let diff = PresenceDiff {
            leaves: vec![person("ann", "ann", 1)],
            joins: vec![],
            updates: vec![],
            ..diff
        };
        apply_presence(&mut users, &diff);
        assert_eq!(users, [person("bob", "Bob", 2)]);
    }

    #[test]
    fn ticks_move_the_price_direction_and_sparkline() {
        let mut view = QuoteView::from_tick(&tick(1, 100.0));
        assert_eq!((view.direction, view.recent.len()), (Direction::Flat, 1));
        view.apply(&tick(2, 101.0));
        assert_eq!((view.direction, view.ticks_seen), (Direction::Up, 2));
        view.apply(&tick(3, 99.5));
        assert_eq!(
            (view.direction, view.price, view.change),
            (Direction::Down, 99.5, -0.5)
        );
        for n in 0..100 {
            view.apply(&tick(4 + n, 100.0 + n as f64));
        }
        assert_eq!(view.recent.len(), SPARKLINE_POINTS);
        assert_eq!(view.recent.last(), Some(&199.0));
    }
}
