//! Owns joining the document: a guest login, the socket, `hello` with the
//! token and the `subscribe` whose answer carries the snapshot a client's
//! replica starts from, and the fresh subscriber that reads the document
//! once the run is over.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pulse::protocol::{
    ClientMessage, Hello, ServerMessage, Subscribe, SubscribeChannel, Subscribed,
};
use pulse::server::hub::{encode_state, text_of};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::replica::{Replica, ReplicaError, TextPrint};
use super::DocPlan;
use crate::frames::{self, Incoming};
use crate::net::{self, Ws};
use crate::plan::Plan;

/// How long a client waits for its `subscribed` once connected.
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Client indexes (source addresses) of the final subscriber, past every
/// editor's and reader's.
const FINAL_INDEX_BASE: u64 = 1 << 40;

/// Why a client could not join the document, or the final snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("login: {0}")]
    Login(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("send: {0}")]
    Send(#[from] WsError),
    #[error("closed {0} before subscribed")]
    Closed(u16),
    #[error("no subscribed within {} s", SUBSCRIBE_TIMEOUT.as_secs())]
    Timeout,
    #[error("subscribe answered {0}")]
    Refused(&'static str),
    #[error("subscribed without a document snapshot")]
    NoSnapshot,
    #[error("snapshot: {0}")]
    Snapshot(#[from] ReplicaError),
}

impl JoinError {
    /// The report's key for this kind of failure (the details vary per client).
    pub fn kind(&self) -> String {
        match self {
            JoinError::Login(why) | JoinError::Connect(why) => why.clone(),
            other => other.to_string(),
        }
    }
}

/// One client's connection and replica after it joined.
pub struct Member {
    pub ws: Ws,
    pub replica: Replica,
    /// The guest name: an editor's own copies carry it.
    pub name: String,
}

/// Logs in as `name`, connects as client `index`, says `hello` with the
/// token and subscribes to the document; applies the snapshot.
pub async fn join(
    plan: &Plan,
    doc: &DocPlan,
    index: u64,
    name: String,
    client_id: Option<u64>,
) -> Result<(Member, Duration), JoinError> {
    let token = net::guest_login(plan.target, &name)
        .await
        .map_err(JoinError::Login)?;
    let mut ws = net::connect(plan, index)
        .await
        .map_err(JoinError::Connect)?;
    let hello = ClientMessage::Hello(Hello { token: Some(token) });
    net::send_message(&mut ws, hello).await?;
    let channel = doc.channel();
    let subscribe = ClientMessage::Subscribe(Subscribe {
        channels: vec![SubscribeChannel {
            channel: channel.clone(),
            since: None,
        }],
    });
    let asked = Instant::now();
    net::send_message(&mut ws, subscribe).await?;
    let deadline = tokio::time::Instant::now() + SUBSCRIBE_TIMEOUT;
    loop {
        let incoming = tokio::time::timeout_at(deadline, frames::next(&mut ws))
            .await
            .map_err(|_| JoinError::Timeout)?;
        let messages = match incoming {
            Incoming::Messages(_, messages) => messages,
            Incoming::Closed(_) | Incoming::Ended(_) => {
                return Err(JoinError::Closed(
                    incoming.close_code().unwrap_or(frames::ABNORMAL_CLOSE),
                ))
            }
            Incoming::Unreadable | Incoming::Binary | Incoming::Ping | Incoming::Other => continue,
        };
        for message in messages {
            match message.message {
                ServerMessage::Subscribed(answer) if answer.channel == channel => {
                    let took = asked.elapsed();
                    let replica = snapshot_replica(&answer, client_id)?;
                    let member = Member { ws, replica, name };
                    return Ok((member, took));
                }
                ServerMessage::Error(body) if body.channel.as_deref() == Some(&channel) => {
                    return Err(JoinError::Refused(body.code.as_str()))
                }
                _ => {}
            }
        }
    }
}

/// A replica holding a `subscribed` answer's document snapshot.
fn snapshot_replica(answer: &Subscribed, client_id: Option<u64>) -> Result<Replica, JoinError> {
    let Some(pulse::protocol::Snapshot::Doc(snapshot)) = &answer.snapshot else {
        return Err(JoinError::NoSnapshot);
    };
    let mut replica = Replica::new(client_id);
    replica.apply_base64(&snapshot.state)?;
    replica.last_offset = answer.offset;
    Ok(replica)
}

/// The document as a client that subscribes after the run sees it.
#[derive(Debug, Serialize)]
pub struct FinalSnapshot {
    /// The channel's latest offset.
    pub offset: u64,
    /// The encoded Yjs state (the snapshot's `state`, decoded from base64).
    pub state_bytes: usize,
    /// The same on the wire, as base64.
    pub state_base64_bytes: usize,
    /// The characters of the document's text.
    pub text_chars: usize,
    /// From sending `subscribe` to the `subscribed` answer.
    pub subscribe_ms: f64,
    /// Why it failed, if it did (the other fields are then 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    #[serde(skip)]
    text: Option<TextPrint>,
}

impl FinalSnapshot {
    /// The fingerprint of the document's text, to compare replicas with.
    pub fn text_print(&self) -> Option<TextPrint> {
        self.text
    }

    fn failed(why: String) -> Self {
        FinalSnapshot {
            offset: 0,
            state_bytes: 0,
            state_base64_bytes: 0,
            text_chars: 0,
            subscribe_ms: 0.0,
            failed: Some(why),
            text: None,
        }
    }
}

/// Subscribes a fresh client and reads the document's snapshot.
pub async fn final_snapshot(plan: &Plan, doc: &DocPlan, run_id: u32) -> FinalSnapshot {
    let name = format!("bench-final-{run_id:08x}");
    let (mut member, took) = match join(plan, doc, FINAL_INDEX_BASE, name, None).await {
        Ok(joined) => joined,
        Err(err) => return FinalSnapshot::failed(err.to_string()),
    };
    let state = encode_state(&member.replica.doc);
    let text = text_of(&member.replica.doc);
    net::close_normally(&mut member.ws).await;
    FinalSnapshot {
        offset: member.replica.last_offset,
        state_bytes: state.len(),
        state_base64_bytes: BASE64.encode(&state).len(),
        text_chars: text.chars().count(),
        subscribe_ms: took.as_secs_f64() * 1000.0,
        failed: None,
        text: Some(TextPrint::of(&text)),
    }
}
