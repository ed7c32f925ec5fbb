//! Owns reading the server: every mode turns what its socket yields into an
//! [`Incoming`] here, so a text frame is decoded (a `batch` unpacked in
//! order), a close code read and the end of a socket told apart in one
//! place. What a mode then does with each kind stays with the mode.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::{Stream, StreamExt};
use pulse::protocol::ServerEnvelope;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The close code recorded when a socket ended without a close frame.
pub const ABNORMAL_CLOSE: u16 = 1006;
/// The close code recorded for a close frame that carried no code.
pub const NO_STATUS_CLOSE: u16 = 1005;

/// When a text frame was read, before it was decoded, by both clocks: the
/// system clock to compare with the server's envelope `timestamp`, the
/// monotonic one for intervals measured inside this process.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub at: Instant,
    pub unix_micros: i64,
}

impl Received {
    fn now() -> Self {
        Received {
            at: Instant::now(),
            unix_micros: unix_micros_now(),
        }
    }
}

/// One thing a client's socket yielded.
#[derive(Debug)]
pub enum Incoming {
    /// A text frame's server messages, a `batch` unpacked in order.
    Messages(Received, Vec<ServerEnvelope>),
    /// A text frame that is not a server envelope.
    Unreadable,
    /// A binary frame (the protocol has none).
    Binary,
    /// A WebSocket Ping; tungstenite answers it with a Pong on the next read.
    Ping,
    /// The server's close frame, with its code ([`NO_STATUS_CLOSE`] when it
    /// carried none).
    Closed(u16),
    /// The socket ended without a close frame: a read error, or `None` when
    /// the stream simply ended.
    Ended(Option<WsError>),
    /// A Pong or a raw frame: nothing to act on.
    Other,
}

impl Incoming {
    /// The close code once the socket is closing or gone: the close frame's,
    /// or [`ABNORMAL_CLOSE`] for an end without one; `None` otherwise.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Incoming::Closed(code) => Some(*code),
            Incoming::Ended(_) => Some(ABNORMAL_CLOSE),
            _ => None,
        }
    }
}

/// Reads the next WebSocket message from `ws`. Cancel-safe, like the
/// stream's own `next`: the one await is that.
pub async fn next<S>(ws: &mut S) -> Incoming
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    incoming(ws.next().await)
}

/// What one item of a WebSocket stream amounts to.
pub fn incoming(item: Option<Result<Message, WsError>>) -> Incoming {
    match item {
        Some(Ok(Message::Text(text))) => {
            let received = Received::now();
            match messages(text.as_str()) {
                Some(messages) => Incoming::Messages(received, messages),
                None => Incoming::Unreadable,
            }
        }
        Some(Ok(Message::Binary(_))) => Incoming::Binary,
        Some(Ok(Message::Ping(_))) => Incoming::Ping,
        Some(Ok(Message::Close(frame))) => {
            Incoming::Closed(frame.map_or(NO_STATUS_CLOSE, |frame| u16::from(frame.code)))
        }
        Some(Ok(Message::Pong(_) | Message::Frame(_))) => Incoming::Other,
        Some(Err(err)) => Incoming::Ended(Some(err)),
        None => Incoming::Ended(None),
    }
}

/// The server messages one text frame holds, a `batch` unpacked in order;
/// `None` when the text is not a server envelope.
pub fn messages(text: &str) -> Option<Vec<ServerEnvelope>> {
    ServerEnvelope::from_json(text)
        .ok()
        .map(ServerEnvelope::unpack)
}

/// Microseconds since the Unix epoch, by the system clock.
fn unix_micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse::protocol::ServerMessage;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    const TICK: &str = r#"{"type":"tick","data":{"channel":"ticker:SYM0","offset":7,"symbol":"SYM0","price":1.5,"change":0.1,"change_pct":0.5,"volume":3},"timestamp":"2026-12-01T10:00:00.000001Z"}"#;

    fn text(frame: &str) -> Option<Result<Message, WsError>> {
        Some(Ok(Message::text(frame)))
    }

    fn kinds(incoming: Incoming) -> Vec<&'static str> {
        let Incoming::Messages(_, messages) = incoming else {
            panic!("expected messages, got {incoming:?}");
        };
        messages
            .into_iter()
            .map(|envelope| match envelope.message {
                ServerMessage::Tick(_) => "tick",
                ServerMessage::Subscribed(_) => "subscribed",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn a_plain_frame_is_one_message() {
        assert_eq!(kinds(incoming(text(TICK))), ["tick"]);
    }

    #[test]
    fn a_batch_is_unpacked_in_order() {
        let subscribed = r#"{"type":"subscribed","data":{"channel":"ticker:SYM0","epoch":"e1","offset":6,"recovered":false,"snapshot":null},"timestamp":"2026-12-01T10:00:00Z"}"#;
        let batch = format!(
            r#"{{"type":"batch","data":{{"messages":[{subscribed},{TICK}]}},"timestamp":"2026-12-01T10:00:00Z"}}"#
        );
        assert_eq!(kinds(incoming(text(&batch))), ["subscribed", "tick"]);
    }

    #[test]
    fn text_that_is_not_an_envelope_is_unreadable() {
        for frame in ["", "[]", "{\"type\":\"tick\"}", "not json"] {
            assert!(
                matches!(incoming(text(frame)), Incoming::Unreadable),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn close_codes_are_read_or_defaulted() {
        let frame = CloseFrame {
            code: CloseCode::Again,
            reason: "".into(),
        };
        let closed = incoming(Some(Ok(Message::Close(Some(frame)))));
        assert_eq!(closed.close_code(), Some(1013));
        let bare = incoming(Some(Ok(Message::Close(None))));
        assert_eq!(bare.close_code(), Some(NO_STATUS_CLOSE));
        assert_eq!(incoming(None).close_code(), Some(ABNORMAL_CLOSE));
        let failed = incoming(Some(Err(WsError::ConnectionClosed)));
        assert!(matches!(failed, Incoming::Ended(Some(_))));
        assert_eq!(failed.close_code(), Some(ABNORMAL_CLOSE));
    }

    #[test]
    fn pings_binary_and_pongs_are_told_apart() {
        assert!(matches!(
            incoming(Some(Ok(Message::Ping(Default::default())))),
            Incoming::Ping
        ));
        assert!(matches!(
            incoming(Some(Ok(Message::binary(vec![1u8])))),
            Incoming::Binary
        ));
        assert!(matches!(
            incoming(Some(Ok(Message::Pong(Default::default())))),
            Incoming::Other
        ));
        assert_eq!(
            incoming(Some(Ok(Message::Ping(Default::default())))).close_code(),
            None
        );
    }
}
