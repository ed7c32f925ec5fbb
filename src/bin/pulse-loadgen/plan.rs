//! Owns what every client task needs from the flags, worked out once: the
//! target (a `ws://` or `wss://` URL resolved to an IPv4 address, with the
//! TLS client for `wss://`), the source addresses to spread connections over,
//! and the universe of `ticker:` channels with each client's share of it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use pulse::protocol::{Channel, SubscribeChannel};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::args::{Args, Mode, Transport};

/// The largest `--universe M` accepted (symbols are at most 12 characters).
const MAX_UNIVERSE: usize = 1_000_000;

/// What every client task needs, worked out once from the flags.
#[derive(Debug)]
pub struct Plan {
    pub url: String,
    pub target: SocketAddr,
    /// How many 127.0.0.x source addresses to bind to; `None` for a target
    /// off this machine (the kernel picks the source then).
    source_ips: Option<u8>,
    pub mode: Mode,
    pub transport: Transport,
    /// The universe as channel names, `ticker:{SYMBOL}`.
    channels: Vec<String>,
    /// Subscriptions per client, at most `channels.len()`.
    pub per_client: usize,
    /// The TLS client of a `wss://` URL.
    pub tls: Option<Tls>,
}

/// A `wss://` target's TLS client: the certificates of `--tls-ca`, ALPN
/// `http/1.1` (as browsers ask for a WebSocket), the URL's host as the name.
pub struct Tls {
    pub connector: TlsConnector,
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

impl Tls {
    /// *ring*, as the server (deprecated in rustls 0.23.48 for lacking
    /// post-quantum key exchange; `server/tls.rs` says why it is used).
    #[allow(deprecated)]
    fn new(ca: &Path, host: &str) -> Result<Tls, String> {
        let mut roots = RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(ca)
            .map_err(|err| format!("--tls-ca {}: {err}", ca.display()))?;
        for certificate in certificates {
            let certificate =
                certificate.map_err(|err| format!("--tls-ca {}: {err}", ca.display()))?;
            roots
                .add(certificate)
                .map_err(|err| format!("--tls-ca {}: {err}", ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(host.to_owned())
            .map_err(|err| format!("--url: {host} is no TLS server name: {err}"))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

impl Plan {
    /// Checks the flags, resolves the target and builds the universe.
    pub async fn from_args(args: &Args) -> Result<Self, String> {
        let (target, host, secure) = resolve_target(&args.url).await?;
        let tls = match (secure, &args.tls_ca) {
            (false, None) => None,
            (true, Some(ca)) => Some(Tls::new(ca, &host)?),
            (true, None) => return Err("--url wss://... needs --tls-ca FILE".into()),
            (false, Some(_)) => return Err("--tls-ca is for a wss:// --url".into()),
        };
        if tls.is_some() && matches!(args.mode, Mode::Abuse | Mode::Doc) {
            return Err(format!(
                "--mode {}: its guest logins are plain HTTP; use wss:// with stream, idle or storm",
                args.mode.as_str()
            ));
        }
        if args.transport == Transport::Sse
            && (tls.is_some() || !matches!(args.mode, Mode::Stream | Mode::Idle))
        {
            return Err("--transport sse: stream or idle mode, over plain HTTP".into());
        }
        let loopback = target.ip().is_loopback();
        if !loopback && args.source_ips > 1 {
            return Err(format!(
                "--source-ips {} needs a loopback target, and {target} is not one",
                args.source_ips
            ));
        }
        let channels = parse_universe(&args.universe)?;
        let per_client = usize::try_from(args.symbols).unwrap_or(usize::MAX);
        if args.mode.subscribes() && per_client > channels.len() {
            eprintln!(
                "warning: --symbols {} is more than the {} symbols of --universe; using {}",
                args.symbols,
                channels.len(),
                channels.len()
            );
        }
        Ok(Plan {
            url: args.url.clone(),
            target,
            source_ips: loopback.then_some(args.source_ips),
            mode: args.mode,
            transport: args.transport,
            per_client: per_client.min(channels.len()),
            channels,
            tls,
        })
    }

    /// The source address client `index` binds to: 127.0.0.1 .. 127.0.0.N in turn.
    pub fn source_ip(&self, index: u64) -> Option<Ipv4Addr> {
        let count = u64::from(self.source_ips?);
        let last_octet = u8::try_from(1 + index % count).unwrap_or(1);
        Some(Ipv4Addr::new(127, 0, 0, last_octet))
    }

    /// The channels client `index` subscribes to: K consecutive ones of the
    /// universe from (index*K) mod M on, wrapping.
    pub fn channels_for(&self, index: u64) -> Vec<SubscribeChannel> {
        let count = self.channels.len() as u64;
        let first = index.wrapping_mul(self.per_client as u64) % count;
        (0..self.per_client as u64)
            .map(|offset| SubscribeChannel {
                channel: self.channels[((first + offset) % count) as usize].clone(),
                since: None,
            })
            .collect()
    }
}

/// Checks the URL (`ws://` or `wss://`) and resolves its host to the IPv4
/// address to connect to; also returns the host and whether it is `wss://`.
async fn resolve_target(url: &str) -> Result<(SocketAddr, String, bool), String> {
    let uri: Uri = url.parse().map_err(|err| format!("--url {url}: {err}"))?;
    let (secure, default_port) = match uri.scheme_str() {
        Some("ws") => (false, 80),
        Some("wss") => (true, 443),
        _ => {
            return Err(format!(
                "--url {url}: expected ws://HOST:PORT/PATH or wss://"
            ))
        }
    };
    let host = uri.host().ok_or_else(|| format!("--url {url}: no host"))?;
    let port = uri.port_u16().unwrap_or(default_port);
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|err| format!("--url: cannot resolve {host}: {err}"))?;
    let target = addrs.find(SocketAddr::is_ipv4).ok_or_else(|| {
        format!("--url: {host} has no IPv4 address (the load generator connects over IPv4)")
    })?;
    Ok((target, host.to_owned(), secure))
}

/// Turns `--universe` into `ticker:` channel names: a number M gives
/// SYM0..SYM{M-1}, anything else is a comma-separated list of symbols.
fn parse_universe(spec: &str) -> Result<Vec<String>, String> {
    let spec = spec.trim();
    let symbols: Vec<String> = match spec.parse::<usize>() {
        Ok(count) if (1..=MAX_UNIVERSE).contains(&count) => {
            (0..count).map(|i| format!("SYM{i}")).collect()
        }
        Ok(count) => {
            return Err(format!(
                "--universe {count}: give between 1 and {MAX_UNIVERSE} symbols"
            ))
        }
        Err(_) => spec
            .split(',')
            .map(str::trim)
            .filter(|symbol| !symbol.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    if symbols.is_empty() {
        return Err("--universe: no symbols given".into());
    }
    symbols
        .iter()
        .map(|symbol| {
            Channel::ticker(symbol)
                .map(|channel| channel.to_string())
                .map_err(|err| format!("--universe: {err}"))
        })
        .collect()
}
