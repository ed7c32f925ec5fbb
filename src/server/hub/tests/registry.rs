//! What every persisted channel shares: it must be loaded before it is
//! served, and it leaves memory once nobody uses it.

use super::*;

#[tokio::test]
async fn persisted_channels_and_documents_must_be_loaded() {
    let hub = hub();
    let outbox = Outbox::new(1 << 20);
    let chat = Channel::Chat("general".into());
    assert_eq!(
        hub.subscribe(1, &outbox, &chat, None),
        Err(SubscribeError::NotLoaded)
    );
    let doc: Channel = "doc:notes".parse().unwrap();
    assert_eq!(
        hub.subscribe(1, &outbox, &doc, None),
        Err(SubscribeError::NotLoaded)
    );
}

/// Rooms and inboxes nobody subscribes to leave memory; the default room
/// stays (pages render it).
#[tokio::test]
async fn unused_persisted_channels_are_dropped_except_the_default_room() {
    let hub = hub();
    let general = Channel::Chat(crate::client::DEFAULT_ROOM.into());
    hub.install_chat(&general, empty_room());
    let outbox = Outbox::new(1 << 20);
    for n in 0..5000 {
        let room = Channel::Chat(format!("room-{n}"));
        hub.install_chat(&room, empty_room());
        hub.subscribe(1, &outbox, &room, None).unwrap();
        hub.unsubscribe(1, &room);
        drain(&outbox).await;
    }
    hub.subscribe(1, &outbox, &general, None).unwrap();
    hub.unsubscribe(1, &general);
    assert_eq!(hub.channel_count(), 1, "only the default room");
    assert!(hub.has(&general));
}
