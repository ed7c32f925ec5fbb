//! Owns the abuse run's two abusers, run next to the stream-mode subscribers
//! during the measurement window: one identified client sends `status`
//! (away, online, away, …) as fast as it can, and another posts `chat_send`
//! at the chat rate limit while subscribed to `presence` and its room, so
//! that it also sees how many presence diffs the flood turned into. Both are
//! guests logged in with `POST /api/login`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use pulse::protocol::{
    ChatSend, ClientEnvelope, ClientMessage, ErrorCode, Hello, ServerMessage, StatusUpdate,
    Subscribe, SubscribeChannel, UserStatus,
};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::frames::{self, Incoming};
use crate::net::{self, Ws};
use crate::plan::Plan;

/// Guest names of the two abusers (their ids are `guest:{name}`).
const FLOODER_NAME: &str = "bench-flooder";
const CHATTER_NAME: &str = "bench-chatter";
/// The room the chatter posts to.
const ROOM: &str = "bench-abuse";
/// The most `status` messages the flooder sends, whatever the window.
const MAX_STATUS_MESSAGES: u64 = 50_000_000;
/// The most connections the flooder opens, whatever the window.
const MAX_FLOOD_SESSIONS: u64 = 1_000;
/// The most chat messages the chatter sends, whatever the window.
const MAX_CHAT_MESSAGES: u64 = 100_000;
/// Client indexes for the abusers' source addresses, past every subscriber's.
const ABUSER_INDEX_BASE: u64 = 1 << 40;

/// What one abuser saw.
#[derive(Debug, Default, Serialize)]
pub struct AbuserReport {
    pub sent: u64,
    /// Chat only: `ack`s received.
    pub acked: u64,
    pub rate_limited: u64,
    pub other_errors: u64,
    /// Chat only: `presence_diff`s and `chat` messages received.
    pub presence_diffs: u64,
    pub chat_received: u64,
    /// The close code when the server ended the socket first (the last
    /// session's), and how many sessions the server closed, per code.
    pub closed_by_server: Option<u16>,
    pub closed_by_server_by_code: BTreeMap<u16, u64>,
    /// Connections opened (the flooder reconnects after each close).
    pub sessions: u64,
    /// Why it could not start (login or connect), if it could not.
    pub failed: Option<String>,
}

/// Both abusers' reports, and the rates they amount to.
#[derive(Debug, Default, Serialize)]
pub struct AbuseReport {
    pub status_flood: AbuserReport,
    pub status_sent_per_sec: f64,
    pub chat: AbuserReport,
    pub chat_rate_asked: f64,
}

/// What `read_answers` counted.
#[derive(Debug, Default)]
struct Answers {
    acked: u64,
    rate_limited: u64,
    other_errors: u64,
    presence_diffs: u64,
    chat_received: u64,
    closed_by_server: Option<u16>,
}

/// Counts what the server sends an abuser until `stop`.
async fn read_answers(mut stream: SplitStream<Ws>, stop: CancellationToken) -> Answers {
    let mut answers = Answers::default();
    loop {
        let incoming = tokio::select! {
            biased;
            () = stop.cancelled() => return answers,
            incoming = frames::next(&mut stream) => incoming,
        };
        let messages = match incoming {
            Incoming::Messages(_, messages) => messages,
            Incoming::Unreadable => {
                answers.other_errors += 1;
                continue;
            }
            Incoming::Closed(_) | Incoming::Ended(_) => {
                answers.closed_by_server = incoming.close_code();
                return answers;
            }
            Incoming::Binary | Incoming::Ping | Incoming::Other => continue,
        };
        for message in messages {
            match message.message {
                ServerMessage::Ack(_) => answers.acked += 1,
                ServerMessage::Error(body) if body.code == ErrorCode::RateLimited => {
                    answers.rate_limited += 1
                }
                ServerMessage::Error(_) => answers.other_errors += 1,
                ServerMessage::PresenceDiff(_) => answers.presence_diffs += 1,
                ServerMessage::Chat(_) => answers.chat_received += 1,
                _ => {}
            }
        }
    }
}

/// Logs in as `name`, connects and says `hello` with the token.
async fn identified(plan: &Plan, index: u64, name: &str) -> Result<Ws, String> {
    let token = net::guest_login(plan.target, name).await?;
    let mut ws = net::connect(plan, index).await?;
    let hello = ClientMessage::Hello(Hello { token: Some(token) });
    net::send_message(&mut ws, hello)
        .await
        .map_err(|err| format!("hello: {err}"))?;
    Ok(ws)
}

impl AbuserReport {
    fn from(sent: u64, answers: Answers) -> Self {
        let mut report = AbuserReport {
            sent,
            sessions: 1,
            ..AbuserReport::default()
        };
        report.add(&answers);
        report
    }

    /// Adds one session's answers.
    fn add(&mut self, answers: &Answers) {
        self.acked += answers.acked;
        self.rate_limited += answers.rate_limited;
        self.other_errors += answers.other_errors;
        self.presence_diffs += answers.presence_diffs;
        self.chat_received += answers.chat_received;
        if let Some(code) = answers.closed_by_server {
            self.closed_by_server = Some(code);
            *self.closed_by_server_by_code.entry(code).or_default() += 1;
        }
    }

    fn failed(why: String) -> Self {
        AbuserReport {
            failed: Some(why),
            ..AbuserReport::default()
        }
    }
}

/// Sends `status` away/online back to back until `stop`. A hostile client
/// that the server closes (4008 once its unread `rate_limited` answers pass
/// the outbox budget) reconnects at once and floods again, at most
/// [`MAX_FLOOD_SESSIONS`] times.
async fn flood_status(plan: Arc<Plan>, stop: CancellationToken) -> AbuserReport {
    let token = match net::guest_login(plan.target, FLOODER_NAME).await {
        Ok(token) => token,
        Err(why) => return AbuserReport::failed(why),
    };
    let mut report = AbuserReport::default();
    let mut sent = 0;
    while report.sessions < MAX_FLOOD_SESSIONS && !stop.is_cancelled() {
        let mut ws = match net::connect(&plan, ABUSER_INDEX_BASE).await {
            Ok(ws) => ws,
            Err(why) => {
                report.failed = Some(why);
                break;
            }
        };
        report.sessions += 1;
        let hello = ClientMessage::Hello(Hello {
            token: Some(token.clone()),
        });
        if net::send_message(&mut ws, hello).await.is_err() {
            continue;
        }
        let (mut sink, stream) = ws.split();
        let session_stop = stop.child_token();
        let reader = tokio::spawn(read_answers(stream, session_stop.clone()));
        while sent < MAX_STATUS_MESSAGES && !reader.is_finished() {
            let status = if sent % 2 == 0 {
                UserStatus::Away
            } else {
                UserStatus::Online
            };
            let message = ClientMessage::Status(StatusUpdate { status });
            let result = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                result = net::send_message(&mut sink, message) => result,
            };
            if result.is_err() {
                break;
            }
            sent += 1;
        }
        // The reader ends on the server's close, or here.
        if stop.is_cancelled() || sent >= MAX_STATUS_MESSAGES {
            session_stop.cancel();
        }
        let answers = reader.await.unwrap_or_default();
        report.add(&answers);
        if sent >= MAX_STATUS_MESSAGES {
            break;
        }
    }
    report.sent = sent;
    report
}

/// Posts `chat_send` at `rate` per second (each with its own envelope id)
/// until `stop`, subscribed to `presence` and the room.
async fn post_chat(plan: Arc<Plan>, rate: f64, stop: CancellationToken) -> AbuserReport {
    let mut ws = match identified(&plan, ABUSER_INDEX_BASE + 1, CHATTER_NAME).await {
        Ok(ws) => ws,
        Err(why) => return AbuserReport::failed(why),
    };
    let channels = ["presence".to_owned(), format!("chat:{ROOM}")]
        .into_iter()
        .map(|channel| SubscribeChannel {
            channel,
            since: None,
        })
        .collect();
    if let Err(err) =
        net::send_message(&mut ws, ClientMessage::Subscribe(Subscribe { channels })).await
    {
        return AbuserReport::failed(format!("subscribe: {err}"));
    }
    let (mut sink, stream) = ws.split();
    let reader = tokio::spawn(read_answers(stream, stop.clone()));
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0;
    while sent < MAX_CHAT_MESSAGES {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = interval.tick() => {}
        }
        let message = ClientMessage::ChatSend(ChatSend {
            room: ROOM.to_owned(),
            text: format!("load test message {sent}"),
        });
        let envelope = ClientEnvelope::new(message).with_id(format!("bench-{sent}"));
        if net::send(&mut sink, envelope).await.is_err() {
            break;
        }
        sent += 1;
    }
    stop.cancelled().await;
    let answers = reader.await.unwrap_or_default();
    AbuserReport::from(sent, answers)
}

/// The two abusers, running.
pub struct Abusers {
    flooder: JoinHandle<AbuserReport>,
    chatter: JoinHandle<AbuserReport>,
    stop: CancellationToken,
    chat_rate: f64,
}

impl Abusers {
    /// Starts both abusers (they log in first).
    pub fn start(plan: &Arc<Plan>, chat_rate: f64, stop: CancellationToken) -> Self {
        Abusers {
            flooder: tokio::spawn(flood_status(Arc::clone(plan), stop.clone())),
            chatter: tokio::spawn(post_chat(Arc::clone(plan), chat_rate, stop.clone())),
            stop,
            chat_rate,
        }
    }

    /// Stops both and returns their reports; `window` is how long they ran.
    pub async fn finish(self, window: Duration) -> AbuseReport {
        self.stop.cancel();
        let joined = |result: Result<AbuserReport, tokio::task::JoinError>| {
            result.unwrap_or_else(|err| AbuserReport::failed(format!("task: {err}")))
        };
        let status_flood = joined(self.flooder.await);
        let chat = joined(self.chatter.await);
        AbuseReport {
            status_sent_per_sec: status_flood.sent as f64 / window.as_secs_f64().max(1e-9),
            status_flood,
            chat,
            chat_rate_asked: self.chat_rate,
        }
    }
}
