//! The HTTP fallback as one socket (docs/EXTENSIONS.md, "HTTP fallback
//! transport"): an `EventSource` on `/sse` brings the server's frames, POSTs
//! to `/sse/{session}` take the page's, one at a time so they keep their
//! order (what queued meanwhile goes in the next, one envelope a line). Its
//! events reach the driver's loop like a WebSocket's: opened on the
//! `session` event, a frame per message, closed on `close` (with its code),
//! on a stream the browser gave up, on a refused POST, or when a dropped
//! stream came back as a new session (its subscriptions are gone). A page
//! leaving the fallback for a WebSocket ends its session ([`SseSocket::end`]).

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::mpsc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{EventSource, MessageEvent};

use super::{Input, SocketEvent};
use crate::protocol::sse::{SseClose, SseSession, CLOSE_EVENT, SESSION_EVENT};

/// At most this many envelopes go in one POST (the server's bound).
const POST_LINES: usize = 64;

type Listener = Closure<dyn FnMut(MessageEvent)>;

/// The fallback's stream and its POSTs, numbered like a WebSocket.
pub(super) struct SseSocket {
    source: EventSource,
    pub(super) id: u32,
    posts: Rc<RefCell<Posts>>,
    _listeners: [Listener; 3],
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

/// What goes up, shared with the task that POSTs it.
struct Posts {
    id: u32,
    inputs: mpsc::UnboundedSender<Input>,
    session: Option<String>,
    queue: Vec<String>,
    posting: bool,
    /// Dropped or closed: nothing more is posted or reported.
    gone: bool,
}

impl Posts {
    fn report(&mut self, event: SocketEvent) {
        if self.gone {
            return;
        }
        if matches!(event, SocketEvent::Closed(_)) {
            self.gone = true;
        }
        let _ = self
            .inputs
            .unbounded_send(Input::Socket { id: self.id, event });
    }
}

impl SseSocket {
    pub(super) fn open(
        url: &str,
        id: u32,
        inputs: &mpsc::UnboundedSender<Input>,
    ) -> Result<Self, JsValue> {
        let source = EventSource::new(url)?;
        let posts = Rc::new(RefCell::new(Posts {
            id,
            inputs: inputs.clone(),
            session: None,
            queue: Vec::new(),
            posting: false,
            gone: false,
        }));
        let on_session = {
            let posts = posts.clone();
            Listener::new(move |event: MessageEvent| {
                let data = event.data().as_string().unwrap_or_default();
                let Ok(session) = serde_json::from_str::<SseSession>(&data) else {
                    return posts.borrow_mut().report(SocketEvent::Closed(1006));
                };
                let mut state = posts.borrow_mut();
                match state.session.is_some() {
                    // A stream resumed: nothing was lost.
                    true if session.resumed => {}
                    // The old session is gone with its subscriptions.
                    true => state.report(SocketEvent::Closed(1006)),
                    false => {
                        state.session = Some(session.session);
                        state.report(SocketEvent::Opened);
                    }
                }
                drop(state);
                post_queued(&posts);
            })
        };
        let on_message = {
            let posts = posts.clone();
            Listener::new(move |event: MessageEvent| {
                if let Some(text) = event.data().as_string() {
                    posts.borrow_mut().report(SocketEvent::Text(text));
                }
            })
        };
        let on_close = {
            let posts = posts.clone();
            let source = source.clone();
            Listener::new(move |event: MessageEvent| {
                // Stopped here, or the browser would open the stream again.
                source.close();
                let data = event.data().as_string().unwrap_or_default();
                let code = serde_json::from_str::<SseClose>(&data).map_or(1006, |c| c.code);
                posts.borrow_mut().report(SocketEvent::Closed(code));
            })
        };
        let on_error = {
            let posts = posts.clone();
            let source = source.clone();
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
                // While CONNECTING the browser resumes the stream by itself
                // (`Last-Event-ID`); CLOSED means it gave up.
                if source.ready_state() == EventSource::CLOSED {
                    posts.borrow_mut().report(SocketEvent::Closed(1006));
                }
            })
        };
        source
            .add_event_listener_with_callback(SESSION_EVENT, on_session.as_ref().unchecked_ref())?;
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        source.add_event_listener_with_callback(CLOSE_EVENT, on_close.as_ref().unchecked_ref())?;
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(SseSocket {
            source,
            id,
            posts,
            _listeners: [on_session, on_message, on_close],
            _on_error: on_error,
        })
    }

    /// Queues one envelope's text; it goes in the next POST.
    pub(super) fn send(&self, text: &str) {
        {
            let mut posts = self.posts.borrow_mut();
            if posts.gone {
                return;
            }
            posts.queue.push(text.to_owned());
        }
        post_queued(&self.posts);
    }

    /// Stops the stream and ends the session on the server
    /// (`DELETE /sse/{session}`, fire and forget), so it does not linger
    /// 2 × `heartbeat_ms` with its subscriptions and presence tab.
    pub(super) fn end(self) {
        let session = self.posts.borrow().session.clone();
        drop(self);
        let Some(session) = session else { return };
        leptos::task::spawn_local(async move {
            // Unanswered or refused: the server ends it after its heartbeat
            // timeout all the same.
            let _ = gloo_net::http::Request::delete(&format!("/sse/{session}"))
                .send()
                .await;
        });
    }
}

/// Starts POSTing what is queued, unless a POST is under way (its task
/// takes what queued meanwhile when it is answered).
fn post_queued(posts: &Rc<RefCell<Posts>>) {
    {
        let mut state = posts.borrow_mut();
        if state.posting || state.gone || state.session.is_none() || state.queue.is_empty() {
            return;
        }
        state.posting = true;
    }
    let posts = posts.clone();
    leptos::task::spawn_local(async move {
        loop {
            let (url, body) = {
                let mut state = posts.borrow_mut();
                if state.gone || state.queue.is_empty() {
                    state.posting = false;
                    return;
                }
                let take = state.queue.len().min(POST_LINES);
                let lines: Vec<String> = state.queue.drain(..take).collect();
                let session = state.session.clone().unwrap_or_default();
                (format!("/sse/{session}"), lines.join("\n"))
            };
            let sent = match gloo_net::http::Request::post(&url).body(body) {
                Ok(request) => request.send().await.map(|r| r.status()),
                Err(err) => Err(err),
            };
            if !matches!(sent, Ok(202)) {
                // The session ended or cannot be reached: a reconnect (the
                // outbox sends again what was not answered).
                let mut state = posts.borrow_mut();
                state.posting = false;
                state.report(SocketEvent::Closed(1006));
                return;
            }
        }
    });
}

impl Drop for SseSocket {
    /// Stops the stream; nothing of it reaches the loop any more.
    fn drop(&mut self) {
        self.posts.borrow_mut().gone = true;
        self.source.close();
        self.source.set_onmessage(None);
        self.source.set_onerror(None);
        let [on_session, _, on_close] = &self._listeners;
        for (name, listener) in [(SESSION_EVENT, on_session), (CLOSE_EVENT, on_close)] {
            let _ = self
                .source
                .remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
    }
}
