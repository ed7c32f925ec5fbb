//! Owns how the server's log lines are written: the `RUST_LOG` filter (default
//! `info`) and `--log-format` (text for people, JSON for collectors). Every
//! line about a WebSocket connection is written inside that connection's span
//! (`ws/mod.rs`), so in JSON it carries `span.instance`, `span.connection`,
//! `span.client` and, once signed in, `span.user`: a user's lines can be followed across
//! reconnects.

use tracing_subscriber::EnvFilter;

use super::config::LogFormat;

/// Installs the global subscriber; call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
