//! Owns the HTTP fallback client (`--transport sse`, docs/EXTENSIONS.md,
//! "HTTP fallback transport"): `GET /sse` read from a socket of its own
//! (the bytes decoded by `protocol::sse::read`), the session id from its
//! first event, and envelopes POSTed to `/sse/{session}`. What the stream carries
//! comes out as the WebSocket messages it stands for (an event's data → a
//! text frame, a heartbeat comment → a Ping, the `close` event → a close
//! frame), so `frames::incoming` reads both transports alike.

use std::net::SocketAddr;

use pulse::protocol::sse::read::{Block, SseReader};
use pulse::protocol::sse::{SseClose, SseSession, CLOSE_EVENT, SESSION_EVENT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::plan::Plan;

/// Bytes read from the stream at a time.
const READ_BYTES: usize = 16 * 1024;

/// One fallback session: its stream and where its POSTs go.
pub struct SseConn {
    stream: TcpStream,
    target: SocketAddr,
    session: String,
    reader: SseReader,
}

impl SseConn {
    /// Opens `GET /sse` from client `index`'s source address and reads the
    /// response head and the `session` event.
    pub async fn open(plan: &Plan, index: u64) -> Result<Self, String> {
        let socket = TcpSocket::new_v4().map_err(|err| format!("socket: {err}"))?;
        if let Some(ip) = plan.source_ip(index) {
            socket
                .bind(SocketAddr::from((ip, 0)))
                .map_err(|err| format!("bind {ip}: {err}"))?;
        }
        let mut stream = socket
            .connect(plan.target)
            .await
            .map_err(|err| format!("connect: {err}"))?;
        let _ = stream.set_nodelay(true);
        let request = format!(
            "GET /sse HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            plan.target
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|err| format!("GET /sse: {err}"))?;
        let mut conn = SseConn {
            stream,
            target: plan.target,
            session: String::new(),
            reader: SseReader::default(),
        };
        let head = loop {
            if let Some(head) = conn.reader.take_head() {
                break head;
            }
            if !conn.read_more().await {
                return Err("GET /sse: no response head".into());
            }
        };
        let status = head.lines().next().unwrap_or_default();
        if !status.contains(" 200 ") {
            return Err(format!("GET /sse: {status}"));
        }
        match conn.event().await {
            Some((name, data)) if name == SESSION_EVENT => {
                let opening: SseSession =
                    serde_json::from_str(&data).map_err(|err| format!("session event: {err}"))?;
                conn.session = opening.session;
                Ok(conn)
            }
            other => Err(format!("GET /sse: expected a session event, got {other:?}")),
        }
    }

    /// The next thing the stream carries, as the WebSocket message it stands
    /// for; `None` once it ended.
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        let (name, data) = self.event().await?;
        Some(Ok(match name.as_str() {
            "" => Message::Ping(Default::default()),
            CLOSE_EVENT => {
                let close: SseClose = serde_json::from_str(&data).ok()?;
                Message::Close(Some(CloseFrame {
                    code: CloseCode::from(close.code),
                    reason: close.reason.into(),
                }))
            }
            _ => Message::text(data),
        }))
    }

    /// POSTs `lines` (one envelope each) to the session; `Ok` on 202.
    pub async fn post(&self, lines: &[String]) -> Result<(), String> {
        let body = lines.join("\n");
        let request = format!(
            "POST /sse/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-ndjson\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.session,
            self.target,
            body.len()
        );
        let mut tcp = TcpStream::connect(self.target)
            .await
            .map_err(|err| format!("POST connect: {err}"))?;
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|err| format!("POST write: {err}"))?;
        let mut answer = Vec::new();
        tcp.take(64 * 1024)
            .read_to_end(&mut answer)
            .await
            .map_err(|err| format!("POST read: {err}"))?;
        let answer = String::from_utf8_lossy(&answer);
        let status = answer.lines().next().unwrap_or_default();
        if status.contains(" 202 ") {
            Ok(())
        } else {
            Err(format!("POST /sse: {status}"))
        }
    }

    async fn read_more(&mut self) -> bool {
        let mut buffer = [0; READ_BYTES];
        match self.stream.read(&mut buffer).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.reader.feed(&buffer[..n]);
                true
            }
        }
    }

    /// The next event's name (`message` when it names none; empty for a
    /// block of comments only) and data.
    async fn event(&mut self) -> Option<(String, String)> {
        loop {
            match self.reader.next_block() {
                Ok(Some(Block::Event(event))) => return Some((event.event, event.data)),
                Ok(Some(Block::Comment)) => return Some((String::new(), String::new())),
                Ok(None) if !self.reader.ended() && self.read_more().await => {}
                // Ended, the peer gone, or bytes no fallback stream carries.
                Ok(None) | Err(_) => return None,
            }
        }
    }
}
