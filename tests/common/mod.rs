//! Shared by the integration tests: a real Pulse server on port 0 and a
//! tokio-tungstenite client that speaks the protocol.
#![allow(dead_code)]

pub mod cluster;
pub mod editor;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod sse;

use clap::Parser;
use futures::{SinkExt, StreamExt};
use pulse::protocol::{ServerEnvelope, ServerMessage, Welcome};
use pulse::server::{serve, Config, ServerError};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something the server should do promptly.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A server serving on 127.0.0.1 with a random port, stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a server with these flags (as on the command line), on a
    /// database file of its own unless the flags name one.
    pub async fn start(flags: &[&str]) -> Self {
        let db = temp_db();
        let mut args = vec!["pulse"];
        if !flags.contains(&"--db") {
            args.extend(["--db", db.as_str()]);
        }
        args.extend_from_slice(flags);
        let config = Config::try_parse_from(args).expect("test flags parse");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let handle = tokio::spawn(serve(listener, config, async move {
            let _ = signal.await;
        }));
        TestServer {
            addr,
            shutdown: Some(shutdown),
            handle: Some(handle),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Starts a graceful shutdown and waits until `serve` returned.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("server stops in time")
            .unwrap()
            .unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

/// A fresh SQLite path in the temporary folder.
pub fn temp_db() -> String {
    std::env::temp_dir()
        .join(format!("pulse-test-{}", uuid_like()))
        .join("pulse.db")
        .display()
        .to_string()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The flags of an instance serving as one with others: the shared
/// PostgreSQL database at `database_url` and Redis at `redis_url`.
#[allow(dead_code)]
pub fn shared_flags<'a>(database_url: &'a str, redis_url: &'a str) -> Vec<&'a str> {
    vec!["--database-url", database_url, "--redis", redis_url]
}

/// One WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: VecDeque<ServerEnvelope>,
}

impl Client {
    pub async fn connect(server: &TestServer) -> Self {
        Self::connect_with(server, None).await
    }

    /// Connects, sending `Origin: origin` when given (as a browser does).
    pub async fn connect_with(server: &TestServer, origin: Option<&str>) -> Self {
        Self::connect_to(server.addr, origin).await
    }

    /// Connects to the server at `addr` (in-process or a child process).
    pub async fn connect_to(addr: SocketAddr, origin: Option<&str>) -> Self {
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connects");
        Client {
            ws,
            pending: VecDeque::new(),
        }
    }

    /// Logs in as a guest named `name` and says `hello` with the token.
    pub async fn signed_in(server: &TestServer, name: &str) -> Self {
        Self::signed_in_to(server.addr, name).await
    }

    /// [`Client::signed_in`] on the server at `addr`.
    pub async fn signed_in_to(addr: SocketAddr, name: &str) -> Self {
        let body = serde_json::json!({ "name": name }).to_string();
        let (status, answer) = http_post(addr, "/api/login", None, &body).await;
        assert_eq!(status, 200, "{answer}");
        let token = answer["token"].as_str().unwrap();
        let mut client = Self::connect_to(addr, None).await;
        let hello = serde_json::json!({"type": "hello", "data": {"token": token}});
        client.send(&hello.to_string()).await;
        match client.recv().await.message {
            ServerMessage::Welcome(welcome) => assert!(welcome.user.is_some()),
            other => panic!("expected welcome, got {other:?}"),
        }
        client
    }

    /// Connects and completes the anonymous `hello`.
    pub async fn connected(server: &TestServer) -> Self {
        let mut client = Self::connect(server).await;
        client.hello().await;
        client
    }

    pub async fn send(&mut self, json: &str) {
        self.ws.send(Message::text(json)).await.expect("send");
    }

    /// The next server message (batches unpacked), skipping Ping/Pong frames.
    pub async fn recv(&mut self) -> ServerEnvelope {
        self.recv_within(PATIENCE).await.expect("a message in time")
    }

    /// [`Client::recv`], or `None` if nothing arrives within `limit`.
    #[allow(dead_code)]
    pub async fn recv_within(&mut self, limit: Duration) -> Option<ServerEnvelope> {
        if let Some(next) = self.pending.pop_front() {
            return Some(next);
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?
                .expect("socket open")
                .expect("socket healthy");
            match frame {
                Message::Text(text) => {
                    let envelope = ServerEnvelope::from_json(&text)
                        .unwrap_or_else(|e| panic!("server sent {text}: {e}"));
                    self.pending.extend(envelope.unpack());
                    return self.pending.pop_front();
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// The next message's `data` as JSON, with its `type`.
    pub async fn recv_json(&mut self) -> serde_json::Value {
        serde_json::to_value(self.recv().await).unwrap()
    }

    pub async fn hello(&mut self) -> Welcome {
        self.send(r#"{"type":"hello","data":{}}"#).await;
        match self.recv().await.message {
            ServerMessage::Welcome(welcome) => welcome,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Reads until the server's close frame and returns it (None: the TCP
    /// connection ended without one).
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the server closes in time");
            match frame {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// `GET path` over plain HTTP/1.1; returns the status code and the raw body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path, &[], "").await
}

/// `GET path` with `Authorization: Bearer <bearer>`.
pub async fn http_get_bearer(addr: SocketAddr, path: &str, bearer: &str) -> (u16, String) {
    let auth = format!("Bearer {bearer}");
    http(addr, "GET", path, &[("Authorization", &auth)], "").await
}

/// `POST path` with a JSON body and an optional bearer token.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = bearer.map(|key| format!("Bearer {key}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    let (status, body) = http(addr, "POST", path, &headers, body).await;
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, json)
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let response = http_response(addr, method, path, headers, body).await;
    (response.status, response.body)
}

/// An HTTP response as the tests read it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the whole response.
pub async fn http_response(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    parse_response(&String::from_utf8_lossy(&response))
}

/// Splits a raw HTTP/1.1 response into status, headers and (de-chunked) body.
pub fn parse_response(response: &str) -> HttpResponse {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
