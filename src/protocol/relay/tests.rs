//! The inter-instance shapes: exact bytes for the hints, reading back, and
//! what no instance publishes is an error, never a panic.

use super::*;

#[test]
fn hints_and_carried_awareness_have_exact_bytes() {
    let room = Channel::Chat("general".into());
    assert_eq!(
        encode_head(&room, 42),
        r#"{"head":{"channel":"chat:general","offset":42}}"#
    );
    let inbox = Channel::User("guest:ann".into());
    assert_eq!(
        encode_read(&inbox),
        r#"{"read":{"channel":"user:guest:ann"}}"#
    );
    assert_eq!(
        encode_awareness(r#"{"type":"pong"}"#, "instance-\"1\""),
        r#"{"awareness":{"type":"pong"},"from":"instance-\"1\""}"#
    );
}

#[test]
fn hints_read_back() {
    let room = Channel::Chat("general".into());
    let head = encode_head(&room, 42);
    assert_eq!(decode(head.as_bytes()).unwrap(), Relayed::Head(room, 42));
    let inbox = Channel::User("guest:ann".into());
    let read = encode_read(&inbox);
    assert_eq!(decode(read.as_bytes()).unwrap(), Relayed::Read(inbox));
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

/// What the Lua scripts do to a sequenced message: write the offset, then
/// the epoch, in place of their marks (first occurrence each).
fn fill(message: &str, offset_mark: &str, offset: u64, epoch: &str) -> String {
    message
        .replacen(offset_mark, &offset.to_string(), 1)
        .replacen(EPOCH_MARK, epoch, 1)
}

#[test]
fn a_sequenced_message_reads_back_once_the_script_filled_it_in() {
    let mark = u64::MAX.to_string();
    let tick = Tick {
        channel: Channel::Ticker("AAPL".into()),
        offset: u64::MAX,
        symbol: "AAPL".into(),
        price: 1.5,
        change: 0.0,
        change_pct: 0.0,
        volume: 3,
    };
    let frame = ServerEnvelope::new(
        ServerMessage::Tick(tick.clone()),
        crate::protocol::Timestamp::parse("2026-12-07T10:00:00Z").unwrap(),
    )
    .to_json();
    let message = encode_sequenced(EPOCH_MARK, &frame);
    assert!(
        message.starts_with(r#"{"epoch":"PULSE_EPOCH_MARK","frame":{"#),
        "{message}"
    );
    let published = fill(&message, &mark, 7, "e1.42134c122057");
    let Relayed::Tick {
        epoch,
        tick: read,
        frame: carried,
    } = decode(published.as_bytes()).unwrap()
    else {
        panic!("a tick: {published}");
    };
    assert_eq!(epoch, "e1.42134c122057");
    assert_eq!(read, Tick { offset: 7, ..tick });
    assert_eq!(carried, frame.replacen(&mark, "7", 1));
}

#[test]
fn presence_entries_and_shown_users_read_back() {
    let entry = PresenceEntry {
        user: UserRef {
            id: "guest:ann".into(),
            name: "Ann".into(),
        },
        status: UserStatus::Away,
    };
    assert_eq!(
        entry.to_json(),
        r#"{"user":{"id":"guest:ann","name":"Ann"},"status":"away"}"#
    );
    assert_eq!(PresenceEntry::from_json(&entry.to_json()), Some(entry));
    assert_eq!(PresenceEntry::from_json("{}"), None);
    let shown = PresenceUser {
        id: "guest:ann".into(),
        name: "Ann".into(),
        status: UserStatus::Online,
        connections: 2,
    };
    assert_eq!(decode_shown(&encode_shown(&shown)), Some(shown));
    assert_eq!(decode_shown("nonsense"), None);
}
