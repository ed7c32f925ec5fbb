//! Owns TLS served directly (`--tls-cert` / `--tls-key`): the certificate
//! pair read from its PEM files, rustls' settings (the `ring` provider, ALPN
//! `h2` then `http/1.1`), the handshake with its deadline, and the reload of
//! the pair when its files change or on SIGHUP.
//!
//! The pair lives behind a resolver ([`Current`]) that every new handshake
//! asks, so a reload swaps it for new connections while open ones keep the
//! session they made. A new pair that cannot be used is logged and the old
//! one kept.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client has to finish the TLS handshake after connecting; the
/// request head's own deadline only starts after it. `--tls-handshake-timeout-secs`.
pub const TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 10;

/// How often the certificate files' modification times are compared with
/// the ones last loaded.
pub const TLS_RELOAD_POLL: Duration = Duration::from_secs(2);

/// The protocols offered in ALPN, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The cryptography of every handshake: *ring*, which builds here with
/// nothing but a C compiler (aws-lc-rs, rustls' default, wants cmake or a
/// long build). rustls 0.23.48 deprecates it for lacking the post-quantum
/// key exchange (X25519MLKEM768); handshakes use X25519, which every browser
/// offers too. Moving to aws-lc-rs is a change of this function alone.
#[allow(deprecated)]
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Why a certificate pair cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the TLS certificate file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----){}", path.display(), detail(.source))]
    NoCertificate {
        path: PathBuf,
        source: Option<pem::Error>,
    },
    #[error("the TLS key file {} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC){}", path.display(), detail(.source))]
    NoKey {
        path: PathBuf,
        source: Option<pem::Error>,
    },
    #[error("the TLS key {} cannot be used with the certificate {}: {source}", key.display(), cert.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

fn detail(source: &Option<pem::Error>) -> String {
    source
        .as_ref()
        .map(|err| format!(": {err}"))
        .unwrap_or_default()
}

/// The two files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads and checks the pair: a chain of at least one certificate, a
    /// private key `ring` can sign with, and the key belonging to the first
    /// certificate.
    pub fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let cert_pem = read(&self.cert, "certificate")?;
        let key_pem = read(&self.key, "key")?;
        let no_cert = |source| TlsError::NoCertificate {
            path: self.cert.clone(),
            source,
        };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| no_cert(Some(err)))?;
        if chain.is_empty() {
            return Err(no_cert(None));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| TlsError::NoKey {
            path: self.key.clone(),
            source: Some(err).filter(|err| !matches!(err, pem::Error::NoItemsFound)),
        })?;
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Unusable {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        })
    }

    /// What the files look like now (modification time and length of each),
    /// to notice a change; `None` while either cannot be read.
    fn stamp(&self) -> Option<[(SystemTime, u64); 2]> {
        let of = |path: &Path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        };
        Some([of(&self.cert)?, of(&self.key)?])
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The pair new handshakes are served with; swapped by a reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Why one connection's handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake not finished within {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake failed: {0}")]
    Failed(#[from] io::Error),
}

/// TLS for the accept loop: handshakes with the current pair, reloads.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<Current>,
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    handshake_timeout: Duration,
}

impl Tls {
    /// Loads the pair; an error names the file at fault.
    pub fn new(files: TlsFiles, handshake_timeout: Duration) -> Result<Tls, TlsError> {
        let provider = Arc::new(provider());
        let pair = files.load(&provider)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(pair))));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = ALPN.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            current,
            files,
            provider,
            handshake_timeout,
        })
    }

    /// Completes the server side of the handshake, or gives up at the deadline.
    pub async fn handshake(
        &self,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, HandshakeError> {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(HandshakeError::Timeout(self.handshake_timeout)),
        }
    }

    /// Loads the files again and serves new handshakes with them; on an
    /// error the pair in use stays.
    async fn reload(&self) -> Result<(), TlsError> {
        let (files, provider) = (self.files.clone(), self.provider.clone());
        let pair = tokio::task::spawn_blocking(move || files.load(&provider))
            .await
            .expect("loading a certificate does not panic")?;
        *self
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
        Ok(())
    }

    /// Reloads the pair whenever its files change (checked every
    /// [`TLS_RELOAD_POLL`]) or the process gets SIGHUP, until `shutdown`.
    pub async fn watch(self, shutdown: CancellationToken) {
        let mut hangups = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        ) {
            Ok(signal) => Some(signal),
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGHUP: the certificate reloads on file changes only");
                None
            }
        };
        let mut seen = self.files.stamp();
        let mut poll = tokio::time::interval(TLS_RELOAD_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = poll.tick() => {
                    let now = self.files.stamp();
                    if now.is_none() || now == seen {
                        continue;
                    }
                    // Tried once per change: a half-written pair is tried
                    // again when its second file lands.
                    seen = now;
                    "the files changed"
                }
                Some(()) = async {
                    match hangups.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    seen = self.files.stamp();
                    "SIGHUP"
                }
            };
            match self.reload().await {
                Ok(()) => tracing::info!(
                    cert = %self.files.cert.display(),
                    why,
                    "TLS certificate reloaded: new connections get it"
                ),
                Err(err) => tracing::error!(
                    why,
                    "TLS certificate not reloaded, the one in use stays: {err}"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &[u8], key: &[u8]) -> TlsFiles {
        std::fs::create_dir_all(dir).unwrap();
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pulse-tls-{name}-{}", std::process::id()))
    }

    #[test]
    fn unreadable_or_non_pem_files_name_the_file() {
        let provider = provider();
        let missing = TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let err = missing.load(&provider).unwrap_err().to_string();
        assert!(
            err.contains("cannot read the TLS certificate /nonexistent/cert.pem"),
            "{err}"
        );
        let text = files(&scratch("text"), b"hello", b"hello");
        let err = text.load(&provider).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        assert!(err.contains(&*text.cert.to_string_lossy()), "{err}");
    }

    #[test]
    fn a_certificate_file_as_key_is_refused_naming_the_key() {
        // A syntactically fine certificate (any will do for this check).
        let cert = b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let provider = provider();
        let swapped = files(&scratch("swapped"), cert, cert);
        let err = swapped.load(&provider).unwrap_err().to_string();
        assert!(err.contains("holds no PEM private key"), "{err}");
        assert!(err.contains(&*swapped.key.to_string_lossy()), "{err}");
    }
}
