//! Owns the bounds on an API request's body: at most [`MAX_API_BODY_BYTES`],
//! all of it within `--http-timeout-ms` (10 s) of the handler asking for it.
//!
//! The body is read here, in full, before any handler runs, so a handler's
//! `Bytes` is always within both bounds. A per-frame timeout (tower-http's
//! `RequestBodyTimeoutLayer`) would not do: a client sending one byte every
//! few seconds would never trip it.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::ApiError;
use crate::protocol::ErrorCode;
use crate::server::state::AppState;

/// The largest API request body accepted (PROTOCOL.md "Limits": 16 KiB).
pub const MAX_API_BODY_BYTES: usize = 16 * 1024;

/// Why an API request's body was refused.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {MAX_API_BODY_BYTES} bytes")]
    TooLarge,
    #[error("the body did not arrive within {0} ms")]
    TooSlow(u128),
    #[error("the body could not be read: {0}")]
    Broken(axum::Error),
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let (code, status) = match self {
            BodyError::TooLarge => (ErrorCode::TooLarge, StatusCode::PAYLOAD_TOO_LARGE),
            BodyError::TooSlow(_) => (ErrorCode::Invalid, StatusCode::REQUEST_TIMEOUT),
            BodyError::Broken(_) => (ErrorCode::Invalid, StatusCode::BAD_REQUEST),
        };
        let mut response = ApiError::new(code, message).into_response();
        *response.status_mut() = status;
        // The rest of the body, if any, is never read: this connection is done.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// Middleware for `/api/*`: reads the whole body within the bounds and hands
/// the handler a request whose body is those bytes.
pub async fn bounded(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, BodyError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_API_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let deadline = state.config.http_timeout();
    let (parts, body) = request.into_parts();
    let bytes = tokio::time::timeout(deadline, read_at_most(body, MAX_API_BODY_BYTES))
        .await
        .map_err(|_| BodyError::TooSlow(deadline.as_millis()))??;
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

/// The body's bytes, or `TooLarge` as soon as there are more than `limit`.
async fn read_at_most(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Broken)?;
        if bytes.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}
