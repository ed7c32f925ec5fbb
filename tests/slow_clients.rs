//! Slow and stalled clients against the real `pulse` binary: a request head
//! that never ends and a body that trickles are cut off, and SIGTERM ends the
//! process within the grace period whatever such clients and an idle
//! WebSocket do.
//!
//! These run the binary as a child process, so a hung shutdown shows as a
//! process that does not exit (and `PULSE_HTTP_TIMEOUT_MS` shortens the
//! 10 s HTTP deadlines without a flag an older binary would refuse).

mod common;

use common::process::Pulse;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The shortened HTTP deadline (head, then body) these tests run with.
const HTTP_TIMEOUT_MS: &str = "300";

/// Reads until the server closes the connection (end of stream or reset)
/// and returns what arrived, or `None` if it is still open after `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&received).into()),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// A request head that never ends is cut off after the HTTP deadline: the
/// server closes the connection.
#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off() {
    let pulse = Pulse::start(
        &common::temp_db(),
        &[],
        &[("PULSE_HTTP_TIMEOUT_MS", HTTP_TIMEOUT_MS)],
    );
    let mut stream = TcpStream::connect(pulse.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
        .await
        .unwrap();
    let closed = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the connection is still open after 5 s");

    // A connection that sends nothing at all is cut off the same way.
    let mut silent = TcpStream::connect(pulse.addr).await.unwrap();
    let closed = until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "a silent connection is still open after 5 s"
    );
}

/// An API body that trickles in a byte at a time is answered 408 with a
/// JSON error once the deadline passes, and the connection is closed.
#[tokio::test]
async fn an_api_body_that_trickles_is_cut_off() {
    let pulse = Pulse::start(
        &common::temp_db(),
        &[],
        &[("PULSE_HTTP_TIMEOUT_MS", HTTP_TIMEOUT_MS)],
    );
    let mut stream = TcpStream::connect(pulse.addr).await.unwrap();
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 10000\r\n\r\n{{\"name\": \"Ada\"",
        pulse.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        // One space every 50 ms, well within any per-byte timeout, until the
        // server stops listening.
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0; 4096];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(read.is_ok(), "the connection is still open after 5 s");
    let response = common::parse_response(&String::from_utf8_lossy(&received));
    assert_eq!(response.status, 408, "{response:?}");
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// On SIGTERM the process exits within the grace period (plus a margin)
/// although a request head never ends, a body has stalled halfway and a
/// WebSocket client reads nothing.
#[tokio::test]
async fn sigterm_ends_the_process_whatever_slow_clients_do() {
    let mut pulse = Pulse::start(&common::temp_db(), &["--shutdown-grace-ms", "1000"], &[]);
    let mut stalled_head = TcpStream::connect(pulse.addr).await.unwrap();
    stalled_head
        .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n")
        .await
        .unwrap();
    let mut stalled_body = TcpStream::connect(pulse.addr).await.unwrap();
    stalled_body
        .write_all(b"POST /api/login HTTP/1.1\r\nHost: slow\r\nContent-Length: 100\r\n\r\n{\"na")
        .await
        .unwrap();
    let (idle_socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", pulse.addr))
        .await
        .expect("the WebSocket opens");
    // Let the server read what was sent before the signal arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    pulse.terminate();
    let status = pulse.exited_within(Duration::from_secs(8)).await;
    let took = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM"));
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    eprintln!("exited {took:?} after SIGTERM (grace 1 s)");
    drop((stalled_head, stalled_body, idle_socket));
}
