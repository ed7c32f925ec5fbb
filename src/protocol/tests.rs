//! Round-trip tests: every message kind of PROTOCOL.md, written as literal
//! JSON, parses into our types and serialises back to the same JSON.

use super::*;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::fmt::Debug;

/// Parses `json` as `T`, then checks that serialising gives the same JSON
/// value and that parsing the serialised text gives the same `T`.
fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(json: &str) -> T {
    let expected: Value = serde_json::from_str(json).expect("test JSON is valid");
    let parsed: T = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    let text = serde_json::to_string(&parsed).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        expected,
        "{text}"
    );
    assert_eq!(serde_json::from_str::<T>(&text).unwrap(), parsed);
    parsed
}

/// A client frame passes the server's decoder, and serialising what it read
/// gives the same JSON value, which decodes to the same message again.
fn check_client(json: &str) -> ClientEnvelope {
    let expected: Value = serde_json::from_str(json).expect("test JSON is valid");
    let parsed = decode_client(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    let text = serde_json::to_string(&parsed).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        expected,
        "{text}"
    );
    assert_eq!(decode_client(&text).unwrap(), parsed);
    parsed
}

const T: &str = r#""timestamp":"2026-11-25T17:30:00.123456Z""#;

#[test]
fn client_hello() {
    check_client(r#"{"type":"hello","data":{"token":"eyJ.x.y"}}"#);
    check_client(r#"{"type":"hello","data":{}}"#);
}

#[test]
fn client_subscribe() {
    check_client(
        r#"{"type":"subscribe","data":{"channels":[{"channel":"ticker:AAPL","since":{"offset":17,"epoch":"e1"}},{"channel":"presence"}]},"id":"c-1"}"#,
    );
}

#[test]
fn client_unsubscribe() {
    check_client(r#"{"type":"unsubscribe","data":{"channels":["ticker:AAPL","chat:general"]}}"#);
}

#[test]
fn client_chat_send() {
    let env = check_client(
        r#"{"type":"chat_send","data":{"room":"general","text":"hi"},"timestamp":"2026-11-25T17:30:00.123456Z","id":"c-42"}"#,
    );
    assert_eq!(env.id.as_deref(), Some("c-42"));
}

#[test]
fn client_status() {
    check_client(r#"{"type":"status","data":{"status":"online"}}"#);
    check_client(r#"{"type":"status","data":{"status":"away"}}"#);
}

#[test]
fn client_doc_update() {
    check_client(r#"{"type":"doc_update","data":{"doc":"notes","update":"AQID"},"id":"d-1"}"#);
}

#[test]
fn client_ping() {
    check_client(r#"{"type":"ping","data":{}}"#);
}

#[test]
fn client_mark_read_extension() {
    check_client(r#"{"type":"mark_read","data":{"notification_ids":["n1","n2"]},"id":"r-1"}"#);
}

#[test]
fn history_extension() {
    check_client(
        r#"{"type":"history","data":{"channel":"chat:general","before":51,"limit":20},"id":"h-1"}"#,
    );
    check_client(r#"{"type":"history","data":{"channel":"chat:general","before":51}}"#);
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"history","data":{{"channel":"chat:general","messages":[]}},{T}}}"#
    ));
}

#[test]
fn server_welcome() {
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"welcome","data":{{"connection_id":"k1","user":{{"id":"alice","name":"Alice"}},"heartbeat_ms":15000,"max_message_bytes":65536,"build":"0.1.0"}},{T}}}"#
    ));
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"welcome","data":{{"connection_id":"k1","user":null,"heartbeat_ms":15000,"max_message_bytes":65536,"build":"0.1.0"}},{T}}}"#
    ));
}

#[test]
fn a_welcome_from_a_1_0_server_without_build_still_parses() {
    let env = ServerEnvelope::from_json(&format!(
        r#"{{"type":"welcome","data":{{"connection_id":"k1","user":null,"heartbeat_ms":15000,"max_message_bytes":65536}},{T}}}"#
    ))
    .unwrap();
    assert!(matches!(env.message, ServerMessage::Welcome(w) if w.build.is_empty()));
}

#[test]
fn client_refresh_and_doc_awareness() {
    check_client(r#"{"type":"refresh","data":{"token":"eyJ.x.y"},"id":"r-1"}"#);
    check_client(r#"{"type":"doc_awareness","data":{"doc":"notes","update":"AQID"}}"#);
}

#[test]
fn server_subscribed_with_every_snapshot_kind() {
    let tick = r#"{"channel":"ticker:AAPL","offset":17,"symbol":"AAPL","price":187.42,"change":1.25,"change_pct":0.67,"volume":120300}"#;
    let user = r#"{"id":"alice","name":"Alice","status":"online","connections":2}"#;
    let chat = r#"{"channel":"chat:general","offset":3,"room":"general","msg_id":"m3","user":{"id":"bob","name":"Bob"},"text":"hi","sent_at":"2026-11-25T17:30:00.000001Z"}"#;
    let note = r#"{"channel":"user:alice","offset":1,"notification_id":"n1","title":"Hi","body":"There","created_at":"2026-11-25T17:30:00.000000Z"}"#;
    for (channel, snapshot) in [
        (
            "ticker:AAPL",
            format!(r#"{{"quote":{tick},"recent":[186.0,187.42]}}"#),
        ),
        ("presence", format!(r#"{{"users":[{user}]}}"#)),
        ("chat:general", format!(r#"{{"messages":[{chat}]}}"#)),
        (
            "user:alice",
            format!(r#"{{"unread":[{note}],"total_unread":300}}"#),
        ),
        (
            "doc:notes",
            r#"{"state":"AAA=","awareness":"AA=="}"#.to_owned(),
        ),
        ("ticker:AAPL", "null".to_owned()),
        ("admin", "null".to_owned()),
    ] {
        check::<ServerEnvelope>(&format!(
            r#"{{"type":"subscribed","data":{{"channel":"{channel}","epoch":"e1","offset":17,"recovered":false,"snapshot":{snapshot}}},{T}}}"#
        ));
    }
    let env = check::<ServerEnvelope>(&format!(
        r#"{{"type":"subscribed","data":{{"channel":"presence","epoch":"e1","offset":2,"recovered":false,"snapshot":{{"users":[{user}]}}}},{T}}}"#
    ));
    let ServerMessage::Subscribed(sub) = env.message else {
        panic!()
    };
    assert!(matches!(sub.snapshot, Some(Snapshot::Presence(_))));
}

#[test]
fn a_doc_snapshot_of_a_1_0_server_has_no_awareness() {
    let snapshot = Snapshot::read("doc:notes", r#"{"state":"AAA="}"#).unwrap();
    let Snapshot::Doc(doc) = snapshot else {
        panic!("{snapshot:?}")
    };
    assert_eq!((doc.state.as_str(), doc.awareness.as_str()), ("AAA=", ""));
}

#[test]
fn a_snapshot_is_read_as_its_channels_kind() {
    let sub = |channel: &str, snapshot: &str| {
        ServerEnvelope::from_json(&format!(
            r#"{{"type":"subscribed","data":{{"channel":"{channel}","epoch":"e1","offset":1,"recovered":false,"snapshot":{snapshot}}},{T}}}"#
        ))
    };
    // A missing snapshot is no snapshot, as `null` is.
    let env = ServerEnvelope::from_json(&format!(
        r#"{{"type":"subscribed","data":{{"channel":"presence","epoch":"e1","offset":1,"recovered":true}},{T}}}"#
    ))
    .unwrap();
    assert!(matches!(
        env.message,
        ServerMessage::Subscribed(Subscribed { snapshot: None, .. })
    ));
    // Another kind's shape is not taken for this kind's.
    let users = r#"{"users":[]}"#;
    assert!(sub("presence", users).is_ok());
    assert!(sub("chat:general", users).is_err());
    assert!(sub("admin", users).is_err());
    assert!(sub("x", users).is_err());
    let err = Snapshot::read("chat:general", users).unwrap_err();
    assert!(
        err.to_string().contains("missing field `messages`"),
        "{err}"
    );
}

#[test]
fn server_unsubscribed() {
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"unsubscribed","data":{{"channel":"ticker:AAPL"}},{T}}}"#
    ));
}

#[test]
fn server_tick() {
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"tick","data":{{"channel":"ticker:AAPL","offset":18,"symbol":"AAPL","price":187.5,"change":-0.25,"change_pct":-0.13,"volume":120400}},{T}}}"#
    ));
}

#[test]
fn server_presence_diff() {
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"presence_diff","data":{{"channel":"presence","offset":4,"joins":[{{"id":"bob","name":"Bob","status":"online","connections":1}}],"leaves":[],"updates":[{{"id":"alice","name":"Alice","status":"away","connections":2}}]}},{T}}}"#
    ));
}

#[test]
fn server_chat() {
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"chat","data":{{"channel":"chat:general","offset":3,"room":"general","msg_id":"m3","user":{{"id":"bob","name":"Bob"}},"text":"<b>hi</b>","sent_at":"2026-11-25T17:30:00.123456Z"}},{T}}}"#
    ));
}

#[test]
fn server_notification() {
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"notification","data":{{"channel":"user:alice","offset":1,"notification_id":"n1","title":"Build","body":"green","created_at":"2026-11-25T17:30:00.123456Z"}},{T}}}"#
    ));
}

#[test]
fn server_doc_update() {
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"doc_update","data":{{"channel":"doc:notes","offset":9,"doc":"notes","update":"AQID","user":{{"id":"bob","name":"Bob"}}}},{T}}}"#
    ));
}

#[test]
fn server_doc_awareness() {
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"doc_awareness","data":{{"channel":"doc:notes","doc":"notes","update":"AQID"}},{T}}}"#
    ));
}

#[test]
fn server_ack() {
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"ack","data":{{"id":"c-42","channel":"chat:general","offset":3}},{T},"id":"c-42"}}"#
    ));
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"ack","data":{{"id":"r-1"}},{T},"id":"r-1"}}"#
    ));
}

/// PROTOCOL 1.1: the answer to a client message with an `id` carries it on
/// the envelope as well as in `data.id`.
#[test]
fn acks_and_errors_echo_the_id_on_the_envelope() {
    let ts = Timestamp::parse("2026-11-25T17:30:00.123456Z").unwrap();
    let ack = ServerEnvelope::new(
        ServerMessage::Ack(Ack::stored(
            "c-42".into(),
            "chat:general".parse().unwrap(),
            3,
        )),
        ts,
    );
    let json: Value = serde_json::from_str(&ack.to_json()).unwrap();
    assert_eq!(json["id"], "c-42");
    assert_eq!(json["data"]["id"], "c-42");
    let error = ServerEnvelope::new(
        ServerMessage::Error(ErrorBody::new(ErrorCode::Invalid, "m").with_id(Some("c-7".into()))),
        ts,
    );
    let json: Value = serde_json::from_str(&error.to_json()).unwrap();
    assert_eq!(json["id"], "c-7");
    let anonymous = ServerEnvelope::new(
        ServerMessage::Error(ErrorBody::new(ErrorCode::Invalid, "m")),
        ts,
    );
    let json: Value = serde_json::from_str(&anonymous.to_json()).unwrap();
    assert!(json.get("id").is_none());
}

#[test]
fn server_pong() {
    check::<ServerEnvelope>(&format!(r#"{{"type":"pong","data":{{}},{T}}}"#));
}

#[test]
fn server_error_with_and_without_optional_fields() {
    for code in [
        "bad_json",
        "bad_frame",
        "unknown_type",
        "invalid",
        "hello_required",
        "unauthorized",
        "forbidden",
        "not_found",
        "rate_limited",
        "too_large",
        "internal",
    ] {
        let env = check::<ServerEnvelope>(&format!(
            r#"{{"type":"error","data":{{"code":"{code}","message":"m"}},{T}}}"#
        ));
        let ServerMessage::Error(body) = env.message else {
            panic!()
        };
        assert_eq!(body.code.as_str(), code);
    }
    check::<ServerEnvelope>(&format!(
        r#"{{"type":"error","data":{{"code":"forbidden","message":"m","id":"c-1","channel":"user:bob"}},{T},"id":"c-1"}}"#
    ));
}

#[test]
fn server_batch_unpacks_in_order() {
    let env = check::<ServerEnvelope>(&format!(
        r#"{{"type":"batch","data":{{"messages":[{{"type":"pong","data":{{}},{T}}},{{"type":"unsubscribed","data":{{"channel":"presence"}},{T}}}]}},{T}}}"#
    ));
    let kinds: Vec<_> = env
        .unpack()
        .into_iter()
        .map(|e| matches!(e.message, ServerMessage::Pong(_)))
        .collect();
    assert_eq!(kinds, [true, false]);
}

#[test]
fn an_unknown_kind_in_a_batch_is_skipped_and_the_rest_applies() {
    // A newer server's kind, with data of any shape, among known ones.
    let frame = format!(
        r#"{{"type":"batch","data":{{"messages":[{{"type":"pong","data":{{}},{T}}},{{"type":"hologram","data":{{"x":[1,2]}},{T}}},{{"type":"later_kind","data":null,{T}}},{{"type":"unsubscribed","data":{{"channel":"presence"}},{T}}}]}},{T}}}"#
    );
    let env = ServerEnvelope::from_json(&frame).expect("the batch decodes");
    let kinds: Vec<_> = env.unpack().into_iter().map(|e| e.message).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(matches!(kinds[0], ServerMessage::Pong(_)));
    assert!(matches!(kinds[1], ServerMessage::Unsubscribed(_)));
    // A known kind with bad data is still an error, not silently skipped.
    assert!(ServerEnvelope::from_json(&format!(r#"{{"type":"pong","data":5,{T}}}"#)).is_err());
}

/// A batch inside a batch (the server never sends one) is left out, so a
/// hostile frame nested thousands deep cannot overflow the reader's stack;
/// a frame must be an object, not an array that happens to fit.
#[test]
fn nested_batches_are_left_out_and_frames_are_objects() {
    let pong = format!(r#"{{"type":"pong","data":{{}},{T}}}"#);
    let inner = format!(r#"{{"type":"batch","data":{{"messages":[{pong}]}},{T}}}"#);
    let frame = format!(r#"{{"type":"batch","data":{{"messages":[{inner},{pong}]}},{T}}}"#);
    let env = ServerEnvelope::from_json(&frame).expect("the batch decodes");
    assert_eq!(env.unpack().len(), 1);

    let mut deep = pong.clone();
    for _ in 0..5_000 {
        deep = format!(r#"{{"type":"batch","data":{{"messages":[{deep}]}},{T}}}"#);
    }
    let _ = ServerEnvelope::from_json(&deep); // returns; no stack overflow

    assert!(ServerEnvelope::from_json(r#"["pong",{},"2026-11-25T17:30:00.123456Z"]"#).is_err());
}

#[test]
fn timestamps_have_exactly_six_fraction_digits_in_utc() {
    let ts = Timestamp::parse("2026-11-25T18:30:00.1+01:00").unwrap();
    assert_eq!(ts.to_string(), "2026-11-25T17:30:00.100000Z");
    let ts = Timestamp::parse("2026-11-25T17:30:00.123456789Z").unwrap();
    assert_eq!(ts.to_string(), "2026-11-25T17:30:00.123456Z");
    assert_eq!(Timestamp::from_unix_micros(ts.unix_micros()), Some(ts));
}

#[test]
fn close_codes_round_trip_and_say_whether_to_reconnect() {
    for code in [1000, 1001, 1006, 1008, 1009, 1011, 1013, 4001, 4008, 4999] {
        assert_eq!(CloseCode::from(code).code(), code);
    }
    let no_reconnect: Vec<u16> = [1000, 1001, 1006, 1008, 1009, 1011, 1013, 4001, 4008]
        .into_iter()
        .filter(|c| !CloseCode::from(*c).reconnects())
        .collect();
    assert_eq!(no_reconnect, [1000, 1008, 4001]);
}

fn decode_err(json: &str) -> DecodeError {
    decode_client(json).expect_err(json)
}

#[test]
fn decode_errors_map_onto_protocol_codes() {
    assert_eq!(decode_err("{not json").code, ErrorCode::BadJson);
    assert_eq!(decode_err("[1,2]").code, ErrorCode::BadJson);
    assert_eq!(decode_err(r#""hello""#).code, ErrorCode::BadJson);
    let e = decode_err(r#"{"type":"launch","data":{},"id":"x"}"#);
    assert_eq!(
        (e.code, e.id.as_deref()),
        (ErrorCode::UnknownType, Some("x"))
    );
    assert_eq!(
        decode_err(r#"{"type":"batch","data":{"messages":[]}}"#).code,
        ErrorCode::UnknownType
    );
}

#[test]
fn invalid_errors_name_the_field() {
    let cases = [
        (r#"{"data":{}}"#, "type"),
        (r#"{"type":7,"data":{}}"#, "type"),
        (r#"{"type":"ping"}"#, "data"),
        (r#"{"type":"ping","data":{},"id":5}"#, "id"),
        (
            r#"{"type":"ping","data":{},"timestamp":"yesterday"}"#,
            "timestamp",
        ),
        (
            r#"{"type":"chat_send","data":{"room":"general"},"id":"c-1"}"#,
            "text",
        ),
        (
            r#"{"type":"chat_send","data":{"room":"general","text":5}}"#,
            "data.text",
        ),
        (
            r#"{"type":"status","data":{"status":"asleep"}}"#,
            "data.status",
        ),
        (
            r#"{"type":"subscribe","data":{"channels":[{"channel":"presence","since":{"offset":-1,"epoch":"e"}}]}}"#,
            "data.channels[0].since.offset",
        ),
        (r#"{"type":"hello","data":[]}"#, "data"),
    ];
    for (json, field) in cases {
        let err = decode_err(json);
        assert_eq!(err.code, ErrorCode::Invalid, "{json}");
        assert!(
            err.message.contains(field),
            "{json}: {} should name {field}",
            err.message
        );
    }
    let long_id = format!(r#"{{"type":"ping","data":{{}},"id":"{}"}}"#, "x".repeat(65));
    assert!(decode_err(&long_id).message.starts_with("id:"));
    let e = decode_err(r#"{"type":"chat_send","data":{},"id":"c-9"}"#);
    assert_eq!(e.id.as_deref(), Some("c-9"), "invalid errors echo the id");
}

#[test]
fn unknown_fields_are_ignored_for_forward_compatibility() {
    let env = decode_client(r#"{"type":"ping","data":{"extra":1},"trace":"t"}"#).unwrap();
    assert_eq!(env.message, ClientMessage::Ping(Empty {}));
}

#[test]
fn an_api_body_that_is_not_json_or_not_the_shape_says_which() {
    let garbage = decode_body::<LoginRequest>(b"{\"name\":").unwrap_err();
    assert_eq!(garbage.code, ErrorCode::BadJson);
    assert!(garbage.message.starts_with("the body is not valid JSON"));
    let field = decode_body::<PublishRequest>(br#"{"channel":"ticker:X","data":{"price":"1"}}"#)
        .unwrap_err();
    assert_eq!(field.code, ErrorCode::Invalid);
    assert!(
        field.message.starts_with("data.price: "),
        "{}",
        field.message
    );
    let whole = decode_body::<NotifyRequest>(b"[]").unwrap_err();
    assert_eq!(
        (whole.code, whole.message.starts_with("body: ")),
        (ErrorCode::Invalid, true)
    );
    assert_eq!(
        decode_body::<LoginRequest>(br#"{"name":"Ann"}"#)
            .unwrap()
            .name,
        "Ann"
    );
}

#[test]
fn http_api_bodies() {
    check::<LoginRequest>(r#"{"name":"Alice"}"#);
    check::<LoginResponse>(r#"{"token":"a.b.c","user":{"id":"alice","name":"Alice"}}"#);
    check::<PresenceResponse>(
        r#"{"users":[{"id":"alice","name":"Alice","status":"away","connections":2}]}"#,
    );
    check::<PublishRequest>(r#"{"channel":"ticker:XYZ","data":{"price":12.5,"volume":100}}"#);
    let bare = check::<PublishRequest>(r#"{"channel":"ticker:XYZ","data":{"price":12.5}}"#);
    assert_eq!(bare.data.volume, None);
    check::<PublishResponse>(r#"{"channel":"ticker:XYZ","offset":1}"#);
    check::<NotifyRequest>(r#"{"user":"alice","title":"Hi","body":"There"}"#);
    let untold: NotifyRequest = serde_json::from_str(r#"{"user":"alice","title":"Hi"}"#).unwrap();
    assert_eq!(untold.body, "");
    check::<NotifyResponse>(r#"{"notification_id":"n1","offset":3}"#);
    check::<ApiErrorResponse>(
        r#"{"error":{"code":"invalid","message":"name: must not be empty"}}"#,
    );
}
