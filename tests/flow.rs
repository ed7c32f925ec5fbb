//! Flow control against a real server: the connection cap (1013) and a slow
//! consumer on replies (4008), each without disturbing other clients.

mod common;

use common::{Client, TestServer};
use futures::{SinkExt, StreamExt};
use pulse::protocol::ServerMessage;
use tokio_tungstenite::tungstenite::Message;

/// Past `--max-connections` a new socket is closed with 1013; once a place
/// is free, connecting works again.
#[tokio::test]
async fn past_the_connection_cap_new_sockets_get_1013() {
    let server = TestServer::start(&["--tick-rate", "0", "--max-connections", "2"]).await;
    let first = Client::connected(&server).await;
    let mut second = Client::connected(&server).await;
    let mut third = Client::connect(&server).await;
    let frame = third.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1013);

    second.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(
        matches!(second.recv().await.message, ServerMessage::Pong(_)),
        "the others are served"
    );
    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Client::connected(&server).await;
}

/// A client that keeps sending but never reads falls more than
/// `--max-outbox-bytes` behind and is closed with 4008; a reading client on
/// the same server is not disturbed.
#[tokio::test]
async fn a_client_that_never_reads_is_closed_with_4008() {
    let server = TestServer::start(&["--tick-rate", "0", "--max-outbox-bytes", "4096"]).await;
    let mut reader = Client::connected(&server).await;
    let mut hog = Client::connected(&server).await;
    // Each ping earns a pong; unread pongs fill the kernel's buffers and then
    // the server's outbox.
    let ping = Message::text(r#"{"type":"ping","data":{}}"#);
    let mut sent = 0;
    let close = loop {
        for _ in 0..1000 {
            if hog.ws.feed(ping.clone()).await.is_err() {
                break;
            }
        }
        sent += 1000;
        if hog.ws.flush().await.is_err() || sent >= 400_000 {
            break None;
        }
        reader.send(r#"{"type":"ping","data":{}}"#).await;
        assert!(matches!(
            reader.recv().await.message,
            ServerMessage::Pong(_)
        ));
        // Peek without draining: has the server given up on the hog yet?
        let (_, metrics) = common::http_get(server.addr, "/metrics").await;
        if metrics.contains("pulse_slow_consumers_total 1") {
            break Some(());
        }
    };
    assert!(
        close.is_some(),
        "the server never gave up after {sent} pings"
    );
    // Now read: the pongs that made it, then the 4008.
    let mut code = None;
    while let Ok(Some(frame)) =
        tokio::time::timeout(std::time::Duration::from_secs(10), hog.ws.next()).await
    {
        match frame {
            Ok(Message::Close(frame)) => {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(4008));
    reader.send(r#"{"type":"ping","data":{}}"#).await;
    assert!(matches!(
        reader.recv().await.message,
        ServerMessage::Pong(_)
    ));
}
