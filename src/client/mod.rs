//! The browser side of the connection. [`context`] holds the signals the views
//! read; `socket` (browser builds only) is the IO shell that owns the
//! WebSocket and writes those signals.

pub mod backoff;
mod context;
mod initial;

pub use context::{provide_live_connection, ConnectionStatus, LiveConnection};
pub use initial::{
    watchlist_cookie, watchlist_from_cookies, InitialState, MAX_WATCHLIST, WATCHLIST_COOKIE,
};

#[cfg(feature = "browser")]
mod socket;

/// Server-side rendering and native builds have no socket to open.
#[cfg(not(feature = "browser"))]
mod socket {
    pub fn start(_live: super::LiveConnection) {}
}
