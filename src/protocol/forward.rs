//! Owns the JSON of a fallback POST forwarded between instances
//! (docs/EXTENSIONS.md, "A POST on another instance"): what the instance a
//! `POST /sse/{session}` landed on publishes on the channel of the instance
//! named in the session id, and that instance's answer, published on the
//! poster's channel. Which Redis channel, and when, is
//! `server/broker/redis/forward.rs`'s business.
//!
//! - `{"post": {"session", "envelopes": [line, ...], "from", "request"}}`
//! - `{"answer": {"request", "outcome": "accepted" | "not_open" | "busy"}}`

use serde::{Deserialize, Serialize};

/// One message on an instance's forwarding channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forwarding {
    Post(ForwardedPost),
    Answer(ForwardAnswer),
}

/// The envelopes of one POST, for the session's connection task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedPost {
    /// The session id, as POSTed (checked by the poster already).
    pub session: String,
    /// The POST's lines, in order, each one envelope.
    pub envelopes: Vec<String>,
    /// The poster's instance: where the answer goes.
    pub from: String,
    /// The poster's number for this POST, echoed in the answer.
    pub request: u64,
}

/// What became of a forwarded POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardAnswer {
    pub request: u64,
    pub outcome: ForwardOutcome,
}

/// The outcome of handing a POST's envelopes to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardOutcome {
    /// Every envelope is in the session's queue (answers come down its stream).
    Accepted,
    /// No instance holds the session (it ended, or never was).
    NotOpen,
    /// The holder could not take them in time (its session is behind, or it
    /// is delivering as many forwarded POSTs as it takes at once); none or
    /// some were delivered: send again (envelopes with an `id` are idempotent).
    Busy,
    /// No answer within the poster's wait (never on the wire).
    #[serde(skip)]
    Unanswered,
}

impl Forwarding {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) {
        let read = Forwarding::from_json(json.as_bytes()).unwrap();
        assert_eq!(read.to_json(), json);
    }

    #[test]
    fn round_trips() {
        check(
            r#"{"post":{"session":"s1.i.n.sig","envelopes":["{}","{\"a\":1}"],"from":"i2","request":7}}"#,
        );
        check(r#"{"answer":{"request":7,"outcome":"accepted"}}"#);
        check(r#"{"answer":{"request":8,"outcome":"not_open"}}"#);
        check(r#"{"answer":{"request":9,"outcome":"busy"}}"#);
        assert!(
            Forwarding::from_json(br#"{"answer":{"request":9,"outcome":"unanswered"}}"#).is_err()
        );
    }
}
