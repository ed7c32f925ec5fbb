//! Owns the queue between the hub and the Redis publisher: bounded, with a
//! policy per kind of message, so that a slow or absent Redis costs memory
//! up to a bound and never holds the hub back.
//!
//! - Chat, notifications, document updates, read marks and heads are never
//!   dropped. Up to [`ORDERED_BOUND`] wait in commit order; past it a
//!   message is not queued but its channel is marked behind (the newest
//!   offset, or a read mark), and a head goes out instead once Redis takes
//!   messages again: the other instances catch that channel up from the
//!   store, which has every committed message.
//! - Ticks keep the latest per channel (a newer price replaces one not sent
//!   yet; whoever waited for the older one's offset gets the newer one's),
//!   for at most [`TICK_CHANNELS`] channels.
//! - Awareness keeps the latest [`AWARENESS_KEPT`] frames per document, for
//!   at most [`AWARENESS_CHANNELS`] documents: it is live state, renewed by
//!   every editor every 15 s.
//!
//! The publisher takes everything waiting at once ([`Outgoing::next`]) and
//! sends it in one pipeline.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

use super::{Publication, TickAnswer};
use crate::protocol::Channel;
use crate::server::hub::{lock, Quote};
use crate::server::metrics::RelayGauges;

/// Messages that are never dropped waiting for Redis, at most.
pub const ORDERED_BOUND: usize = 4096;
/// Ticker channels with a tick waiting for Redis, at most.
pub const TICK_CHANNELS: usize = 4096;
/// Documents with awareness waiting for Redis, at most.
pub const AWARENESS_CHANNELS: usize = 1024;
/// Awareness frames kept per document while Redis is slow.
pub const AWARENESS_KEPT: usize = 8;
/// Messages sent in one pipeline, at most.
pub const BATCH: usize = 512;

/// A tick waiting for its offset from Redis.
#[derive(Debug)]
pub struct TickJob {
    pub quote: Quote,
    /// Who waits for its offset (the ticks it replaced included).
    pub answers: Vec<TickAnswer>,
    /// The simulator's: published only while this instance holds its lease.
    pub fenced: bool,
}

/// What the publisher sends in one pipeline.
#[derive(Debug, Default)]
pub struct Batch {
    pub ordered: Vec<Publication>,
    pub ticks: Vec<TickJob>,
    pub awareness: Vec<(Channel, Utf8Bytes)>,
    /// When the oldest of `ordered` was queued.
    pub since: Option<Instant>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty() && self.ticks.is_empty() && self.awareness.is_empty()
    }
}

/// A channel whose messages went past the bound.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Behind {
    /// Its newest committed offset not queued.
    head: Option<u64>,
    /// A read mark not queued.
    read: bool,
}

#[derive(Default)]
struct Pending {
    ordered: VecDeque<(Publication, Instant)>,
    behind: HashMap<Channel, Behind>,
    ticks: HashMap<Channel, TickJob>,
    awareness: HashMap<Channel, VecDeque<Utf8Bytes>>,
    closed: bool,
}

/// The queue; one per Redis broker, shared by the hub (pushing) and the
/// publisher task (taking).
pub struct Outgoing {
    pending: Mutex<Pending>,
    /// Wakes the publisher when something was queued (or the queue closed).
    ready: Notify,
    gauges: RelayGauges,
}

impl Outgoing {
    pub fn new(gauges: RelayGauges) -> Self {
        Outgoing {
            pending: Mutex::new(Pending::default()),
            ready: Notify::new(),
            gauges,
        }
    }

    /// Queues a message that is never dropped (see the module's policy).
    pub fn push(&self, publication: Publication) {
        let mut pending = lock(&self.pending);
        pending.push_ordered(publication, Instant::now(), &self.gauges);
        self.measure(&pending);
        drop(pending);
        self.ready.notify_one();
    }

    /// Queues a tick, replacing one of its channel not sent yet.
    pub fn push_tick(&self, quote: Quote, answer: Option<TickAnswer>) {
        let channel = Channel::Ticker(quote.symbol.clone());
        let mut pending = lock(&self.pending);
        let full = pending.ticks.len() >= TICK_CHANNELS;
        match pending.ticks.get_mut(&channel) {
            Some(job) => {
                job.quote = quote;
                job.fenced = job.fenced && answer.is_none();
                job.answers.extend(answer);
            }
            None if full => {
                if let Some(answer) = answer {
                    let _ = answer.send(None);
                }
                return;
            }
            None => {
                let fenced = answer.is_none();
                let answers = answer.into_iter().collect();
                pending.ticks.insert(
                    channel,
                    TickJob {
                        quote,
                        answers,
                        fenced,
                    },
                );
            }
        }
        self.measure(&pending);
        drop(pending);
        self.ready.notify_one();
    }

    /// Queues an awareness frame, dropping the oldest of its document's
    /// past [`AWARENESS_KEPT`].
    pub fn push_awareness(&self, channel: &Channel, frame: Utf8Bytes) {
        let mut pending = lock(&self.pending);
        let full = pending.awareness.len() >= AWARENESS_CHANNELS;
        match pending.awareness.get_mut(channel) {
            Some(frames) => {
                if frames.len() >= AWARENESS_KEPT {
                    frames.pop_front();
                }
                frames.push_back(frame);
            }
            None if full => return,
            None => {
                pending
                    .awareness
                    .insert(channel.clone(), VecDeque::from([frame]));
            }
        }
        self.measure(&pending);
        drop(pending);
        self.ready.notify_one();
    }

    /// Puts messages Redis did not take back at the front, in their order
    /// (the bound applies: what passes it marks its channel behind).
    pub fn requeue(&self, ordered: Vec<Publication>, since: Instant) {
        let mut pending = lock(&self.pending);
        let later = std::mem::take(&mut pending.ordered);
        for publication in ordered {
            pending.push_ordered(publication, since, &self.gauges);
        }
        for (publication, at) in later {
            pending.push_ordered(publication, at, &self.gauges);
        }
        self.measure(&pending);
    }

    /// Waits until something is queued and takes it: up to [`BATCH`]
    /// ordered messages (then a head for each channel behind), every tick
    /// and every awareness frame. `None` once closed.
    pub async fn next(&self) -> Option<Batch> {
        loop {
            let notified = self.ready.notified();
            {
                let mut pending = lock(&self.pending);
                if pending.closed {
                    return None;
                }
                let batch = pending.take();
                self.measure(&pending);
                if !batch.is_empty() {
                    return Some(batch);
                }
            }
            notified.await;
        }
    }

    /// Ends the publisher (its broker is gone).
    pub fn close(&self) {
        lock(&self.pending).closed = true;
        self.ready.notify_one();
    }

    /// Sets the depth gauges (and their peaks) to what waits now.
    fn measure(&self, pending: &Pending) {
        let ordered = pending.ordered.len() as i64;
        let ticks = pending.ticks.len() as i64;
        let awareness: usize = pending.awareness.values().map(VecDeque::len).sum();
        self.gauges.set_depth(ordered, ticks, awareness as i64);
    }

    /// The lag: how long the oldest message waiting has waited (seconds).
    pub fn lag(&self) -> f64 {
        lock(&self.pending)
            .ordered
            .front()
            .map_or(0.0, |(_, at)| at.elapsed().as_secs_f64())
    }
}

impl Pending {
    fn push_ordered(&mut self, publication: Publication, at: Instant, gauges: &RelayGauges) {
        if self.ordered.len() < ORDERED_BOUND {
            self.ordered.push_back((publication, at));
            return;
        }
        gauges.behind.inc();
        let channel = publication.channel();
        let behind = self.behind.entry(channel).or_default();
        match publication {
            Publication::Read(_) => behind.read = true,
            other => behind.head = behind.head.max(other.offset()),
        }
    }

    fn take(&mut self) -> Batch {
        let since = self.ordered.front().map(|(_, at)| *at);
        let count = self.ordered.len().min(BATCH);
        let mut ordered: Vec<Publication> = self
            .ordered
            .drain(..count)
            .map(|(publication, _)| publication)
            .collect();
        if self.ordered.is_empty() {
            // What went past the bound follows what was queued before it.
            for (channel, behind) in self.behind.drain() {
                if let Some(offset) = behind.head {
                    ordered.push(Publication::Head(channel.clone(), offset));
                }
                if behind.read {
                    ordered.push(Publication::Read(channel));
                }
            }
        }
        Batch {
            ordered,
            ticks: self.ticks.drain().map(|(_, job)| job).collect(),
            awareness: self
                .awareness
                .drain()
                .flat_map(|(channel, frames)| frames.into_iter().map(move |f| (channel.clone(), f)))
                .collect(),
            since,
        }
    }
}

#[cfg(test)]
mod tests;
