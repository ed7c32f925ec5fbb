//! Owns the reconnection machine: when to connect, ping, give up on a dead
//! or stuck socket, wait, and what the `Connection` badge says. Pure: no IO,
//! no clock, no randomness of its own. Time and a random number come in with
//! each event, so every rule is a table-driven native test.
//!
//! Rules (PROTOCOL.md "Errors and close codes", "Heartbeats"):
//! - no reconnect after 1000 or 1008; otherwise back off 1, 2, 4, 8, 16, then
//!   30 s, each drawn between half and all of it, the schedule reset after a
//!   connection that lasted 30 s;
//! - after a 4001 the token is dropped and the page connects again at once,
//!   anonymously; a second 4001 before the credentials change backs off;
//! - an attempt that is not welcomed within [`CONNECT_TIMEOUT_MS`] counts as
//!   a 1006 (a network that drops the SYN, a server that never answers);
//! - the page pings every `heartbeat_ms`, and 2 × `heartbeat_ms` after the
//!   last message heard the socket is dead (a timer set for that moment, not
//!   checked at the next ping);
//! - coming back online, becoming visible again or going offline probes an
//!   open socket with a `ping`: no answer within [`PROBE_MS`] means dead;
//! - coming back online, or "retry now", connects at once, also in the middle
//!   of an attempt (which may be stuck on the old network).

use super::backoff::Backoff;
use super::ConnectionStatus;
use crate::protocol::CloseCode;

/// How long an attempt may take from `Connect` to `welcome`.
pub const CONNECT_TIMEOUT_MS: f64 = 10_000.0;
/// How long a probe waits for any answer (at most one heartbeat).
pub const PROBE_MS: f64 = 5_000.0;

/// The timers the machine asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Time to send a `ping`.
    Ping,
    /// 2 × heartbeat after the last message heard: dead unless heard since.
    Silence,
    /// A probe's answer is due.
    Probe,
    /// The attempt's deadline: not welcomed by now means failed.
    ConnectDeadline,
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
    /// A timer asked for earlier fired; `session` says which attempt asked.
    Timer {
        timer: Timer,
        session: u32,
    },
    /// The browser came back online / went offline.
    Online,
    Offline,
    /// The page became visible again.
    Visible,
    /// The person pressed "retry now".
    RetryNow,
    /// The credentials changed (sign-in, sign-out): reconnect now.
    Restart,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Open a socket (dropping any other).
    Connect,
    /// Drop the current socket (an attempt under way may finish first).
    Disconnect,
    /// Give up the attempt under way now (the browser queues a new attempt
    /// to the same server behind one still connecting).
    Abandon,
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
    /// An attempt is under way; `opened_at` once the socket opened.
    Connecting {
        opened_at: Option<f64>,
    },
    /// Welcomed.
    Open {
        opened_at: f64,
        heard_at: f64,
        heartbeat_ms: f64,
        /// When the probe under way was sent.
        probe_at: Option<f64>,
    },
    Waiting {
        until: f64,
        delay: f64,
    },
    NoNetwork,
    Stopped,
}

/// What the machine is doing, as the inspector shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Idle,
    /// An attempt is under way.
    Connecting,
    /// Welcomed.
    Open,
    /// Waiting out a backoff of `delay_ms` until `until_ms`.
    Waiting {
        until_ms: f64,
        delay_ms: f64,
    },
    /// Waiting for the network to come back.
    NoNetwork,
    /// Will not reconnect (1000, 1008).
    Stopped,
}

impl Phase {
    /// The name the inspector shows.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Connecting => "connecting",
            Phase::Open => "open",
            Phase::Waiting { .. } => "waiting",
            Phase::NoNetwork => "no_network",
            Phase::Stopped => "stopped",
        }
    }
}

/// The machine.
#[derive(Debug, Clone)]
pub struct Reconnect {
    state: State,
    backoff: Backoff,
    online: bool,
    /// Numbers attempts, so stale timers are ignored.
    session: u32,
    /// A 4001 was answered already with an anonymous attempt.
    refused: bool,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            state: State::Idle,
            backoff: Backoff::default(),
            online: true,
            session: 0,
            refused: false,
        }
    }
}

impl Reconnect {
    /// What the machine is doing now.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Idle => Phase::Idle,
            State::Connecting { .. } => Phase::Connecting,
            State::Open { .. } => Phase::Open,
            State::Waiting { until, delay } => Phase::Waiting {
                until_ms: until,
                delay_ms: delay,
            },
            State::NoNetwork => Phase::NoNetwork,
            State::Stopped => Phase::Stopped,
        }
    }

    /// Handles one event at `now_ms`; `random` is uniform in [0, 1).
    pub fn handle(&mut self, event: Event, now_ms: f64, random: f64) -> Vec<Command> {
        match event {
            Event::Start => match self.state {
                State::Idle => self.connect(now_ms),
                _ => vec![],
            },
            Event::RetryNow => self.connect_now(now_ms),
            Event::Restart => {
                self.refused = false;
                let mut commands = match self.state {
                    State::Open { .. } | State::Connecting { .. } => vec![Command::Disconnect],
                    _ => vec![],
                };
                commands.extend(self.connect(now_ms));
                commands
            }
            Event::Opened => {
                if let State::Connecting { opened_at } = &mut self.state {
                    *opened_at = Some(now_ms);
                }
                vec![]
            }
            Event::Welcome { heartbeat_ms } => {
                let State::Connecting { opened_at } = self.state else {
                    return vec![];
                };
                let heartbeat_ms = heartbeat_ms as f64;
                self.state = State::Open {
                    opened_at: opened_at.unwrap_or(now_ms),
                    heard_at: now_ms,
                    heartbeat_ms,
                    probe_at: None,
                };
                vec![
                    Command::Status(ConnectionStatus::Connected),
                    Command::Flush,
                    self.schedule(Timer::Ping, now_ms + heartbeat_ms),
                    self.schedule(Timer::Silence, now_ms + 2.0 * heartbeat_ms),
                ]
            }
            Event::Heard => {
                if let State::Open {
                    heard_at, probe_at, ..
                } = &mut self.state
                {
                    *heard_at = now_ms;
                    *probe_at = None;
                }
                vec![]
            }
            Event::Closed { code } => self.closed(CloseCode::from(code), now_ms, random),
            Event::Timer { session, .. } if session != self.session => vec![],
            Event::Timer { timer, .. } => self.timer(timer, now_ms, random),
            Event::Online => {
                self.online = true;
                match self.state {
                    State::Open { .. } => self.probe(now_ms),
                    _ => self.connect_now(now_ms),
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
                    State::Open { .. } => self.probe(now_ms),
                    _ => vec![],
                }
            }
            Event::Visible => match self.state {
                State::Open { .. } => self.probe(now_ms),
                _ => vec![],
            },
        }
    }

    fn timer(&mut self, timer: Timer, now_ms: f64, random: f64) -> Vec<Command> {
        match (timer, &self.state) {
            (Timer::Ping, State::Open { heartbeat_ms, .. }) => {
                let next = now_ms + heartbeat_ms;
                vec![Command::Ping, self.schedule(Timer::Ping, next)]
            }
            (
                Timer::Silence,
                State::Open {
                    heard_at,
                    heartbeat_ms,
                    ..
                },
            ) => {
                let dead_at = heard_at + 2.0 * heartbeat_ms;
                if now_ms >= dead_at {
                    self.dead(now_ms, random)
                } else {
                    vec![self.schedule(Timer::Silence, dead_at)]
                }
            }
            (
                Timer::Probe,
                State::Open {
                    probe_at: Some(sent),
                    ..
                },
            ) if now_ms >= sent + PROBE_MS => self.dead(now_ms, random),
            (Timer::ConnectDeadline, State::Connecting { .. }) => {
                let mut commands = vec![Command::Abandon];
                commands.extend(self.closed(CloseCode::Abnormal, now_ms, random));
                commands
            }
            (Timer::Reconnect, State::Waiting { .. }) if self.online => self.connect(now_ms),
            (Timer::Countdown, State::Waiting { until, .. }) => {
                let left = until - now_ms;
                let mut commands = vec![Command::Status(ConnectionStatus::Reconnecting {
                    in_secs: seconds(left),
                })];
                if left > 1_000.0 {
                    commands.push(self.schedule(Timer::Countdown, now_ms + 1_000.0));
                }
                commands
            }
            _ => vec![],
        }
    }

    fn schedule(&self, timer: Timer, at_ms: f64) -> Command {
        Command::Schedule {
            timer,
            at_ms,
            session: self.session,
        }
    }

    /// Connects now unless welcomed already; an attempt under way is
    /// given up for a fresh one (it may be stuck on the old network).
    fn connect_now(&mut self, now_ms: f64) -> Vec<Command> {
        let mut commands = match self.state {
            State::Open { .. } => return vec![],
            State::Connecting { .. } => vec![Command::Abandon],
            _ => vec![],
        };
        commands.extend(self.connect(now_ms));
        commands
    }

    fn connect(&mut self, now_ms: f64) -> Vec<Command> {
        self.session += 1;
        self.state = State::Connecting { opened_at: None };
        // The first attempt of a page is not a *re*connection.
        let status = match self.online && self.session > 1 {
            true => ConnectionStatus::Reconnecting { in_secs: 0 },
            false => ConnectionStatus::Offline { connecting: true },
        };
        vec![
            Command::Status(status),
            Command::Connect,
            self.schedule(Timer::ConnectDeadline, now_ms + CONNECT_TIMEOUT_MS),
        ]
    }

    /// Asks an open socket for any answer within [`PROBE_MS`].
    fn probe(&mut self, now_ms: f64) -> Vec<Command> {
        let State::Open {
            probe_at,
            heartbeat_ms,
            ..
        } = &mut self.state
        else {
            return vec![];
        };
        if probe_at.is_some() {
            return vec![];
        }
        *probe_at = Some(now_ms);
        let wait = PROBE_MS.min(*heartbeat_ms);
        vec![Command::Ping, self.schedule(Timer::Probe, now_ms + wait)]
    }

    /// The socket is dead or stuck: drop it and go on as after a 1006.
    fn dead(&mut self, now_ms: f64, random: f64) -> Vec<Command> {
        let mut commands = vec![Command::Disconnect];
        commands.extend(self.closed(CloseCode::Abnormal, now_ms, random));
        commands
    }

    fn closed(&mut self, code: CloseCode, now_ms: f64, random: f64) -> Vec<Command> {
        match self.state {
            State::Open { opened_at, .. }
            | State::Connecting {
                opened_at: Some(opened_at),
            } => self.backoff.connection_lasted(now_ms - opened_at),
            State::Connecting { opened_at: None } => {}
            _ => return vec![],
        }
        if code == CloseCode::Unauthorized {
            let mut commands = vec![Command::SignOut];
            if !self.refused {
                // The token was refused: go on anonymously, at once, once.
                self.refused = true;
                commands.extend(self.connect(now_ms));
                return commands;
            }
            commands.extend(self.wait(now_ms, random));
            return commands;
        }
        if !code.reconnects() {
            self.state = State::Stopped;
            return vec![Command::Status(ConnectionStatus::Offline {
                connecting: false,
            })];
        }
        self.wait(now_ms, random)
    }

    /// Waits out the next backoff delay (or for the network to come back).
    fn wait(&mut self, now_ms: f64, random: f64) -> Vec<Command> {
        if !self.online {
            self.state = State::NoNetwork;
            return vec![Command::Status(ConnectionStatus::Offline {
                connecting: false,
            })];
        }
        let delay = f64::from(self.backoff.next_delay_ms(random));
        let until = now_ms + delay;
        self.state = State::Waiting { until, delay };
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
