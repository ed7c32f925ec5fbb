//! Chat rooms: replays over the limit, and a room going on after a gap in
//! its offsets.

use super::*;
use crate::protocol::{ChatMessage, Snapshot, UserRef};
use crate::server::ws::outbox::PushError;
use axum::extract::ws::Utf8Bytes;

fn chat_message(room: &str, offset: u64, text: &str) -> ChatMessage {
    ChatMessage {
        channel: Channel::Chat(room.into()),
        offset,
        room: room.into(),
        msg_id: format!("m{offset}"),
        user: UserRef {
            id: "ann".into(),
            name: "Ann".into(),
        },
        text: text.into(),
        sent_at: crate::protocol::Timestamp::parse("2026-11-25T17:30:00.000000Z").unwrap(),
    }
}

/// A resume whose replay would be larger than the replay limit gets the
/// snapshot instead, and neither counts against the outbox budget.
#[tokio::test]
async fn a_replay_over_the_limit_is_answered_with_the_snapshot_outside_the_budget() {
    let hub = hub();
    let room = Channel::Chat("big".into());
    hub.install_chat(&room, empty_room());
    let epoch = hub.peek(&room).epoch;
    let text = "x".repeat(8000);
    for offset in 1..=160 {
        hub.publish_chat(&chat_message("big", offset, &text));
    }
    // A budget far smaller than either answer: neither may close the client.
    let outbox = Outbox::new(1024);
    let since = Since {
        offset: 0,
        epoch: epoch.clone(),
    };
    hub.subscribe(1, &outbox, &room, Some(&since)).unwrap();
    let messages = drain(&outbox).await;
    let answer = subscribed(&messages[0]);
    assert!(!answer.recovered, "1.3 MB is over the replay limit");
    let Some(Snapshot::Chat(snapshot)) = &answer.snapshot else {
        panic!("{:?}", answer.snapshot)
    };
    assert_eq!(snapshot.messages.len(), CHAT_SNAPSHOT);
    assert_eq!(messages.len(), 1, "no replay after a snapshot");

    // A gap within the limit is replayed, also outside the budget.
    let outbox = Outbox::new(1024);
    let since = Since { offset: 150, epoch };
    hub.subscribe(2, &outbox, &room, Some(&since)).unwrap();
    let messages = drain(&outbox).await;
    assert!(subscribed(&messages[0]).recovered);
    assert_eq!(messages.len(), 11);
    // Live messages still count: one 8 KB message is over this budget.
    hub.publish_chat(&chat_message("big", 161, &text));
    assert_eq!(
        outbox.push(Utf8Bytes::from_static("x")),
        Err(PushError::Closed)
    );
}

/// A committed message whose offset skips some (a commit whose answer was
/// lost, or another instance's writes with no relay) does not stop the
/// room: it and every later message reach subscribers, and a resume from
/// before the gap gets a snapshot, not a replay with a hole in it.
#[tokio::test]
async fn a_room_goes_on_after_a_gap_in_its_offsets() {
    let hub = hub();
    let room = Channel::Chat("general".into());
    hub.install_chat(&room, empty_room());
    let epoch = hub.peek(&room).epoch;
    let outbox = Outbox::new(1 << 20);
    hub.subscribe(1, &outbox, &room, None).unwrap();
    hub.publish_chat(&chat_message("general", 1, "one"));
    hub.publish_chat(&chat_message("general", 3, "three"));
    hub.publish_chat(&chat_message("general", 4, "four"));
    let offsets: Vec<u64> = drain(&outbox)
        .await
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Chat(chat) => Some(chat.offset),
            _ => None,
        })
        .collect();
    assert_eq!(offsets, [1, 3, 4]);
    assert_eq!(hub.latest(&room), 4);

    let resumed = Outbox::new(1 << 20);
    let since = Since { offset: 1, epoch };
    hub.subscribe(2, &resumed, &room, Some(&since)).unwrap();
    let messages = drain(&resumed).await;
    assert!(!subscribed(&messages[0]).recovered, "offset 2 is not held");
}
