//! The socket driver (browser builds only): a thin IO shell around the
//! [`Reconnect`] machine. One task owns the WebSocket; it turns socket
//! frames, timers, browser events (online/offline, visibility) and the
//! views' requests into machine events, and carries out the commands:
//! connect (with `hello` and the stored token), ping, schedule timers, show
//! the status, and on `welcome` subscribe everything the page shows
//! (resuming from its offsets) and replay the outbox.

use futures::channel::mpsc;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message, State, WebSocketError};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use std::future::Future;
use std::pin::Pin;

use super::browser;
use super::reconnect::{Command, Event, Reconnect, Timer};
use super::LiveConnection;
use crate::protocol::{
    Channel, ClientEnvelope, ClientMessage, Empty, Hello, ServerEnvelope, ServerMessage,
    StatusUpdate, Subscribe, SubscribeChannel, Unsubscribe, UserStatus,
};

/// What reaches the socket task from the page.
enum Input {
    /// Something the machine must hear about.
    Event(Event),
    /// A message to send now if the connection is up (the outbox and the
    /// subscribe after `welcome` cover the time it is not).
    Send(ClientEnvelope),
}

type Socket = WebSocket;
type TimerFuture = Pin<Box<dyn Future<Output = (Timer, u32)>>>;

/// Starts the driver on the browser's event loop.
pub fn start(live: LiveConnection) {
    let (inputs, inbox) = mpsc::unbounded::<Input>();
    let send = {
        let inputs = inputs.clone();
        move |message: ClientMessage| {
            let _ = inputs.unbounded_send(Input::Send(ClientEnvelope::new(message)));
        }
    };
    let event = {
        let inputs = inputs.clone();
        move |event: Event| {
            let _ = inputs.unbounded_send(Input::Event(event));
        }
    };

    // Watchlist edits and new rooms become subscribe/unsubscribe messages.
    let to_socket = send.clone();
    Effect::watch(
        move || live.watchlist.get(),
        move |now: &Vec<String>, before: Option<&Vec<String>>, _| {
            let before = before.cloned().unwrap_or_default();
            let added: Vec<String> = now
                .iter()
                .filter(|s| !before.contains(s))
                .map(|s| ticker(s))
                .collect();
            let removed: Vec<String> = before
                .iter()
                .filter(|s| !now.contains(s))
                .map(|s| ticker(s))
                .collect();
            if !added.is_empty() {
                to_socket(subscribe(live, added));
            }
            if !removed.is_empty() {
                to_socket(ClientMessage::Unsubscribe(Unsubscribe {
                    channels: removed,
                }));
            }
        },
        false,
    );
    let to_socket = send.clone();
    Effect::watch(
        move || live.rooms.get(),
        move |now: &Vec<String>, before: Option<&Vec<String>>, _| {
            let before = before.cloned().unwrap_or_default();
            let added: Vec<String> = now
                .iter()
                .filter(|r| !before.contains(r))
                .map(|r| Channel::Chat(r.clone()).to_string())
                .collect();
            if !added.is_empty() && live.user.get_untracked().is_some() {
                to_socket(subscribe(live, added));
            }
        },
        false,
    );
    // Sign-in and sign-out reconnect at once; so does "retry now".
    let to_machine = event.clone();
    Effect::watch(
        move || live.generation.get(),
        move |_, _, _| to_machine(Event::Restart),
        false,
    );
    let to_machine = event.clone();
    Effect::watch(
        move || live.retry.get(),
        move |_, _, _| to_machine(Event::RetryNow),
        false,
    );

    // The views hand messages over here (they are in the outbox already).
    let to_socket = inputs.clone();
    live.install_sender(std::sync::Arc::new(move |envelope| {
        to_socket.unbounded_send(Input::Send(envelope)).is_ok()
    }));

    // A hidden page makes its user `away` (queued while disconnected).
    let visibility = window_event_listener(leptos::ev::visibilitychange, move |_| {
        if live.user.get_untracked().is_some() {
            live.enqueue(ClientEnvelope::new(status_now()));
        }
    });
    let to_machine = event.clone();
    let online = window_event_listener(leptos::ev::online, move |_| to_machine(Event::Online));
    let to_machine = event;
    let offline = window_event_listener(leptos::ev::offline, move |_| to_machine(Event::Offline));
    on_cleanup(move || {
        visibility.remove();
        online.remove();
        offline.remove();
    });

    // What an earlier visit left unsent goes out after the first welcome.
    if let Some(outbox) = browser::load_outbox() {
        live.restore_outbox(outbox);
    }
    leptos::task::spawn_local(drive(live, inbox));
}

fn ticker(symbol: &str) -> String {
    Channel::Ticker(symbol.to_owned()).to_string()
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

/// The socket task.
struct Driver {
    live: LiveConnection,
    machine: Reconnect,
    socket: Option<Socket>,
    /// Welcomed on the current socket: messages may go out.
    ready: bool,
    timers: FuturesUnordered<TimerFuture>,
}

async fn drive(live: LiveConnection, mut inbox: mpsc::UnboundedReceiver<Input>) {
    let mut driver = Driver {
        live,
        machine: Reconnect::default(),
        socket: None,
        ready: false,
        timers: FuturesUnordered::new(),
    };
    if !browser::online() {
        driver.handle(Event::Offline).await;
    }
    driver.handle(Event::Start).await;
    loop {
        let frame = async {
            match driver.socket.as_mut() {
                Some(socket) => socket.next().await,
                None => std::future::pending().await,
            }
        };
        let timer = async {
            if driver.timers.is_empty() {
                std::future::pending().await
            } else {
                driver.timers.next().await
            }
        };
        let step = futures::select! {
            frame = frame.fuse() => Step::Frame(frame),
            input = inbox.next() => match input {
                Some(input) => Step::Input(input),
                None => return,
            },
            fired = timer.fuse() => match fired {
                Some((timer, session)) => Step::Input(Input::Event(Event::Timer { timer, session })),
                None => continue,
            },
        };
        match step {
            Step::Frame(frame) => driver.on_frame(frame).await,
            Step::Input(Input::Event(event)) => driver.handle(event).await,
            Step::Input(Input::Send(envelope)) => {
                if driver.ready {
                    driver.send(envelope).await;
                }
            }
        }
    }
}

enum Step {
    Frame(Option<Result<Message, WebSocketError>>),
    Input(Input),
}

impl Driver {
    /// Runs one event through the machine and carries out what it says.
    async fn handle(&mut self, event: Event) {
        let mut pending = vec![event];
        while let Some(event) = pending.pop() {
            let commands = self.machine.handle(event, now_ms(), js_sys::Math::random());
            for command in commands {
                if let Some(follow) = self.run(command).await {
                    pending.push(follow);
                }
            }
        }
    }

    /// Carries out one command; a failed connect comes back as an event.
    async fn run(&mut self, command: Command) -> Option<Event> {
        match command {
            Command::Connect => return self.connect().await,
            Command::Disconnect => {
                self.socket = None;
                self.ready = false;
            }
            Command::Ping => {
                self.send(ClientEnvelope::new(ClientMessage::Ping(Empty {})))
                    .await
            }
            Command::Schedule {
                timer,
                at_ms,
                session,
            } => {
                let wait = (at_ms - now_ms()).max(0.0) as u32;
                self.timers.push(Box::pin(
                    TimeoutFuture::new(wait).map(move |_| (timer, session)),
                ));
            }
            Command::Status(status) => self.live.status.set(status),
            Command::Flush => {
                self.ready = true;
                for message in after_welcome(self.live) {
                    self.send(ClientEnvelope::new(message)).await;
                }
                for envelope in self.live.replay_outbox() {
                    self.send(envelope).await;
                }
            }
            Command::SignOut => {
                browser::store_token(None);
                self.live.signed_out();
            }
        }
        None
    }

    /// Opens a socket and sends `hello`; `Opened` or, on failure, `Closed`.
    async fn connect(&mut self) -> Option<Event> {
        self.socket = None;
        self.ready = false;
        let Some(url) = socket_url() else {
            return Some(Event::Closed { code: 1000 });
        };
        let Ok(mut socket) = WebSocket::open(&url) else {
            return Some(Event::Closed { code: 1006 });
        };
        // gloo offers no "opened" future, and sending on a socket that failed
        // to open makes the browser log an error: watch the ready state.
        if !opened(&socket).await {
            return Some(Event::Closed { code: 1006 });
        }
        let hello = ClientEnvelope::new(ClientMessage::Hello(Hello {
            token: browser::token(),
        }));
        if socket.send(Message::Text(hello.to_json())).await.is_err() {
            return Some(Event::Closed { code: 1006 });
        }
        self.socket = Some(socket);
        Some(Event::Opened)
    }

    async fn send(&mut self, envelope: ClientEnvelope) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        // A socket the server already closed must not be written to (the
        // browser would log an error); its close event is on its way.
        if !matches!(socket.state(), State::Open) {
            return;
        }
        if socket
            .send(Message::Text(envelope.to_json()))
            .await
            .is_err()
        {
            self.socket = None;
            self.ready = false;
            Box::pin(self.handle(Event::Closed { code: 1006 })).await;
        }
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, WebSocketError>>) {
        match frame {
            Some(Ok(Message::Text(text))) => {
                self.handle(Event::Heard).await;
                if let Some(heartbeat_ms) = on_text(self.live, &text) {
                    self.handle(Event::Welcome { heartbeat_ms }).await;
                }
            }
            Some(Ok(Message::Bytes(_))) => self.handle(Event::Heard).await,
            Some(Err(WebSocketError::ConnectionClose(event))) => {
                self.socket = None;
                self.ready = false;
                self.handle(Event::Closed { code: event.code }).await;
            }
            // An `error` event is always followed by `close`.
            Some(Err(_)) => {}
            None => {
                self.socket = None;
                self.ready = false;
                self.handle(Event::Closed { code: 1006 }).await;
            }
        }
    }
}

/// Waits until `socket` is open (true) or failed to open (false).
async fn opened(socket: &WebSocket) -> bool {
    loop {
        match socket.state() {
            State::Connecting => TimeoutFuture::new(20).await,
            State::Open => return true,
            State::Closing | State::Closed => return false,
        }
    }
}

/// What to send once `welcome` arrived: one subscribe for everything the
/// page shows, and the page's visibility.
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
                .map(|room| Channel::Chat(room.clone()).to_string()),
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
fn on_text(live: LiveConnection, frame: &str) -> Option<u64> {
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
