//! Owns the server's settings: every flag with its environment twin, as listed
//! in PROTOCOL.md "Running the server".

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::{DEFAULT_HEARTBEAT_MS, HELLO_TIMEOUT_MS, MAX_MESSAGE_BYTES};

/// `pulse`: a real-time dashboard and WebSocket server.
#[derive(Debug, Clone, Parser)]
#[command(name = "pulse", version, about)]
pub struct Config {
    /// Listen address.
    #[arg(long, env = "LEPTOS_SITE_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Comma-separated `Origin`s allowed to open /ws; unset means the server's
    /// own origin (the request's Host), `*` allows any. Clients that send no
    /// `Origin` (non-browser clients) are always allowed.
    #[arg(long, env = "PULSE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Milliseconds between server Pings; a connection silent for twice this
    /// long is closed.
    #[arg(long, env = "PULSE_HEARTBEAT_MS", default_value_t = DEFAULT_HEARTBEAT_MS,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub heartbeat_ms: u64,

    /// Milliseconds a connection may wait before its `hello` (protocol: 10 s;
    /// shorter only for tests).
    #[arg(long, env = "PULSE_HELLO_TIMEOUT_MS", default_value_t = HELLO_TIMEOUT_MS, hide = true)]
    pub hello_timeout_ms: u64,

    /// Milliseconds the server waits, on shutdown, for connections to say goodbye.
    #[arg(long, env = "PULSE_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    pub shutdown_grace_ms: u64,
}

impl Config {
    /// The settings a newcomer gets with no flags and no environment.
    pub fn defaults() -> Self {
        Config::parse_from(["pulse"])
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// The largest client message accepted (fixed by the protocol).
    pub fn max_message_bytes(&self) -> usize {
        MAX_MESSAGE_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_their_defaults_and_overrides() {
        let config = Config::try_parse_from(["pulse"]).unwrap();
        assert_eq!(config.heartbeat_ms, 15_000);
        assert!(config.allowed_origins.is_empty());
        let config = Config::try_parse_from([
            "pulse",
            "--addr",
            "0.0.0.0:8080",
            "--allowed-origins",
            "http://a.test,https://b.test",
            "--heartbeat-ms",
            "500",
        ])
        .unwrap();
        assert_eq!(config.addr.port(), 8080);
        assert_eq!(config.allowed_origins, ["http://a.test", "https://b.test"]);
        assert_eq!(config.heartbeat(), Duration::from_millis(500));
    }

    #[test]
    fn bad_values_are_refused_with_a_message() {
        assert!(Config::try_parse_from(["pulse", "--addr", "nowhere"]).is_err());
        assert!(Config::try_parse_from(["pulse", "--heartbeat-ms", "0"]).is_err());
    }
}
