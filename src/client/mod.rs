//! The browser side of the connection. [`context`] holds the signals the views
//! read; `socket` (browser builds only) is the IO shell that owns the
//! WebSocket and writes those signals.

pub mod backoff;
mod context;

pub use context::{provide_live_connection, ConnectionStatus, LiveConnection};

#[cfg(feature = "browser")]
mod socket;

/// Server-side rendering and native builds have no socket to open.
#[cfg(not(feature = "browser"))]
mod socket {
    pub fn start(_live: super::LiveConnection) {}
}
