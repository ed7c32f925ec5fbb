//! Admission to `/ws` against a real server: the connection cap holds exactly
//! under a burst of simultaneous upgrades, and one address past its upgrade
//! rate is turned away while another address still gets in.

mod common;

use common::{Client, TestServer, PATIENCE};
use futures::{SinkExt, StreamExt};
use pulse::protocol::{ServerEnvelope, ServerMessage};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

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
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("the upgrade itself succeeds");
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

/// 100 upgrades at the same moment against `--max-connections 20`: exactly
/// 20 are served, the other 80 are closed with 1013.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_upgrades_never_exceeds_the_connection_cap() {
    let server = TestServer::start(&["--tick-rate", "0", "--max-connections", "20"]).await;
    let attempts: Vec<_> = (0..100)
        .map(|_| tokio::spawn(attempt(server.ws_url(), "127.0.0.1")))
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
    assert_eq!((served, refused), (20, 80));
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
