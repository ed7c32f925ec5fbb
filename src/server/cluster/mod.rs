//! Owns running several Pulse instances as one, through Redis (`--redis`):
//! today, the persisted channels (chat rooms and users' notification
//! channels). What one instance commits reaches every instance's
//! subscribers in offset order, and an instance that missed something (it
//! was not listening yet, or Redis was away) fills it in from the shared
//! store. Tickers, presence and documents are still per instance.
//!
//! `relay.rs` is the link: one task publishes what this instance committed,
//! one listens to the channels this instance holds and delivers to its hub.

mod relay;

pub use relay::{start, RelayError};
