//! The page's own storage (browser builds only): the watchlist cookie, read
//! when no server rendered the page (Trunk) and written on every change.

use wasm_bindgen::JsCast;

use super::initial::{watchlist_cookie, watchlist_from_cookies, InitialState, DEFAULT_WATCHLIST};

fn document() -> Option<web_sys::HtmlDocument> {
    web_sys::window()?
        .document()?
        .dyn_into::<web_sys::HtmlDocument>()
        .ok()
}

/// The starting state of a page no server rendered: the cookie's watchlist
/// (or the default one) with no quotes yet; the socket brings them.
pub fn initial_state() -> InitialState {
    let cookies = document().and_then(|d| d.cookie().ok()).unwrap_or_default();
    let watchlist = watchlist_from_cookies(&cookies)
        .unwrap_or_else(|| DEFAULT_WATCHLIST.iter().map(|s| s.to_string()).collect());
    InitialState {
        watchlist,
        tickers: Vec::new(),
    }
}

/// Remembers the watchlist across reloads, where the server can read it.
pub fn store_watchlist(watchlist: &[String]) {
    if let Some(document) = document() {
        let _ = document.set_cookie(&watchlist_cookie(watchlist));
    }
}
