//! Owns [`Outbox`]: one connection's queue of frames waiting for its writer.
//!
//! Publishers (the hub, on any task) push without ever waiting: a slow reader
//! cannot delay them. Live ticks are conflated in place (a newer tick of a
//! symbol replaces the one still queued, so offsets jump); every other live
//! frame counts against a byte budget (`--max-outbox-bytes`), and a
//! connection over budget is a slow consumer, closed with 4008 so it resumes
//! from its offsets.
//!
//! Subscribe answers (a `subscribed` with what follows it, whether the client
//! asked for it or the server renews a channel on its own) never count
//! against that budget: live traffic queued for a client cannot make an
//! answer close it. They have a bound of their own, [`MAX_ANSWER_BYTES`] of
//! answers not yet written, so a client that asks again and again without
//! reading cannot make the server hold them without end: past it, it is a
//! slow consumer too. One answer always fits, however large (a 1 MiB
//! document's snapshot is ~1.4 MB of base64).

use axum::extract::ws::Utf8Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

use crate::server::hub::{Gone, Subscriber};
use crate::server::metrics::ChannelKind;

mod stamp;
use stamp::Stamp;

/// The most bytes of subscribe answers a connection may have queued (not yet
/// taken by its writer) before it is closed with 4008; an answer that finds
/// none queued is always taken. Room for what one page asks for at once (a
/// full document, an inbox and several rooms, each snapshot at its bound)
/// while its first answers are still being written, never for answers asked
/// for again and again and never read.
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// Why a push was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The connection is closing; the frame is dropped.
    Closed,
    /// This push took the queue over its budget (or its answers over
    /// theirs): the connection is now a slow consumer and must be closed
    /// with 4008.
    SlowConsumer,
}

/// What the writer does next.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// One frame to write, the common case (nothing allocated).
    Frame(Utf8Bytes, Taken),
    /// Frames to write in one `batch`, in order, and when each was queued.
    Frames(Vec<Utf8Bytes>, Drained),
    /// A WebSocket Ping.
    Ping,
    /// Write the close frame and stop.
    Close(u16, &'static str),
}

/// What the writer learns of the frames it took, for `/metrics`.
#[derive(Debug, PartialEq, Default)]
pub struct Drained {
    /// When each frame was queued (a conflated tick: when it replaced the
    /// older one), in the frames' order.
    pub queued_at: Vec<Instant>,
    /// Bytes queued when they were taken: those taken, and the live frames
    /// and answers left behind (ticks left behind are not counted).
    pub depth: usize,
    /// The subscribes whose first frame is among those taken.
    pub firsts: Vec<FirstFrame>,
}

/// What the writer learns of the one frame it took, for `/metrics`: the
/// record of [`Next::Frame`], held without allocating across the write.
#[derive(Debug, PartialEq)]
pub struct Taken {
    /// When the frame was queued (see [`Drained::queued_at`]).
    pub queued_at: Instant,
    /// Bytes queued when it was taken (see [`Drained::depth`]).
    pub depth: usize,
    /// The subscribe whose first frame it is, if any.
    pub first: Option<FirstFrame>,
}

/// A subscribe waiting for its channel's first frame to be written
/// (`pulse_subscribe_first_message_seconds`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstFrame {
    pub kind: ChannelKind,
    /// When the connection began handling the subscribe.
    pub since: Instant,
}

/// A connection's outbound queue; shared by the connection task, the hub and
/// the writer task (the only consumer).
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer when something was queued.
    ready: Notify,
    /// Wakes the connection task when the queue overflowed.
    overflowed: Notify,
    budget: usize,
    /// The most bytes of answers queued ([`MAX_ANSWER_BYTES`]).
    answer_limit: usize,
    /// When the outbox was made: queued frames' times count from it ([`Stamp`]).
    base: Instant,
}

/// What a queued frame is, which decides what it counts toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A live frame other than a tick: counts against the budget.
    Live = 0,
    /// Part of a subscribe answer: counts toward the answer bound only.
    Answer = 1,
    /// A live tick: counts toward nothing (conflation already bounds ticks
    /// to one per channel) and may wait for others ([`Outbox::hold_ticks`]).
    Tick = 2,
}

/// A queued frame: the frame and one word saying what it is, when it was
/// queued and whether it opens a timed answer ([`Stamp`]). Kept as small as
/// the frame handle plus a word (40 bytes) because the hub writes one into a
/// different connection's queue for every subscriber of every tick: at 5,000
/// connections those writes miss the cache, and a larger entry (80 bytes,
/// with an `Instant` and an `Option<FirstFrame>` inline) cost measurably more
/// CPU per delivered message and grew every connection's queue buffer.
#[derive(Debug)]
struct Queued {
    frame: Utf8Bytes,
    stamp: Stamp,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Queued>,
    /// How many frames were ever taken from the front, so a queued frame's
    /// position is `sequence - taken`.
    taken: u64,
    /// The sequence number of the live tick still queued per channel.
    queued_ticks: HashMap<Arc<str>, u64>,
    /// Bytes of queued live frames, which count against the budget.
    bytes: usize,
    /// Bytes of queued answers, which count toward [`MAX_ANSWER_BYTES`].
    answer_bytes: usize,
    /// The subscribe the next answer belongs to ([`Outbox::time_answer`]).
    timing: Option<FirstFrame>,
    /// The timings of the queued frames whose [`Stamp`] says they open a
    /// timed answer, in queue order (empty, and unallocated, but while a
    /// subscribe's answer waits).
    firsts: VecDeque<FirstFrame>,
    ping: bool,
    close: Option<(u16, &'static str)>,
    /// [`Outbox::close_now`] was called: a write still pending is given up.
    abandoned: bool,
    /// Nothing more is accepted (closing or over budget).
    sealed: bool,
    slow: bool,
}

impl Outbox {
    /// An outbox holding at most `budget` bytes of live frames other than
    /// ticks, and [`MAX_ANSWER_BYTES`] of subscribe answers.
    pub fn new(budget: usize) -> Arc<Self> {
        Arc::new(Outbox {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            overflowed: Notify::new(),
            budget,
            answer_limit: MAX_ANSWER_BYTES,
            base: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every update is a single push or pop), so a poisoned lock is used as is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame that must arrive (replies, live non-ticker messages);
    /// it counts against the budget.
    pub fn push(&self, frame: Utf8Bytes) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.sealed {
            return Err(PushError::Closed);
        }
        if state.bytes + frame.len() > self.budget {
            return Err(self.overflow(state));
        }
        state.bytes += frame.len();
        state.frames.push_back(Queued {
            frame,
            stamp: Stamp::new(Kind::Live, false, Instant::now(), self.base),
        });
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Queues one subscribe answer: the `subscribed` and the frames that
    /// follow it (a replay, the editors of a document), whole and in order,
    /// or nothing. It never counts against the live budget (PROTOCOL.md: a
    /// subscribe answer never closes the client; live traffic must not be
    /// charged for it either). It counts toward [`MAX_ANSWER_BYTES`]
    /// instead: taken whenever no other answer is queued, else only within
    /// that bound; past it the connection is a slow consumer.
    pub fn push_answer(&self, answer: Vec<Utf8Bytes>) -> Result<(), PushError> {
        let size: usize = answer.iter().map(|frame| frame.len()).sum();
        let mut state = self.lock();
        if state.sealed {
            return Err(PushError::Closed);
        }
        if state.answer_bytes > 0 && state.answer_bytes + size > self.answer_limit {
            return Err(self.overflow(state));
        }
        state.answer_bytes += size;
        let at = Instant::now();
        // An empty answer takes the timing and times nothing, as before.
        let first = state.timing.take().filter(|_| !answer.is_empty());
        state.firsts.extend(first);
        let mut timed = first.is_some();
        state.frames.extend(answer.into_iter().map(|frame| Queued {
            frame,
            stamp: Stamp::new(Kind::Answer, std::mem::take(&mut timed), at, self.base),
        }));
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Says that the next answer queued is the one to a subscribe of a
    /// channel of `kind` handled since `since`: its first frame is timed
    /// when written. The connection calls it just before asking the hub,
    /// which queues the answer within that call, and calls
    /// [`Outbox::untime_answer`] just after (no answer: nothing timed). An
    /// answer the hub sends on its own in that instant (a renewal) would
    /// take the timing instead: rare, and then measured all the same.
    pub fn time_answer(&self, kind: ChannelKind, since: Instant) {
        self.lock().timing = Some(FirstFrame { kind, since });
    }

    /// Forgets a [`Outbox::time_answer`] no answer took (a refused subscribe).
    pub fn untime_answer(&self) {
        self.lock().timing = None;
    }

    /// Seals the queue of a slow consumer and wakes its connection, which
    /// closes it with 4008.
    fn overflow(&self, mut state: std::sync::MutexGuard<'_, State>) -> PushError {
        state.sealed = true;
        state.slow = true;
        drop(state);
        self.overflowed.notify_one();
        PushError::SlowConsumer
    }

    /// Queues a live tick of `channel`, replacing the one still queued for the
    /// same channel if any (conflation). Returns whether one was replaced.
    pub fn push_tick(&self, channel: &Arc<str>, frame: Utf8Bytes) -> Result<bool, PushError> {
        self.push_tick_at(channel, frame, Instant::now())
    }

    /// [`Outbox::push_tick`], queued at `at` (the hub reads the clock once
    /// per tick for all its subscribers).
    pub fn push_tick_at(
        &self,
        channel: &Arc<str>,
        frame: Utf8Bytes,
        at: Instant,
    ) -> Result<bool, PushError> {
        let mut state = self.lock();
        if state.sealed {
            return Err(PushError::Closed);
        }
        let taken = state.taken;
        if let Some(&sequence) = state.queued_ticks.get(channel) {
            if sequence >= taken {
                let index = (sequence - taken) as usize;
                let queued = &mut state.frames[index];
                queued.frame = frame;
                queued.stamp = queued.stamp.requeued(at, self.base);
                return Ok(true);
            }
        }
        let sequence = taken + state.frames.len() as u64;
        state.frames.push_back(Queued {
            frame,
            stamp: Stamp::new(Kind::Tick, false, at, self.base),
        });
        state.queued_ticks.insert(channel.clone(), sequence);
        drop(state);
        self.ready.notify_one();
        Ok(false)
    }

    /// Forgets the queued live tick of `channel` (after an unsubscribe) so it
    /// can no longer be replaced; frames already queued still go out in order.
    pub fn forget_channel(&self, channel: &str) {
        self.lock().queued_ticks.remove(channel);
    }

    /// Asks the writer to send a WebSocket Ping.
    pub fn ping(&self) {
        self.lock().ping = true;
        self.ready.notify_one();
    }

    /// Closes after the frames already queued (graceful: 1000, 1001, ...).
    pub fn close_after_queued(&self, code: u16, reason: &'static str) {
        let mut state = self.lock();
        state.sealed = true;
        state.close.get_or_insert((code, reason));
        drop(state);
        self.ready.notify_one();
    }

    /// Drops everything queued and closes at once (4008, 1009, ...).
    pub fn close_now(&self, code: u16, reason: &'static str) {
        let mut state = self.lock();
        state.sealed = true;
        state.frames.clear();
        state.firsts = VecDeque::new();
        state.queued_ticks.clear();
        state.bytes = 0;
        state.answer_bytes = 0;
        state.close = Some((code, reason));
        state.abandoned = true;
        drop(state);
        self.ready.notify_one();
    }

    /// Completes once [`Outbox::close_now`] was called: the writer stops
    /// waiting on a write the peer does not take and goes on to the close
    /// (which a transport that can still take it, the fallback's, delivers).
    pub async fn abandoned(&self) {
        loop {
            let notified = self.ready.notified();
            if self.lock().abandoned {
                return;
            }
            notified.await;
        }
    }

    /// Completes once a push took the queue over budget.
    pub async fn overflowed(&self) {
        loop {
            let notified = self.overflowed.notified();
            if self.lock().slow {
                return;
            }
            notified.await;
        }
    }

    /// Waits for the writer's next job: a Ping, then queued frames (up to
    /// `max_bytes` in one go, at least one frame), then the close.
    pub async fn next_job(&self, max_bytes: usize) -> Next {
        loop {
            let notified = self.ready.notified();
            if let Some(next) = self.take(max_bytes) {
                return next;
            }
            notified.await;
        }
    }

    /// Waits until something is queued; then, while only live ticks are,
    /// up to `delay` more, so the ticks arriving meanwhile share one frame
    /// (`--write-delay-ms`). Anything else queued (a chat message, an ack,
    /// a Ping, the close) ends the wait at once.
    pub async fn hold_ticks(&self, delay: Duration) {
        loop {
            let notified = self.ready.notified();
            if self.lock().has_work() {
                break;
            }
            notified.await;
        }
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            let notified = self.ready.notified();
            if !self.lock().only_ticks() {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    fn take(&self, max_bytes: usize) -> Option<Next> {
        let mut state = self.lock();
        if std::mem::take(&mut state.ping) {
            return Some(Next::Ping);
        }
        let Some(queued) = state.frames.pop_front() else {
            return state.close.map(|(code, reason)| Next::Close(code, reason));
        };
        let mut size = queued.frame.len();
        let first = state.took(&queued);
        let queued_at = queued.stamp.at(self.base);
        let joins = |next: &Queued| size + next.frame.len() <= max_bytes;
        if !state.frames.front().is_some_and(joins) {
            // One frame, the common case: no `Vec` to allocate and free.
            let depth = size + state.finish_take(1);
            let taken = Taken {
                queued_at,
                depth,
                first,
            };
            return Some(Next::Frame(queued.frame, taken));
        }
        let mut frames = vec![queued.frame];
        let mut queued_at = vec![queued_at];
        let mut firsts: Vec<FirstFrame> = first.into_iter().collect();
        while let Some(front) = state.frames.front() {
            if size + front.frame.len() > max_bytes {
                break;
            }
            size += front.frame.len();
            let queued = state.frames.pop_front().expect("front exists");
            firsts.extend(state.took(&queued));
            frames.push(queued.frame);
            queued_at.push(queued.stamp.at(self.base));
        }
        let depth = size + state.finish_take(frames.len());
        let drained = Drained {
            queued_at,
            depth,
            firsts,
        };
        Some(Next::Frames(frames, drained))
    }

    /// Frames and bytes queued now, of every kind (the admin view's
    /// slowest consumers).
    pub fn backlog(&self) -> (usize, usize) {
        let state = self.lock();
        let bytes = state.frames.iter().map(|queued| queued.frame.len()).sum();
        (state.frames.len(), bytes)
    }
}

impl State {
    /// Uncounts a frame just taken from the front; returns the timing of
    /// the answer it opens, if it opens one.
    fn took(&mut self, queued: &Queued) -> Option<FirstFrame> {
        match queued.stamp.kind() {
            Kind::Live => self.bytes -= queued.frame.len(),
            Kind::Answer => self.answer_bytes -= queued.frame.len(),
            Kind::Tick => {}
        }
        if queued.stamp.first() {
            self.firsts.pop_front()
        } else {
            None
        }
    }

    /// Ends a take of `count` frames; returns the bytes left queued that
    /// count toward the depth (live frames and answers).
    fn finish_take(&mut self, count: usize) -> usize {
        self.taken += count as u64;
        let taken = self.taken;
        self.queued_ticks.retain(|_, sequence| *sequence >= taken);
        if self.firsts.is_empty() && self.firsts.capacity() > 0 {
            // Answers are rare after a connection's start: hold no buffer.
            self.firsts = VecDeque::new();
        }
        self.bytes + self.answer_bytes
    }

    fn has_work(&self) -> bool {
        self.ping || !self.frames.is_empty() || self.close.is_some()
    }

    fn only_ticks(&self) -> bool {
        !self.ping
            && self.close.is_none()
            && self
                .frames
                .iter()
                .all(|queued| queued.stamp.kind() == Kind::Tick)
    }
}

/// The hub delivers through the outbox's three queues.
impl Subscriber for Outbox {
    fn deliver(&self, frame: Utf8Bytes) -> Result<(), Gone> {
        self.push(frame).map_err(|_| Gone)
    }

    fn deliver_answer(&self, answer: Vec<Utf8Bytes>) -> Result<(), Gone> {
        self.push_answer(answer).map_err(|_| Gone)
    }

    fn deliver_tick(
        &self,
        channel: &Arc<str>,
        frame: Utf8Bytes,
        at: Instant,
    ) -> Result<bool, Gone> {
        self.push_tick_at(channel, frame, at).map_err(|_| Gone)
    }
}

#[cfg(test)]
mod tests;
