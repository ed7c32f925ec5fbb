//! Owns running several Pulse instances as one, through Redis (`--redis`):
//! chat rooms, users' notification channels and tickers. What one instance
//! commits or publishes reaches every instance's subscribers in offset
//! order, and an instance that missed something (it was not listening yet,
//! or Redis was away) fills it in from the shared store (or, for tickers,
//! Redis's history). The market simulator runs on one instance at a time.
//! Presence and documents are still per instance.
//!
//! `relay.rs` is the link: one task publishes what this instance committed,
//! one listens to the channels this instance holds and delivers to its hub.
//! `lease.rs` decides which instance simulates the market.

mod lease;
mod relay;

pub use lease::Lease;
pub use relay::{start, RelayError};
