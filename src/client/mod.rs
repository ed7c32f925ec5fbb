//! The browser side of the connection. [`context`] holds the page's state,
//! one context per feature, which the views read; `socket` (browser builds
//! only) is the IO shell that owns the WebSocket, does the page's IO and
//! applies what the server says.

pub mod backoff;
pub mod case;
pub mod chat;
mod context;
mod initial;
pub mod note;
pub mod outbox;
pub mod reconnect;
pub mod store;
pub mod transport;

pub use context::{
    provide_live, Chat, Connection, ConnectionStatus, Identity, Live, NoteEditor, Notifications,
    SharedNote, ToDriver, Watchlist, WatchlistError, DEFAULT_ROOM,
};
pub use initial::{
    cookie, token_cookie, watchlist_cookie, watchlist_from_cookies, InitialState, NotePreview,
    DEFAULT_WATCHLIST, MAX_WATCHLIST, NOTE_MORE_MARKER, NOTE_PREVIEW_BYTES, TOKEN_COOKIE,
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
    pub fn start(_live: super::Live) {}
}

#[cfg(not(feature = "browser"))]
mod browser {
    pub fn initial_state() -> super::InitialState {
        super::InitialState::default()
    }

    pub fn random() -> f64 {
        0.5
    }

    pub fn now_ms() -> f64 {
        0.0
    }
}

/// A fresh envelope id for a chat message (the server's idempotency key:
/// unique per user, so a page's ids must not repeat across reloads).
pub fn new_message_id() -> String {
    new_envelope_id("c")
}

/// A fresh envelope id starting with `kind`: random per page, then counted.
pub fn new_envelope_id(kind: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let random = (browser::random() * 1e15) as u64;
    format!(
        "{kind}-{random:x}-{}",
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}
