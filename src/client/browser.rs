//! The page's own IO (browser builds only): the watchlist and token cookies,
//! the guest login request, and whether the page is hidden.

use wasm_bindgen::JsCast;

use super::initial::{
    cookie, token_cookie, watchlist_cookie, watchlist_from_cookies, InitialState,
    DEFAULT_WATCHLIST, TOKEN_COOKIE,
};
use super::outbox::Outbox;
use crate::protocol::{ApiErrorResponse, LoginRequest, LoginResponse};

/// Where the outbox waits across reloads.
const OUTBOX_KEY: &str = "pulse_outbox";

/// How long the browser keeps the token cookie (the server's tokens last a
/// week by default; an expired one is answered 4001 and dropped).
const TOKEN_COOKIE_SECS: u64 = 7 * 24 * 3600;

fn document() -> Option<web_sys::HtmlDocument> {
    web_sys::window()?
        .document()?
        .dyn_into::<web_sys::HtmlDocument>()
        .ok()
}

fn cookies() -> String {
    document().and_then(|d| d.cookie().ok()).unwrap_or_default()
}

/// The starting state of a page no server rendered: the cookie's watchlist
/// (or the default one) with no quotes yet; the socket brings them.
pub fn initial_state() -> InitialState {
    let watchlist = watchlist_from_cookies(&cookies())
        .unwrap_or_else(|| DEFAULT_WATCHLIST.iter().map(|s| s.to_string()).collect());
    InitialState {
        watchlist,
        ..InitialState::default()
    }
}

/// Remembers the watchlist across reloads, where the server can read it.
pub fn store_watchlist(watchlist: &[String]) {
    if let Some(document) = document() {
        let _ = document.set_cookie(&watchlist_cookie(watchlist));
    }
}

/// The stored token, if any.
pub fn token() -> Option<String> {
    cookie(&cookies(), TOKEN_COOKIE)
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

/// Stores the token (or, with `None`, forgets it).
pub fn store_token(token: Option<&str>) {
    if let Some(document) = document() {
        let _ = document.set_cookie(&token_cookie(token, TOKEN_COOKIE_SECS));
    }
}

/// Whether the page is hidden (another tab, minimised): the user is `away`.
pub fn page_hidden() -> bool {
    document().is_some_and(|d| d.hidden())
}

/// `POST /api/login`; the error is the server's message, ready to show.
pub async fn login(name: &str) -> Result<LoginResponse, String> {
    let request = gloo_net::http::Request::post("/api/login")
        .json(&LoginRequest {
            name: name.to_owned(),
        })
        .map_err(|err| err.to_string())?;
    let response = request
        .send()
        .await
        .map_err(|_| "the server cannot be reached".to_owned())?;
    if response.ok() {
        return response
            .json::<LoginResponse>()
            .await
            .map_err(|err| err.to_string());
    }
    match response.json::<ApiErrorResponse>().await {
        Ok(error) => Err(error.error.message),
        Err(_) => Err(format!("the server answered {}", response.status())),
    }
}

/// A random number in [0, 1).
pub fn random() -> f64 {
    js_sys::Math::random()
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// Keeps the outbox across reloads (an empty one is removed).
pub fn store_outbox(outbox: &Outbox) {
    let Some(storage) = local_storage() else {
        return;
    };
    if outbox.is_empty() {
        let _ = storage.remove_item(OUTBOX_KEY);
    } else if let Ok(json) = serde_json::to_string(outbox) {
        let _ = storage.set_item(OUTBOX_KEY, &json);
    }
}

/// What an earlier visit left unsent.
pub fn load_outbox() -> Option<Outbox> {
    let json = local_storage()?.get_item(OUTBOX_KEY).ok().flatten()?;
    serde_json::from_str(&json).ok()
}

/// Whether the browser says it is online.
pub fn online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}
