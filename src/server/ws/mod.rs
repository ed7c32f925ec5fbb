//! Owns `GET /ws`: the Origin check, the upgrade with its size limits, and
//! handing each socket to a tracked [`connection`] task.

mod connection;
mod origin;
pub mod outbox;
mod rate;
mod writer;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;

use super::state::AppState;
use crate::protocol::CloseCode;

pub use connection::{serve_connection, ConnectionContext};

/// Bytes each socket reserves for reading.
const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Upgrades to a WebSocket. A forbidden `Origin` still gets a socket, closed
/// at once with 1008, because a browser shows scripts the close code but never
/// an HTTP status; clients then know not to retry. Past `--max-connections`,
/// a socket is closed at once with 1013 (try again later, with backoff).
pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let allowed = origin::is_allowed(origin, host, &state.config.allowed_origins);
    let limit = state.config.max_message_bytes();
    let upgrade = upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        // tungstenite reserves 128 KiB per socket for reading by default;
        // 2 KiB keeps an idle socket small (see docs/BENCHMARKS.md).
        .read_buffer_size(READ_BUFFER_BYTES)
        // The writer sends one (batch) frame at a time and flushes it, so
        // tungstenite need not gather frames in a buffer of its own.
        .write_buffer_size(0);
    if !allowed {
        tracing::info!(
            origin = origin.unwrap_or_default(),
            "refused WebSocket from a foreign origin"
        );
        return upgrade
            .on_upgrade(|socket| refuse(socket, CloseCode::PolicyViolation, "origin not allowed"));
    }
    let open = state
        .metrics
        .connections_open
        .load(std::sync::atomic::Ordering::Relaxed);
    if state
        .config
        .max_connections
        .is_some_and(|cap| open >= cap as u64)
    {
        tracing::warn!(open, "connection limit reached; refusing with 1013");
        return upgrade.on_upgrade(|socket| {
            refuse(
                socket,
                CloseCode::TryAgainLater,
                "server full: try again later",
            )
        });
    }
    let tracker = state.connections.clone();
    let context = ConnectionContext::from_state(&state);
    upgrade.on_upgrade(move |socket| tracker.track_future(serve_connection(socket, context)))
}

/// Closes a socket at once with `code`, then waits (briefly) for the peer's
/// close so the frame is not lost to a reset.
async fn refuse(mut socket: WebSocket, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame {
        code: code.code(),
        reason: reason.into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_ok() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), socket.recv()).await;
    }
}
