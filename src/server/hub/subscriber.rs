//! Owns [`Subscriber`]: what the hub needs from whoever receives a channel's
//! messages, so the hub names no connection type (mini-redis' `Db` hands out
//! a receiver; ours takes a sink). A connection's outbox implements it.

use axum::extract::ws::Utf8Bytes;
use std::sync::Arc;
use std::time::Instant;

/// The subscriber is closing (or was closed as a slow consumer): the frame
/// was not queued and never will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// Receives a channel's messages. Every method queues and returns at once:
/// the hub never waits for a subscriber.
pub trait Subscriber: Send + Sync {
    /// A live message that must arrive (chat, notification, presence diff);
    /// one the subscriber cannot hold makes it a slow consumer.
    fn deliver(&self, frame: Utf8Bytes) -> Result<(), Gone>;

    /// A subscribe answer: the `subscribed` and what follows it (a replay,
    /// a document's editors), queued whole or not at all, in order with the
    /// rest. The client asked for it, or the server renews a channel on its
    /// own; either way it never counts against the live slow-consumer
    /// budget, but answers still queued have a bound of their own, past
    /// which the subscriber is a slow consumer.
    fn deliver_answer(&self, answer: Vec<Utf8Bytes>) -> Result<(), Gone>;

    /// A live tick of `channel`, replacing one of the same channel still
    /// queued; `Ok(true)` when one was replaced (conflated). `at` is when
    /// the hub queued it: one clock read per tick for all its subscribers
    /// (delivery latency is measured from it), not one per subscriber.
    fn deliver_tick(&self, channel: &Arc<str>, frame: Utf8Bytes, at: Instant)
        -> Result<bool, Gone>;
}
