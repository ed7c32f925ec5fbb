//! Owns `POST /sse/{session}`: the way up of the HTTP fallback. The body is
//! envelopes, one per line, each handed in order to the session's connection
//! task as a WebSocket text frame would be. Everything is checked before any
//! of it is delivered: the Origin, the session id's signature, that the
//! session's stream is open on this instance (or, for a session another
//! instance holds, that instance's answer: the POST is forwarded through the
//! broker, `Hub::forward_post`), and the body's bounds. Also the receiving
//! end of forwarding: [`PostInbox`] for this instance's sessions.

use axum::body::Body;
use axum::extract::ws::Message;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::check_origin;
use super::session::{Session, SessionError, Sessions};
use crate::protocol::ErrorCode;
use crate::server::api::ApiError;
use crate::server::broker::{ForwardOutcome, PostInbox};
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
        Err(refused) => {
            let again = refused.code == ErrorCode::RateLimited;
            let mut response = refused.into_response();
            if again {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
    }
}

async fn deliver(
    state: &AppState,
    session: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    check_origin(state, headers)?;
    let owner = state.sse.owner(session)?;
    let here = match state.sse.get(session) {
        Ok(open) => Some(open),
        Err(SessionError::NotOpen) if owner != &*state.instance => None,
        Err(refused) => return Err(refused.into()),
    };
    let envelopes = read_envelopes(state, body).await?;
    match here {
        Some(open) => Ok(hand_over(&open, envelopes).await?),
        None => match state.hub.forward_post(owner, session, envelopes).await {
            ForwardOutcome::Accepted => Ok(()),
            ForwardOutcome::NotOpen => Err(SessionError::NotOpen.into()),
            ForwardOutcome::Busy => Err(ApiError::new(
                ErrorCode::RateLimited,
                "the instance holding this session is busy: send again",
            )),
            ForwardOutcome::Unanswered => Err(ApiError::new(
                ErrorCode::RateLimited,
                "the instance holding this session did not answer in time: send again",
            )),
        },
    }
}

/// The body's envelopes, within the bounds.
async fn read_envelopes(state: &AppState, body: Body) -> Result<Vec<String>, ApiError> {
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
    Ok(lines.into_iter().map(str::to_owned).collect())
}

/// Hands `envelopes` to the session's connection task, in order; waits
/// while its queue is full.
async fn hand_over(open: &Session, envelopes: Vec<String>) -> Result<(), SessionError> {
    for line in envelopes {
        if open.inbound.send(Message::Text(line.into())).await.is_err() {
            return Err(SessionError::NotOpen);
        }
    }
    Ok(())
}

/// The POSTs other instances forward to this one's sessions (bounded by
/// their poster as a POST here is).
impl PostInbox for Sessions {
    fn deliver(&self, session: &str, envelopes: Vec<String>) -> BoxFuture<'static, ForwardOutcome> {
        let open = self.get(session);
        async move {
            let Ok(open) = open else {
                return ForwardOutcome::NotOpen;
            };
            if envelopes.len() > MAX_POST_ENVELOPES {
                return ForwardOutcome::Busy;
            }
            match hand_over(&open, envelopes).await {
                Ok(()) => ForwardOutcome::Accepted,
                Err(_) => ForwardOutcome::NotOpen,
            }
        }
        .boxed()
    }
}
