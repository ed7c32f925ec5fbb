//! Owns `GET /ws`: the Origin check, admission (cap and upgrade rates), the
//! upgrade with its size limits, and handing each socket to a tracked
//! [`connection`] task.

pub mod admission;
mod connection;
pub mod origin;
pub mod outbox;
pub mod pace;
mod rate;

mod writer;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, Extensions, HeaderMap};
use axum::response::Response;
use tracing::Instrument;

use super::client_address;
use super::state::AppState;
use crate::protocol::CloseCode;

pub use connection::{serve_connection, ConnectionContext, Transport};

/// Bytes each socket reserves for reading: a client's frames are small
/// (`hello` with its token is the largest common one); a larger frame grows
/// the buffer for as long as it needs (up to `--max-message-bytes`).
const READ_BUFFER_BYTES: usize = 1024;

/// Upgrades to a WebSocket. A forbidden `Origin` still gets a socket, closed
/// at once with 1008, because a browser shows scripts the close code but never
/// an HTTP status; clients then know not to retry. Past `--max-connections`
/// or the per-address rate, a socket is closed at once with 1013 (try again
/// later, with backoff); otherwise it waits its turn under the server's
/// adaptive pace, and gets 1013 only if that takes longer than
/// [`pace::MAX_WAIT`].
pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
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
        // 1 KiB keeps an idle socket small (see bench/BENCHMARKS.md).
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
    let address = client_address::of_request(&extensions, &headers, &state.config.trusted_proxies);
    let slot = match state.admission.admit_now(address).await {
        Ok(slot) => slot,
        Err(refusal) => {
            tracing::warn!(?address, %refusal, "refusing a WebSocket with 1013");
            state.metrics.upgrades_refused.inc();
            state.metrics.closed("1013");
            let reason = match refusal {
                admission::Refusal::Full => "server full: try again later",
                admission::Refusal::TooFast => "too many new connections: try again later",
                admission::Refusal::Busy => "server busy: try again later",
            };
            return upgrade
                .on_upgrade(move |socket| refuse(socket, CloseCode::TryAgainLater, reason));
        }
    };
    let tracker = state.connections.clone();
    let context =
        ConnectionContext::for_request(&state, Transport::WebSocket, &headers, &extensions);
    // The slot travels with the connection's future: whether the upgrade
    // never completes, the connection ends or its task panics, dropping the
    // future frees the place.
    // Every line the connection logs carries its instance, its id (recorded
    // once made) and its user (once signed in).
    let span = tracing::info_span!(
        "connection",
        instance = %state.instance,
        connection = tracing::field::Empty,
        user = tracing::field::Empty,
        client = address.map(tracing::field::display),
    );
    upgrade.on_upgrade(move |socket| {
        tracker.track_future(
            async move {
                serve_connection(socket, context).await;
                drop(slot);
            }
            .instrument(span),
        )
    })
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
