//! Every inter-instance message reads back as what was published; what no
//! instance publishes is an error, never a panic.

use super::*;
use crate::protocol::{DocAwarenessEvent, Timestamp, UserRef};

fn ann() -> UserRef {
    UserRef {
        id: "guest:ann".into(),
        name: "Ann".into(),
    }
}

fn check(publication: Publication, expected: Incoming) {
    let published = encode(&publication);
    assert_eq!(
        decode(published.as_bytes()).unwrap(),
        expected,
        "{published}"
    );
}

#[test]
fn a_chat_message_reads_back() {
    let message = ChatMessage {
        channel: "chat:general".parse().unwrap(),
        offset: 7,
        room: "general".into(),
        msg_id: "m7".into(),
        user: ann(),
        text: "a \"quoted\" word".into(),
        sent_at: Timestamp::parse("2026-11-25T17:30:00.000000Z").unwrap(),
    };
    check(Publication::Chat(message.clone()), Incoming::Chat(message));
}

#[test]
fn a_notification_reads_back() {
    let note = Notification {
        channel: "user:guest:ann".parse().unwrap(),
        offset: 2,
        notification_id: "n2".into(),
        title: "t".into(),
        body: "b".into(),
        created_at: Timestamp::parse("2026-11-25T17:30:00.000000Z").unwrap(),
    };
    check(
        Publication::Notification(note.clone()),
        Incoming::Notification(note),
    );
}

#[test]
fn a_document_update_reads_back() {
    let event = DocUpdateEvent {
        channel: "doc:note".parse().unwrap(),
        offset: 3,
        doc: "note".into(),
        update: "AAA=".into(),
        user: ann(),
    };
    check(Publication::Doc(event.clone()), Incoming::Doc(event));
}

#[test]
fn hints_read_back() {
    let room = Channel::Chat("general".into());
    check(
        Publication::Head(room.clone(), 42),
        Incoming::Head(room, 42),
    );
    let inbox = Channel::User("guest:ann".into());
    check(Publication::Read(inbox.clone()), Incoming::Read(inbox));
}

/// The bytes other instances (of this version or the last) read: a move
/// of these shapes must keep them exactly.
#[test]
fn hints_and_carried_awareness_keep_their_exact_bytes() {
    let room = Channel::Chat("general".into());
    assert_eq!(
        encode(&Publication::Head(room, 42)),
        r#"{"head":{"channel":"chat:general","offset":42}}"#
    );
    let inbox = Channel::User("guest:ann".into());
    assert_eq!(
        encode(&Publication::Read(inbox)),
        r#"{"read":{"channel":"user:guest:ann"}}"#
    );
    assert_eq!(
        encode_awareness(r#"{"type":"pong"}"#, "instance-\"1\""),
        r#"{"awareness":{"type":"pong"},"from":"instance-\"1\""}"#
    );
}

#[test]
fn awareness_carries_its_sender() {
    let frame = frames::encode(ServerMessage::DocAwareness(DocAwarenessEvent {
        channel: "doc:note".parse().unwrap(),
        doc: "note".into(),
        update: "AQID".into(),
    }));
    let published = encode_awareness(frame.as_str(), "instance-\"1\"");
    assert_eq!(
        decode(published.as_bytes()).unwrap(),
        Incoming::Awareness {
            from: "instance-\"1\"".into(),
            channel: Channel::Doc("note".into()),
            frame,
        }
    );
}

#[test]
fn a_tick_as_the_script_publishes_it_reads_back() {
    let tick = Tick {
        channel: "ticker:AAPL".parse().unwrap(),
        offset: 9,
        symbol: "AAPL".into(),
        price: 101.5,
        change: 0.5,
        change_pct: 0.49,
        volume: 10,
    };
    let frame = frames::encode(ServerMessage::Tick(tick.clone()));
    let published = format!(r#"{{"epoch":"e1.0123456789ab","frame":{frame}}}"#);
    assert_eq!(
        decode(published.as_bytes()).unwrap(),
        Incoming::Tick {
            epoch: "e1.0123456789ab".into(),
            tick,
            frame,
        }
    );
}

#[test]
fn what_no_instance_publishes_is_an_error() {
    for payload in [
        &b"\xff\xfe"[..],
        b"not json",
        br#"{"head":{"channel":"nonsense","offset":1}}"#,
        br#"{"epoch":"e","frame":{"type":"pong"}}"#,
        br#"{"read":"#,
    ] {
        assert!(decode(payload).is_err(), "{payload:?}");
    }
}
