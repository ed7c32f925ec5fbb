//! The socket driver (browser builds only): one task owns the WebSocket,
//! sends `hello` (with the stored token, if any) and heartbeat `ping`s,
//! subscribes the watchlist and presence (resuming from the offsets the page
//! already shows), follows watchlist edits and page visibility, reads server
//! messages into the [`LiveConnection`] signals, and reconnects on the
//! backoff schedule (at once after a sign-in or sign-out).

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message, WebSocketError};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;

use super::backoff::Backoff;
use super::browser;
use super::{ConnectionStatus, LiveConnection};
use crate::protocol::{
    Channel, ClientEnvelope, ClientMessage, CloseCode, Empty, Hello, ServerEnvelope, ServerMessage,
    StatusUpdate, Subscribe, SubscribeChannel, Unsubscribe, UserStatus, DEFAULT_HEARTBEAT_MS,
};

/// What the page asks of the socket task.
enum Command {
    /// Send this now if connected (a full subscribe follows every reconnect).
    Send(ClientEnvelope),
    /// Reconnect now: the token changed.
    Restart,
}

/// How a session ended.
enum Ended {
    Closed(CloseCode),
    Restart,
}

/// Starts the driver on the browser's event loop.
pub fn start(live: LiveConnection) {
    let (commands, inbox) = mpsc::unbounded();
    // Watchlist edits become subscribe/unsubscribe messages for the socket.
    let to_socket = commands.clone();
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
                let channels = added.iter().map(|s| ticker(s)).collect::<Vec<_>>();
                let _ = to_socket.unbounded_send(send(subscribe(live, channels)));
            }
            if !removed.is_empty() {
                let channels = removed.iter().map(|s| ticker(s)).collect();
                let _ = to_socket
                    .unbounded_send(send(ClientMessage::Unsubscribe(Unsubscribe { channels })));
            }
        },
        false,
    );
    // Rooms joined while signed in are subscribed at once.
    let to_socket = commands.clone();
    Effect::watch(
        move || live.rooms.get(),
        move |now: &Vec<String>, before: Option<&Vec<String>>, _| {
            let before = before.cloned().unwrap_or_default();
            let added: Vec<String> = now
                .iter()
                .filter(|r| !before.contains(r))
                .map(|r| format!("chat:{r}"))
                .collect();
            if !added.is_empty() && live.user.get_untracked().is_some() {
                let _ = to_socket.unbounded_send(send(subscribe(live, added)));
            }
        },
        false,
    );
    // The views send chat messages, history requests and read marks here.
    let to_socket = commands.clone();
    live.install_sender(std::sync::Arc::new(move |envelope| {
        to_socket.unbounded_send(Command::Send(envelope)).is_ok()
    }));
    let to_socket = commands.clone();
    Effect::watch(
        move || live.generation.get(),
        move |_, _, _| {
            let _ = to_socket.unbounded_send(Command::Restart);
        },
        false,
    );
    // A hidden page makes its user `away`.
    let handle = window_event_listener(leptos::ev::visibilitychange, move |_| {
        if live.user.get_untracked().is_some() {
            let _ = commands.unbounded_send(send(status_now()));
        }
    });
    on_cleanup(move || handle.remove());
    leptos::task::spawn_local(drive(live, inbox));
}

fn ticker(symbol: &str) -> String {
    Channel::Ticker(symbol.to_owned()).to_string()
}

fn send(message: ClientMessage) -> Command {
    Command::Send(ClientEnvelope::new(message))
}

fn status_now() -> ClientMessage {
    let status = if browser::page_hidden() {
        UserStatus::Away
    } else {
        UserStatus::Online
    };
    ClientMessage::Status(StatusUpdate { status })
}

/// `subscribe` for these channels, each resuming from what the page shows.
fn subscribe(live: LiveConnection, channels: Vec<String>) -> ClientMessage {
    let channels = channels
        .into_iter()
        .map(|channel| SubscribeChannel {
            since: live.since(&channel),
            channel,
        })
        .collect();
    ClientMessage::Subscribe(Subscribe { channels })
}

async fn drive(live: LiveConnection, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut backoff = Backoff::default();
    loop {
        let opened_at = now_ms();
        let closed_with = match session(live, &mut commands).await {
            Ended::Restart => continue,
            Ended::Closed(code) => code,
        };
        backoff.connection_lasted(now_ms() - opened_at);
        if closed_with == CloseCode::Unauthorized && browser::token().is_some() {
            // The token expired or is not valid here: carry on signed out.
            browser::store_token(None);
            live.signed_out();
            continue;
        }
        if !closed_with.reconnects() {
            live.status
                .set(ConnectionStatus::Offline { connecting: false });
            return;
        }
        let delay = backoff.next_delay_ms(js_sys::Math::random());
        live.status.set(ConnectionStatus::Reconnecting {
            in_secs: delay.div_ceil(1000),
        });
        let mut wait = TimeoutFuture::new(delay).fuse();
        loop {
            futures::select! {
                _ = wait => break,
                command = commands.next() => match command {
                    Some(Command::Restart) => break,
                    Some(Command::Send(_)) => {}
                    None => return,
                },
            }
        }
        live.status
            .set(ConnectionStatus::Reconnecting { in_secs: 0 });
    }
}

/// One connection, from opening to close.
async fn session(live: LiveConnection, commands: &mut mpsc::UnboundedReceiver<Command>) -> Ended {
    let Some(url) = socket_url() else {
        return Ended::Closed(CloseCode::Normal);
    };
    let socket = match WebSocket::open(&url) {
        Ok(socket) => socket,
        Err(err) => {
            leptos::logging::log!("cannot open {url}: {err:?}");
            return Ended::Closed(CloseCode::Abnormal);
        }
    };
    let (mut outbound, inbound) = socket.split();
    let mut inbound = inbound.fuse();
    let hello = ClientMessage::Hello(Hello {
        token: browser::token(),
    });
    if outbound.send(text(hello)).await.is_err() {
        return Ended::Closed(CloseCode::Abnormal);
    }
    // Edits made while disconnected are covered by the full subscribe below.
    while let Ok(command) = commands.try_recv() {
        if let Command::Restart = command {
            return Ended::Restart;
        }
    }

    let mut heartbeat_ms = DEFAULT_HEARTBEAT_MS as f64;
    let mut last_heard = now_ms();
    let mut next_ping = last_heard + heartbeat_ms;
    loop {
        let wait = (next_ping - now_ms()).max(0.0) as u32;
        let mut timer = TimeoutFuture::new(wait).fuse();
        let mut to_send: Vec<ClientEnvelope> = Vec::new();
        futures::select! {
            frame = inbound.next() => match frame {
                Some(Ok(Message::Text(frame))) => {
                    last_heard = now_ms();
                    if let Some(ms) = on_frame(live, &frame) {
                        heartbeat_ms = ms as f64;
                        next_ping = last_heard + heartbeat_ms;
                        to_send = after_welcome(live).into_iter().map(ClientEnvelope::new).collect();
                    }
                }
                Some(Ok(Message::Bytes(_))) => last_heard = now_ms(),
                Some(Err(WebSocketError::ConnectionClose(event))) => return Ended::Closed(CloseCode::from(event.code)),
                // An `error` event is always followed by `close`.
                Some(Err(_)) => {}
                None => return Ended::Closed(CloseCode::Abnormal),
            },
            command = commands.next() => match command {
                Some(Command::Send(envelope)) => to_send.push(envelope),
                Some(Command::Restart) | None => return Ended::Restart,
            },
            _ = timer => {
                if now_ms() - last_heard >= 2.0 * heartbeat_ms {
                    // Dropping both halves closes the dead socket.
                    return Ended::Closed(CloseCode::Abnormal);
                }
                to_send.push(ClientEnvelope::new(ClientMessage::Ping(Empty {})));
                next_ping += heartbeat_ms;
            }
        }
        for envelope in to_send {
            if outbound
                .send(Message::Text(envelope.to_json()))
                .await
                .is_err()
            {
                return Ended::Closed(CloseCode::Abnormal);
            }
        }
    }
}

/// What to send once `welcome` arrived: one subscribe for the watchlist (and
/// presence when signed in), and the page's visibility.
fn after_welcome(live: LiveConnection) -> Vec<ClientMessage> {
    let mut channels: Vec<String> = live
        .watchlist
        .get_untracked()
        .iter()
        .map(|s| ticker(s))
        .collect();
    let user = live.user.get_untracked();
    let signed_in = user.is_some();
    if let Some(user) = user {
        channels.push(Channel::Presence.to_string());
        channels.push(Channel::User(user.id).to_string());
        channels.extend(
            live.rooms
                .get_untracked()
                .iter()
                .map(|room| format!("chat:{room}")),
        );
    }
    let mut messages = Vec::new();
    if !channels.is_empty() {
        messages.push(subscribe(live, channels));
    }
    if signed_in && browser::page_hidden() {
        messages.push(status_now());
    }
    messages
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
                if welcome.user.is_none() {
                    live.signed_out();
                } else {
                    live.user.set(welcome.user);
                }
                live.status.set(ConnectionStatus::Connected);
            }
            ServerMessage::Error(error) => {
                leptos::logging::log!("server error {}: {}", error.code, error.message);
                if let Some(id) = &error.id {
                    live.refused(id, &error.message);
                }
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
