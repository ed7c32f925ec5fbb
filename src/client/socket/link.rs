//! The transport seam: one connection to the server, over a WebSocket
//! (`web_socket.rs`) or the HTTP fallback (`sse.rs`). The driver opens,
//! sends on, gives up and drops a [`Link`] without caring which: both report
//! opened, frames and closed (with a close code) into its loop alike.

use futures::channel::mpsc;
use wasm_bindgen::JsValue;

use super::sse::SseSocket;
use super::web_socket::BrowserSocket;
use super::Input;
use crate::client::transport::Transport;

pub(super) enum Link {
    WebSocket(BrowserSocket),
    Sse(SseSocket),
}

impl Link {
    /// Starts connecting over `transport`; its events come as socket `id`.
    pub(super) fn open(
        transport: Transport,
        id: u32,
        inputs: &mpsc::UnboundedSender<Input>,
    ) -> Result<Self, JsValue> {
        Ok(match transport {
            Transport::WebSocket => {
                let url = socket_url().ok_or(JsValue::NULL)?;
                Link::WebSocket(BrowserSocket::open(&url, id, inputs)?)
            }
            Transport::Sse => Link::Sse(SseSocket::open("/sse", id, inputs)?),
        })
    }

    pub(super) fn id(&self) -> u32 {
        match self {
            Link::WebSocket(socket) => socket.id,
            Link::Sse(socket) => socket.id,
        }
    }

    pub(super) fn transport(&self) -> Transport {
        match self {
            Link::WebSocket(_) => Transport::WebSocket,
            Link::Sse(_) => Transport::Sse,
        }
    }

    /// Sends one envelope's text (if the link is up).
    pub(super) fn send(&self, text: &str) {
        match self {
            Link::WebSocket(socket) => socket.send(text),
            Link::Sse(socket) => socket.send(text),
        }
    }

    /// Gives the attempt up now, even if it is still connecting.
    pub(super) fn abandon(self) {
        match self {
            Link::WebSocket(socket) => socket.abandon(),
            Link::Sse(socket) => drop(socket),
        }
    }

    /// Leaves this link for good, moving to the other transport: on the
    /// fallback its session is ended on the server too.
    pub(super) fn leave(self) {
        match self {
            Link::WebSocket(socket) => drop(socket),
            Link::Sse(socket) => socket.end(),
        }
    }
}

/// `ws://` or `wss://` on the page's own host, path `/ws`.
pub(super) fn socket_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}/ws", location.host().ok()?))
}
