//! Owns the operators' live view at `/admin` (on only with `--admin-key`;
//! 404 otherwise): signing in with the admin key (`session.rs`), the page
//! (`page.rs`, kept live by `admin.js` over the same `/ws` socket as the
//! dashboard, on the `admin` channel: `feed.rs`), and the numbers it shows
//! (`census.rs`, `sample.rs`, and `peers.rs` across instances).

mod census;
mod feed;
mod page;
mod peers;
mod sample;
mod session;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use std::net::SocketAddr;

pub use feed::Admin;

use super::client_address::came_over_tls;
use super::state::AppState;

/// The largest sign-in form accepted.
const MAX_FORM_BYTES: usize = 1024;

/// The admin routes (merged before the pages).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(view))
        .route("/admin/session", post(sign_in))
        .route("/admin/signout", post(sign_out))
        .route("/admin/admin.js", get(script))
        .route("/admin/admin.css", get(style))
}

/// Whether a WebSocket upgrade's request carries a valid admin session (the
/// socket may then subscribe to `admin`).
pub fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    state
        .admin
        .sessions()
        .is_some_and(|sessions| sessions.signed_in(headers))
}

/// `GET /admin`: the live view with a session, else the sign-in form (401).
async fn view(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(sessions) = state.admin.sessions() else {
        return off();
    };
    if sessions.signed_in(&headers) {
        let html = page::dashboard(state.admin.latest().as_ref());
        html_page(StatusCode::OK, html, &headers)
    } else {
        html_page(StatusCode::UNAUTHORIZED, page::sign_in(None), &headers)
    }
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    key: String,
}

/// `POST /admin/session` (a form with `key`): the right key sets the
/// session cookie and goes to the view (303); anything else is 401.
async fn sign_in(State(state): State<AppState>, request: Request) -> Response {
    let Some(sessions) = state.admin.sessions() else {
        return off();
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    // TLS ended here (`http::Secure`), or a trusted proxy says it ended there.
    let direct_tls = crate::server::http::Secure::of(request.extensions());
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let read = axum::body::to_bytes(body, MAX_FORM_BYTES);
    let bytes = match tokio::time::timeout(state.config.http_timeout(), read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response()
        }
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                "the form did not arrive in time",
            )
                .into_response()
        }
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    let key = match Form::<SignIn>::from_request(request, &()).await {
        Ok(Form(form)) => form.key,
        Err(_) => String::new(),
    };
    if key.is_empty() || !sessions.is_key(&key) {
        let error = if key.is_empty() {
            "Enter the admin key."
        } else {
            "Wrong admin key."
        };
        tracing::info!("admin sign-in refused");
        return html_page(
            StatusCode::UNAUTHORIZED,
            page::sign_in(Some(error)),
            &headers,
        );
    }
    let secure = direct_tls
        || peer.is_some_and(|peer| came_over_tls(peer, &headers, &state.config.trusted_proxies));
    let cookie = session::set_cookie(Some(&sessions.mint()), secure);
    tracing::info!("admin signed in");
    to_view(cookie)
}

/// `POST /admin/signout`: deletes the session cookie.
async fn sign_out(State(state): State<AppState>) -> Response {
    if state.admin.sessions().is_none() {
        return off();
    }
    to_view(session::set_cookie(None, false))
}

/// 303 to `/admin`, setting `cookie`.
fn to_view(cookie: String) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/admin"));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The admin view is off: no `--admin-key`.
fn off() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// An admin page with its own policy: its one script and stylesheet from
/// this site, the socket on this host, nothing inline, never cached.
fn html_page(status: StatusCode, html: String, headers: &HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let connect = match host {
        Some(host) => format!("'self' ws://{host} wss://{host}"),
        None => "'self'".into(),
    };
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src {connect}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Cookie realm=\"pulse-admin\" form-action=\"/admin/session\""),
        );
    }
    response
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("admin.js"))
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("admin.css"))
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
