//! Owns the load generator's network plumbing shared by every scenario: the
//! open-file limit, one client's TCP connect plus (for `wss://`) TLS
//! handshake plus WebSocket handshake, sending
//! a client message, the normal close, and the guest login over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pulse::protocol::{ClientEnvelope, ClientMessage, LoginRequest, LoginResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::either::Either;

use crate::plan::Plan;

/// One client's socket: plain TCP (`ws://`) or TLS (`wss://`).
pub type Ws = WebSocketStream<Either<TcpStream, TlsStream<TcpStream>>>;

/// How long one client may take for the TCP connect plus the TLS and WebSocket handshakes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one client waits for the server's answer to its closing handshake.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Descriptors the process needs besides its sockets.
const FD_HEADROOM: u64 = 100;
/// Read buffer per socket: tungstenite's default (128 KiB) times 20,000 clients
/// would be 2.5 GiB for frames that are a few hundred bytes.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// How long a guest login may take, request and answer.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest login answer read (a token and a user are a few hundred bytes).
const MAX_LOGIN_RESPONSE_BYTES: u64 = 64 * 1024;

/// Raises the open-file limit to the hard limit and warns when that is still
/// too low for `clients` sockets.
pub fn raise_fd_limit(clients: u64) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if clients + FD_HEADROOM > limit => eprintln!(
            "warning: {clients} clients need about {} open files but this process may hold \
             only {limit} (the hard limit); about {} connections will fail with \
             'Too many open files'. Lower --clients or raise the hard limit (ulimit -Hn).",
            clients + FD_HEADROOM,
            clients + FD_HEADROOM - limit
        ),
        Ok(_) => {}
        Err(err) => eprintln!(
            "warning: could not raise the open-file limit ({err}); connections past the \
             current limit will fail with 'Too many open files'"
        ),
    }
}

/// Opens the TCP connection from client `index`'s source address and does the
/// WebSocket handshake, within [`CONNECT_TIMEOUT`].
pub async fn connect(plan: &Plan, index: u64) -> Result<Ws, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_unbounded(plan, index)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no handshake within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

async fn connect_unbounded(plan: &Plan, index: u64) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|err| format!("socket: {err}"))?;
    if let Some(ip) = plan.source_ip(index) {
        socket
            .bind(SocketAddr::from((ip, 0)))
            .map_err(|err| format!("bind {ip}: {err}"))?;
    }
    let stream = socket
        .connect(plan.target)
        .await
        .map_err(|err| format!("connect: {err}"))?;
    // Latency is the point of the exercise: no Nagle delay on our frames.
    let _ = stream.set_nodelay(true);
    let stream = match &plan.tls {
        None => Either::Left(stream),
        Some(tls) => Either::Right(
            tls.connector
                .connect(tls.name.clone(), stream)
                .await
                .map_err(|err| format!("TLS handshake: {err}"))?,
        ),
    };
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(plan.url.as_str(), stream, Some(config))
            .await
            .map_err(|err| format!("handshake: {err}"))?;
    Ok(ws)
}

/// Sends one client message as a text frame.
pub async fn send<S>(ws: &mut S, envelope: ClientEnvelope) -> Result<(), WsError>
where
    S: SinkExt<Message, Error = WsError> + Unpin,
{
    ws.send(Message::text(envelope.to_json())).await
}

/// Sends one client message without an envelope `id`.
pub async fn send_message<S>(ws: &mut S, message: ClientMessage) -> Result<(), WsError>
where
    S: SinkExt<Message, Error = WsError> + Unpin,
{
    send(ws, ClientEnvelope::new(message)).await
}

/// Sends a normal close (1000) and waits, at most [`CLOSE_TIMEOUT`], for the
/// server to answer it.
pub async fn close_normally(ws: &mut Ws) {
    let frame = CloseFrame {
        code: WsCloseCode::Normal,
        reason: "load test finished".into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if ws.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// Logs in as guest `name` with `POST /api/login` on the server's address and
/// returns the token. A plain HTTP/1.1 request: the target is a local server
/// and one request is all the load generator needs.
pub async fn guest_login(target: SocketAddr, name: &str) -> Result<String, String> {
    tokio::time::timeout(LOGIN_TIMEOUT, guest_login_unbounded(target, name))
        .await
        .map_err(|_| format!("login as {name}: no answer within {LOGIN_TIMEOUT:?}"))?
}

async fn guest_login_unbounded(target: SocketAddr, name: &str) -> Result<String, String> {
    let body = serde_json::to_string(&LoginRequest {
        name: name.to_owned(),
    })
    .map_err(|err| format!("login body: {err}"))?;
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(target)
        .await
        .map_err(|err| format!("login connect: {err}"))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("login write: {err}"))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_LOGIN_RESPONSE_BYTES)
        .read_to_end(&mut answer)
        .await
        .map_err(|err| format!("login read: {err}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or("login: the answer has no body")?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!("login as {name}: {status}: {body}"));
    }
    let login: LoginResponse =
        serde_json::from_str(body).map_err(|err| format!("login answer: {err}"))?;
    Ok(login.token)
}
