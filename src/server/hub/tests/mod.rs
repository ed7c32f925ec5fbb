//! The hub without a network: subscribers are bare outboxes. One file per
//! channel kind, as the hub has: `ticker.rs`, `chat.rs`, `inbox.rs`,
//! `doc.rs`, `online.rs` (presence); `registry.rs` what every persisted
//! channel shares (loading, dropping). This file holds the helpers they share.

use super::*;
use crate::server::store::StoredChat;
use crate::server::ws::outbox::Outbox;

mod chat;
mod doc;
mod inbox;
mod online;
mod registry;
mod ticker;

fn hub() -> Hub {
    Hub::new(Arc::new(Metrics::default()), Duration::from_millis(50))
}

/// Everything queued on `outbox` now, parsed.
async fn drain(outbox: &Outbox) -> Vec<ServerMessage> {
    outbox.drain_messages().await
}

fn subscribed(message: &ServerMessage) -> &Subscribed {
    match message {
        ServerMessage::Subscribed(s) => s,
        other => panic!("expected subscribed, got {other:?}"),
    }
}

fn empty_room() -> StoredChat {
    StoredChat {
        epoch: "stored".into(),
        latest: 0,
        recent: Vec::new(),
    }
}
