//! Pulse: a live dashboard and WebSocket server in one crate, built twice.
//!
//! Code map:
//! - [`build_id`]: which build this is, the same in the server and its bundle.
//! - [`protocol`]: the wire types of `PROTOCOL.md`, serde only, shared by both builds.
//! - [`app`]: the Leptos views. They read signals and never touch the socket.
//! - [`client`]: the browser side: the page's state, one context per feature,
//!   which the views read, and (browser builds only) the socket driver that
//!   does the page's IO and applies what the server says.
//! - `server` (feature `ssr`): axum, tokio, the WebSocket endpoint, the API.
//!
//! Entry points: `main.rs` runs the server; [`hydrate`] starts the browser app.

pub mod app;
pub mod build_id;
pub mod client;
pub mod protocol;
#[cfg(feature = "ssr")]
pub mod server;

/// The wasm entry point: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
