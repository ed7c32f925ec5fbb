//! The driver's side of the transport choice ([`Chooser`]): a WebSocket
//! attempt that closed without ever opening is followed by a quick
//! `GET /healthz` (does plain HTTP reach the server?), whose answer may switch
//! the page to the fallback; on the fallback a WebSocket is tried in the
//! background now and then (opened and closed at once, never used), and one
//! that opens moves the page back. A move is a reconnect: the machine
//! connects again over the new transport, and the offsets and the outbox's
//! idempotent resends make it lose and double nothing.

use super::link::socket_url;
use super::web_socket::BrowserSocket;
use super::{now_ms, Driver, Input, SocketEvent, Wake};
use crate::client::reconnect::Event;
use crate::client::transport::{Move, Transport};

impl Driver {
    /// The current link opened.
    pub(super) fn link_opened(&mut self, transport: Transport) {
        if transport == Transport::WebSocket {
            let choice = self.choice.upgrade_worked();
            self.follow(choice);
        }
    }

    /// The current link closed; `opened` whether it ever did.
    pub(super) fn link_closed(&mut self, transport: Transport, opened: bool) {
        if transport == Transport::WebSocket && !opened {
            let inputs = self.inputs.clone();
            leptos::task::spawn_local(async move {
                let works = match gloo_net::http::Request::get("/healthz").send().await {
                    Ok(response) => response.ok(),
                    Err(_) => false,
                };
                let _ = inputs.unbounded_send(Input::HttpChecked { works });
            });
        }
    }

    /// Whether plain HTTP worked after a failed upgrade.
    pub(super) fn http_checked(&mut self, works: bool) {
        let choice = self.choice.upgrade_failed(works);
        self.follow(choice);
    }

    /// Carries out a move: reconnects over the other transport now, and on
    /// the fallback plans the first background try.
    fn follow(&mut self, choice: Move) {
        let Move::To(transport) = choice else {
            return;
        };
        self.probe = None;
        self.probe_round += 1;
        self.plan_probe();
        match transport {
            // The machine waits out a backoff (or is on a third attempt):
            // connect now, over the fallback.
            Transport::Sse => self.handle(Event::RetryNow),
            // Connected over the fallback: a reconnect over the WebSocket,
            // the fallback's session ended rather than left to time out.
            Transport::WebSocket => {
                if let Some(link) = self.socket.take() {
                    link.leave();
                }
                self.handle(Event::Restart)
            }
        }
    }

    fn plan_probe(&mut self) {
        if let Some(wait) = self.choice.next_probe_in_ms() {
            self.wake_at(now_ms() + wait, Wake::Probe(self.probe_round));
        }
    }

    /// A background try is due (if `round` is still the current one).
    pub(super) fn probe_due(&mut self, round: u32) {
        if round != self.probe_round
            || self.probe.is_some()
            || self.choice.current() != Transport::Sse
        {
            return;
        }
        let Some(url) = socket_url() else { return };
        self.opened += 1;
        match BrowserSocket::open(&url, self.opened, &self.inputs) {
            Ok(socket) => self.probe = Some(socket),
            Err(_) => self.plan_probe(),
        }
    }

    /// What the background try did.
    pub(super) fn on_probe(&mut self, event: SocketEvent) {
        match event {
            SocketEvent::Opened => {
                // Closed at once: the move back opens a socket of its own.
                self.probe = None;
                let choice = self.choice.upgrade_worked();
                self.follow(choice);
            }
            SocketEvent::Closed(_) => {
                self.probe = None;
                self.plan_probe();
            }
            SocketEvent::Text(_) | SocketEvent::Binary => {}
        }
    }
}
