//! Owns the HTTP fallback transport (docs/EXTENSIONS.md, "HTTP fallback
//! transport"): `GET /sse` opens (or, with `Last-Event-ID`, resumes) a
//! session whose events stream down as Server-Sent Events,
//! `POST /sse/{session}` carries envelopes up and `DELETE /sse/{session}`
//! ends the session when the page leaves the fallback (`end.rs`). Behind
//! them runs the same connection task as `/ws` (`ws::serve_connection`):
//! this module only supplies its socket ([`stream::SseSocket`]), so hello,
//! offsets, resume, acks, limits, flow control and shutdown are the
//! WebSocket's own.
//!
//! A POST that lands on another instance than its session's is forwarded
//! through the broker to the instance named in the session id (`post.rs`).

mod end;
mod post;
pub mod session;
mod stream;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Extensions, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post as post_route};
use axum::Router;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::api::ApiError;
use super::client_address;
use super::state::AppState;
use super::ws::{origin, serve_connection, ConnectionContext, Transport};
use crate::protocol::sse::parse_event_id;
use crate::protocol::ErrorCode;
use session::{Session, Sessions};
use stream::{EventBody, Pipe, SseSocket};

pub use session::SessionError;

/// Envelopes POSTed but not yet read by the connection task; a POST past it
/// waits (as a WebSocket's peer waits on TCP).
pub const INBOUND_QUEUE: usize = 64;

/// The fallback's routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/sse", get(open)).route(
        "/sse/{session}",
        post_route(post::handler).delete(end::handler),
    )
}

/// Refuses a page from a foreign origin, as `/ws` does (`ws/origin.rs`).
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if origin::is_allowed(origin, host, &state.config.allowed_origins) {
        Ok(())
    } else {
        tracing::info!(
            origin = origin.unwrap_or_default(),
            "refused the HTTP fallback from a foreign origin"
        );
        Err(ApiError::new(ErrorCode::Forbidden, "origin not allowed"))
    }
}

/// The HTTP answer to a refused session id.
impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        let code = match err {
            SessionError::Malformed | SessionError::Forged => ErrorCode::Forbidden,
            SessionError::NotOpen => ErrorCode::NotFound,
        };
        ApiError::new(code, err.to_string())
    }
}

/// `GET /sse`: resumes the session `Last-Event-ID` names if it is open here
/// and still keeps the events after that id; otherwise opens a new session
/// (admitted as a WebSocket is) whose first event says so.
async fn open(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    if let Err(refused) = check_origin(&state, &headers) {
        return refused.into_response();
    }
    let limit = state.config.max_message_bytes();
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_event_id);
    if let Some((id, seen)) = last {
        if let Ok(session) = state.sse.get(id) {
            match session.pipe.attach(Some(seen), limit) {
                Ok(body) => return event_stream(body),
                // Past what is kept: the session cannot go on without loss,
                // so it ends (its input closes) and a new one starts; the
                // client resumes from its offsets, as after a 4008.
                Err(_) => state.sse.remove(id),
            }
        }
    }
    let address = client_address::of_request(&extensions, &headers, &state.config.trusted_proxies);
    let slot = match state.admission.admit_now(address).await {
        Ok(slot) => slot,
        Err(refusal) => {
            tracing::warn!(?address, %refusal, "refusing an SSE session");
            state.metrics.upgrades_refused.inc();
            let mut response =
                ApiError::new(ErrorCode::RateLimited, refusal.to_string()).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    };
    let id = state.sse.mint();
    let (inbound, received) = mpsc::channel(INBOUND_QUEUE);
    let pipe = Pipe::new(id.clone(), limit);
    let body = pipe.attach(None, limit).expect("a new pipe takes a stream");
    let socket = SseSocket::new(
        pipe.clone(),
        received,
        inbound.downgrade(),
        state.sse.clone(),
    );
    state.sse.insert(
        id.clone(),
        Arc::new(Session {
            inbound,
            pipe: pipe.clone(),
        }),
    );
    let forget = Forget {
        sessions: state.sse.clone(),
        id,
        pipe,
    };
    let context = ConnectionContext::for_request(&state, Transport::Sse, &headers, &extensions);
    let span = tracing::info_span!(
        "connection",
        instance = %state.instance,
        transport = "sse",
        connection = tracing::field::Empty,
        user = tracing::field::Empty,
        client = address.map(tracing::field::display),
    );
    // Tracked like a WebSocket's task, so shutdown waits for its goodbye.
    state.connections.spawn(
        async move {
            serve_connection(socket, context).await;
            drop(slot);
            drop(forget);
        }
        .instrument(span),
    );
    event_stream(body)
}

/// Forgets a session however its connection task ends (a return, a panic,
/// an abort at shutdown): POSTs are refused and streams end.
struct Forget {
    sessions: Arc<Sessions>,
    id: String,
    pipe: Arc<Pipe>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.sessions.remove(&self.id);
        self.pipe.end();
    }
}

/// The response carrying a stream's events.
fn event_stream(body: EventBody) -> Response {
    let events = futures_util::stream::unfold(body, |mut body| async move {
        body.next()
            .await
            .map(|text| (Ok::<_, std::convert::Infallible>(text), body))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}
