//! Owns the HTTP connections: the accept loop, HTTP/1.1 with upgrades (the
//! WebSocket handshake), TLS when configured (the handshake on the
//! connection's own task, then HTTP/2 or HTTP/1.1 as ALPN chose), the
//! deadline for a request's head, and a shutdown that ends every HTTP
//! connection within the grace period, however slowly its client sends.
//!
//! `axum::serve` offers neither a header timeout nor a bound on its graceful
//! shutdown (it waits for every in-flight request, forever for a client that
//! trickles its body), so the server drives hyper itself. Upgraded sockets
//! leave this loop at the upgrade: `/ws` tracks them in `state.connections`.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use super::tls::Tls;

/// How long a client may take to send a request's head, and then an API
/// request's body (PROTOCOL.md "Limits": 10 s each). `--http-timeout-ms`
/// (hidden) shortens it for tests.
pub const HTTP_READ_TIMEOUT_MS: u64 = 10_000;

/// How long the accept loop rests after an error that is not about one
/// connection (out of file descriptors, say), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How often an HTTP/2 connection is pinged, and how long its answer may take.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// What the HTTP side of the server needs to know.
pub struct HttpSettings {
    /// Deadline for a request's head (from the connection's start, the end
    /// of the TLS handshake, or the end of its previous request).
    pub header_timeout: Duration,
    /// How long, after `shutdown`, a connection may finish its request.
    pub grace: Duration,
    /// TLS on every connection (`--tls-cert`), or plain HTTP/1.1.
    pub tls: Option<Tls>,
}

/// Whether a request came over TLS that ended in this server (a request
/// extension, like `ConnectInfo`): the `tls` label of
/// `pulse_connections_by_transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secure(pub bool);

impl Secure {
    /// Whether the request with these `extensions` came over TLS ended here
    /// (`false` when the extension is absent, as in tests without the accept loop).
    pub fn of(extensions: &axum::http::Extensions) -> bool {
        extensions.get::<Secure>().is_some_and(|secure| secure.0)
    }
}

/// Accepts connections until `shutdown` is cancelled and serves each on a
/// task of its own. Returns the tracker of the connections still open: each
/// of them ends by itself within `settings.grace` of the cancellation.
pub async fn accept(
    listener: TcpListener,
    app: Router,
    settings: HttpSettings,
    shutdown: CancellationToken,
) -> TaskTracker {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    // HTTP/2 (TLS only) has no head deadline in hyper: `serve` gives its
    // first request one; a Ping every 20 s, unanswered for 20 s, ends
    // connections to peers that are gone.
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    let protocols = Arc::new(Protocols {
        http1,
        http2,
        header_timeout: settings.header_timeout,
    });
    let open = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = next_connection(&listener) => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let connection = Connection {
            peer,
            app: app.clone(),
            protocols: protocols.clone(),
            grace: settings.grace,
            shutdown: shutdown.clone(),
        };
        match &settings.tls {
            // Without TLS, HTTP/1.1 only (no cleartext HTTP/2), as before TLS came.
            None => open.spawn(connection.serve(TokioIo::new(stream), Secure(false), false)),
            Some(tls) => open.spawn(connection.handshake(stream, tls.clone())),
        };
    }
    open.close();
    open
}

/// Takes the next connection, ready to serve: Nagle's algorithm off
/// (`TCP_NODELAY`), so a small frame (an ack, a tick) leaves at once instead
/// of waiting for the client's delayed ACK (up to 40 ms on Linux).
async fn next_connection(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept().await?;
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %err, "cannot set TCP_NODELAY");
    }
    Ok((stream, peer))
}

/// hyper's settings for each protocol, shared by every connection.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// The deadline of a request head (HTTP/1.1, by hyper) or of an HTTP/2
    /// connection's first request (by [`Connection::serve`]).
    header_timeout: Duration,
}

/// One accepted connection and what serving it needs.
struct Connection {
    peer: SocketAddr,
    app: Router,
    protocols: Arc<Protocols>,
    grace: Duration,
    shutdown: CancellationToken,
}

impl Connection {
    /// Completes the TLS handshake (within its deadline, and not past
    /// shutdown), then serves HTTP/2 if ALPN chose `h2`, else HTTP/1.1.
    async fn handshake(self, stream: TcpStream, tls: Tls) {
        let stream = tokio::select! {
            done = tls.handshake(stream) => match done {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(peer = %self.peer, %err, "TLS connection dropped");
                    return;
                }
            },
            () = self.shutdown.cancelled() => return,
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        self.serve(TokioIo::new(stream), Secure(true), h2).await;
    }

    /// Serves one connection, HTTP/2 if `h2` else HTTP/1.1 with upgrades,
    /// until it ends, is upgraded, misses its deadline, or shutdown's grace
    /// period is over.
    async fn serve<I>(self, io: I, secure: Secure, h2: bool)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            app,
            protocols,
            grace,
            shutdown,
        } = self;
        let requested = Arc::new(AtomicBool::new(false));
        // Handlers may ask for the client's address, as with axum's
        // `into_make_service_with_connect_info`, and whether TLS reached us.
        let service = {
            let requested = requested.clone();
            hyper::service::service_fn(move |request: Request<Incoming>| {
                requested.store(true, Relaxed);
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request.extensions_mut().insert(secure);
                with_host(&mut request);
                app.clone().call(request)
            })
        };
        let ending = Ending {
            peer,
            grace,
            shutdown,
        };
        if h2 {
            let connection = protocols.http2.serve_connection(io, service);
            // No request by the deadline (not even the preface): dropped.
            let first_request = async {
                tokio::time::sleep(protocols.header_timeout).await;
                if requested.load(Relaxed) {
                    std::future::pending::<()>().await;
                }
            };
            ending
                .drive(connection, |c| c.graceful_shutdown(), first_request)
                .await;
        } else {
            let connection = protocols
                .http1
                .serve_connection(io, service)
                .with_upgrades();
            let no_deadline = std::future::pending::<()>();
            ending
                .drive(connection, |c| c.graceful_shutdown(), no_deadline)
                .await;
        }
    }
}

/// How a served connection ends.
struct Ending {
    peer: SocketAddr,
    grace: Duration,
    shutdown: CancellationToken,
}

impl Ending {
    /// Runs `connection` until it ends or `deadline` passes; on shutdown,
    /// lets it finish the request in flight (`graceful`: an idle connection
    /// closes at once), but not for longer than the grace period.
    async fn drive<C>(
        self,
        connection: C,
        graceful: impl FnOnce(Pin<&mut C>),
        deadline: impl Future<Output = ()>,
    ) where
        C: Future<Output = Result<(), hyper::Error>>,
    {
        let peer = self.peer;
        let mut connection = pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, %err, "HTTP connection ended with an error");
                }
                return;
            }
            () = deadline => {
                tracing::debug!(%peer, "HTTP/2 connection sent no request in time");
                return;
            }
            () = self.shutdown.cancelled() => {}
        }
        graceful(connection.as_mut());
        if tokio::time::timeout(self.grace, connection).await.is_err() {
            tracing::info!(%peer, "closed an HTTP connection still busy after the grace period");
        }
    }
}

/// An HTTP/2 request names its host in `:authority` (the URI), not in a
/// `Host` header; the handlers that read `Host` (the Origin check of `/ws`,
/// the page's Content-Security-Policy) get it as in HTTP/1.1.
fn with_host(request: &mut Request<Body>) {
    if request.headers().contains_key(header::HOST) {
        return;
    }
    let authority = request.uri().authority().map(|a| a.as_str());
    if let Some(value) = authority.and_then(|a| HeaderValue::from_str(a).ok()) {
        request.headers_mut().insert(header::HOST, value);
    }
}

/// Errors about one connection that went away before it was accepted.
fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn served_sockets_send_small_frames_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _first = TcpStream::connect(address).await.unwrap();
        let _second = TcpStream::connect(address).await.unwrap();
        // What the operating system hands out: Nagle on.
        let (plain, _) = listener.accept().await.unwrap();
        assert!(!plain.nodelay().unwrap());
        // What the accept loop serves.
        let (served, _) = next_connection(&listener).await.unwrap();
        assert!(
            served.nodelay().unwrap(),
            "TCP_NODELAY on the served socket"
        );
    }
}
