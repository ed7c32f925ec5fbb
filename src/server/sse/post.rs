//! Owns `POST /sse/{session}`: the way up of the HTTP fallback. The body is
//! envelopes, one per line, each handed in order to the session's connection
//! task as a WebSocket text frame would be. Everything is checked before any
//! of it is delivered: the Origin, the session id's signature, that the
//! session's stream is open on this instance, and the body's bounds.

use axum::body::Body;
use axum::extract::ws::Message;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::check_origin;
use crate::protocol::ErrorCode;
use crate::server::api::ApiError;
use crate::server::state::AppState;

/// The most envelopes one POST may carry.
pub const MAX_POST_ENVELOPES: usize = 64;

/// The most bytes a POST body may hold, as a multiple of the largest
/// message (each line is bounded by that too).
pub const MAX_POST_MESSAGES_OF_BYTES: usize = 4;

/// `202 Accepted` once every envelope was handed to the connection (its
/// answers come down the stream), or the refusal as a JSON error.
pub async fn handler(
    State(state): State<AppState>,
    Path(session): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match deliver(&state, &session, &headers, body).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn deliver(
    state: &AppState,
    session: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    check_origin(state, headers)?;
    let open = state.sse.get(session)?;
    let line_limit = state.config.max_message_bytes();
    let body_limit = line_limit * MAX_POST_MESSAGES_OF_BYTES;
    let read = axum::body::to_bytes(body, body_limit);
    let bytes = match tokio::time::timeout(state.config.http_timeout(), read).await {
        Err(_) => {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                "body not received in time",
            ))
        }
        Ok(Err(_)) => {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("a POST body holds at most {body_limit} bytes"),
            ))
        }
        Ok(Ok(bytes)) => bytes,
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::new(ErrorCode::BadFrame, "the body is not UTF-8"))?;
    let lines: Vec<&str> = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.trim().is_empty())
        .collect();
    if lines.len() > MAX_POST_ENVELOPES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("a POST carries at most {MAX_POST_ENVELOPES} envelopes"),
        ));
    }
    if lines.iter().any(|line| line.len() > line_limit) {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("an envelope holds at most {line_limit} bytes"),
        ));
    }
    for line in lines {
        let frame = Message::Text(line.to_owned().into());
        if open.inbound.send(frame).await.is_err() {
            return Err(super::SessionError::NotOpen.into());
        }
    }
    Ok(())
}
