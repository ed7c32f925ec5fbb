//! Owns the reconnection machine: when to connect, ping, give up on a dead
//! socket, wait, and what the `Connection` badge says. Pure: no IO, no
//! clock, no randomness of its own. Time and a random number come in with
//! each event, so every rule is a table-driven native test.
//!
//! Rules (PROTOCOL.md "Errors and close codes", "Heartbeats"): no reconnect
//! after 1000 or 1008; after 4001 the token is dropped and the page goes on
//! anonymously; otherwise back off 1, 2, 4, 8, 16, then 30 s, each drawn
//! between half and all of it, the schedule reset after a connection that
//! lasted 30 s. The page pings every `heartbeat_ms`; 2 × `heartbeat_ms`
//! without any message means the socket is dead. Coming back online, or
//! "retry now", connects at once.

use super::backoff::Backoff;
use super::ConnectionStatus;
use crate::protocol::{CloseCode, DEFAULT_HEARTBEAT_MS};

/// The timers the machine asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Time to send a `ping` (and to check the socket is alive).
    Ping,
    /// The backoff is over: connect.
    Reconnect,
    /// One second of the countdown passed.
    Countdown,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The page started.
    Start,
    /// The socket opened (the driver sends `hello`).
    Opened,
    /// `welcome` arrived.
    Welcome {
        heartbeat_ms: u64,
    },
    /// Any frame arrived.
    Heard,
    /// The socket closed with this code (1006 when it just vanished).
    Closed {
        code: u16,
    },
    /// A timer asked for earlier fired; `session` says which connection asked.
    Timer {
        timer: Timer,
        session: u32,
    },
    /// The browser came back online / went offline.
    Online,
    Offline,
    /// The person pressed "retry now".
    RetryNow,
    /// The credentials changed (sign-in, sign-out): reconnect now.
    Restart,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Open a socket.
    Connect,
    /// Drop the current socket.
    Disconnect,
    /// Send a `ping`.
    Ping,
    /// Fire `timer` at `at_ms`, tagged with `session`.
    Schedule {
        timer: Timer,
        at_ms: f64,
        session: u32,
    },
    /// Show this on the `Connection` badge.
    Status(ConnectionStatus),
    /// Connected and welcomed: subscribe, then send the queued messages.
    Flush,
    /// The token was refused (4001): forget it.
    SignOut,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Idle,
    Connecting,
    Open {
        opened_at: f64,
        heard_at: f64,
        heartbeat_ms: f64,
    },
    Waiting {
        until: f64,
    },
    NoNetwork,
    Stopped,
}

/// The machine.
#[derive(Debug, Clone)]
pub struct Reconnect {
    state: State,
    backoff: Backoff,
    online: bool,
    /// Numbers connections, so stale timers are ignored.
    session: u32,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            state: State::Idle,
            backoff: Backoff::default(),
            online: true,
            session: 0,
        }
    }
}

impl Reconnect {
    /// Handles one event at `now_ms`; `random` is uniform in [0, 1).
    pub fn handle(&mut self, event: Event, now_ms: f64, random: f64) -> Vec<Command> {
        match event {
            Event::Start | Event::RetryNow => match self.state {
                State::Idle | State::Waiting { .. } | State::NoNetwork | State::Stopped => {
                    self.connect()
                }
                _ => vec![],
            },
            Event::Restart => {
                let mut commands = match self.state {
                    State::Open { .. } | State::Connecting => vec![Command::Disconnect],
                    _ => vec![],
                };
                commands.extend(self.connect());
                commands
            }
            Event::Opened => {
                if self.state == State::Connecting {
                    self.state = State::Open {
                        opened_at: now_ms,
                        heard_at: now_ms,
                        heartbeat_ms: DEFAULT_HEARTBEAT_MS as f64,
                    };
                }
                vec![]
            }
            Event::Welcome { heartbeat_ms } => {
                let State::Open { opened_at, .. } = self.state else {
                    return vec![];
                };
                let heartbeat_ms = heartbeat_ms as f64;
                self.state = State::Open {
                    opened_at,
                    heard_at: now_ms,
                    heartbeat_ms,
                };
                vec![
                    Command::Status(ConnectionStatus::Connected),
                    Command::Flush,
                    self.schedule(Timer::Ping, now_ms + heartbeat_ms),
                ]
            }
            Event::Heard => {
                if let State::Open { heard_at, .. } = &mut self.state {
                    *heard_at = now_ms;
                }
                vec![]
            }
            Event::Closed { code } => self.closed(CloseCode::from(code), now_ms, random),
            Event::Timer { session, .. } if session != self.session => vec![],
            Event::Timer {
                timer: Timer::Ping, ..
            } => {
                let State::Open {
                    heard_at,
                    heartbeat_ms,
                    ..
                } = self.state
                else {
                    return vec![];
                };
                if now_ms - heard_at >= 2.0 * heartbeat_ms {
                    let mut commands = vec![Command::Disconnect];
                    commands.extend(self.closed(CloseCode::Abnormal, now_ms, random));
                    return commands;
                }
                vec![
                    Command::Ping,
                    self.schedule(Timer::Ping, now_ms + heartbeat_ms),
                ]
            }
            Event::Timer {
                timer: Timer::Reconnect,
                ..
            } => match self.state {
                State::Waiting { .. } if self.online => self.connect(),
                _ => vec![],
            },
            Event::Timer {
                timer: Timer::Countdown,
                ..
            } => {
                let State::Waiting { until } = self.state else {
                    return vec![];
                };
                let left = until - now_ms;
                let mut commands = vec![Command::Status(ConnectionStatus::Reconnecting {
                    in_secs: seconds(left),
                })];
                if left > 1_000.0 {
                    commands.push(self.schedule(Timer::Countdown, now_ms + 1_000.0));
                }
                commands
            }
            Event::Online => {
                self.online = true;
                match self.state {
                    State::Waiting { .. } | State::NoNetwork => self.connect(),
                    _ => vec![],
                }
            }
            Event::Offline => {
                self.online = false;
                match self.state {
                    State::Waiting { .. } => {
                        self.state = State::NoNetwork;
                        vec![Command::Status(ConnectionStatus::Offline {
                            connecting: false,
                        })]
                    }
                    _ => vec![],
                }
            }
        }
    }

    fn schedule(&self, timer: Timer, at_ms: f64) -> Command {
        Command::Schedule {
            timer,
            at_ms,
            session: self.session,
        }
    }

    fn connect(&mut self) -> Vec<Command> {
        self.session += 1;
        self.state = State::Connecting;
        // The first attempt of a page is not a *re*connection.
        let status = match self.online && self.session > 1 {
            true => ConnectionStatus::Reconnecting { in_secs: 0 },
            false => ConnectionStatus::Offline { connecting: true },
        };
        vec![Command::Status(status), Command::Connect]
    }

    fn closed(&mut self, code: CloseCode, now_ms: f64, random: f64) -> Vec<Command> {
        if let State::Open { opened_at, .. } = self.state {
            self.backoff.connection_lasted(now_ms - opened_at);
        }
        match self.state {
            State::Open { .. } | State::Connecting => {}
            _ => return vec![],
        }
        if code == CloseCode::Unauthorized {
            let mut commands = vec![Command::SignOut];
            commands.extend(self.connect());
            return commands;
        }
        if !code.reconnects() {
            self.state = State::Stopped;
            return vec![Command::Status(ConnectionStatus::Offline {
                connecting: false,
            })];
        }
        if !self.online {
            self.state = State::NoNetwork;
            return vec![Command::Status(ConnectionStatus::Offline {
                connecting: false,
            })];
        }
        let delay = f64::from(self.backoff.next_delay_ms(random));
        let until = now_ms + delay;
        self.state = State::Waiting { until };
        vec![
            Command::Status(ConnectionStatus::Reconnecting {
                in_secs: seconds(delay),
            }),
            self.schedule(Timer::Reconnect, until),
            self.schedule(Timer::Countdown, now_ms + 1_000.0),
        ]
    }
}

fn seconds(ms: f64) -> u32 {
    (ms.max(0.0) / 1_000.0).ceil() as u32
}

#[cfg(test)]
mod tests;
