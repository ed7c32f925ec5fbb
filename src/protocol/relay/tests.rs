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
