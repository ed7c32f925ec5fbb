//! Owns reading the fallback's stream from the client's side, without IO:
//! the bytes of a `GET /sse` response as they arrive (its head, then a
//! body in HTTP/1.1 chunked transfer), out come the head and one event
//! block after another ([`event_text`](super::event_text) is the writing
//! twin). `pulse-loadgen` and the integration tests' raw client both feed
//! it from their own sockets.

/// One Server-Sent Event as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    /// `message` unless the event named another.
    pub event: String,
    pub data: String,
}

/// What a blank-line-ended block of the stream was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Event(SseEvent),
    /// Comment lines only: a heartbeat.
    Comment,
}

/// What the server sent that no fallback stream carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("a chunk size that is not hexadecimal: {0:?}")]
    ChunkSize(String),
    #[error("an event that is not UTF-8")]
    NotUtf8,
}

/// A response being read: bytes in ([`SseReader::feed`]), head and blocks out.
#[derive(Debug, Default)]
pub struct SseReader {
    /// Bytes received and not yet de-chunked (the head, until taken).
    raw: Vec<u8>,
    /// De-chunked body bytes not yet split into blocks.
    body: Vec<u8>,
    head_taken: bool,
    ended: bool,
}

impl SseReader {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
    }

    /// The response head (status line and headers, without the blank line)
    /// once it has all arrived; taken once.
    pub fn take_head(&mut self) -> Option<String> {
        if self.head_taken {
            return None;
        }
        let end = find(&self.raw, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
        self.raw.drain(..end + 4);
        self.head_taken = true;
        Some(head)
    }

    /// Whether the body's last chunk was read: no block will follow those
    /// already complete.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next complete block of the body, or `None` until more bytes are
    /// fed (or for good, once [`SseReader::ended`]); none before the head
    /// was taken.
    pub fn next_block(&mut self) -> Result<Option<Block>, ReadError> {
        if !self.head_taken {
            return Ok(None);
        }
        self.dechunk()?;
        let Some(end) = find(&self.body, b"\n\n") else {
            return Ok(None);
        };
        let block: Vec<u8> = self.body.drain(..end + 2).collect();
        let block = std::str::from_utf8(&block).map_err(|_| ReadError::NotUtf8)?;
        Ok(Some(parse_block(block)))
    }

    /// Moves every complete chunk from `raw` to `body`.
    fn dechunk(&mut self) -> Result<(), ReadError> {
        while !self.ended {
            let Some(line_end) = find(&self.raw, b"\r\n") else {
                return Ok(());
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.trim(), 16)
                .map_err(|_| ReadError::ChunkSize(size_text.clone()))?;
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return Ok(());
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return Ok(());
            }
            self.body.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A block's fields (`id`, `event`, one `data` per line; comments skipped).
fn parse_block(block: &str) -> Block {
    let (mut id, mut event, mut data, mut fields) = (None, None, Vec::new(), false);
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        fields = true;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if !fields {
        return Block::Comment;
    }
    Block::Event(SseEvent {
        id,
        event: event.unwrap_or_else(|| "message".into()),
        data: data.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sse::{event_text, HEARTBEAT_COMMENT};

    /// `text` as one chunk of a chunked body.
    fn chunk(text: &str) -> String {
        format!("{:x}\r\n{text}\r\n", text.len())
    }

    #[test]
    fn head_events_and_comments_read_back_across_any_split() {
        let wire = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n{}{}{}0\r\n\r\n",
            chunk(&event_text(Some("s:1"), None, "{\"a\":\"é\"}")),
            chunk(HEARTBEAT_COMMENT),
            chunk(&event_text(Some("s:2"), Some("close"), "a\nb")),
        );
        // Fed one byte at a time: chunk sizes, events and a two-byte
        // character all arrive split.
        let mut reader = SseReader::default();
        let (mut head, mut blocks) = (None, Vec::new());
        for byte in wire.as_bytes() {
            reader.feed(std::slice::from_ref(byte));
            head = head.or_else(|| reader.take_head());
            while let Some(block) = reader.next_block().unwrap() {
                blocks.push(block);
            }
        }
        assert!(head.unwrap().starts_with("HTTP/1.1 200 OK"));
        assert!(reader.ended());
        assert_eq!(
            blocks,
            [
                Block::Event(SseEvent {
                    id: Some("s:1".into()),
                    event: "message".into(),
                    data: "{\"a\":\"é\"}".into()
                }),
                Block::Comment,
                Block::Event(SseEvent {
                    id: Some("s:2".into()),
                    event: "close".into(),
                    data: "a\nb".into()
                }),
            ]
        );
    }

    #[test]
    fn a_chunk_size_that_is_no_number_is_an_error() {
        let mut reader = SseReader::default();
        reader.feed(b"HTTP/1.1 200 OK\r\n\r\nzz\r\n");
        reader.take_head().unwrap();
        assert_eq!(reader.next_block(), Err(ReadError::ChunkSize("zz".into())));
    }
}
