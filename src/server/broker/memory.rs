//! Owns the broker of a single instance: there is nobody to carry messages
//! to, the hub numbers its own ticks, and a gap (a commit whose answer was
//! lost) starts the channel's history again at the message that showed it,
//! and a POST for another instance's session finds no such instance
//! (`Broker::forward`'s default).

use axum::extract::ws::Utf8Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::{Broker, Gap, Held, Publication, Sequencing, TickAnswer};
use crate::protocol::Channel;
use crate::server::hub::Quote;

/// The broker of one instance alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct Memory;

impl Broker for Memory {
    fn publish(&self, _: Publication) {}

    fn publish_tick(&self, quote: Quote, _: Option<TickAnswer>) -> Sequencing {
        Sequencing::Here(quote)
    }

    fn sequences_ticks(&self) -> bool {
        false
    }

    fn share_awareness(&self, _: &Channel, _: Utf8Bytes) {}

    fn watch(&self, _: &Channel) -> BoxFuture<'static, ()> {
        std::future::ready(()).boxed()
    }

    fn loaded(&self, _: &Channel) {}

    fn ensure(&self, _: &Channel) {}

    fn gap(&self, held: Held) -> Gap {
        Gap::Restart(held)
    }
}

#[cfg(test)]
mod tests {
    //! The hub through the memory broker: its own commits in order, a gap
    //! starts the history again, ticks are numbered by the hub.

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::protocol::{ChatMessage, ServerMessage, Since, Timestamp, UserRef};
    use crate::server::hub::Hub;
    use crate::server::metrics::Metrics;
    use crate::server::store::StoredChat;
    use crate::server::ws::outbox::Outbox;

    fn chat(offset: u64) -> ChatMessage {
        ChatMessage {
            channel: "chat:general".parse().unwrap(),
            offset,
            room: "general".into(),
            msg_id: format!("m{offset}"),
            user: UserRef {
                id: "guest:ann".into(),
                name: "Ann".into(),
            },
            text: format!("{offset}"),
            sent_at: Timestamp::parse("2026-11-25T17:30:00.000000Z").unwrap(),
        }
    }

    /// A hub with the room `general` installed (empty) and one subscriber.
    fn room() -> (Hub, Channel, Arc<Outbox>) {
        let hub = Hub::new(Arc::new(Metrics::default()), Duration::from_millis(50));
        let room = Channel::Chat("general".into());
        let stored = StoredChat {
            epoch: "e1".into(),
            latest: 0,
            recent: Vec::new(),
        };
        hub.install_chat(&room, stored);
        let outbox = Outbox::new(1 << 20);
        hub.subscribe(1, &outbox, &room, None).unwrap();
        (hub, room, outbox)
    }

    /// The chat offsets queued on `outbox` now (its `subscribed` skipped).
    async fn chat_offsets(outbox: &Outbox) -> Vec<u64> {
        let messages = outbox.drain_messages().await;
        messages
            .into_iter()
            .filter_map(|message| match message {
                ServerMessage::Chat(chat) => Some(chat.offset),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn commits_reach_subscribers_in_order_at_once() {
        let (hub, room, outbox) = room();
        for offset in 1..=3 {
            hub.publish_chat(&chat(offset));
        }
        assert_eq!(chat_offsets(&outbox).await, [1, 2, 3]);
        hub.publish_chat(&chat(2));
        assert!(chat_offsets(&outbox).await.is_empty(), "known: not twice");
        assert_eq!(hub.latest(&room), 3);
    }

    #[tokio::test]
    async fn a_gap_starts_the_history_again() {
        let (hub, room, outbox) = room();
        hub.publish_chat(&chat(1));
        hub.publish_chat(&chat(4));
        hub.publish_chat(&chat(5));
        assert_eq!(chat_offsets(&outbox).await, [1, 4, 5]);
        let resumed = Outbox::new(1 << 20);
        let since = Since {
            offset: 1,
            epoch: "e1".into(),
        };
        hub.subscribe(2, &resumed, &room, Some(&since)).unwrap();
        assert!(
            chat_offsets(&resumed).await.is_empty(),
            "offsets 2 and 3 are not held: a snapshot, no replay with a hole"
        );
    }

    #[test]
    fn the_hub_numbers_its_own_ticks() {
        let quote = Quote {
            symbol: "AAPL".into(),
            price: 1.0,
            change: 0.0,
            change_pct: 0.0,
            volume: 1,
        };
        assert!(matches!(
            Memory.publish_tick(quote, None),
            Sequencing::Here(_)
        ));
        assert!(!Memory.sequences_ticks());
        let hub = Hub::new(Arc::new(Metrics::default()), Duration::from_millis(50));
        let quote = Quote {
            symbol: "AAPL".into(),
            price: 2.0,
            change: 0.0,
            change_pct: 0.0,
            volume: 1,
        };
        assert_eq!(hub.publish_tick(quote), 1);
    }
}
