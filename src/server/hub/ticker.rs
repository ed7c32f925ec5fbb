//! Owns the `ticker:` channel kind in the hub: a ticker's history (the last
//! 300 ticks in memory) and the snapshot a new subscriber gets (the latest
//! quote and up to 60 prices); publishing a price (numbered here, or by the
//! broker when instances run as one), installing a ticker as the cluster
//! knows it, and delivering in offset order the ticks the broker brings.

use axum::extract::ws::Utf8Bytes;
use std::time::Instant;
use tokio::sync::oneshot;

use super::deliver::{placement, Delivery};
use super::ring::Ring;
use super::{frames, lock, resubscribe, ChannelState, Gone, History, Hub, Quote};
use crate::protocol::{Channel, ServerMessage, Snapshot, Tick, TickerSnapshot};
use crate::server::broker::Sequencing;

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

impl Hub {
    /// Publishes a tick on `ticker:{symbol}`: serialised once, kept in the
    /// history, and queued (conflated) for every subscriber. Returns its offset.
    ///
    /// When instances run as one, the tick goes to the broker instead (which
    /// gives it the cluster's next offset and brings it back to every
    /// instance), and this returns 0.
    pub fn publish_tick(&self, quote: Quote) -> u64 {
        match self.broker().publish_tick(quote, None) {
            Sequencing::Here(quote) => self.publish_tick_here(quote),
            Sequencing::Broker => 0,
        }
    }

    /// Gives a tick this hub's next offset of its channel and delivers it.
    pub(super) fn publish_tick_here(&self, quote: Quote) -> u64 {
        let channel = Channel::Ticker(quote.symbol.clone());
        self.with_channel(&channel, |state| self.publish_tick_locked(state, quote))
            .expect("ticker channels are always served")
    }

    fn publish_tick_locked(&self, state: &mut ChannelState, quote: Quote) -> u64 {
        let History::Ticker(history) = &state.history else {
            unreachable!("a ticker: channel always holds a ticker history")
        };
        let tick = Tick {
            channel: state.channel.clone(),
            offset: history.ring.latest() + 1,
            symbol: quote.symbol,
            price: quote.price,
            change: quote.change,
            change_pct: quote.change_pct,
            volume: quote.volume,
        };
        self.push_tick(state, tick, None)
    }

    /// Keeps `tick` (the channel's next offset) in the history and queues it,
    /// conflated, for every subscriber: as `frame` when it came serialised
    /// (from the instance that published it, with that moment's timestamp).
    fn push_tick(&self, state: &mut ChannelState, tick: Tick, frame: Option<Utf8Bytes>) -> u64 {
        let History::Ticker(history) = &mut state.history else {
            unreachable!("a ticker: channel always holds a ticker history")
        };
        let frame: Utf8Bytes =
            frame.unwrap_or_else(|| frames::encode(ServerMessage::Tick(tick.clone())));
        let offset = history.ring.push(TickEntry {
            tick,
            frame: frame.clone(),
        });
        let metrics = &self.inner.metrics;
        metrics.ticks_published.inc();
        let at = Instant::now();
        for outbox in state.subscribers.values() {
            match outbox.deliver_tick(&state.name, frame.clone(), at) {
                Ok(true) => metrics.ticks_conflated.inc(),
                Ok(false) => 0,
                Err(Gone) => 0,
            };
        }
        offset
    }

    /// Publishes a price from an outside feed and returns its offset: the
    /// cluster's when instances run as one (`None` if Redis could not take
    /// it), else this hub's.
    pub async fn publish_tick_shared(&self, quote: Quote) -> Option<u64> {
        let (answer, offset) = oneshot::channel();
        match self.broker().publish_tick(quote, Some(answer)) {
            Sequencing::Here(quote) => Some(self.publish_tick_here(quote)),
            Sequencing::Broker => offset.await.ok().flatten(),
        }
    }

    /// Installs a ticker channel as the cluster knows it (its epoch, and its
    /// newest ticks, oldest first, ending at offset `latest`), unless this
    /// hub holds it already.
    pub fn install_ticker(&self, channel: &Channel, epoch: String, latest: u64, recent: Vec<Tick>) {
        if self.has(channel) {
            return;
        }
        let mut ring = Ring::after_offset(HISTORY, latest - recent.len() as u64);
        for tick in recent {
            let frame = frames::encode(ServerMessage::Tick(tick.clone()));
            ring.push(TickEntry { tick, frame });
        }
        let history = TickerHistory {
            ring,
            epoch: Some(epoch),
        };
        self.install(channel, History::Ticker(history));
    }

    /// Gives a ticker this hub holds with no tick yet the epoch the cluster
    /// holds for it now (Redis lost the one it had, or this hub served one
    /// of its own while Redis was away): its subscribers get a fresh
    /// `subscribed` in it, so their cursor is one the first tick continues.
    /// A ticker that had a tick learns a new epoch from the next tick.
    pub fn reopen_ticker(&self, channel: &Channel, epoch: String) {
        let Some(state) = lock(&self.inner.channels).get(channel).cloned() else {
            return;
        };
        let mut state = lock(&state);
        let state: &mut ChannelState = &mut state;
        let History::Ticker(history) = &mut state.history else {
            return;
        };
        if history.ring.latest() > 0 || history.epoch.as_deref() == Some(epoch.as_str()) {
            return;
        }
        history.epoch = Some(epoch);
        resubscribe(state, &self.inner.epoch);
    }

    /// Delivers a tick the broker brought (offset given by the cluster, in
    /// the cluster's `epoch`): the next offset goes to subscribers; an
    /// older one is known; a skipped one is a gap. A new epoch (Redis lost
    /// its keys) starts the history again from this tick.
    pub fn deliver_tick(&self, epoch: &str, tick: Tick, frame: Utf8Bytes) -> Delivery {
        self.deliver_tick_with(epoch, tick, frame, false)
    }

    /// Delivers a tick after a gap nothing can fill: the history starts
    /// again at it (a resume from before gets a snapshot).
    pub fn deliver_tick_after_gap(&self, epoch: &str, tick: Tick, frame: Utf8Bytes) -> Delivery {
        self.deliver_tick_with(epoch, tick, frame, true)
    }

    fn deliver_tick_with(
        &self,
        epoch: &str,
        tick: Tick,
        frame: Utf8Bytes,
        restart: bool,
    ) -> Delivery {
        let Some(state) = lock(&self.inner.channels).get(&tick.channel).cloned() else {
            return Delivery::NotHeld;
        };
        let mut state = lock(&state);
        let state: &mut ChannelState = &mut state;
        let History::Ticker(history) = &mut state.history else {
            return Delivery::NotHeld;
        };
        // A new epoch (Redis lost its keys) always starts the history again,
        // and subscribers get a fresh `subscribed`: their cursor's epoch is
        // gone.
        let new_epoch = history.epoch.as_deref() != Some(epoch);
        let starts_again = new_epoch
            || match placement(history.ring.latest(), tick.offset, restart) {
                Ok(starts_again) => starts_again,
                Err(delivery) => return delivery,
            };
        if starts_again {
            *history = TickerHistory {
                ring: Ring::after_offset(HISTORY, tick.offset - 1),
                epoch: Some(epoch.to_owned()),
            };
        }
        if new_epoch {
            history.ring.push(TickEntry { tick, frame });
            self.inner.metrics.ticks_published.inc();
            resubscribe(state, &self.inner.epoch);
            return Delivery::Delivered;
        }
        self.push_tick(state, tick, Some(frame));
        Delivery::Delivered
    }
}
