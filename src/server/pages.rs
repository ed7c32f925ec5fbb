//! Owns what the server-rendered page starts from: the visitor's watchlist
//! (cookie, or the simulator's symbols) with each symbol's current quote and
//! offset, provided to the views as [`InitialState`].

use axum::http::request::Parts;
use leptos::prelude::{provide_context, use_context};

use super::hub::Hub;
use crate::client::{watchlist_from_cookies, InitialState};
use crate::protocol::Channel;

/// Provides the [`InitialState`] of the page being rendered.
pub fn provide_initial_state(hub: &Hub, default_watchlist: &[String]) {
    let from_cookie = use_context::<Parts>().and_then(|parts| {
        let header = parts
            .headers
            .get(axum::http::header::COOKIE)?
            .to_str()
            .ok()?;
        watchlist_from_cookies(header)
    });
    let watchlist = from_cookie.unwrap_or_else(|| default_watchlist.to_vec());
    let tickers = watchlist
        .iter()
        .map(|symbol| hub.peek(&Channel::Ticker(symbol.clone())))
        .collect();
    provide_context(InitialState { watchlist, tickers });
}
