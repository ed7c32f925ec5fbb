//! TLS served by Pulse itself (`--tls-cert` / `--tls-key`), against the real
//! binary: `wss://` from a client trusting a CA made here, the certificate
//! replaced on disk while a connection stays open, a client that never
//! finishes its handshake, HTTP/2 over ALPN, and files that cannot be served.

mod common;

use common::process::Pulse;
use common::temp_db;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pulse::protocol::{ServerEnvelope, ServerMessage, Tick};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a test waits for what the server should do soon (generous: the
/// machine is shared and noisy; nothing here asserts a duration).
const PATIENCE: Duration = Duration::from_secs(20);

/// A certificate authority made for one test, and the server pairs it signs.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate (PEM) with its key, and the certificate's DER to
/// recognise it in a handshake.
struct Pair {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Pulse test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// A certificate for `localhost` and 127.0.0.1 named `name`.
    fn pair(&self, name: &str) -> Pair {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A client configuration trusting only this CA, offering `alpn`
    /// (*ring*, as the server: deprecated for lacking post-quantum key
    /// exchange, which these tests do not need).
    #[allow(deprecated)]
    fn client(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.issuer.pem().as_bytes()).unwrap();
        roots.add(ca).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

/// A directory of its own for a test's certificate files.
fn cert_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pulse-tls-{name}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Writes the pair as `cert.pem` and `key.pem` in `dir` the way a renewal
/// does: each file written aside, then renamed into place.
fn install(dir: &Path, pair: &Pair) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    for (path, text) in [(&key, &pair.key_pem), (&cert, &pair.cert_pem)] {
        let aside = path.with_extension("new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, path).unwrap();
    }
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

/// Starts the binary serving TLS with the files in `dir`.
fn start(cert: &str, key: &str, flags: &[&str]) -> Pulse {
    let mut all = vec!["--tls-cert", cert, "--tls-key", key];
    all.extend_from_slice(flags);
    Pulse::start(&temp_db(), &all, &[])
}

/// A TLS connection to `addr` as `localhost`.
async fn connect(connector: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .expect("the handshake ends in time")
        .expect("the handshake succeeds")
}

/// The certificate the server presented on `stream`.
fn served(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A `wss://` client: the protocol's envelopes over tungstenite over rustls.
struct Wss {
    ws: WebSocketStream<TlsStream<TcpStream>>,
    pending: VecDeque<ServerEnvelope>,
}

impl Wss {
    /// Connects (ALPN `http/1.1`, as browsers do for a WebSocket) and says hello.
    async fn connect(ca: &Ca, addr: SocketAddr) -> Wss {
        let stream = connect(&ca.client(&[b"http/1.1"]), addr).await;
        let url = format!("wss://localhost:{}/ws", addr.port());
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .expect("the WebSocket upgrade over TLS");
        let mut client = Wss {
            ws,
            pending: VecDeque::new(),
        };
        client.send(r#"{"type":"hello","data":{}}"#).await;
        match client.recv().await.message {
            ServerMessage::Welcome(_) => {}
            other => panic!("expected welcome, got {other:?}"),
        }
        client
    }

    async fn send(&mut self, json: &str) {
        self.ws.send(Message::text(json)).await.expect("send");
    }

    async fn recv(&mut self) -> ServerEnvelope {
        loop {
            if let Some(next) = self.pending.pop_front() {
                return next;
            }
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message in time")
                .expect("socket open")
                .expect("socket healthy");
            if let Message::Text(text) = frame {
                let envelope = ServerEnvelope::from_json(&text).unwrap();
                self.pending.extend(envelope.unpack());
            }
        }
    }

    async fn subscribe_aapl(&mut self) {
        self.send(
            r#"{"type":"subscribe","id":"s","data":{"channels":[{"channel":"ticker:AAPL"}]}}"#,
        )
        .await;
    }

    /// The next tick (skipping the subscribe answer).
    async fn tick(&mut self) -> Tick {
        loop {
            if let ServerMessage::Tick(tick) = self.recv().await.message {
                return tick;
            }
        }
    }
}

/// `GET path` over TLS with HTTP/1.1; the raw response.
async fn https_get(ca: &Ca, addr: SocketAddr, path: &str) -> String {
    let mut stream = connect(&ca.client(&[b"http/1.1"]), addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("a response in time")
        .unwrap();
    response
}

const TICKS: [&str; 4] = ["--tick-rate", "20", "--symbols", "AAPL"];

/// A client that trusts the CA gets `welcome` and ticks over `wss://`, and
/// `/metrics` counts its socket as `tls="true"`.
#[tokio::test]
async fn wss_serves_welcome_and_ticks_to_a_client_trusting_the_ca() {
    let ca = Ca::new();
    let dir = cert_dir("wss");
    let (cert, key) = install(&dir, &ca.pair("first"));
    let server = start(&cert, &key, &TICKS);
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.contains("listening on https://")),
        "{:?}",
        server.log()
    );

    let mut client = Wss::connect(&ca, server.addr).await;
    client.subscribe_aapl().await;
    let first = client.tick().await;
    let second = client.tick().await;
    assert_eq!(first.channel, "ticker:AAPL");
    assert!(second.offset > first.offset);

    let metrics = https_get(&ca, server.addr, "/metrics").await;
    assert!(
        metrics.contains(r#"pulse_connections_by_transport{transport="websocket",tls="true"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"pulse_connections_by_transport{transport="websocket",tls="false"} 0"#),
        "{metrics}"
    );
}

/// A new pair written over the files is served to new connections (checked
/// every few seconds), while a connection made with the old one stays open
/// and keeps receiving; a broken pair written next is logged and the one in
/// use kept.
#[tokio::test]
async fn a_replaced_certificate_reaches_new_connections_while_old_ones_stay() {
    let ca = Ca::new();
    let dir = cert_dir("reload");
    let (old, new) = (ca.pair("old"), ca.pair("new"));
    let (cert, key) = install(&dir, &old);
    let server = start(&cert, &key, &TICKS);
    let connector = ca.client(&[b"http/1.1"]);
    assert_eq!(served(&connect(&connector, server.addr).await), old.der);
    let mut open = Wss::connect(&ca, server.addr).await;
    open.subscribe_aapl().await;
    let before = open.tick().await;

    install(&dir, &new);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if served(&connect(&connector, server.addr).await) == new.der {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served: {:?}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection made before the swap still gets every tick.
    let mut last = before.offset;
    for _ in 0..3 {
        let tick = open.tick().await;
        assert_eq!(tick.offset, last + 1, "no tick lost on the old connection");
        last = tick.offset;
    }

    // A broken pair: logged, and the one in use stays.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !server.log().iter().any(|l| l.contains("not reloaded")) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = server
        .log()
        .into_iter()
        .find(|l| l.contains("not reloaded"));
    assert!(line.unwrap().contains("holds no PEM certificate"));
    assert_eq!(served(&connect(&connector, server.addr).await), new.der);
    assert!(open.tick().await.offset > last);
}

/// SIGHUP reloads the pair at once (and does not end the process, as it
/// would by default).
#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let ca = Ca::new();
    let dir = cert_dir("hup");
    let (old, new) = (ca.pair("old"), ca.pair("new"));
    let (cert, key) = install(&dir, &old);
    let server = start(&cert, &key, &[]);
    let connector = ca.client(&[b"http/1.1"]);
    assert_eq!(served(&connect(&connector, server.addr).await), old.der);
    install(&dir, &new);
    server.signal("HUP");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let by_sighup = |line: &String| line.contains("reloaded") && line.contains("SIGHUP");
    while !server.log().iter().any(by_sighup) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served(&connect(&connector, server.addr).await), new.der);
}

/// A client that connects and starts a handshake it never finishes is
/// dropped by the server at the handshake deadline.
#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let ca = Ca::new();
    let dir = cert_dir("stall");
    let (cert, key) = install(&dir, &ca.pair("stall"));
    let server = start(&cert, &key, &["--tls-handshake-timeout-secs", "1"]);
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    // A TLS record header announcing a ClientHello of 512 bytes, and no more.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, stalled.read(&mut buffer))
        .await
        .expect("the server drops the stalled connection");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection is closed: {read:?}"
    );
    // Others are served meanwhile and after.
    Wss::connect(&ca, server.addr).await;
}

/// After its handshake a TLS client has the request-head deadline of any
/// HTTP client: one that then sends nothing is closed, over HTTP/1.1 and
/// over HTTP/2 alike (where the deadline is for its first request).
#[tokio::test]
async fn a_client_silent_after_its_handshake_is_closed_at_the_head_deadline() {
    let ca = Ca::new();
    let dir = cert_dir("silent");
    let (cert, key) = install(&dir, &ca.pair("silent"));
    let server = Pulse::start(
        &temp_db(),
        &["--tls-cert", &cert, "--tls-key", &key],
        &[("PULSE_HTTP_TIMEOUT_MS", "500")],
    );
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut silent = connect(&ca.client(&[alpn]), server.addr).await;
        assert_eq!(silent.get_ref().1.alpn_protocol(), Some(alpn));
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(PATIENCE, silent.read_to_end(&mut buffer))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "a silent {} connection is still open",
                    String::from_utf8_lossy(alpn)
                )
            });
        // Closed: an end of stream, or a reset; HTTP/2 may say GOAWAY first.
        let _ = read;
    }
}

/// A client offering `h2` gets HTTP/2: the health check, and a page whose
/// Content-Security-Policy names the socket's host (HTTP/2 has no `Host`
/// header, only `:authority`).
#[tokio::test]
async fn http2_is_negotiated_over_tls() {
    let ca = Ca::new();
    let dir = cert_dir("h2");
    let (cert, key) = install(&dir, &ca.pair("h2"));
    let server = start(&cert, &key, &[]);
    let stream = connect(&ca.client(&[b"h2", b"http/1.1"]), server.addr).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("an HTTP/2 connection");
    tokio::spawn(connection);
    let authority = format!("localhost:{}", server.addr.port());
    for path in ["/healthz", "/"] {
        let request = hyper::Request::get(format!("https://{authority}{path}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
            .await
            .expect("an answer in time")
            .expect("an answer");
        assert_eq!(response.version(), hyper::Version::HTTP_2, "{path}");
        assert_eq!(response.status(), 200, "{path}");
        if path == "/" {
            let policy = response.headers()["content-security-policy"]
                .to_str()
                .unwrap();
            assert!(policy.contains(&format!("wss://{authority}")), "{policy}");
        } else {
            let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1024)
                .await
                .unwrap();
            assert_eq!(&body[..], b"ok");
        }
    }
}

/// Runs the binary with `flags`, expecting it to exit by itself; a process
/// still running after [`PATIENCE`] is killed and the test fails.
async fn refused_start(flags: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--db",
            &temp_db(),
            "--tick-rate",
            "0",
        ])
        .args(flags)
        .env("NO_COLOR", "1")
        .env("LEPTOS_SITE_ROOT", "target/no-site")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let mut said = String::new();
    let read = async {
        let mut rest = String::new();
        stdout.read_to_string(&mut said).await.unwrap();
        stderr.read_to_string(&mut rest).await.unwrap();
        said.push_str(&rest);
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("pulse {flags:?} kept running instead of refusing to start"));
    (status, said)
}

/// Files that cannot be served stop the start with a message naming the
/// file; so does a certificate without its key.
#[tokio::test]
async fn unusable_certificate_files_refuse_the_start_with_the_reason() {
    let ca = Ca::new();
    let dir = cert_dir("bad");
    let (cert, key) = install(&dir, &ca.pair("bad"));
    let missing = dir.join("missing.pem").to_string_lossy().into_owned();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let garbage = garbage.to_string_lossy().into_owned();
    let cases: [(&[&str], String); 4] = [
        (
            &["--tls-cert", &missing, "--tls-key", &key],
            format!("cannot read the TLS certificate {missing}"),
        ),
        (
            &["--tls-cert", &garbage, "--tls-key", &key],
            format!("the TLS certificate file {garbage} holds no PEM certificate"),
        ),
        (
            &["--tls-cert", &cert, "--tls-key", &cert],
            format!("the TLS key file {cert} holds no PEM private key"),
        ),
        (
            &["--tls-cert", &cert],
            "--tls-cert (PULSE_TLS_CERT) and --tls-key (PULSE_TLS_KEY) go together".to_owned(),
        ),
    ];
    for (flags, message) in cases {
        let (status, said) = refused_start(flags).await;
        assert!(!status.success(), "{flags:?} started: {said}");
        assert!(said.contains(&message), "{flags:?}: {said}");
        assert!(!said.contains("listening on"), "{said}");
    }
}

/// Over TLS served by Pulse itself, the admin session cookie is `Secure`
/// (a browser then never sends it over plain HTTP).
#[tokio::test]
async fn the_admin_cookie_is_secure_over_tls() {
    const KEY: &str = "admin-tls-admin-key-0123";
    let ca = Ca::new();
    let dir = cert_dir("admin");
    let (cert, key) = install(&dir, &ca.pair("admin"));
    let server = start(&cert, &key, &["--tick-rate", "0", "--admin-key", KEY]);
    let mut stream = connect(&ca.client(&[b"http/1.1"]), server.addr).await;
    let body = format!("key={KEY}");
    let request = format!(
        "POST /admin/session HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("a response in time")
        .unwrap();
    let set_cookie = response
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("a Set-Cookie: {response}"));
    assert!(
        set_cookie.split(';').any(|part| part.trim() == "Secure"),
        "{set_cookie}"
    );
}
