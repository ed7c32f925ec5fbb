//! Owns the fallback's half of the transport seam under the connection task:
//! [`SseSocket`], the `Sink + Stream` of WebSocket messages that
//! `serve_connection` is handed instead of a WebSocket, and the [`Pipe`]
//! between it and the `GET /sse` response bodies.
//!
//! Down, the writer's text frames (one envelope or one `batch`) become
//! numbered events; its Pings become heartbeat comments (and, while a stream
//! is attached, count as the peer's Pong: SSE has no way up but POSTs); its
//! close frame becomes the final `close` event. Events wait in the pipe for
//! a stream; once taken they are kept (up to [`REPLAY_BYTES`]) so that a
//! stream reopened with `Last-Event-ID` gets again what the dropped one may
//! have lost. Flow control is the WebSocket's: past [`PIPE_BYTES`] waiting
//! for a stream the sink stops taking frames, the connection's outbox fills
//! and the connection is closed as a slow consumer (4008).
//!
//! Up, the POSTed envelopes arrive over the session's bounded queue.

use axum::body::Bytes;
use axum::extract::ws::Message;
use futures_util::{Sink, Stream};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::{mpsc, Notify};

use super::session::Sessions;
use crate::protocol::sse::{
    event_id, event_text, SseClose, SseSession, CLOSE_EVENT, HEARTBEAT_COMMENT, SESSION_EVENT,
};

/// Bytes of events waiting for a stream (not yet taken by one) past which
/// the sink takes no more frames: the outbox behind it fills instead, under
/// its own budget, as a WebSocket's does behind a full socket.
pub const PIPE_BYTES: usize = 64 * 1024;

/// Bytes of events already handed to a stream kept for a `Last-Event-ID`
/// resume; an id older than what is kept cannot resume the session.
pub const REPLAY_BYTES: usize = 256 * 1024;

/// One event on its way: its number (`None` for comments and the resumed
/// stream's `session` event, which are never replayed) and its text.
struct Event {
    seq: Option<u64>,
    text: Bytes,
}

#[derive(Default)]
struct State {
    /// Waiting for a stream to take them, in order.
    queue: VecDeque<Event>,
    queued_bytes: usize,
    /// Taken by a stream, kept for a resume (oldest first).
    replay: VecDeque<(u64, Bytes)>,
    replay_bytes: usize,
    /// The next event's number (0 is the first `session` event).
    next_seq: u64,
    /// The number of the stream allowed to take events; older ones end.
    generation: u64,
    /// Whether the stream numbered `generation` is still there.
    attached: bool,
    /// The `close` event is queued: streams end after it.
    closed: bool,
    /// The connection task ended: streams end once the queue is empty.
    ended: bool,
    /// The writer task, waiting for room ([`PIPE_BYTES`]).
    room: Option<Waker>,
}

/// The events of one session between its connection's writer and its
/// streams. Shared by the [`SseSocket`], the [`EventBody`] attached now and
/// the registry (so a new `GET /sse` can attach).
pub struct Pipe {
    session: String,
    state: Mutex<State>,
    /// Wakes every stream (the attached one, and superseded ones so they end).
    ready: Notify,
}

/// Why a `Last-Event-ID` cannot resume the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the events after that id are no longer kept")]
pub struct NotResumable;

impl Pipe {
    /// A pipe whose first event is the `session` event.
    pub fn new(session: String, max_message_bytes: usize) -> Arc<Self> {
        let opening = SseSession {
            session: session.clone(),
            resumed: false,
            max_message_bytes,
        };
        let text = event_text(
            Some(&event_id(&session, 0)),
            Some(SESSION_EVENT),
            &opening.to_json(),
        );
        let mut state = State {
            next_seq: 1,
            ..State::default()
        };
        state.push(Some(0), text);
        Arc::new(Pipe {
            session,
            state: Mutex::new(state),
            ready: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the queues whole: a poisoned lock is used as is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Attaches a new stream; any earlier one ends. With `last_seen` (from
    /// `Last-Event-ID`) the events after it are sent again first, preceded
    /// by a `session` event saying `resumed`.
    pub fn attach(
        self: &Arc<Self>,
        last_seen: Option<u64>,
        max_message_bytes: usize,
    ) -> Result<EventBody, NotResumable> {
        let mut state = self.lock();
        if state.closed || state.ended {
            return Err(NotResumable);
        }
        // Comments and an earlier resume's `session` event are not for this
        // stream: it gets its own.
        let mut unnumbered = 0;
        state.queue.retain(|event| {
            if event.seq.is_none() {
                unnumbered += event.text.len();
            }
            event.seq.is_some()
        });
        state.queued_bytes -= unnumbered;
        if let Some(seen) = last_seen {
            let oldest = state
                .replay
                .front()
                .map(|(seq, _)| *seq)
                .or_else(|| state.queue.iter().find_map(|event| event.seq))
                .unwrap_or(state.next_seq);
            if seen >= state.next_seq || oldest > seen + 1 {
                return Err(NotResumable);
            }
            // What was taken after `seen` goes out again, before the rest.
            while state.replay.back().is_some_and(|(seq, _)| *seq > seen) {
                let (seq, text) = state.replay.pop_back().expect("back exists");
                state.replay_bytes -= text.len();
                state.queued_bytes += text.len();
                state.queue.push_front(Event {
                    seq: Some(seq),
                    text,
                });
            }
            let resumed = SseSession {
                session: self.session.clone(),
                resumed: true,
                max_message_bytes,
            };
            let text = Bytes::from(event_text(None, Some(SESSION_EVENT), &resumed.to_json()));
            state.queued_bytes += text.len();
            state.queue.push_front(Event { seq: None, text });
        }
        state.generation += 1;
        state.attached = true;
        let generation = state.generation;
        drop(state);
        self.ready.notify_waiters();
        Ok(EventBody {
            pipe: self.clone(),
            generation,
        })
    }

    /// The connection task ended: streams end after what is queued.
    pub fn end(&self) {
        self.lock().ended = true;
        self.ready.notify_waiters();
    }

    /// Queues a frame from the writer (see the module doc).
    fn write(&self, message: Message) -> Written {
        let mut state = self.lock();
        if state.closed {
            return Written::Dropped;
        }
        let written = match message {
            Message::Text(text) => {
                let seq = state.next_seq;
                state.next_seq += 1;
                let id = event_id(&self.session, seq);
                state.push(Some(seq), event_text(Some(&id), None, text.as_str()));
                Written::Event
            }
            Message::Ping(_) if state.attached => {
                state.push(None, HEARTBEAT_COMMENT.to_owned());
                Written::Heartbeat
            }
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|frame| (frame.code, frame.reason.to_string()))
                    .unwrap_or((1000, String::new()));
                let seq = state.next_seq;
                state.next_seq += 1;
                let id = event_id(&self.session, seq);
                let close = SseClose { code, reason }.to_json();
                state.push(Some(seq), event_text(Some(&id), Some(CLOSE_EVENT), &close));
                state.closed = true;
                Written::Close
            }
            _ => Written::Dropped,
        };
        drop(state);
        self.ready.notify_waiters();
        written
    }

    /// Whether the writer may go on: room in the pipe, or nothing more to send.
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if state.queued_bytes <= PIPE_BYTES || state.closed || state.ended {
            Poll::Ready(())
        } else {
            state.room = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl State {
    fn push(&mut self, seq: Option<u64>, text: String) {
        let text = Bytes::from(text);
        self.queued_bytes += text.len();
        self.queue.push_back(Event { seq, text });
    }

    /// The next event for the stream numbered `generation`; `Err` when that
    /// stream must end.
    fn take(&mut self, generation: u64) -> Result<Option<Bytes>, ()> {
        if generation != self.generation {
            return Err(());
        }
        let Some(event) = self.queue.pop_front() else {
            return if self.closed || self.ended {
                Err(())
            } else {
                Ok(None)
            };
        };
        self.queued_bytes -= event.text.len();
        if let Some(seq) = event.seq {
            self.replay_bytes += event.text.len();
            self.replay.push_back((seq, event.text.clone()));
            while self.replay_bytes > REPLAY_BYTES {
                let (_, old) = self.replay.pop_front().expect("bytes are counted");
                self.replay_bytes -= old.len();
            }
        }
        if let Some(waker) = self.room.take() {
            waker.wake();
        }
        Ok(Some(event.text))
    }
}

/// What the sink did with a frame.
enum Written {
    Event,
    Heartbeat,
    Close,
    Dropped,
}

/// One `GET /sse` response's body: the pipe's events while it is the
/// attached stream.
pub struct EventBody {
    pipe: Arc<Pipe>,
    generation: u64,
}

impl EventBody {
    /// The next event's text; `None` ends the response.
    pub async fn next(&mut self) -> Option<Bytes> {
        loop {
            let notified = self.pipe.ready.notified();
            match self.pipe.lock().take(self.generation) {
                Err(()) => return None,
                Ok(Some(text)) => return Some(text),
                Ok(None) => {}
            }
            notified.await;
        }
    }
}

impl Drop for EventBody {
    fn drop(&mut self) {
        let mut state = self.pipe.lock();
        if state.generation == self.generation {
            state.attached = false;
        }
    }
}

/// The socket the connection task is handed for a fallback session.
pub struct SseSocket {
    pipe: Arc<Pipe>,
    /// From the session's POSTs (the registry holds the sender).
    inbound: mpsc::Receiver<Message>,
    /// Into the same queue, for the Pongs a heartbeat on an attached stream
    /// stands for. Weak: once the registry forgets the session (and no POST
    /// is delivering), the input ends and the connection with it.
    pongs: mpsc::WeakSender<Message>,
    /// Where the session is forgotten once its close event is queued.
    sessions: Arc<Sessions>,
}

impl SseSocket {
    pub fn new(
        pipe: Arc<Pipe>,
        inbound: mpsc::Receiver<Message>,
        pongs: mpsc::WeakSender<Message>,
        sessions: Arc<Sessions>,
    ) -> Self {
        SseSocket {
            pipe,
            inbound,
            pongs,
            sessions,
        }
    }
}

impl Stream for SseSocket {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inbound.poll_recv(cx).map(|message| message.map(Ok))
    }
}

impl Sink<Message> for SseSocket {
    type Error = Infallible;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Infallible> {
        match self.pipe.write(message) {
            Written::Heartbeat => {
                if let Some(pongs) = self.pongs.upgrade() {
                    // A full queue holds messages, which prove life as well.
                    let _ = pongs.try_send(Message::Pong(Bytes::new()));
                }
            }
            Written::Close => {
                let session = self.pipe.session.clone();
                self.sessions.remove(&session);
            }
            Written::Event | Written::Dropped => {}
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.pipe.poll_room(cx).map(Ok)
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ws::Utf8Bytes;

    fn text(body: &Bytes) -> &str {
        std::str::from_utf8(body).unwrap()
    }

    #[tokio::test]
    async fn a_stream_reopened_after_an_id_gets_what_came_after_it() {
        let pipe = Pipe::new("s".into(), 100);
        let mut first = pipe.attach(None, 100).unwrap();
        assert!(text(&first.next().await.unwrap()).starts_with("id: s:0\nevent: session\n"));
        pipe.write(Message::Text(Utf8Bytes::from_static("one")));
        pipe.write(Message::Text(Utf8Bytes::from_static("two")));
        assert_eq!(text(&first.next().await.unwrap()), "id: s:1\ndata: one\n\n");
        assert_eq!(text(&first.next().await.unwrap()), "id: s:2\ndata: two\n\n");
        drop(first);
        pipe.write(Message::Text(Utf8Bytes::from_static("three")));
        let mut second = pipe.attach(Some(1), 100).unwrap();
        assert!(text(&second.next().await.unwrap()).contains("\"resumed\":true"));
        assert_eq!(
            text(&second.next().await.unwrap()),
            "id: s:2\ndata: two\n\n"
        );
        assert_eq!(
            text(&second.next().await.unwrap()),
            "id: s:3\ndata: three\n\n"
        );
        // An id from the future, or one older than what is kept, cannot resume.
        assert!(pipe.attach(Some(9), 100).is_err());
    }

    #[tokio::test]
    async fn two_resumes_in_a_row_send_one_session_event() {
        let pipe = Pipe::new("s".into(), 100);
        let mut first = pipe.attach(None, 100).unwrap();
        first.next().await.unwrap();
        pipe.write(Message::Text(Utf8Bytes::from_static("one")));
        first.next().await.unwrap();
        drop(first);
        // The first resume's stream never reads; the second one does.
        let _never_read = pipe.attach(Some(0), 100).unwrap();
        let mut second = pipe.attach(Some(0), 100).unwrap();
        assert!(text(&second.next().await.unwrap()).contains("\"resumed\":true"));
        assert_eq!(
            text(&second.next().await.unwrap()),
            "id: s:1\ndata: one\n\n"
        );
        pipe.write(Message::Close(None));
        assert!(text(&second.next().await.unwrap()).contains("event: close\n"));
        assert!(second.next().await.is_none());
    }

    #[tokio::test]
    async fn a_newer_stream_ends_the_older_one_and_the_close_ends_both() {
        let pipe = Pipe::new("s".into(), 100);
        let mut first = pipe.attach(None, 100).unwrap();
        let mut second = pipe.attach(None, 100).unwrap();
        assert!(first.next().await.is_none());
        second.next().await.unwrap();
        pipe.write(Message::Close(None));
        assert!(text(&second.next().await.unwrap()).contains("event: close\n"));
        assert!(second.next().await.is_none());
    }
}
