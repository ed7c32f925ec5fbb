//! Owns [`AppState`]: what every request handler shares.

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admin::Admin;
use super::assets::Assets;
use super::auth::Auth;
use super::config::Config;
use super::feeds::Feeds;
use super::hub::Hub;
use super::metrics::Metrics;
use super::sse::session::Sessions;
use super::store::Store;
use super::ws::admission::Admission;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub leptos_options: LeptosOptions,
    /// The site's static files (the bundle, the favicon).
    pub assets: Arc<Assets>,
    /// Cancelled once when the server shuts down; every connection watches it.
    pub shutdown: CancellationToken,
    /// Tracks every WebSocket connection task, so shutdown can wait for each
    /// one to say goodbye.
    pub connections: TaskTracker,
    pub metrics: Arc<Metrics>,
    /// The owner of channels; connections, feeds and the API publish through it.
    pub hub: Hub,
    /// The market prices the simulator and `/api/publish` move.
    pub feeds: Feeds,
    /// Signs and checks tokens.
    pub auth: Arc<Auth>,
    /// The SQLite file.
    pub store: Store,
    /// Who may open a WebSocket now: the connection cap and upgrade rates.
    pub admission: Arc<Admission>,
    /// This process's name among instances (random per start): in the log
    /// lines of its connections and in Redis.
    pub instance: Arc<str>,
    /// The operators' view: its sessions, the census of connections and
    /// the `admin` channel.
    pub admin: Admin,
    /// The HTTP fallback's sessions open on this instance (`sse/`).
    pub sse: Arc<Sessions>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
