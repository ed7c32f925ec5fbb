//! Owns the protocol inspector's files: `hook.js`, which every dashboard
//! page loads (it notes the page's sockets and keeps nothing until the
//! inspector is opened with `?inspect` or Alt+Shift+I), and the inspector
//! itself (`inspector.js`, `inspector.css`), fetched only when opened. Plain
//! JavaScript served from here, so none of it is in the wasm bundle.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::state::AppState;

/// The inspector's routes (merged before the pages).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/inspector/hook.js",
            get(|| async { script(include_str!("hook.js")) }),
        )
        .route(
            "/inspector/inspector.js",
            get(|| async { script(include_str!("inspector.js")) }),
        )
        .route(
            "/inspector/inspector.css",
            get(|| async { file("text/css; charset=utf-8", include_str!("inspector.css")) }),
        )
}

fn script(text: &'static str) -> Response {
    file("text/javascript; charset=utf-8", text)
}

fn file(content_type: &'static str, text: &'static str) -> Response {
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated each time: the files change with the server, not their names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
