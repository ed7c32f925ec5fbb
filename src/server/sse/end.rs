//! Owns `DELETE /sse/{session}`: a page leaving the fallback (moving back to
//! a WebSocket) ends its session at once, as a WebSocket's peer does with a
//! close frame, instead of leaving it to the heartbeat timeout
//! (2 × `heartbeat_ms`) with its subscriptions, presence tab and outbox.
//! Checked as a POST is (`post.rs`): the Origin, then the session id's
//! signature. A session another instance holds is not forwarded: 404.

use axum::extract::ws::Message;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::check_origin;
use super::session::SessionError;
use crate::protocol::ErrorCode;
use crate::server::api::ApiError;
use crate::server::state::AppState;

/// `204 No Content` once the session is ended, or the refusal as a JSON error.
pub async fn handler(
    State(state): State<AppState>,
    Path(session): Path<String>,
    headers: HeaderMap,
) -> Response {
    match end(&state, &session, &headers).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn end(state: &AppState, session: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    check_origin(state, headers)?;
    let owner = state.sse.owner(session)?;
    // Forgotten first: from here on its POSTs and a second DELETE are 404,
    // and a `Last-Event-ID` naming it opens a new session.
    let open = match state.sse.take(session) {
        Ok(open) => open,
        Err(SessionError::NotOpen) if owner != &*state.instance => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "this session is held by another instance, which a DELETE does not reach: \
                 it ends there 2 × heartbeat_ms after its stream went",
            ))
        }
        Err(refused) => return Err(refused.into()),
    };
    // The peer's close frame, behind the envelopes its POSTs handed over
    // already (answered first, in order, as on a WebSocket): the connection
    // ends as after a normal close, releasing its subscriptions and its
    // presence tab, and its stream gets the `close` event (1000). A full
    // queue makes this wait as a POST would; a connection that ended
    // meanwhile needs no close.
    let _ = open.inbound.send(Message::Close(None)).await;
    Ok(())
}
