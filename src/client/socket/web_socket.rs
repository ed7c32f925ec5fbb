//! One browser WebSocket whose open, message and close events arrive in the
//! driver's loop as inputs, tagged with the socket's number.

use futures::channel::mpsc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use super::{Input, SocketEvent};

/// One browser WebSocket whose events arrive in the loop as inputs.
pub(super) struct BrowserSocket {
    socket: WebSocket,
    pub(super) id: u32,
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl BrowserSocket {
    pub(super) fn open(
        url: &str,
        id: u32,
        inputs: &mpsc::UnboundedSender<Input>,
    ) -> Result<Self, JsValue> {
        let socket = WebSocket::new(url)?;
        let report = |inputs: &mpsc::UnboundedSender<Input>| {
            let inputs = inputs.clone();
            move |event: SocketEvent| {
                let _ = inputs.unbounded_send(Input::Socket { id, event });
            }
        };
        let opened = report(inputs);
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
            opened(SocketEvent::Opened)
        });
        let received = report(inputs);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            received(match event.data().as_string() {
                Some(text) => SocketEvent::Text(text),
                None => SocketEvent::Binary,
            })
        });
        let closed = report(inputs);
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            closed(SocketEvent::Closed(event.code()))
        });
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(BrowserSocket {
            socket,
            id,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// Gives the attempt up now, even if it is still connecting (the browser
    /// logs that as a failed connection: it is one).
    pub(super) fn abandon(self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close();
    }

    /// Sends `text` if the socket is open (a closing one's close event is
    /// on its way; writing to it would make the browser log an error).
    pub(super) fn send(&self, text: &str) {
        if self.socket.ready_state() == WebSocket::OPEN {
            let _ = self.socket.send_with_str(text);
        }
    }
}

impl Drop for BrowserSocket {
    /// Closes the socket; none of its events reach the loop any more.
    fn drop(&mut self) {
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        if self.socket.ready_state() == WebSocket::CONNECTING {
            // Closing an attempt under way makes the browser log an error:
            // let it finish, and close it if it ever opens.
            let socket = self.socket.clone();
            let close_when_open = Closure::once_into_js(move || {
                let _ = socket.close();
            });
            self.socket
                .set_onopen(Some(close_when_open.unchecked_ref()));
        } else {
            self.socket.set_onopen(None);
            let _ = self.socket.close();
        }
    }
}
