//! A raw HTTP client for the fallback transport: `GET /sse` read by hand
//! (chunked transfer decoded, events split on blank lines, comments skipped)
//! and envelopes POSTed to `/sse/{session}`, and a session ended with
//! `DELETE /sse/{session}`.

use pulse::protocol::sse::{SseClose, SseSession};
use pulse::protocol::{ServerEnvelope, ServerMessage, Welcome};
use std::collections::VecDeque;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{http_response, PATIENCE};

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<String>,
    /// `message` unless the event named another.
    pub event: String,
    pub data: String,
}

/// One `GET /sse` response being read.
pub struct SseStream {
    tcp: TcpStream,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked text not yet split into events.
    text: String,
    ended: bool,
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
            raw: Vec::new(),
            text: String::new(),
            ended: false,
            status: 0,
            headers: Vec::new(),
        };
        let end = loop {
            if let Some(end) = find(&stream.raw, b"\r\n\r\n") {
                break end;
            }
            assert!(stream.read_more().await, "the response head arrives");
        };
        let head = String::from_utf8_lossy(&stream.raw[..end]).into_owned();
        stream.raw.drain(..end + 4);
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
                self.raw.extend_from_slice(&buffer[..n]);
                true
            }
        }
    }

    /// Moves every complete chunk from `raw` to `text`.
    fn dechunk(&mut self) {
        while let Some(line_end) = find(&self.raw, b"\r\n") {
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.trim(), 16).expect("a chunk size");
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.text
                .push_str(std::str::from_utf8(&self.raw[start..start + size]).unwrap());
            self.raw.drain(..start + size + 2);
        }
    }

    /// The next event (comments skipped); `None` once the stream ended.
    pub async fn event(&mut self) -> Option<Event> {
        loop {
            self.dechunk();
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    return Some(event);
                }
                continue;
            }
            if self.ended || !self.read_more().await {
                return None;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An event's fields; `None` for a block of comments only.
fn parse_event(block: &str) -> Option<Event> {
    let (mut id, mut event, mut data) = (None, None, Vec::new());
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "id" => id = Some(value),
            "event" => event = Some(value),
            "data" => data.push(value),
            _ => {}
        }
    }
    if id.is_none() && event.is_none() && data.is_empty() {
        return None;
    }
    Some(Event {
        id,
        event: event.unwrap_or_else(|| "message".into()),
        data: data.join("\n"),
    })
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
