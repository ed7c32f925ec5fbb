//! The socket driver (browser builds only): one task owns the WebSocket,
//! sends `hello` and heartbeat `ping`s, subscribes the watchlist (resuming
//! from the offsets the page already shows), follows watchlist edits, reads
//! server messages into the [`LiveConnection`] signals, and reconnects on the
//! backoff schedule.

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message, WebSocketError};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;

use super::backoff::Backoff;
use super::{ConnectionStatus, LiveConnection};
use crate::protocol::{
    Channel, ClientEnvelope, ClientMessage, CloseCode, Empty, Hello, ServerEnvelope, ServerMessage,
    Subscribe, SubscribeChannel, Unsubscribe, DEFAULT_HEARTBEAT_MS,
};

/// Starts the driver on the browser's event loop.
pub fn start(live: LiveConnection) {
    let (commands, inbox) = mpsc::unbounded();
    // Watchlist edits become subscribe/unsubscribe messages for the socket.
    Effect::watch(
        move || live.watchlist.get(),
        move |now: &Vec<String>, before: Option<&Vec<String>>, _| {
            let before = before.cloned().unwrap_or_default();
            let added: Vec<String> = now
                .iter()
                .filter(|s| !before.contains(s))
                .cloned()
                .collect();
            let removed: Vec<String> = before
                .iter()
                .filter(|s| !now.contains(s))
                .cloned()
                .collect();
            if !added.is_empty() {
                let _ = commands.unbounded_send(subscribe(live, &added));
            }
            if !removed.is_empty() {
                let channels = removed.iter().map(|s| ticker(s)).collect();
                let _ =
                    commands.unbounded_send(ClientMessage::Unsubscribe(Unsubscribe { channels }));
            }
        },
        false,
    );
    leptos::task::spawn_local(drive(live, inbox));
}

fn ticker(symbol: &str) -> String {
    Channel::Ticker(symbol.to_owned()).to_string()
}

/// `subscribe` for these symbols, each resuming from what the page shows.
fn subscribe(live: LiveConnection, symbols: &[String]) -> ClientMessage {
    let channels = symbols
        .iter()
        .map(|symbol| {
            let channel = ticker(symbol);
            SubscribeChannel {
                since: live.since(&channel),
                channel,
            }
        })
        .collect();
    ClientMessage::Subscribe(Subscribe { channels })
}

async fn drive(live: LiveConnection, mut commands: mpsc::UnboundedReceiver<ClientMessage>) {
    let mut backoff = Backoff::default();
    loop {
        let opened_at = now_ms();
        let closed_with = session(live, &mut commands).await;
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
async fn session(
    live: LiveConnection,
    commands: &mut mpsc::UnboundedReceiver<ClientMessage>,
) -> CloseCode {
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

    // Edits made while disconnected are covered by the full subscribe below.
    while commands.try_recv().is_ok() {}

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
                        let symbols = live.watchlist.get_untracked();
                        if !symbols.is_empty() && outbound.send(text(subscribe(live, &symbols))).await.is_err() {
                            return CloseCode::Abnormal;
                        }
                    }
                }
                Some(Ok(Message::Bytes(_))) => last_heard = now_ms(),
                Some(Err(WebSocketError::ConnectionClose(event))) => return CloseCode::from(event.code),
                // An `error` event is always followed by `close`.
                Some(Err(_)) => {}
                None => return CloseCode::Abnormal,
            },
            command = commands.next() => {
                if let Some(command) = command {
                    if outbound.send(text(command)).await.is_err() {
                        return CloseCode::Abnormal;
                    }
                }
            }
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
            other => live.apply(other),
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
