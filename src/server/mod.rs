//! The server: everything that runs only in the `pulse` binary (axum, tokio).
//!
//! [`run`] binds the listener and serves until `shutdown` completes; [`router`]
//! builds the whole application, so tests can serve it on port 0.

mod admin;
mod api;
pub(crate) mod assets;
pub mod auth;
pub mod broker;
mod bundle;
mod client_address;
pub mod config;
mod feeds;
mod frames;
mod http;
pub mod hub;
mod inspector;
pub mod logging;
mod metrics;
mod pages;
mod security;
pub mod shutdown;
mod sse;
mod state;
mod store;
mod tls;
mod ws;

use axum::extract::{Request, State};
use axum::routing::get;
use axum::Router;
use leptos::config::get_configuration;
use leptos::prelude::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{shell, App, Page};
use auth::Auth;
pub use config::Config;
use feeds::{Feeds, Market};
use hub::Hub;
use metrics::Metrics;
pub use state::AppState;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Relay(#[from] broker::redis::RelayError),
    #[error("{0}")]
    StaleBundle(#[from] bundle::StaleBundle),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("leptos configuration: {0}")]
    Leptos(String),
    #[error("serving: {0}")]
    Serve(#[from] std::io::Error),
}

/// Checks the site's bundle ([`check_bundle`]), binds `config.addr` and
/// serves until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    check_bundle(&config)?;
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    serve(listener, config, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0) until `shutdown`
/// completes; then every socket is closed with 1001 and the call returns
/// once each connection has said goodbye or the grace period is over.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let tls = match config.tls_files() {
        Some(files) => Some(tls::Tls::new(files, config.tls_handshake_timeout())?),
        None => None,
    };
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(metrics.clone(), config.presence_grace());
    let secret = jwt_secret(&config);
    let auth = Arc::new(Auth::new(&secret, config.token_ttl()));
    let store = store::Store::from_flags(&config.db, config.database_url.as_deref()).await?;
    let (commits, commit_seconds, doc_loads) = store.metrics();
    metrics.register_store(commits, commit_seconds, doc_loads);
    match store.kind() {
        "sqlite" => tracing::info!(db = %config.db.display(), "database open (SQLite)"),
        kind => tracing::info!(kind, "database open"),
    }
    let instance: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    let sessions = Arc::new(sse::session::Sessions::new(&secret, instance.clone()));
    let lease = match &config.redis {
        Some(url) => {
            let lease = broker::redis::start(
                url,
                hub.clone(),
                store.clone(),
                config.presence_grace(),
                &instance,
                &config.redis_prefix,
                &metrics,
                sessions.clone(),
            )
            .await?;
            tracing::info!("serving as one with the other instances on Redis");
            Some(lease)
        }
        None => None,
    };
    // The default room is in memory from the start, so pages render its history.
    let general = crate::protocol::Channel::Chat(crate::client::DEFAULT_ROOM.to_owned());
    hub.watch(&general).await;
    let (installer, installed) = (hub.clone(), general.clone());
    store
        .load_chat(general.to_string(), hub::CHAT_HISTORY, move |stored| {
            installer.install_chat(&installed, stored)
        })
        .await?;
    hub.loaded(&general);
    let seed = config.seed.unwrap_or_else(rand::random);
    let feeds = Feeds::new(Market::new(&config.symbols.0, seed), hub.clone());
    let config_for_admission = config.clone();
    let leptos_options = leptos_options(addr)?;
    let admin = admin::Admin::new(config.admin_key.as_deref());
    let state = AppState {
        assets: Arc::new(assets::Assets::for_site(&leptos_options)),
        leptos_options,
        config: Arc::new(config),
        shutdown: CancellationToken::new(),
        connections: TaskTracker::new(),
        metrics,
        hub,
        feeds: feeds.clone(),
        auth,
        store,
        admission: Arc::new(ws::admission::Admission::new(&config_for_admission)),
        instance: instance.clone(),
        admin,
        sse: sessions,
    };
    let app = router(state.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%instance, "listening on {scheme}://{addr}");
    tracing::info!(
        symbols = state.config.symbols.0.len(),
        rate = state.config.tick_rate,
        seed,
        "market simulator"
    );
    let delivered = state.metrics.clone();
    tokio::spawn(
        state
            .admission
            .pace()
            .clone()
            .probe(move || delivered.messages_out.get(), state.shutdown.clone()),
    );
    if state.admin.sessions().is_some() {
        let (metrics, pace) = (state.metrics.clone(), state.admission.pace().clone());
        let redis =
            (state.config.redis.clone()).map(|url| (url, state.config.redis_prefix.clone()));
        tokio::spawn(state.admin.clone().run(
            move || metrics.render(pace.rate(), pace.lag()),
            state.hub.clone(),
            state.store.clone(),
            instance.clone(),
            redis,
            state.shutdown.clone(),
        ));
    }
    let simulator =
        tokio::spawn(feeds.simulate(state.config.tick_rate, state.shutdown.clone(), lease));

    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch(state.shutdown.clone()));
    }
    let settings = http::HttpSettings {
        header_timeout: state.config.http_timeout(),
        grace: state.config.shutdown_grace(),
        tls,
    };
    let accepting = http::accept(listener, app, settings, state.shutdown.clone());
    let (http_connections, ()) = tokio::join!(accepting, async {
        shutdown.await;
        state.shutdown.cancel();
    });

    // One deadline for everything still open: HTTP requests in flight end
    // by themselves at the grace; WebSockets were told 1001 and get as long.
    let _ = simulator.await;
    state.connections.close();
    let open = state.connections.len();
    let everyone = async { tokio::join!(http_connections.wait(), state.connections.wait()) };
    if tokio::time::timeout(state.config.shutdown_grace(), everyone)
        .await
        .is_err()
    {
        tracing::warn!(
            open,
            "shutdown grace period over with connections still open"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// The whole application: `/ws`, the API, health and metrics first, then the
/// Leptos pages, then static files (the wasm bundle, CSS: `assets.rs`) from
/// the site root, then "not found".
/// Pages carry their Content-Security-Policy; every response the common
/// security headers.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let hub = state.hub.clone();
    let auth = state.auth.clone();
    let store = state.store.clone();
    let watchlist: Vec<String> = state.config.symbols.0.iter().take(12).cloned().collect();
    let reload_port = std::env::var_os("LEPTOS_WATCH")
        .is_some()
        .then(|| options.reload_external_port.unwrap_or(options.reload_port));
    let page_headers = security::page_headers(reload_port);
    let not_found = {
        let page_headers = page_headers.clone();
        let options = options.clone();
        leptos_axum::render_app_to_stream_with_context(
            move || {
                page_headers();
                // Any path but `/` that is no file: the app's "not found".
                leptos::prelude::provide_context(Page::NotFound);
            },
            move || shell(options.clone()),
        )
    };
    let page_context = {
        let page_headers = page_headers.clone();
        move || {
            page_headers();
            pages::provide_initial_state(&hub, &auth, &store, &watchlist);
        }
    };
    Router::new()
        .route("/ws", get(ws::handler))
        .merge(sse::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_handler))
        .merge(api::routes(&state))
        .merge(admin::routes())
        .merge(inspector::routes())
        .leptos_routes_with_context(&state, routes, page_context, move || shell(options.clone()))
        .fallback(
            move |State(state): State<AppState>, request: Request| async move {
                // A static file, or else the app's "not found" (a 404).
                match state.assets.serve(request).await {
                    Ok(file) => file,
                    Err(request) => {
                        let mut page = not_found(request).await;
                        if page.status() == axum::http::StatusCode::OK {
                            *page.status_mut() = axum::http::StatusCode::NOT_FOUND;
                        }
                        page
                    }
                }
            },
        )
        .with_state(state)
        .layer(axum::middleware::map_response(security::common_headers))
}

async fn metrics_handler(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let pace = state.admission.pace();
    let text = state.metrics.render(pace.rate(), pace.lag());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// The token secret: the configured one, or a random one for this run.
fn jwt_secret(config: &Config) -> Vec<u8> {
    match &config.jwt_secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => {
            tracing::warn!(
                "no --jwt-secret: using a random secret, so tokens will not survive a restart"
            );
            rand::random::<[u8; 32]>().to_vec()
        }
    }
}

/// Refuses a site bundle that is not this server's build (`bundle.rs`), or
/// with `--allow-stale-bundle` warns loudly and serves it. Only the binary
/// checks: tests serve in-process with whatever `target/site` holds.
fn check_bundle(config: &Config) -> Result<(), ServerError> {
    let options = leptos_options(config.addr)?;
    match bundle::check(&assets::wasm_path(&options)) {
        Ok(()) => Ok(()),
        Err(stale) if config.allow_stale_bundle => {
            tracing::warn!("STALE SITE BUNDLE, served anyway (--allow-stale-bundle): {stale}");
            Ok(())
        }
        Err(stale) => Err(stale.into()),
    }
}

/// Leptos' settings: cargo-leptos' environment when it built or runs us,
/// otherwise the defaults of `[package.metadata.leptos]` (site root
/// `target/site`), so `target/release/pulse` started from the repository root
/// serves the site, and a plain `cargo run` needs no environment either.
fn leptos_options(addr: SocketAddr) -> Result<LeptosOptions, ServerError> {
    let built_by_cargo_leptos = option_env!("LEPTOS_OUTPUT_NAME").is_some()
        || std::env::var_os("LEPTOS_OUTPUT_NAME").is_some();
    let mut options = if built_by_cargo_leptos {
        get_configuration(None)
            .map_err(|err| ServerError::Leptos(err.to_string()))?
            .leptos_options
    } else {
        // get_configuration(None) would complain about the missing name.
        let site_root = std::env::var("LEPTOS_SITE_ROOT").unwrap_or_else(|_| "target/site".into());
        LeptosOptions::builder()
            .output_name("pulse")
            .site_root(site_root)
            .site_pkg_dir("pkg")
            .build()
    };
    options.site_addr = addr;
    // A hashed release build (LEPTOS_HASH_FILES=true) lists the bundle's
    // hashed names beside the binary; Leptos links what that file lists.
    options.hash_files = assets::has_hashed_bundle(&options);
    Ok(options)
}
