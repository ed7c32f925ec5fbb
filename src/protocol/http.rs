//! Owns the JSON bodies of the HTTP API (PROTOCOL.md "HTTP API"), shared by
//! the server's handlers and the browser's calls.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::channel::Channel;
use super::codes::ErrorCode;
use super::server::{PresenceUser, UserRef};

/// `POST /api/login` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub name: String,
}

/// The longest guest name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = 32;

/// What a guest's user id starts with (PROTOCOL 1.1): `Ada` logs in as
/// `guest:ada`, so no guest can ever hold an id another backend's tokens use.
pub const GUEST_ID_PREFIX: &str = "guest:";

/// Checks a guest name (1 to 32 visible characters once trimmed) and returns
/// it trimmed; the error completes the sentence "name: …". Shared so the page
/// can explain a bad name before asking the server, which checks it again.
pub fn check_guest_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("at most 32 characters");
    }
    if name.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err("only visible characters");
    }
    Ok(name)
}

/// Format characters that render as nothing (zero-width spaces, joiners,
/// direction marks, the byte-order mark, the soft hyphen).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}')
}

/// `POST /api/login` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub user: UserRef,
}

/// `GET /api/presence` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceResponse {
    pub users: Vec<PresenceUser>,
}

/// `POST /api/publish` body: a tick from an outside feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// A `ticker:{SYMBOL}` channel (the server checks it). A name, not a
    /// [`Channel`]: a bad name is answered `invalid` naming the field
    /// `channel` with the grammar's reason, not a generic decode error.
    pub channel: String,
    pub data: PublishData,
}

/// The tick of a [`PublishRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishData {
    pub price: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<u64>,
}

/// `POST /api/publish` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishResponse {
    pub channel: Channel,
    pub offset: u64,
}

/// `POST /api/notify` body: a notification for `user` (`body` may be left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyRequest {
    pub user: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
}

/// `POST /api/notify` answer: where the notification was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyResponse {
    pub notification_id: String,
    pub offset: u64,
}

/// Any API error: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiErrorResponse {
    pub error: ApiErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// Reads an `/api/*` request body as `T`: `bad_json` when it is not JSON,
/// `invalid` naming the failing field (`data.price: …`, or `body: …` for
/// the body as a whole) when it is JSON of another shape.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiErrorBody> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiErrorBody {
                code: ErrorCode::BadJson,
                message: format!("the body is not valid JSON: {inner}"),
            }
        } else if path == "." {
            ApiErrorBody {
                code: ErrorCode::Invalid,
                message: format!("body: {inner}"),
            }
        } else {
            ApiErrorBody {
                code: ErrorCode::Invalid,
                message: format!("{path}: {inner}"),
            }
        }
    })
}
