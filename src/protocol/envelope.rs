//! Owns the envelope (`type`, `data`, `timestamp`, `id`) and the decoding of
//! client frames into messages or protocol errors.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::client::ClientMessage;
use super::codes::ErrorCode;
use super::server::{ErrorBody, ServerMessage};
use super::time::Timestamp;
use super::MAX_ID_CHARS;

/// The `data` of messages that carry nothing: `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// A client frame: a message, an optional timestamp and an optional `id`
/// that the server echoes in the `ack` or `error` answering it.
/// Written by serde; read by [`decode_client`] (a page reads back only its
/// stored outbox: `client/outbox.rs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientEnvelope {
    #[serde(flatten)]
    pub message: ClientMessage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl ClientEnvelope {
    pub fn new(message: ClientMessage) -> Self {
        ClientEnvelope {
            message,
            timestamp: None,
            id: None,
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The frame text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client messages always serialise")
    }
}

/// A server frame: a message, the moment the server created it and, on an
/// `ack` or `error` answering a client message with an `id`, that `id`.
///
/// Read by `type` first, then `data` as that message's type
/// ([`ServerMessage::from_data`]), with no buffering in between; from JSON
/// only (serde_json's raw values).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerEnvelope {
    #[serde(flatten)]
    pub message: ServerMessage,
    pub timestamp: Timestamp,
    /// The envelope id of the client message this answers (PROTOCOL 1.1:
    /// echoed on the envelope as well as in `data.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl ServerEnvelope {
    /// An envelope for `message`; an `ack` or `error` carries its `data.id`
    /// on the envelope too, so the echo can never disagree with the data.
    pub fn new(message: ServerMessage, timestamp: Timestamp) -> Self {
        let id = match &message {
            ServerMessage::Ack(ack) => Some(ack.id.clone()),
            ServerMessage::Error(error) => error.id.clone(),
            _ => None,
        };
        ServerEnvelope {
            message,
            timestamp,
            id,
        }
    }

    /// The frame text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialise")
    }

    /// Parses a server frame, as a client does.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        Self::read_raw(text)?.into_envelope()
    }

    /// One message of a `batch`: never a batch itself (the server does not
    /// nest them), so a hostile frame cannot recurse without bound.
    pub(super) fn from_json_in_batch(text: &str) -> Option<Self> {
        let raw = Self::read_raw(text).ok()?;
        if raw.kind == "batch" {
            return None;
        }
        raw.into_envelope().ok()
    }

    /// The envelope with its `data` unread; a frame is one JSON object (serde
    /// would read an array into the struct too).
    fn read_raw(text: &str) -> Result<RawServerEnvelope<'_>, serde_json::Error> {
        if !text.trim_start().starts_with('{') {
            return Err(serde::de::Error::custom("a frame must be one JSON object"));
        }
        serde_json::from_str(text)
    }

    /// The messages this frame holds, with batches unpacked in order.
    pub fn unpack(self) -> Vec<ServerEnvelope> {
        match self.message {
            ServerMessage::Batch(batch) => batch
                .messages
                .into_iter()
                .flat_map(ServerEnvelope::unpack)
                .collect(),
            _ => vec![self],
        }
    }
}

/// A `batch` frame holding `messages` (each already a serialised server
/// envelope), in order, written without parsing them again: the server
/// serialises a message once and shares the text between every socket.
pub fn batch_json<'a>(
    messages: impl Iterator<Item = &'a str> + Clone,
    timestamp: &Timestamp,
) -> String {
    const HEAD: &str = r#"{"type":"batch","data":{"messages":["#;
    let size = messages.clone().map(|m| m.len() + 1).sum::<usize>();
    let mut text = String::with_capacity(HEAD.len() + size + 64);
    text.push_str(HEAD);
    for (n, message) in messages.enumerate() {
        if n > 0 {
            text.push(',');
        }
        text.push_str(message);
    }
    text.push_str(r#"]},"timestamp":""#);
    text.push_str(&timestamp.to_string());
    text.push_str(r#""}"#);
    text
}

/// A server envelope with its `data` still text.
#[derive(Deserialize)]
struct RawServerEnvelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
    timestamp: Timestamp,
    #[serde(default)]
    id: Option<String>,
}

impl RawServerEnvelope<'_> {
    fn into_envelope(self) -> Result<ServerEnvelope, serde_json::Error> {
        Ok(ServerEnvelope {
            message: ServerMessage::from_data(&self.kind, self.data.get())?,
            timestamp: self.timestamp,
            id: self.id,
        })
    }
}

impl<'de> Deserialize<'de> for ServerEnvelope {
    /// Through [`ServerEnvelope::from_json`], the one reader of server
    /// frames: the envelope's text is taken whole, then read by `type`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        ServerEnvelope::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// Why a client frame could not be decoded, as the `error` to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    /// The envelope id, when it could be read, so the error can echo it.
    pub id: Option<String>,
}

impl DecodeError {
    fn new(code: ErrorCode, message: impl Into<String>, id: Option<String>) -> Self {
        DecodeError {
            code,
            message: message.into(),
            id,
        }
    }

    /// The `error` message body answering the frame.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone()).with_id(self.id.clone())
    }
}

/// The envelope read loosely, so each field's fault gets its own error.
#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(rename = "type", default)]
    kind: Option<Value>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default)]
    id: Option<Value>,
}

/// Decodes one client text frame.
///
/// Not JSON or not an object: `bad_json`. A missing or malformed `type`,
/// `data`, `id` or `timestamp`, or a bad field inside `data`: `invalid`, with
/// the field's path in the message. A `type` clients may not send:
/// `unknown_type`. Unknown extra fields are ignored (forward compatibility).
pub fn decode_client(text: &str) -> Result<ClientEnvelope, DecodeError> {
    // serde reads a JSON array into a struct too; the protocol wants objects.
    if !text.trim_start().starts_with('{') {
        let message = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => "a frame must be one JSON object".to_owned(),
            Err(err) => format!("not valid JSON: {err}"),
        };
        return Err(DecodeError::new(ErrorCode::BadJson, message, None));
    }
    let raw: RawEnvelope = serde_json::from_str(text).map_err(|err| {
        let message = if err.is_data() {
            "a frame must be one JSON object".to_owned()
        } else {
            format!("not valid JSON: {err}")
        };
        DecodeError::new(ErrorCode::BadJson, message, None)
    })?;

    let id = match raw.id {
        None | Some(Value::Null) => None,
        // U+0000 is refused everywhere: PostgreSQL cannot store it in text.
        Some(Value::String(id)) if id.contains('\0') => {
            return Err(DecodeError::new(
                ErrorCode::Invalid,
                "id: must not contain U+0000 (NUL)".to_owned(),
                None,
            ))
        }
        Some(Value::String(id)) if id.chars().count() <= MAX_ID_CHARS => Some(id),
        Some(Value::String(_)) => {
            return Err(DecodeError::new(
                ErrorCode::Invalid,
                format!("id: at most {MAX_ID_CHARS} characters"),
                None,
            ))
        }
        Some(_) => {
            return Err(DecodeError::new(
                ErrorCode::Invalid,
                "id: must be a string",
                None,
            ))
        }
    };
    let invalid = |message: String| DecodeError::new(ErrorCode::Invalid, message, id.clone());

    let kind = match raw.kind {
        Some(Value::String(kind)) => kind,
        None | Some(Value::Null) => return Err(invalid("type: missing".into())),
        Some(_) => return Err(invalid("type: must be a string".into())),
    };
    let timestamp =
        match raw.timestamp {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(Timestamp::parse(&text).ok_or_else(|| {
                invalid(format!("timestamp: `{text}` is not an RFC 3339 timestamp"))
            })?),
            Some(_) => return Err(invalid("timestamp: must be a string".into())),
        };
    let Some(data) = raw.data else {
        return Err(invalid("data: missing (send {} when empty)".into()));
    };
    if !data.get().starts_with('{') {
        return Err(invalid("data: must be a JSON object".into()));
    }

    let message = match kind.as_str() {
        "hello" => ClientMessage::Hello(data_of(data).map_err(invalid)?),
        "subscribe" => ClientMessage::Subscribe(data_of(data).map_err(invalid)?),
        "unsubscribe" => ClientMessage::Unsubscribe(data_of(data).map_err(invalid)?),
        "chat_send" => ClientMessage::ChatSend(data_of(data).map_err(invalid)?),
        "status" => ClientMessage::Status(data_of(data).map_err(invalid)?),
        "doc_update" => ClientMessage::DocUpdate(data_of(data).map_err(invalid)?),
        "ping" => ClientMessage::Ping(data_of(data).map_err(invalid)?),
        "mark_read" => ClientMessage::MarkRead(data_of(data).map_err(invalid)?),
        "history" => ClientMessage::History(data_of(data).map_err(invalid)?),
        "refresh" => ClientMessage::Refresh(data_of(data).map_err(invalid)?),
        "doc_awareness" => ClientMessage::DocAwareness(data_of(data).map_err(invalid)?),
        other => {
            return Err(DecodeError::new(
                ErrorCode::UnknownType,
                format!("unknown message type `{other}`"),
                id,
            ))
        }
    };
    Ok(ClientEnvelope {
        message,
        timestamp,
        id,
    })
}

/// Deserialises `data`, naming the failing field (`data.channels[0].since.offset: ...`).
fn data_of<T: serde::de::DeserializeOwned>(data: &RawValue) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(data.get());
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            format!("data: {inner}")
        } else {
            format!("data.{path}: {inner}")
        }
    })
}
