//! The browser side of the connection. [`context`] holds the signals the views
//! read; `socket` (browser builds only) is the IO shell that owns the
//! WebSocket and writes those signals.

pub mod backoff;
mod context;
mod initial;
pub mod store;

pub use context::{provide_live_connection, ConnectionStatus, LiveConnection, WatchlistError};
pub use initial::{
    watchlist_cookie, watchlist_from_cookies, InitialState, DEFAULT_WATCHLIST, MAX_WATCHLIST,
    WATCHLIST_COOKIE,
};

#[cfg(feature = "browser")]
mod browser;
#[cfg(feature = "browser")]
mod socket;

/// Server-side rendering and native builds have no socket to open and no
/// document to keep a cookie in.
#[cfg(not(feature = "browser"))]
mod socket {
    pub fn start(_live: super::LiveConnection) {}
}

#[cfg(not(feature = "browser"))]
mod browser {
    pub fn initial_state() -> super::InitialState {
        super::InitialState::default()
    }

    pub fn store_watchlist(_watchlist: &[String]) {}
}
