//! Owns the HTTP API under `/api`: guest login, who is online (for a user or
//! the admin), and the admin routes (`POST /api/publish`, `/api/notify`)
//! behind the admin key. Bodies are bounded by [`body`].
//! Errors are JSON `{"error": {"code", "message"}}` with the protocol's codes;
//! every body, asked or answered, is a type of `protocol/http.rs`.

mod body;
mod error;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;

use super::state::AppState;
use crate::protocol::{
    decode_body, Channel, ErrorCode, LoginRequest, LoginResponse, NotifyRequest, NotifyResponse,
    PresenceResponse, PublishRequest, PublishResponse,
};
use crate::server::auth;
pub use error::ApiError;

/// The `/api` routes, each behind the body bounds.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/presence", get(presence))
        .route("/api/publish", post(publish))
        .route("/api/notify", post(notify))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body::bounded,
        ))
}

/// The credential of `Authorization: Bearer <credential>`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
}

/// Whether `presented` is the configured admin key (compared in constant time).
fn is_admin_key(state: &AppState, presented: &str) -> bool {
    state
        .config
        .admin_key
        .as_deref()
        .is_some_and(|key| bool::from(presented.as_bytes().ct_eq(key.as_bytes())))
}

/// Checks `Authorization: Bearer <admin key>`: 404 when no key is configured
/// (the admin API is off), 401 when the header is missing or wrong.
fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.config.admin_key.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "the admin API is off: start the server with --admin-key",
        ));
    }
    let presented = bearer(headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "send Authorization: Bearer <admin key>",
        )
    })?;
    if is_admin_key(state, presented) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::Unauthorized, "wrong admin key"))
    }
}

/// Checks `Authorization: Bearer <a valid user token or the admin key>`;
/// 401 otherwise.
fn require_user_or_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = bearer(headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "send Authorization: Bearer <token or admin key>",
        )
    })?;
    if is_admin_key(state, presented) || state.auth.verify(presented).is_ok() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the token is invalid or expired",
        ))
    }
}

/// Reads a request body as `T` (`protocol::decode_body`: the error names
/// the failing field).
fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    decode_body(body).map_err(|error| ApiError::new(error.code, error.message))
}

/// `POST /api/publish {"channel": "ticker:XYZ", "data": {"price", "volume"?}}`.
async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PublishResponse>, ApiError> {
    require_admin(&state, &headers)?;
    let request: PublishRequest = parse_body(&body)?;
    let symbol = match request.channel.parse::<Channel>() {
        Ok(Channel::Ticker(symbol)) => symbol,
        Ok(_) => {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                "channel: only ticker: channels take published ticks",
            ))
        }
        Err(err) => return Err(ApiError::new(ErrorCode::Invalid, format!("channel: {err}"))),
    };
    let price = request.data.price;
    if !(0.01..=1e12).contains(&price) {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "data.price: must be a number from 0.01 to 1e12",
        ));
    }
    let offset = state
        .feeds
        .publish_external(&symbol, price, request.data.volume)
        .await
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the tick could not be published"))?;
    Ok(Json(PublishResponse {
        channel: Channel::Ticker(symbol),
        offset,
    }))
}

/// `POST /api/login {"name"}`: a guest token (404 when guest login is off).
async fn login(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<LoginResponse>, ApiError> {
    if !state.config.guest_login {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "guest login is off on this server",
        ));
    }
    let request: LoginRequest = parse_body(&body)?;
    let user = auth::guest(&request.name)
        .map_err(|err| ApiError::new(ErrorCode::Invalid, err.to_string()))?;
    let token = state.auth.mint(&user);
    tracing::info!(user = %user.id, "guest login");
    Ok(Json(LoginResponse { token, user }))
}

/// `GET /api/presence` with a user's token or the admin key: everyone online now.
async fn presence(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<PresenceResponse>, ApiError> {
    require_user_or_admin(&state, &headers)?;
    Ok(Json(PresenceResponse {
        users: state.hub.presence_users(),
    }))
}

/// `POST /api/notify {"user", "title", "body"}` with the admin key: stores
/// the notification and delivers it to every tab of that user.
async fn notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<NotifyResponse>, ApiError> {
    require_admin(&state, &headers)?;
    let request: NotifyRequest = parse_body(&body)?;
    if !Channel::is_user_id(&request.user) {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "user: a user id of 1 to 64 characters",
        ));
    }
    let title = request.title.trim().to_owned();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "title: 1 to 200 characters",
        ));
    }
    if title.contains('\0') || request.body.contains('\0') {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "title, body: must not contain U+0000 (NUL)",
        ));
    }
    if request.body.chars().count() > 4000 {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            "body: at most 4000 characters",
        ));
    }
    let hub = state.hub.clone();
    let stored = state
        .store
        .append_notification(
            request.user,
            title,
            request.body,
            crate::server::frames::now(),
            move |n| hub.publish_notification(n),
        )
        .await
        .map_err(|err| {
            tracing::error!(%err, "cannot store a notification");
            ApiError::new(ErrorCode::Internal, "the notification could not be stored")
        })?;
    Ok(Json(NotifyResponse {
        notification_id: stored.notification_id,
        offset: stored.offset,
    }))
}
