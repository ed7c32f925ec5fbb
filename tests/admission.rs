//! Admission to `/ws` against a real server: the connection cap holds exactly
//! under a burst of simultaneous upgrades, one address past its upgrade rate
//! is turned away while another address still gets in, and a burst on an idle
//! server is admitted whole (the adaptive pace refuses nobody while the
//! server has headroom).

mod common;

use common::{Client, TestServer, PATIENCE};
use futures::{SinkExt, StreamExt};
use pulse::protocol::{ServerEnvelope, ServerMessage};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// What became of one upgrade: welcomed, or closed with this code.
async fn attempt(url: String, from: &str) -> Result<(), u16> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("the upgrade itself succeeds");
    welcome_or_close(ws).await
}

/// Says `hello` on an open socket: `Ok` once welcomed (the socket then stays
/// open, holding its place, until the test ends), or the close code.
async fn welcome_or_close<S>(mut ws: WebSocketStream<S>) -> Result<(), u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    ws.send(Message::text(r#"{"type":"hello","data":{}}"#))
        .await
        .ok();
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let message = ServerEnvelope::from_json(&text).unwrap().message;
                assert!(matches!(message, ServerMessage::Welcome(_)), "{message:?}");
                // Stay connected until the test ends, holding the place.
                tokio::spawn(async move { while ws.next().await.is_some() {} });
                return Ok(());
            }
            Ok(Some(Ok(Message::Close(Some(frame))))) => return Err(frame.code.into()),
            Ok(Some(Ok(_))) => continue,
            other => panic!("neither welcome nor close: {other:?}"),
        }
    }
}

/// Writes a WebSocket upgrade request on a new connection with blocking
/// calls, so a loop of them never yields: on the test's one thread the server
/// sees every request of the burst at once.
fn send_upgrade(addr: std::net::SocketAddr) -> TcpStream {
    TcpStream::from_std(send_upgrade_std(addr)).unwrap()
}

/// The same request on a blocking socket, left non-blocking for tokio.
fn send_upgrade_std(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_nonblocking(true).unwrap();
    stream
}

/// Reads the 101 answer (byte by byte, so no frame is consumed), then says
/// `hello`: welcomed, or closed with this code.
async fn finish_upgrade(mut stream: TcpStream) -> Result<(), u16> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut byte))
            .await
            .expect("an answer in time")
            .expect("the server answers the upgrade");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    welcome_or_close(ws).await
}

/// 100 upgrade requests, all written before the server answers any, against
/// `--max-connections 20`: exactly 20 are served, the other 80 are closed
/// with 1013. On one thread the server runs every pending handler before any
/// upgraded connection starts, the worst case for a cap that is checked
/// before the upgrade and counted after it.
#[tokio::test]
async fn a_burst_of_upgrades_never_exceeds_the_connection_cap() {
    // Five bursts on five fresh servers, so one lucky schedule cannot pass.
    for round in 0..5 {
        let server = TestServer::start(&["--tick-rate", "0", "--max-connections", "20"]).await;
        let mut requests = Vec::new();
        for _ in 0..100 {
            requests.push(send_upgrade(server.addr));
        }
        let attempts: Vec<_> = requests
            .into_iter()
            .map(|stream| tokio::spawn(finish_upgrade(stream)))
            .collect();
        let mut served = 0;
        let mut refused = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(()) => served += 1,
                Err(1013) => refused += 1,
                Err(code) => panic!("closed with {code}"),
            }
        }
        assert_eq!((served, refused), (20, 80), "round {round}");
    }
}

/// `--max-upgrades-per-ip 5` lets one address open a burst of ten sockets,
/// then answers 1013; another address is not affected.
#[tokio::test]
async fn one_address_past_its_upgrade_rate_gets_1013_and_others_do_not() {
    let server = TestServer::start(&["--tick-rate", "0", "--max-upgrades-per-ip", "5"]).await;
    let mut first = Client::connected(&server).await;
    for _ in 1..10 {
        assert_eq!(attempt(server.ws_url(), "127.0.0.1").await, Ok(()));
    }
    assert_eq!(attempt(server.ws_url(), "127.0.0.1").await, Err(1013));
    assert_eq!(attempt(server.ws_url(), "127.0.0.2").await, Ok(()));
    // The refused address's established sockets are still served.
    first.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(first.recv().await.message, ServerMessage::Pong(_)));
}

/// 3,000 clients connecting at once to an idle server with its defaults are
/// all welcomed: nobody is refused with 1013 (a fixed 1,000 upgrades per
/// second with bursts of 2,000 refused hundreds of them). One thread writes
/// every upgrade request back to back while the server and the clients'
/// handshakes run on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_an_idle_server_is_admitted_whole() {
    const CLIENTS: usize = 3_000;
    let server = TestServer::start(&["--tick-rate", "0"]).await;
    let addr = server.addr;
    let (sent, mut written) = tokio::sync::mpsc::unbounded_channel();
    let writer = tokio::task::spawn_blocking(move || {
        for _ in 0..CLIENTS {
            sent.send(send_upgrade_std(addr)).unwrap();
        }
    });
    let mut attempts = Vec::new();
    while let Some(stream) = written.recv().await {
        let stream = TcpStream::from_std(stream).unwrap();
        attempts.push(tokio::spawn(finish_upgrade(stream)));
    }
    writer.await.unwrap();
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => {}
            Err(1013) => refused += 1,
            Err(code) => panic!("closed with {code}"),
        }
    }
    assert_eq!(refused, 0, "of {CLIENTS} clients");
}

/// An upgrade from 127.0.0.1 whose `X-Forwarded-For` says `client`.
async fn attempt_forwarded(url: String, client: &str) -> Result<(), u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", client.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade itself succeeds");
    welcome_or_close(ws).await
}

/// Behind a trusted proxy (here 127.0.0.1), the per-address limit counts the
/// address `X-Forwarded-For` names: one client past its rate gets 1013 while
/// another behind the same proxy still gets in.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_one_limited() {
    let server = TestServer::start(&[
        "--tick-rate",
        "0",
        "--max-upgrades-per-ip",
        "5",
        "--trusted-proxies",
        "127.0.0.0/8",
    ])
    .await;
    for _ in 0..10 {
        assert_eq!(
            attempt_forwarded(server.ws_url(), "203.0.113.1").await,
            Ok(())
        );
    }
    assert_eq!(
        attempt_forwarded(server.ws_url(), "203.0.113.1").await,
        Err(1013)
    );
    assert_eq!(
        attempt_forwarded(server.ws_url(), "203.0.113.2").await,
        Ok(())
    );
}

/// From a peer that is no trusted proxy, `X-Forwarded-For` counts for
/// nothing: changing it does not buy a fresh allowance.
#[tokio::test]
async fn forwarded_addresses_from_an_untrusted_peer_are_ignored() {
    let server = TestServer::start(&["--tick-rate", "0", "--max-upgrades-per-ip", "5"]).await;
    for n in 0..10 {
        let claimed = format!("203.0.113.{n}");
        assert_eq!(attempt_forwarded(server.ws_url(), &claimed).await, Ok(()));
    }
    assert_eq!(
        attempt_forwarded(server.ws_url(), "198.51.100.1").await,
        Err(1013)
    );
}
