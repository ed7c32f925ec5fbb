//! The socket driver (browser builds only): one task owns the WebSocket,
//! sends `hello` and heartbeat `ping`s, reads server messages into the
//! [`LiveConnection`] signals, and reconnects on the backoff schedule.

use futures::{FutureExt, SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message, WebSocketError};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;

use super::backoff::Backoff;
use super::{ConnectionStatus, LiveConnection};
use crate::protocol::{
    ClientEnvelope, ClientMessage, CloseCode, Empty, Hello, ServerEnvelope, ServerMessage,
    DEFAULT_HEARTBEAT_MS,
};

/// Starts the driver on the browser's event loop.
pub fn start(live: LiveConnection) {
    leptos::task::spawn_local(drive(live));
}

async fn drive(live: LiveConnection) {
    let mut backoff = Backoff::default();
    loop {
        let opened_at = now_ms();
        let closed_with = session(live).await;
        backoff.connection_lasted(now_ms() - opened_at);
        if !closed_with.reconnects() {
            live.status
                .set(ConnectionStatus::Offline { connecting: false });
            return;
        }
        let delay = backoff.next_delay_ms(js_sys::Math::random());
        live.status.set(ConnectionStatus::Reconnecting {
            in_secs: delay.div_ceil(1000),
        });
        TimeoutFuture::new(delay).await;
        live.status
            .set(ConnectionStatus::Reconnecting { in_secs: 0 });
    }
}

/// One connection, from opening to close; returns how it closed.
async fn session(live: LiveConnection) -> CloseCode {
    let Some(url) = socket_url() else {
        return CloseCode::Normal;
    };
    let socket = match WebSocket::open(&url) {
        Ok(socket) => socket,
        Err(err) => {
            leptos::logging::log!("cannot open {url}: {err:?}");
            return CloseCode::Abnormal;
        }
    };
    let (mut outbound, inbound) = socket.split();
    let mut inbound = inbound.fuse();
    if outbound
        .send(text(ClientMessage::Hello(Hello::default())))
        .await
        .is_err()
    {
        return CloseCode::Abnormal;
    }

    let mut heartbeat_ms = DEFAULT_HEARTBEAT_MS as f64;
    let mut last_heard = now_ms();
    let mut next_ping = last_heard + heartbeat_ms;
    loop {
        let wait = (next_ping - now_ms()).max(0.0) as u32;
        let mut timer = TimeoutFuture::new(wait).fuse();
        futures::select! {
            frame = inbound.next() => match frame {
                Some(Ok(Message::Text(frame))) => {
                    last_heard = now_ms();
                    if let Some(ms) = on_frame(live, &frame) {
                        heartbeat_ms = ms as f64;
                        next_ping = last_heard + heartbeat_ms;
                    }
                }
                Some(Ok(Message::Bytes(_))) => last_heard = now_ms(),
                Some(Err(WebSocketError::ConnectionClose(event))) => return CloseCode::from(event.code),
                // An `error` event is always followed by `close`.
                Some(Err(_)) => {}
                None => return CloseCode::Abnormal,
            },
            _ = timer => {
                if now_ms() - last_heard >= 2.0 * heartbeat_ms {
                    // Dropping both halves closes the dead socket.
                    return CloseCode::Abnormal;
                }
                if outbound.send(text(ClientMessage::Ping(Empty {}))).await.is_err() {
                    return CloseCode::Abnormal;
                }
                next_ping += heartbeat_ms;
            }
        }
    }
}

/// Applies one server frame to the signals; returns the heartbeat interval
/// when the frame held a `welcome`.
fn on_frame(live: LiveConnection, frame: &str) -> Option<u64> {
    // Unknown kinds from a newer server are skipped, not fatal.
    let envelope = ServerEnvelope::from_json(frame).ok()?;
    let mut heartbeat = None;
    for envelope in envelope.unpack() {
        match envelope.message {
            ServerMessage::Welcome(welcome) => {
                heartbeat = Some(welcome.heartbeat_ms);
                live.status.set(ConnectionStatus::Connected);
            }
            ServerMessage::Error(error) => {
                leptos::logging::log!("server error {}: {}", error.code, error.message);
            }
            _ => {}
        }
    }
    heartbeat
}

fn text(message: ClientMessage) -> Message {
    Message::Text(ClientEnvelope::new(message).to_json())
}

/// `ws://` or `wss://` on the page's own host, path `/ws`.
fn socket_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}/ws", location.host().ok()?))
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}
