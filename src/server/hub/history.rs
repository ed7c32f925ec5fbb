//! Owns what every channel kind's history answers alike, whatever the kind:
//! its latest offset, its epoch, what it holds after an offset (a resume's
//! replay), its snapshot, and whether it may leave memory. Each kind's own
//! history lives in its file (`ticker.rs`, `chat.rs`, `inbox.rs`,
//! `online.rs`, `doc.rs`).

use axum::extract::ws::Utf8Bytes;
use base64::Engine as _;

use super::chat::ChatHistory;
use super::doc::DocState;
use super::inbox::InboxHistory;
use super::online::PresenceHistory;
use super::ticker::TickerHistory;
use super::{BASE64, CHAT_SNAPSHOT};
use crate::protocol::{ChatSnapshot, DocSnapshot, PresenceSnapshot, Snapshot, UnreadSnapshot};

/// Each channel kind keeps its own history.
pub(super) enum History {
    Ticker(TickerHistory),
    Presence(PresenceHistory),
    Chat(ChatHistory),
    Inbox(InboxHistory),
    Doc(DocState),
}

impl History {
    pub(super) fn latest(&self) -> u64 {
        match self {
            History::Ticker(history) => history.ring.latest(),
            History::Presence(history) => history.diffs.latest(),
            History::Chat(history) => history.ring.latest(),
            History::Inbox(history) => history.ring.latest(),
            History::Doc(doc) => doc.ring.latest(),
        }
    }

    /// The channel's own epoch when it outlives the process (persisted).
    pub(super) fn epoch(&self) -> Option<&str> {
        match self {
            History::Chat(history) => Some(&history.epoch),
            History::Inbox(history) => Some(&history.epoch),
            History::Doc(doc) => Some(&doc.epoch),
            History::Ticker(history) => history.epoch.as_deref(),
            History::Presence(history) => history.epoch.as_deref(),
        }
    }

    /// Every message after `offset`, if all are still held.
    pub(super) fn after(&self, offset: u64) -> Option<Vec<Utf8Bytes>> {
        match self {
            History::Ticker(history) => history
                .ring
                .after(offset)
                .map(|e| e.map(|e| e.frame.clone()).collect()),
            History::Presence(history) => history.diffs.after(offset).map(|e| e.cloned().collect()),
            History::Chat(history) => history
                .ring
                .after(offset)
                .map(|e| e.map(|(_, frame)| frame.clone()).collect()),
            History::Inbox(history) => history.ring.after(offset).map(|e| e.cloned().collect()),
            History::Doc(doc) => doc.ring.after(offset).map(|e| e.cloned().collect()),
        }
    }

    pub(super) fn snapshot(&self) -> Option<Snapshot> {
        match self {
            History::Ticker(history) => history.snapshot(),
            History::Presence(history) => Some(Snapshot::Presence(PresenceSnapshot {
                users: history.users(),
            })),
            History::Chat(history) => Some(Snapshot::Chat(ChatSnapshot {
                messages: history
                    .ring
                    .recent(CHAT_SNAPSHOT)
                    .map(|(message, _)| message.clone())
                    .collect(),
            })),
            History::Inbox(history) => Some(Snapshot::Unread(UnreadSnapshot {
                unread: history.unread.newest.clone(),
                total_unread: history.unread.total,
            })),
            History::Doc(doc) => Some(Snapshot::Doc(DocSnapshot {
                state: BASE64.encode(doc.state()),
                awareness: BASE64.encode(doc.awareness()),
            })),
        }
    }

    /// Whether the channel may be dropped once nobody subscribes: nothing
    /// would be lost (a ticker never published to), or it is all on disk.
    pub(super) fn droppable(&self) -> bool {
        match self {
            History::Ticker(history) => history.ring.latest() == 0,
            History::Chat(_) | History::Inbox(_) | History::Doc(_) => true,
            History::Presence(_) => false,
        }
    }
}
