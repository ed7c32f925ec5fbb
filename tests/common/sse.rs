//! A raw HTTP client for the fallback transport: `GET /sse` read from a
//! socket of its own (the bytes decoded by `protocol::sse::read`, comments
//! skipped) and envelopes POSTed to `/sse/{session}`, and a session ended with
//! `DELETE /sse/{session}`.

use pulse::protocol::sse::read::{Block, SseReader};
use pulse::protocol::sse::{SseClose, SseSession};
use pulse::protocol::{ServerEnvelope, ServerMessage, Welcome};
use std::collections::VecDeque;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{http_response, PATIENCE};

/// One Server-Sent Event.
pub use pulse::protocol::sse::read::SseEvent as Event;

/// One `GET /sse` response being read.
pub struct SseStream {
    tcp: TcpStream,
    reader: SseReader,
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl SseStream {
    /// Opens `GET /sse` with these extra headers; reads the response head.
    pub async fn open(addr: SocketAddr, headers: &[(&str, &str)]) -> SseStream {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Self::open_on(tcp, addr, headers).await
    }

    /// [`SseStream::open`] on a socket whose receive buffer is `bytes` (a
    /// reader that stops reading fills quickly).
    pub async fn open_small(addr: SocketAddr, bytes: u32) -> SseStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        Self::open_on(tcp, addr, &[]).await
    }

    async fn open_on(mut tcp: TcpStream, addr: SocketAddr, headers: &[(&str, &str)]) -> Self {
        let mut request =
            format!("GET /sse HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut stream = SseStream {
            tcp,
            reader: SseReader::default(),
            status: 0,
            headers: Vec::new(),
        };
        let head = loop {
            if let Some(head) = stream.reader.take_head() {
                break head;
            }
            assert!(stream.read_more().await, "the response head arrives");
        };
        let mut lines = head.lines();
        stream.status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        stream.headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        stream
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    async fn read_more(&mut self) -> bool {
        let mut buffer = [0; 16 * 1024];
        let read = tokio::time::timeout(PATIENCE, self.tcp.read(&mut buffer))
            .await
            .expect("the server sends in time");
        match read {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.reader.feed(&buffer[..n]);
                true
            }
        }
    }

    /// The next event (comments skipped); `None` once the stream ended.
    pub async fn event(&mut self) -> Option<Event> {
        loop {
            match self.reader.next_block().expect("a well-formed stream") {
                Some(Block::Event(event)) => return Some(event),
                Some(Block::Comment) => continue,
                None => {}
            }
            if self.reader.ended() || !self.read_more().await {
                return None;
            }
        }
    }
}

/// A fallback client: one session, its stream and its POSTs.
pub struct SseClient {
    pub addr: SocketAddr,
    pub stream: SseStream,
    pub session: String,
    /// The id of the last event read.
    pub last_id: Option<String>,
    pending: VecDeque<ServerEnvelope>,
}

impl SseClient {
    /// Opens a new session.
    pub async fn open(addr: SocketAddr) -> Self {
        Self::on(addr, SseStream::open(addr, &[]).await).await
    }

    /// A client reading `stream`, whose first event must open a new session.
    pub async fn on(addr: SocketAddr, mut stream: SseStream) -> Self {
        assert_eq!(stream.status, 200);
        let opening = stream.event().await.expect("a session event");
        assert_eq!(opening.event, "session", "{opening:?}");
        let session: SseSession = serde_json::from_str(&opening.data).unwrap();
        assert!(!session.resumed);
        SseClient {
            addr,
            stream,
            session: session.session,
            last_id: opening.id,
            pending: VecDeque::new(),
        }
    }

    /// POSTs these lines to the session; the status and the body as JSON.
    pub async fn post(&self, lines: &[String], origin: Option<&str>) -> (u16, serde_json::Value) {
        post(self.addr, &self.session, lines, origin).await
    }

    /// POSTs one envelope, which must be accepted.
    pub async fn send(&self, json: &str) {
        let (status, body) = self.post(&[json.to_owned()], None).await;
        assert_eq!(status, 202, "{body}");
    }

    /// The next event, its id remembered.
    pub async fn event(&mut self) -> Option<Event> {
        let event = self.stream.event().await?;
        if event.id.is_some() {
            self.last_id = event.id.clone();
        }
        Some(event)
    }

    /// The next server message (batches unpacked).
    pub async fn recv(&mut self) -> ServerEnvelope {
        loop {
            if let Some(next) = self.pending.pop_front() {
                return next;
            }
            let event = self.event().await.expect("the stream is open");
            assert_eq!(event.event, "message", "{event:?}");
            let envelope = ServerEnvelope::from_json(&event.data)
                .unwrap_or_else(|e| panic!("server sent {}: {e}", event.data));
            self.pending.extend(envelope.unpack());
        }
    }

    pub async fn hello(&mut self) -> Welcome {
        self.send(r#"{"type":"hello","data":{}}"#).await;
        match self.recv().await.message {
            ServerMessage::Welcome(welcome) => welcome,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Reads on (messages skipped) until the `close` event.
    pub async fn closed(&mut self) -> SseClose {
        while let Some(event) = self.event().await {
            if event.event == "close" {
                return serde_json::from_str(&event.data).unwrap();
            }
        }
        panic!("the stream ended without a close event");
    }
}

/// POSTs `lines` to `/sse/{session}`.
pub async fn post(
    addr: SocketAddr,
    session: &str,
    lines: &[String],
    origin: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut headers = vec![("Content-Type", "application/x-ndjson")];
    if let Some(origin) = origin {
        headers.push(("Origin", origin));
    }
    let path = format!("/sse/{session}");
    let response = http_response(addr, "POST", &path, &headers, &lines.join("\n")).await;
    let json =
        serde_json::from_str(&response.body).unwrap_or(serde_json::Value::String(response.body));
    (response.status, json)
}

/// `DELETE /sse/{session}`: ends the session; the status and the body (as
/// JSON when it is).
#[allow(dead_code)]
pub async fn end(
    addr: SocketAddr,
    session: &str,
    origin: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut headers = Vec::new();
    if let Some(origin) = origin {
        headers.push(("Origin", origin));
    }
    let path = format!("/sse/{session}");
    let response = http_response(addr, "DELETE", &path, &headers, "").await;
    let json =
        serde_json::from_str(&response.body).unwrap_or(serde_json::Value::String(response.body));
    (response.status, json)
}
