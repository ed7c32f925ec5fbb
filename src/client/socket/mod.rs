//! The socket driver (browser builds only): a thin IO shell around the
//! [`Reconnect`] machine and the outbox. One loop owns the WebSocket. Socket
//! events (opened, frame, closed: each tagged with the socket's number, so a
//! dropped socket's late events are ignored), timers, browser events
//! (online/offline, visibility) and the features' requests all arrive in that
//! loop as inputs; nothing waits on a socket outside it, so "retry now", a
//! restart or the connect deadline are handled while an attempt is under way.
//!
//! It carries out the machine's commands: connect (`hello` with the stored
//! token once the socket opens), ping, timers, the status, and on `welcome`
//! one subscribe for everything the page shows (resuming from its offsets),
//! the current status, then the outbox at its pace. What the page's features
//! ask of it (sign-in, storage, the note's caret) is in `page.rs`; the
//! transport seam in `link.rs` (the browser's WebSocket in `web_socket.rs`,
//! the HTTP fallback in `sse.rs`), which transport to use and when to move in
//! `switch.rs`; what the inspector is told in `inspect.rs`.

mod inspect;
mod link;
mod page;
mod sse;
mod switch;
mod web_socket;

use futures::channel::mpsc;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use std::future::Future;
use std::pin::Pin;

use super::browser;
use super::reconnect::{Command, Event, Reconnect, Timer};
use super::transport::Chooser;
use super::{Live, ToDriver};
use crate::protocol::{
    Channel, ClientEnvelope, ClientMessage, Empty, Hello, ServerEnvelope, ServerMessage,
    StatusUpdate, Subscribe, SubscribeChannel, UserStatus,
};
use link::Link;
use web_socket::BrowserSocket;

/// What reaches the loop.
enum Input {
    /// Something the machine must hear about.
    Event(Event),
    /// From the page's features.
    Page(ToDriver),
    /// Socket number `id` did something.
    Socket { id: u32, event: SocketEvent },
    /// After a failed upgrade: whether plain HTTP reached the server.
    HttpChecked { works: bool },
}

enum SocketEvent {
    Opened,
    Text(String),
    Binary,
    Closed(u16),
}

/// What a timer wakes.
enum Wake {
    Machine(Timer, u32),
    Outbox,
    /// The note's caret may be shared again.
    Cursor,
    /// A background WebSocket try of this round is due (on the fallback).
    Probe(u32),
}

type TimerFuture = Pin<Box<dyn Future<Output = Wake>>>;

/// Starts the driver on the browser's event loop.
///
/// Its inputs come on an unbounded channel, on purpose: they are this tab's
/// own events (frames the browser already holds, the reader's actions,
/// timers), the browser's `WebSocket` and `EventSource` cannot be paused, so
/// a bound could only drop frames, and the driver runs on the same thread,
/// draining the channel after every event that fed it.
pub fn start(live: Live) {
    let (inputs, inbox) = mpsc::unbounded::<Input>();
    let send = {
        let inputs = inputs.clone();
        move |message: ClientMessage| {
            let envelope = ClientEnvelope::new(message);
            let _ = inputs.unbounded_send(Input::Page(ToDriver::Send(envelope)));
        }
    };
    let event = {
        let inputs = inputs.clone();
        move |event: Event| {
            let _ = inputs.unbounded_send(Input::Event(event));
        }
    };

    page::follow(live, send.clone());

    // The features hand their requests over here.
    let to_driver = inputs.clone();
    live.connection
        .install_sender(std::sync::Arc::new(move |request| {
            to_driver.unbounded_send(Input::Page(request)).is_ok()
        }));

    // A hidden page makes its user `away`; showing it again says `online`
    // and probes the socket (it may have died while the tab slept).
    let to_socket = send;
    let to_machine = event.clone();
    let visibility = window_event_listener(leptos::ev::visibilitychange, move |_| {
        if live.identity.user.get_untracked().is_some() {
            to_socket(status_now());
        }
        if !browser::page_hidden() {
            to_machine(Event::Visible);
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

    browser::hold_tab_lock();
    // What earlier visits of this user left unsent waits for the welcome.
    page::take_over_outbox(live);
    leptos::task::spawn_local(drive(live, inputs, inbox));
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
fn subscribe(live: Live, channels: Vec<String>) -> ClientMessage {
    let channels = channels
        .into_iter()
        .map(|channel| SubscribeChannel {
            since: live.connection.since(&channel),
            channel,
        })
        .collect();
    ClientMessage::Subscribe(Subscribe { channels })
}

/// The loop's state.
struct Driver {
    live: Live,
    machine: Reconnect,
    inputs: mpsc::UnboundedSender<Input>,
    socket: Option<Link>,
    /// Whether the current link opened.
    link_opened: bool,
    /// Which transport, and when to move.
    choice: Chooser,
    /// The background WebSocket try under way on the fallback, and the
    /// round its timers belong to (a move starts a new one).
    probe: Option<BrowserSocket>,
    probe_round: u32,
    /// What the inspector was told last.
    told: inspect::Told,
    /// Numbers sockets (links and background tries).
    opened: u32,
    /// Welcomed on the current socket: messages may go out.
    ready: bool,
    timers: FuturesUnordered<TimerFuture>,
    /// When the outbox's wake-up is set for, if it is.
    outbox_wake: Option<f64>,
    /// When this page last shared its caret in the note, and whether a
    /// share waits for its turn.
    cursor_shared: f64,
    cursor_waiting: bool,
}

async fn drive(
    live: Live,
    inputs: mpsc::UnboundedSender<Input>,
    mut inbox: mpsc::UnboundedReceiver<Input>,
) {
    let mut driver = Driver {
        live,
        machine: Reconnect::default(),
        inputs,
        socket: None,
        link_opened: false,
        choice: Chooser::new(asks_for_fallback()),
        probe: None,
        probe_round: 0,
        told: inspect::Told::default(),
        opened: 0,
        ready: false,
        timers: FuturesUnordered::new(),
        outbox_wake: None,
        cursor_shared: f64::MIN,
        cursor_waiting: false,
    };
    if !browser::online() {
        driver.handle(Event::Offline);
    }
    driver.handle(Event::Start);
    loop {
        let timer = async {
            if driver.timers.is_empty() {
                std::future::pending().await
            } else {
                driver.timers.next().await
            }
        };
        let input = futures::select! {
            input = inbox.next() => match input {
                Some(input) => input,
                None => return,
            },
            fired = timer.fuse() => match fired {
                Some(Wake::Machine(timer, session)) => Input::Event(Event::Timer { timer, session }),
                Some(Wake::Outbox) => {
                    driver.outbox_wake = None;
                    Input::Page(ToDriver::Pump)
                }
                Some(Wake::Cursor) => {
                    driver.cursor_shared = f64::MIN;
                    driver.cursor_waiting = false;
                    Input::Page(ToDriver::ShareCursor { renew: false })
                }
                Some(Wake::Probe(round)) => {
                    driver.probe_due(round);
                    continue;
                }
                None => continue,
            },
        };
        driver.on_input(input);
    }
}

impl Driver {
    fn on_input(&mut self, input: Input) {
        match input {
            Input::Event(event) => self.handle(event),
            Input::Page(request) => self.on_request(request),
            Input::Socket { id, event } => {
                if self.probe.as_ref().is_some_and(|p| p.id == id) {
                    self.on_probe(event);
                } else if self.socket.as_ref().is_some_and(|s| s.id() == id) {
                    self.on_socket(event);
                }
            }
            Input::HttpChecked { works } => self.http_checked(works),
        }
    }

    /// Runs one event through the machine and carries out what it says.
    fn handle(&mut self, event: Event) {
        let mut pending = vec![event];
        while let Some(event) = pending.pop() {
            let commands = self.machine.handle(event, now_ms(), js_sys::Math::random());
            for command in commands {
                if let Some(follow) = self.run(command) {
                    pending.push(follow);
                }
            }
        }
        self.told
            .connection(self.machine.phase(), self.choice.current());
    }

    /// Carries out one command; a socket that cannot even be made comes back
    /// as an event.
    fn run(&mut self, command: Command) -> Option<Event> {
        match command {
            Command::Connect => return self.connect(),
            Command::Disconnect => self.disconnect(),
            Command::Abandon => {
                if let Some(socket) = self.socket.take() {
                    socket.abandon();
                }
                self.disconnect();
            }
            Command::Ping => self.send(&ClientEnvelope::new(ClientMessage::Ping(Empty {}))),
            Command::Schedule {
                timer,
                at_ms,
                session,
            } => self.wake_at(at_ms, Wake::Machine(timer, session)),
            Command::Status(status) => self.live.connection.status.set(status),
            Command::Flush => {
                self.ready = true;
                for message in after_welcome(self.live) {
                    self.send(&ClientEnvelope::new(message));
                }
                self.pump();
            }
            Command::SignOut => {
                browser::store_token(None);
                self.live.signed_out();
            }
        }
        None
    }

    fn wake_at(&mut self, at_ms: f64, wake: Wake) {
        let wait = (at_ms - now_ms()).max(0.0) as u32;
        self.timers
            .push(Box::pin(TimeoutFuture::new(wait).map(move |_| wake)));
    }

    /// Makes a link over the chosen transport; `hello` goes when it opens.
    fn connect(&mut self) -> Option<Event> {
        self.disconnect();
        let transport = self.choice.current();
        if self.live.connection.transport.get_untracked() != transport {
            self.live.connection.transport.set(transport);
        }
        self.opened += 1;
        match Link::open(transport, self.opened, &self.inputs) {
            Ok(link) => {
                self.socket = Some(link);
                None
            }
            Err(_) => Some(Event::Closed { code: 1006 }),
        }
    }

    fn disconnect(&mut self) {
        self.socket = None;
        self.link_opened = false;
        self.ready = false;
        self.live.disconnected();
    }

    fn send(&mut self, envelope: &ClientEnvelope) {
        if let Some(socket) = &self.socket {
            socket.send(&envelope.to_json());
        }
    }

    /// Sends what the outbox says is due, and wakes it when more may go.
    fn pump(&mut self) {
        if !self.ready {
            return;
        }
        let due = self.live.connection.outbox_due(now_ms());
        for envelope in &due.send {
            self.send(envelope);
        }
        if let Some(at) = due.next_at {
            if self.outbox_wake.is_none_or(|set| at < set) {
                self.outbox_wake = Some(at);
                self.wake_at(at, Wake::Outbox);
            }
        }
    }

    fn on_socket(&mut self, event: SocketEvent) {
        match event {
            SocketEvent::Opened => {
                self.link_opened = true;
                if let Some(link) = &self.socket {
                    self.link_opened(link.transport());
                }
                let hello = ClientEnvelope::new(ClientMessage::Hello(Hello {
                    token: browser::token(),
                }));
                self.send(&hello);
                self.handle(Event::Opened);
            }
            SocketEvent::Text(text) => {
                self.handle(Event::Heard);
                if let Some(heartbeat_ms) = on_text(self.live, &text) {
                    self.handle(Event::Welcome { heartbeat_ms });
                }
                // An answer may have settled or postponed outbox entries.
                self.pump();
            }
            SocketEvent::Binary => self.handle(Event::Heard),
            SocketEvent::Closed(code) => {
                let opened = self.link_opened;
                let transport = self.socket.as_ref().map(Link::transport);
                self.disconnect();
                self.handle(Event::Closed { code });
                if let Some(transport) = transport {
                    self.link_closed(transport, opened);
                }
            }
        }
    }
}

/// What to send once `welcome` arrived: one subscribe for everything the
/// page shows, and the user's current status (never a stale queued one).
/// The note was rendered without its state, so its first subscription has
/// no `since` and its `subscribed` carries the state; later ones resume.
fn after_welcome(live: Live) -> Vec<ClientMessage> {
    let mut channels: Vec<String> = live
        .watchlist
        .symbols
        .get_untracked()
        .iter()
        .map(|s| ticker(s))
        .collect();
    let user = live.identity.user.get_untracked();
    let signed_in = user.is_some();
    if let Some(user) = user {
        channels.push(Channel::Presence.to_string());
        channels.push(Channel::User(user.id).to_string());
        channels.extend(
            live.chat
                .rooms
                .get_untracked()
                .iter()
                .map(|room| Channel::Chat(room.clone()).to_string()),
        );
        channels.push(Channel::Doc(super::note::NOTE_DOC.to_owned()).to_string());
    }
    let mut messages = Vec::new();
    if !channels.is_empty() {
        messages.push(subscribe(live, channels));
    }
    if signed_in {
        messages.push(status_now());
    }
    messages
}

/// Applies one server frame to the signals; returns the heartbeat interval
/// when the frame held a `welcome`.
fn on_text(live: Live, frame: &str) -> Option<u64> {
    let envelope = match ServerEnvelope::from_json(frame) {
        Ok(envelope) => envelope,
        Err(err) => {
            leptos::logging::log!("unreadable server frame skipped: {err}");
            return None;
        }
    };
    let mut heartbeat = None;
    for envelope in envelope.unpack() {
        match envelope.message {
            ServerMessage::Welcome(welcome) => {
                heartbeat = Some(welcome.heartbeat_ms);
                live.connection.welcomed_by(&welcome.build);
                match welcome.user {
                    None => live.signed_out(),
                    Some(user) => {
                        live.welcomed(user);
                        page::take_over_outbox(live);
                    }
                }
            }
            ServerMessage::Error(error) => {
                leptos::logging::log!("server error {}: {}", error.code, error.message);
                live.refused(&error, now_ms());
            }
            other => live.apply(other),
        }
    }
    heartbeat
}

/// Whether the page asked for the fallback (`?transport=sse`).
fn asks_for_fallback() -> bool {
    web_sys::window()
        .and_then(|window| window.location().search().ok())
        .is_some_and(|search| Chooser::asks_for_fallback(&search))
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}
