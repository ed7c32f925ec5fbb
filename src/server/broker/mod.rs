//! Owns the seam between this instance's hub and the other instances (after
//! centrifuge's `Broker` / event-handler split): the hub hands every message
//! it committed and delivered here to a [`Broker`], and hears the other
//! instances' messages back through its `deliver_*` methods, called by the
//! broker's own tasks. The hub never knows which broker it has.
//!
//! Two implementations: [`memory::Memory`], one instance (nothing to carry,
//! a gap starts a history again), and [`redis`], instances sharing a Redis
//! (`--redis`). The queue between the hub and Redis is [`queue::Outgoing`]:
//! bounded, with a policy per kind of message.

pub mod memory;
pub mod queue;
pub mod redis;

use axum::extract::ws::Utf8Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

pub use crate::protocol::forward::ForwardOutcome;
use crate::protocol::{Channel, ChatMessage, DocUpdateEvent, Notification};
use crate::server::hub::Quote;

/// What the hub hands its broker after committing and delivering it here,
/// for the other instances. Never dropped: past the queue's bound the
/// channel is marked behind and the others catch it up from the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Publication {
    Chat(ChatMessage),
    Notification(Notification),
    Doc(DocUpdateEvent),
    /// A user marked notifications of this channel read here: the other
    /// instances holding it read its unread snapshot again.
    Read(Channel),
    /// This channel's committed head: whoever lacks it catches up from the
    /// store (a resend found a message its publisher may never have
    /// published; or messages went past the queue's bound).
    Head(Channel, u64),
}

impl Publication {
    /// The channel it belongs to.
    pub fn channel(&self) -> Channel {
        match self {
            Publication::Chat(message) => Channel::Chat(message.room.clone()),
            Publication::Notification(note) => note.channel.clone(),
            Publication::Doc(event) => Channel::Doc(event.doc.clone()),
            Publication::Read(channel) | Publication::Head(channel, _) => channel.clone(),
        }
    }

    /// Its offset, when it is a message of its channel.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Publication::Chat(message) => Some(message.offset),
            Publication::Notification(note) => Some(note.offset),
            Publication::Doc(event) => Some(event.offset),
            Publication::Head(_, offset) => Some(*offset),
            Publication::Read(_) => None,
        }
    }
}

/// A committed message this hub could not deliver yet: messages before it
/// (another instance's, on their way) are missing here.
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    Chat(ChatMessage),
    Notification(Notification),
}

impl Held {
    /// The channel it belongs to.
    pub fn channel(&self) -> Channel {
        match self {
            Held::Chat(message) => message.channel.clone(),
            Held::Notification(note) => note.channel.clone(),
        }
    }

    /// Its offset in its channel.
    pub fn offset(&self) -> u64 {
        match self {
            Held::Chat(message) => message.offset,
            Held::Notification(note) => note.offset,
        }
    }
}

/// What a broker does with a message that came after a gap.
#[derive(Debug, PartialEq)]
pub enum Gap {
    /// Nobody else commits to this channel: the hub's history starts again
    /// at the message (its answer was lost, or the store was written by
    /// another process).
    Restart(Held),
    /// The broker fills the gap from the store and delivers the message
    /// after it, on a task of the channel's own.
    Filling,
}

/// How a tick gets its offset.
pub enum Sequencing {
    /// The hub gives it the channel's next offset (one instance).
    Here(Quote),
    /// The broker gives it the cluster's and brings it back to every hub;
    /// the offset is answered on the tick's sender, if it has one.
    Broker,
}

/// Who answers the offset of a tick from an outside feed (`None`: Redis
/// could not take it).
pub type TickAnswer = oneshot::Sender<Option<u64>>;

/// The hub's side of the seam: what it tells the other instances, and what
/// it asks of them. Every method returns at once; nothing here waits for
/// another instance or for Redis (a `watch` is a future the caller awaits).
pub trait Broker: Send + Sync {
    /// Carries a message this instance committed (and delivered here
    /// already) to the other instances.
    fn publish(&self, publication: Publication);

    /// Sequences a tick: `Here` hands it back for the hub to number.
    /// Without `answer` it is the simulator's (fenced by its lease).
    fn publish_tick(&self, quote: Quote, answer: Option<TickAnswer>) -> Sequencing;

    /// Whether tickers are numbered by the broker (then a hub serves a
    /// ticker only as installed from it, in the cluster's epoch).
    fn sequences_ticks(&self) -> bool;

    /// Carries a `doc_awareness` frame this hub sent its subscribers to the
    /// other instances' (live only: the latest are kept, older ones dropped).
    fn share_awareness(&self, channel: &Channel, frame: Utf8Bytes);

    /// Resolves once the other instances' messages of `channel` reach this
    /// hub, so that a load from the store which follows overlaps them.
    fn watch(&self, channel: &Channel) -> BoxFuture<'static, ()>;

    /// `channel` is now in memory: deliver what was committed since its load.
    fn loaded(&self, channel: &Channel);

    /// Hear `channel`, held already, unless the broker does, and catch up.
    fn ensure(&self, channel: &Channel);

    /// A message this hub committed came after a gap.
    fn gap(&self, held: Held) -> Gap;

    /// Hands the envelopes of a fallback POST for `session`, held by the
    /// instance `owner`, to that instance; resolves with its answer, or
    /// `Unanswered` after a bounded wait. Without other instances (the
    /// default), no instance holds it.
    fn forward(
        &self,
        _owner: &str,
        _session: &str,
        _envelopes: Vec<String>,
    ) -> BoxFuture<'static, ForwardOutcome> {
        Box::pin(std::future::ready(ForwardOutcome::NotOpen))
    }
}

/// Where the envelopes forwarded from other instances go: this instance's
/// fallback sessions (`server/sse/`).
pub trait PostInbox: Send + Sync {
    /// Hands `envelopes` to `session`'s connection task, in order.
    fn deliver(&self, session: &str, envelopes: Vec<String>) -> BoxFuture<'static, ForwardOutcome>;
}
