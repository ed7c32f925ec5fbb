//! One test per rule of the reconnection machine, driven like the browser
//! drives it: events at chosen moments, commands checked.

use super::*;
use ConnectionStatus::*;

/// Plays `(event, at_ms)` in order with `random` = 1.0 (the longest delay of
/// each step) and returns the commands of the last event.
fn play(machine: &mut Reconnect, events: &[(Event, f64)]) -> Vec<Command> {
    let mut last = Vec::new();
    for (event, at) in events {
        last = machine.handle(event.clone(), *at, 1.0);
    }
    last
}

fn open(machine: &mut Reconnect, at: f64) -> Vec<Command> {
    play(
        machine,
        &[
            (Event::Start, at),
            (Event::Opened, at),
            (
                Event::Welcome {
                    heartbeat_ms: 1_000,
                },
                at,
            ),
        ],
    )
}

/// A machine welcomed at 0 with this heartbeat.
fn welcomed(heartbeat_ms: u64) -> Reconnect {
    let mut machine = Reconnect::default();
    play(
        &mut machine,
        &[
            (Event::Start, 0.0),
            (Event::Opened, 0.0),
            (Event::Welcome { heartbeat_ms }, 0.0),
        ],
    );
    machine
}

fn timer(timer: Timer, session: u32) -> Event {
    Event::Timer { timer, session }
}

/// The delay each reconnect schedules, for a run of failed attempts.
fn delays(machine: &mut Reconnect, attempts: usize, mut now: f64) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..attempts {
        let commands = play(machine, &[(Event::Closed { code: 1006 }, now)]);
        let at = commands
            .iter()
            .find_map(|c| match c {
                Command::Schedule {
                    timer: Timer::Reconnect,
                    at_ms,
                    ..
                } => Some(*at_ms),
                _ => None,
            })
            .expect("a reconnect is scheduled");
        out.push(at - now);
        now = at;
        let session = machine.session;
        play(machine, &[(timer(Timer::Reconnect, session), now)]);
    }
    out
}

#[test]
fn start_connects_and_welcome_flushes_and_starts_the_heartbeat() {
    let mut machine = Reconnect::default();
    assert_eq!(
        machine.handle(Event::Start, 0.0, 0.5),
        [
            Command::Status(Offline { connecting: true }),
            Command::Connect,
            Command::Schedule {
                timer: Timer::ConnectDeadline,
                at_ms: CONNECT_TIMEOUT_MS,
                session: 1
            },
        ]
    );
    machine.handle(Event::Opened, 10.0, 0.5);
    let commands = machine.handle(
        Event::Welcome {
            heartbeat_ms: 15_000,
        },
        20.0,
        0.5,
    );
    assert_eq!(
        commands,
        [
            Command::Status(Connected),
            Command::Flush,
            Command::Schedule {
                timer: Timer::Ping,
                at_ms: 15_020.0,
                session: 1
            },
            Command::Schedule {
                timer: Timer::Silence,
                at_ms: 30_020.0,
                session: 1
            },
        ]
    );
}

#[test]
fn backoff_doubles_to_thirty_seconds() {
    let mut machine = Reconnect::default();
    play(&mut machine, &[(Event::Start, 0.0)]);
    let seen = delays(&mut machine, 8, 0.0);
    assert_eq!(
        seen,
        [1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0, 30_000.0, 30_000.0, 30_000.0]
    );
}

#[test]
fn each_delay_is_drawn_between_half_and_all_of_it() {
    let mut machine = Reconnect::default();
    machine.handle(Event::Start, 0.0, 0.0);
    let commands = machine.handle(Event::Closed { code: 1006 }, 0.0, 0.0);
    assert!(commands.contains(&Command::Schedule {
        timer: Timer::Reconnect,
        at_ms: 500.0,
        session: 1
    }));
}

#[test]
fn a_connection_that_lasted_thirty_seconds_resets_the_schedule() {
    let mut machine = Reconnect::default();
    play(&mut machine, &[(Event::Start, 0.0)]);
    delays(&mut machine, 3, 0.0); // 1, 2, 4 s used up
    play(
        &mut machine,
        &[
            (Event::Opened, 100_000.0),
            (
                Event::Welcome {
                    heartbeat_ms: 60_000,
                },
                100_000.0,
            ),
        ],
    );
    assert_eq!(
        delays(&mut machine, 1, 130_000.0),
        [1_000.0],
        "open 30 s: back to 1 s"
    );
    play(&mut machine, &[(Event::Opened, 200_000.0)]);
    assert_eq!(
        delays(&mut machine, 1, 210_000.0),
        [2_000.0],
        "open 10 s: no reset"
    );
}

#[test]
fn normal_close_and_policy_violation_do_not_reconnect() {
    for code in [1000, 1008] {
        let mut machine = Reconnect::default();
        open(&mut machine, 0.0);
        let commands = machine.handle(Event::Closed { code }, 5.0, 0.5);
        assert_eq!(
            commands,
            [Command::Status(Offline { connecting: false })],
            "{code}"
        );
        assert!(machine
            .handle(timer(Timer::Reconnect, 1), 60_000.0, 0.5)
            .is_empty());
    }
}

#[test]
fn every_other_close_code_reconnects() {
    for code in [1001, 1006, 1009, 1011, 1013, 4008, 4999] {
        let mut machine = Reconnect::default();
        open(&mut machine, 0.0);
        let commands = machine.handle(Event::Closed { code }, 5.0, 1.0);
        assert!(
            matches!(commands[0], Command::Status(Reconnecting { in_secs: 1 })),
            "{code}: {commands:?}"
        );
    }
}

#[test]
fn a_refused_token_signs_out_and_connects_again_at_once() {
    let mut machine = Reconnect::default();
    open(&mut machine, 0.0);
    let commands = machine.handle(Event::Closed { code: 4001 }, 5.0, 0.5);
    assert_eq!(
        commands[..3],
        [
            Command::SignOut,
            Command::Status(Reconnecting { in_secs: 0 }),
            Command::Connect
        ]
    );
}

#[test]
fn a_second_refusal_before_the_credentials_change_backs_off() {
    let mut machine = Reconnect::default();
    open(&mut machine, 0.0);
    machine.handle(Event::Closed { code: 4001 }, 5.0, 1.0);
    // The anonymous attempt is refused too (a loop without a backoff before).
    let commands = machine.handle(Event::Closed { code: 4001 }, 10.0, 1.0);
    assert!(!commands.contains(&Command::Connect), "{commands:?}");
    assert!(
        commands.contains(&Command::Status(Reconnecting { in_secs: 1 })),
        "{commands:?}"
    );
    // Signing in again starts afresh: a refusal then connects at once again.
    machine.handle(Event::Restart, 2_000.0, 1.0);
    let commands = machine.handle(Event::Closed { code: 4001 }, 2_010.0, 1.0);
    assert!(commands.contains(&Command::Connect), "{commands:?}");
}

#[test]
fn pings_go_out_every_heartbeat_while_messages_arrive() {
    let mut machine = Reconnect::default();
    open(&mut machine, 0.0);
    machine.handle(Event::Heard, 900.0, 0.5);
    let commands = machine.handle(timer(Timer::Ping, 1), 1_000.0, 0.5);
    assert_eq!(
        commands,
        [
            Command::Ping,
            Command::Schedule {
                timer: Timer::Ping,
                at_ms: 2_000.0,
                session: 1
            }
        ]
    );
}

/// The `Silence` timer the last event scheduled, if any.
fn silence_at(commands: &[Command]) -> Option<f64> {
    commands.iter().find_map(|c| match c {
        Command::Schedule {
            timer: Timer::Silence,
            at_ms,
            ..
        } => Some(*at_ms),
        _ => None,
    })
}

#[test]
fn two_heartbeats_of_silence_mean_a_dead_socket() {
    // Heartbeat 1 s: pings at 1, 2, 3 s; the last message (a pong) at 1.05 s.
    // Dead at 3.05 s: two heartbeats after it, not at the third ping.
    let mut machine = Reconnect::default();
    let welcomed = open(&mut machine, 0.0);
    assert_eq!(silence_at(&welcomed), Some(2_000.0));
    machine.handle(timer(Timer::Ping, 1), 1_000.0, 1.0);
    machine.handle(Event::Heard, 1_050.0, 1.0);
    let early = machine.handle(timer(Timer::Silence, 1), 2_000.0, 1.0);
    assert_eq!(
        early,
        [Command::Schedule {
            timer: Timer::Silence,
            at_ms: 3_050.0,
            session: 1
        }]
    );
    let ping = machine.handle(timer(Timer::Ping, 1), 2_000.0, 1.0);
    assert_eq!(ping[0], Command::Ping, "silent for 0.95 s: still alive");
    let commands = machine.handle(timer(Timer::Silence, 1), 3_050.0, 1.0);
    assert_eq!(commands[0], Command::Disconnect);
    assert!(
        commands.contains(&Command::Status(Reconnecting { in_secs: 1 })),
        "{commands:?}"
    );
}

#[test]
fn an_attempt_not_welcomed_within_the_deadline_counts_as_a_1006() {
    for opened in [false, true] {
        let mut machine = Reconnect::default();
        machine.handle(Event::Start, 0.0, 1.0);
        if opened {
            machine.handle(Event::Opened, 100.0, 1.0);
        }
        let commands = machine.handle(timer(Timer::ConnectDeadline, 1), CONNECT_TIMEOUT_MS, 1.0);
        assert_eq!(commands[0], Command::Abandon, "opened: {opened}");
        assert!(commands.contains(&Command::Status(Reconnecting { in_secs: 1 })));
    }
    // A welcomed connection ignores its attempt's deadline.
    let mut machine = Reconnect::default();
    open(&mut machine, 0.0);
    assert!(machine
        .handle(timer(Timer::ConnectDeadline, 1), CONNECT_TIMEOUT_MS, 1.0)
        .is_empty());
}

#[test]
fn retry_now_and_online_replace_an_attempt_under_way() {
    for event in [Event::RetryNow, Event::Online] {
        let mut machine = Reconnect::default();
        machine.handle(Event::Start, 0.0, 1.0);
        let commands = machine.handle(event.clone(), 500.0, 1.0);
        assert_eq!(commands[0], Command::Abandon, "{event:?}");
        assert!(commands.contains(&Command::Connect), "{event:?}");
        assert!(
            machine
                .handle(timer(Timer::ConnectDeadline, 1), CONNECT_TIMEOUT_MS, 1.0)
                .is_empty(),
            "the replaced attempt's deadline is stale"
        );
    }
}

#[test]
fn online_visible_and_offline_probe_an_open_socket() {
    for event in [Event::Online, Event::Visible, Event::Offline] {
        // No answer to the probe: dead after PROBE_MS, long before 2 heartbeats.
        let mut machine = welcomed(15_000);
        let commands = machine.handle(event.clone(), 1_000.0, 1.0);
        assert_eq!(
            commands,
            [
                Command::Ping,
                Command::Schedule {
                    timer: Timer::Probe,
                    at_ms: 1_000.0 + PROBE_MS,
                    session: 1
                }
            ],
            "{event:?}"
        );
        let commands = machine.handle(timer(Timer::Probe, 1), 1_000.0 + PROBE_MS, 1.0);
        assert_eq!(commands.first(), Some(&Command::Disconnect), "{event:?}");
        // An answer in time keeps the connection.
        let mut machine = welcomed(15_000);
        machine.handle(event.clone(), 1_000.0, 1.0);
        machine.handle(Event::Heard, 1_020.0, 1.0);
        assert!(machine
            .handle(timer(Timer::Probe, 1), 1_000.0 + PROBE_MS, 1.0)
            .is_empty());
    }
}

#[test]
fn timers_of_an_earlier_connection_are_ignored() {
    let mut machine = Reconnect::default();
    open(&mut machine, 0.0);
    machine.handle(Event::Closed { code: 1006 }, 10.0, 1.0);
    machine.handle(timer(Timer::Reconnect, 1), 1_010.0, 1.0);
    machine.handle(Event::Opened, 1_020.0, 1.0);
    assert!(
        machine
            .handle(timer(Timer::Ping, 1), 5_000.0, 1.0)
            .is_empty(),
        "session 1's ping"
    );
}

#[test]
fn the_countdown_ticks_every_second_while_waiting() {
    let mut machine = Reconnect::default();
    play(&mut machine, &[(Event::Start, 0.0)]);
    delays(&mut machine, 2, 0.0);
    let commands = machine.handle(Event::Closed { code: 1006 }, 10_000.0, 1.0); // 4 s wait
    assert_eq!(commands[0], Command::Status(Reconnecting { in_secs: 4 }));
    let tick = machine.handle(timer(Timer::Countdown, 3), 11_000.0, 1.0);
    assert_eq!(tick[0], Command::Status(Reconnecting { in_secs: 3 }));
    assert!(matches!(
        tick[1],
        Command::Schedule {
            timer: Timer::Countdown,
            ..
        }
    ));
}

#[test]
fn coming_back_online_or_retry_now_connects_at_once() {
    let mut machine = Reconnect::default();
    open(&mut machine, 0.0);
    machine.handle(Event::Closed { code: 1006 }, 10.0, 1.0);
    assert!(machine
        .handle(Event::RetryNow, 20.0, 1.0)
        .contains(&Command::Connect));

    let mut machine = Reconnect::default();
    open(&mut machine, 0.0);
    machine.handle(Event::Offline, 5.0, 1.0);
    let commands = machine.handle(Event::Closed { code: 1006 }, 10.0, 1.0);
    assert_eq!(
        commands,
        [Command::Status(Offline { connecting: false })],
        "no retries while offline"
    );
    assert!(machine
        .handle(timer(Timer::Reconnect, 1), 60_000.0, 1.0)
        .is_empty());
    assert!(machine
        .handle(Event::Online, 70_000.0, 1.0)
        .contains(&Command::Connect));
}

#[test]
fn going_offline_while_waiting_stops_the_countdown() {
    let mut machine = Reconnect::default();
    open(&mut machine, 0.0);
    machine.handle(Event::Closed { code: 1006 }, 10.0, 1.0);
    assert_eq!(
        machine.handle(Event::Offline, 20.0, 1.0),
        [Command::Status(Offline { connecting: false })]
    );
    assert!(machine
        .handle(timer(Timer::Countdown, 1), 1_010.0, 1.0)
        .is_empty());
}

#[test]
fn a_restart_drops_the_socket_and_connects_without_waiting() {
    let mut machine = Reconnect::default();
    open(&mut machine, 0.0);
    let commands = machine.handle(Event::Restart, 10.0, 1.0);
    assert_eq!(
        commands[..3],
        [
            Command::Disconnect,
            Command::Status(Reconnecting { in_secs: 0 }),
            Command::Connect
        ]
    );
}

#[test]
fn the_phase_says_what_the_machine_does_with_the_backoff_it_waits() {
    let mut machine = Reconnect::default();
    assert_eq!(machine.phase(), Phase::Idle);
    play(&mut machine, &[(Event::Start, 0.0)]);
    assert_eq!(machine.phase(), Phase::Connecting);
    play(&mut machine, &[(Event::Closed { code: 1006 }, 100.0)]);
    // random = 1.0: the longest first delay, 1 s.
    assert_eq!(
        machine.phase(),
        Phase::Waiting {
            until_ms: 1_100.0,
            delay_ms: 1_000.0
        }
    );
    assert_eq!(machine.phase().name(), "waiting");
    let mut machine = welcomed(1_000);
    assert_eq!(machine.phase(), Phase::Open);
    play(&mut machine, &[(Event::Closed { code: 1000 }, 10.0)]);
    assert_eq!(machine.phase(), Phase::Stopped);
}
