//! Owns one channel as one storm client sees it: the epoch and last offset
//! it resumes from, what the resume's `subscribed` announced, and every
//! offset after the drop checked against the one before it, so that a gap
//! inside the replay (which the protocol forbids on a recovered channel) is
//! told from live ticks conflated for a slow reader (which it allows).

use pulse::protocol::{Since, Subscribed, Tick};

/// One channel as one client sees it.
#[derive(Debug)]
pub struct ChannelView {
    pub name: String,
    pub epoch: Option<String>,
    /// The last offset seen (from `subscribed` or a tick).
    pub last: Option<u64>,
    /// The latest offset the resume's `subscribed` announced.
    pub resume_target: Option<u64>,
    pub recovered: Option<bool>,
    /// Ticks after the resume whose offset skipped some.
    pub gaps: u64,
    /// Offsets skipped in total after the resume.
    pub missing: u64,
    /// Of those, skips inside the replay (offsets up to `resume_target`),
    /// which the protocol forbids on a recovered channel; skips past it are
    /// live ticks the server conflated for a slow reader, which it allows.
    pub replay_gaps: u64,
    pub replay_missing: u64,
    /// Ticks after the resume whose offset was not new.
    pub duplicates: u64,
    /// Offset jumps before the drop (conflation would show here).
    pub gaps_before: u64,
}

impl ChannelView {
    pub fn new(name: String) -> Self {
        ChannelView {
            name,
            epoch: None,
            last: None,
            resume_target: None,
            recovered: None,
            gaps: 0,
            missing: 0,
            replay_gaps: 0,
            replay_missing: 0,
            duplicates: 0,
            gaps_before: 0,
        }
    }

    /// Takes a `subscribed` answer. On a resume that recovered, `last` stays
    /// the `since` offset so that the replay is checked from its first tick.
    pub fn on_subscribed(&mut self, answer: &Subscribed, resuming: bool) {
        if resuming {
            self.recovered = Some(answer.recovered);
            self.resume_target = Some(answer.offset);
            if answer.recovered && self.epoch.as_deref() == Some(answer.epoch.as_str()) {
                return;
            }
        }
        self.epoch = Some(answer.epoch.clone());
        self.last = Some(answer.offset);
    }

    pub fn on_tick(&mut self, tick: &Tick, resumed: bool) {
        let Some(last) = self.last else {
            self.last = Some(tick.offset);
            return;
        };
        if tick.offset <= last {
            if resumed {
                self.duplicates += 1;
            }
            return;
        }
        if tick.offset > last + 1 {
            if resumed {
                self.gaps += 1;
                self.missing += tick.offset - last - 1;
                if let Some(target) = self.resume_target.filter(|&target| last < target) {
                    self.replay_gaps += 1;
                    self.replay_missing += (tick.offset - 1).min(target) - last;
                }
            } else {
                self.gaps_before += 1;
            }
        }
        self.last = Some(tick.offset);
    }

    pub fn since(&self) -> Option<Since> {
        Some(Since {
            offset: self.last?,
            epoch: self.epoch.clone()?,
        })
    }

    /// Recovered, no gap, no duplicate, and the replay reached the offset
    /// the server announced.
    pub fn resumed_without_gap(&self) -> bool {
        self.replay_complete() && self.gaps == 0
    }

    /// Recovered, and the replay delivered every offset from `since` up to
    /// the one the server announced, none twice; live ticks after it may
    /// have been conflated.
    pub fn replay_complete(&self) -> bool {
        self.recovered == Some(true)
            && self.replay_gaps == 0
            && self.duplicates == 0
            && match (self.last, self.resume_target) {
                (Some(last), Some(target)) => last >= target,
                _ => false,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribed(offset: u64, epoch: &str, recovered: bool) -> Subscribed {
        Subscribed {
            channel: "ticker:SYM0".into(),
            epoch: epoch.into(),
            offset,
            recovered,
            snapshot: None,
        }
    }

    fn tick(offset: u64) -> Tick {
        Tick {
            channel: "ticker:SYM0".parse().unwrap(),
            offset,
            symbol: "SYM0".into(),
            price: 1.0,
            change: 0.0,
            change_pct: 0.0,
            volume: 1,
        }
    }

    /// A view that saw offsets up to 10 of epoch e1 before the drop.
    fn view_at_ten() -> ChannelView {
        let mut view = ChannelView::new("ticker:SYM0".into());
        view.on_subscribed(&subscribed(8, "e1", false), false);
        view.on_tick(&tick(9), false);
        view.on_tick(&tick(10), false);
        view
    }

    #[test]
    fn a_recovered_resume_with_every_offset_counts_as_no_gap() {
        let mut view = view_at_ten();
        assert_eq!(view.since().map(|s| s.offset), Some(10));
        view.on_subscribed(&subscribed(12, "e1", true), true);
        for offset in 11..=14 {
            view.on_tick(&tick(offset), true);
        }
        assert!(view.resumed_without_gap());
    }

    #[test]
    fn a_skipped_offset_after_a_recovered_resume_is_a_gap() {
        let mut view = view_at_ten();
        view.on_subscribed(&subscribed(12, "e1", true), true);
        view.on_tick(&tick(11), true);
        view.on_tick(&tick(13), true);
        assert!(!view.resumed_without_gap());
        assert!(!view.replay_complete());
        assert_eq!((view.gaps, view.missing), (1, 1));
        assert_eq!((view.replay_gaps, view.replay_missing), (1, 1));
    }

    #[test]
    fn a_live_tick_conflated_after_a_complete_replay_is_not_a_replay_gap() {
        let mut view = view_at_ten();
        view.on_subscribed(&subscribed(12, "e1", true), true);
        for offset in [11, 12, 15] {
            view.on_tick(&tick(offset), true);
        }
        assert!(view.replay_complete());
        assert!(!view.resumed_without_gap());
        assert_eq!((view.gaps, view.missing, view.replay_gaps), (1, 2, 0));
    }

    #[test]
    fn a_replay_that_stops_short_of_the_announced_offset_is_not_a_clean_resume() {
        let mut view = view_at_ten();
        view.on_subscribed(&subscribed(12, "e1", true), true);
        view.on_tick(&tick(11), true);
        assert!(!view.resumed_without_gap());
    }

    #[test]
    fn a_repeated_offset_or_recovered_false_is_not_a_clean_resume() {
        let mut repeated = view_at_ten();
        repeated.on_subscribed(&subscribed(11, "e1", true), true);
        repeated.on_tick(&tick(11), true);
        repeated.on_tick(&tick(11), true);
        assert_eq!(repeated.duplicates, 1);
        assert!(!repeated.resumed_without_gap());

        let mut fresh = view_at_ten();
        fresh.on_subscribed(&subscribed(400, "e1", false), true);
        fresh.on_tick(&tick(401), true);
        assert_eq!(fresh.last, Some(401));
        assert!(!fresh.resumed_without_gap());
    }
}
