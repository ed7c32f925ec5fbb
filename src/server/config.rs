//! Owns the server's settings: every flag with its environment twin, as listed
//! in PROTOCOL.md "Running the server".

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::{DEFAULT_HEARTBEAT_MS, HELLO_TIMEOUT_MS, MAX_MESSAGE_BYTES};
use crate::server::auth::MIN_SECRET_BYTES;

mod values;
use values::{parse_ceiling, parse_positive_rate, parse_prefix, parse_rate};
pub use values::{SymbolList, DEFAULT_SYMBOLS};

/// The shortest admin key accepted (PROTOCOL 1.1).
pub const MIN_ADMIN_KEY_CHARS: usize = 16;

/// The longest heartbeat interval: ten minutes. Longer would leave dead
/// sockets around for half an hour, and much longer overflows `Instant`.
pub const MAX_HEARTBEAT_MS: u64 = 600_000;

/// Why the settings cannot be served with; the server refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--jwt-secret (PULSE_JWT_SECRET) is {0} bytes: it must be at least {MIN_SECRET_BYTES} \
         (RFC 7518 §3.2), or unset for a random one"
    )]
    ShortSecret(usize),
    #[error(
        "--admin-key (PULSE_ADMIN_KEY) is {0} characters: it must be at least \
         {MIN_ADMIN_KEY_CHARS}, or unset to turn the admin API off"
    )]
    ShortAdminKey(usize),
    #[error(
        "--redis (PULSE_REDIS_URL) needs --database-url (PULSE_DATABASE_URL): instances that \
         serve as one share their data in PostgreSQL, not each in a SQLite file of its own"
    )]
    RedisWithoutDatabase,
    #[error(
        "--tls-cert (PULSE_TLS_CERT) and --tls-key (PULSE_TLS_KEY) go together: set both \
         to serve HTTPS and wss://, or neither for plain HTTP"
    )]
    TlsHalfConfigured,
}

/// `pulse`: a real-time dashboard and WebSocket server.
#[derive(Debug, Clone, Parser)]
#[command(name = "pulse", version, about)]
pub struct Config {
    /// Listen address.
    #[arg(long, env = "LEPTOS_SITE_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// SQLite file for chat, notifications and documents (created on first start).
    #[arg(long, env = "PULSE_DB", default_value = "data/pulse.db")]
    pub db: PathBuf,

    /// PostgreSQL instead of the SQLite file, for several instances sharing
    /// the data: `postgres://user:password@host:port/database`. Unset means
    /// the SQLite file at `--db`.
    #[arg(long, env = "PULSE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis, for several instances serving as one (`redis://host:port`):
    /// committed chat messages and notifications reach every instance's
    /// subscribers. Needs `--database-url` (the instances share the data).
    #[arg(long, env = "PULSE_REDIS_URL")]
    pub redis: Option<String>,

    /// The prefix of every Redis key and pub/sub channel this deployment
    /// uses (`{prefix}:…`), so two deployments can share one Redis.
    #[arg(long, env = "PULSE_REDIS_PREFIX", default_value = "pulse", value_parser = parse_prefix)]
    pub redis_prefix: String,

    /// Chat messages a connection may send per second, sustained (bursts of
    /// up to 10 pass); more are answered `rate_limited`.
    #[arg(long, env = "PULSE_CHAT_RATE", default_value_t = 5.0, value_parser = parse_rate)]
    pub chat_rate: f64,

    /// Comma-separated `Origin`s allowed to open /ws; unset means the server's
    /// own origin (the request's Host), `*` allows any. Clients that send no
    /// `Origin` (non-browser clients) are always allowed.
    #[arg(long, env = "PULSE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Comma-separated addresses or CIDRs of reverse proxies in front of
    /// Pulse (`10.0.0.0/8,::1`): from them, and only from them,
    /// `Forwarded` / `X-Forwarded-For` name the client for the per-address
    /// limits and the logs. Unset: every peer is the client.
    #[arg(long, env = "PULSE_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = crate::server::client_address::parse_trusted)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// PEM file of the TLS certificate chain (the server's certificate
    /// first, e.g. certbot's `fullchain.pem`): with `--tls-key`, HTTPS and
    /// `wss://` (HTTP/2 too) on `--addr`. Reloaded when the file changes or
    /// on SIGHUP. Unset: plain HTTP.
    #[arg(long, env = "PULSE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the certificate's private key (PKCS#8, RSA or EC; e.g.
    /// certbot's `privkey.pem`).
    #[arg(long, env = "PULSE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Seconds a client has to finish the TLS handshake; the request head's
    /// own deadline starts after it.
    #[arg(long, env = "PULSE_TLS_HANDSHAKE_TIMEOUT_SECS",
          default_value_t = super::tls::TLS_HANDSHAKE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub tls_handshake_timeout_secs: u64,

    /// Serve a site bundle (`target/site/pkg/*.wasm`) built from other
    /// sources or as another kind of build, with a loud warning, instead of
    /// refusing to start: its pages may fail to start in the browser.
    #[arg(long, env = "PULSE_ALLOW_STALE_BUNDLE")]
    pub allow_stale_bundle: bool,

    /// Milliseconds between server Pings; a connection silent for twice this
    /// long is closed.
    #[arg(long, env = "PULSE_HEARTBEAT_MS", default_value_t = DEFAULT_HEARTBEAT_MS,
          value_parser = clap::value_parser!(u64).range(10..=MAX_HEARTBEAT_MS))]
    pub heartbeat_ms: u64,

    /// Milliseconds a connection may wait before its `hello` (protocol: 10 s;
    /// shorter only for tests).
    #[arg(long, env = "PULSE_HELLO_TIMEOUT_MS", default_value_t = HELLO_TIMEOUT_MS, hide = true)]
    pub hello_timeout_ms: u64,

    /// Milliseconds a client has to send a request's head, and then an API
    /// request's body (protocol: 10 s each; shorter only for tests).
    #[arg(long, env = "PULSE_HTTP_TIMEOUT_MS", default_value_t = super::http::HTTP_READ_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    pub http_timeout_ms: u64,

    /// Symbols of the built-in market simulator: a comma-separated list, or a
    /// number N for SYM0..SYM{N-1}.
    #[arg(long, env = "PULSE_SYMBOLS", default_value = DEFAULT_SYMBOLS)]
    pub symbols: SymbolList,

    /// Price changes per second per symbol in the simulator (0 turns it off).
    #[arg(long, env = "PULSE_TICK_RATE", default_value_t = 2.0,
          value_parser = parse_rate)]
    pub tick_rate: f64,

    /// Seed of the simulator's random walk, for a repeatable run (random when unset).
    #[arg(long, env = "PULSE_SEED")]
    pub seed: Option<u64>,

    /// Bearer key for /api/notify and /api/publish; the admin API is off without it.
    #[arg(long, env = "PULSE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,

    /// HS256 secret for tokens; when unset, a random one per start (tokens then
    /// do not survive a restart) and a warning in the log.
    #[arg(long, env = "PULSE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Enables `POST /api/login` (guest login: anyone may claim any name).
    /// Production turns it off and mints tokens in its own backend.
    #[arg(long, env = "PULSE_GUEST_LOGIN", default_value_t = true, action = clap::ArgAction::Set)]
    pub guest_login: bool,

    /// Seconds a guest token stays valid.
    #[arg(long, env = "PULSE_TOKEN_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub token_ttl_secs: u64,

    /// Milliseconds between a user's last connection closing and their `leave`.
    #[arg(long, env = "PULSE_PRESENCE_GRACE_MS", default_value_t = 5_000)]
    pub presence_grace_ms: u64,

    /// Milliseconds a connection's writer waits, when only ticks are queued,
    /// for more ticks to send in the same frame: fewer writes (CPU) for later
    /// ticks. Chat, acks and every other message go at once. 0: never wait.
    #[arg(long, env = "PULSE_WRITE_DELAY_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub write_delay_ms: u64,

    /// Bytes of undelivered live messages (not conflated ticks, not subscribe
    /// answers, which have their own bound) a connection may queue before it is
    /// closed with 4008 as a slow consumer.
    #[arg(long, env = "PULSE_MAX_OUTBOX_BYTES", default_value_t = 1 << 20)]
    pub max_outbox_bytes: usize,

    /// The most WebSocket connections served at once; past it new ones are
    /// closed with 1013 (try again later). Unlimited when unset.
    #[arg(long, env = "PULSE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Milliseconds the server waits, on shutdown, for connections to say goodbye.
    #[arg(long, env = "PULSE_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    pub shutdown_grace_ms: u64,

    /// WebSocket upgrades per second allowed from one client address (bursts
    /// of twice that); past it new sockets are closed with 1013. Off when
    /// unset, since behind a proxy every client shares one address.
    #[arg(long, env = "PULSE_MAX_UPGRADES_PER_IP", value_parser = parse_positive_rate)]
    pub max_upgrades_per_ip: Option<f64>,

    /// A ceiling on WebSocket upgrades per second for the whole server. Unset
    /// (the default), the pace adapts to the load alone: as fast as
    /// handshakes can be done while the open connections are served on time,
    /// slower while they would suffer (upgrades wait their turn, up to 5 s,
    /// then get 1013).
    #[arg(long, env = "PULSE_MAX_UPGRADES_PER_SEC", value_parser = parse_ceiling)]
    pub max_upgrades_per_sec: Option<f64>,

    /// How log lines are written: `text` for people, `json` (one object per
    /// line, a connection's lines carrying `instance`, `connection` and
    /// `user` in `span`) for log collectors.
    #[arg(long, env = "PULSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The two ways of writing log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Checks what clap cannot: secrets long enough to be secrets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.redis.is_some() && self.database_url.is_none() {
            return Err(ConfigError::RedisWithoutDatabase);
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::TlsHalfConfigured);
        }
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(ConfigError::ShortSecret(secret.len()));
            }
        }
        if let Some(key) = &self.admin_key {
            let chars = key.chars().count();
            if chars < MIN_ADMIN_KEY_CHARS {
                return Err(ConfigError::ShortAdminKey(chars));
            }
        }
        Ok(())
    }

    /// The certificate and key files, when TLS is served here.
    pub fn tls_files(&self) -> Option<super::tls::TlsFiles> {
        Some(super::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
    }

    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout_secs)
    }

    pub fn write_delay(&self) -> Duration {
        Duration::from_millis(self.write_delay_ms)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }

    pub fn http_timeout(&self) -> Duration {
        Duration::from_millis(self.http_timeout_ms)
    }

    pub fn presence_grace(&self) -> Duration {
        Duration::from_millis(self.presence_grace_ms)
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
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
mod tests;
