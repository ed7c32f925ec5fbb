//! Owns an editor's side of the doc run: typing one letter per update into
//! its replica (at a random spot or at its cursor), sending it with a fresh
//! envelope id, keeping it until its `ack`, resending it after a
//! `rate_limited` or `internal` answer, and holding new edits while too many
//! are unacknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pulse::protocol::{Ack, ClientEnvelope, ClientMessage, DocUpdateRequest, ErrorBody, ErrorCode};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio_tungstenite::tungstenite::Error as WsError;
use yrs::StickyIndex;

use super::client::DocOutcome;
use super::join::Member;
use super::replica::micros_between;
use super::shared::DocShared;
use super::{DocPlan, EditAt};
use crate::net::{self, Ws};

/// How long a `rate_limited` (or `internal`) update waits before it is sent
/// again with the same id: a few of the server's 30-a-second tokens.
pub const RETRY_AFTER: Duration = Duration::from_millis(100);
/// How often one update is sent before the editor gives it up.
pub const MAX_TRIES: u32 = 50;

/// An update an editor sent and has no ack for yet.
struct Pending {
    update: String,
    first_sent: Instant,
    tries: u32,
    /// Refused once (`rate_limited`, `internal`): waiting for a resend's ack.
    refused: bool,
}

/// What an editor sends and waits for; readers have none.
pub struct Editing {
    pub rng: StdRng,
    /// Envelope ids are `{run}-{index}-{n}`: unique per user across runs
    /// against one server (the server keeps ids for idempotency).
    id_prefix: String,
    next_id: u64,
    pub period: Duration,
    /// Whether fresh updates go out while a refused one waits, and how many
    /// may be unacknowledged (see `DocPlan`).
    send_past_retries: bool,
    max_in_flight: usize,
    edit_at: EditAt,
    /// Right after the last letter (cursor mode types there next).
    cursor: Option<StickyIndex>,
    /// An update was refused for good (`too_large`, `invalid`): the replica
    /// now holds an edit the server does not, so this editor stops.
    pub stopped: bool,
    pending: HashMap<String, Pending>,
    /// Ids to send again, oldest first, with the moment each is due.
    retries: VecDeque<(tokio::time::Instant, String)>,
}

/// Sends one update with its envelope id.
async fn send_update(ws: &mut Ws, doc: &str, id: &str, update: &str) -> Result<(), WsError> {
    let message = ClientMessage::DocUpdate(DocUpdateRequest {
        doc: doc.to_owned(),
        update: update.to_owned(),
    });
    net::send(ws, ClientEnvelope::new(message).with_id(id)).await
}

impl Editing {
    /// Editor `index` of run `run_id`, typing as `doc` says.
    pub fn new(index: u64, run_id: u32, doc: &DocPlan) -> Self {
        Editing {
            rng: StdRng::seed_from_u64(u64::from(run_id) << 32 | index),
            id_prefix: format!("{run_id:08x}-{index}"),
            next_id: 0,
            period: Duration::from_secs_f64(1.0 / doc.edit_rate),
            send_past_retries: doc.send_past_retries,
            max_in_flight: doc.max_in_flight,
            edit_at: doc.edit_at,
            cursor: None,
            stopped: false,
            pending: HashMap::new(),
            retries: VecDeque::new(),
        }
    }

    /// Types a letter and sends its update as a fresh envelope id.
    pub async fn send_fresh(
        &mut self,
        member: &mut Member,
        doc: &str,
        shared: &DocShared,
    ) -> Result<(), WsError> {
        let at = match (self.edit_at, &self.cursor) {
            (EditAt::Cursor, Some(cursor)) => member.replica.cursor_index(cursor),
            _ => None,
        };
        let (update, typed_at) = member.replica.type_letter(at, &mut self.rng);
        if self.edit_at == EditAt::Cursor {
            self.cursor = member.replica.cursor_after(typed_at);
        }
        let update = BASE64.encode(update);
        self.next_id += 1;
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        let first_sent = Instant::now();
        send_update(&mut member.ws, doc, &id, &update).await?;
        shared.sent.fetch_add(1, Relaxed);
        self.pending.insert(
            id,
            Pending {
                update,
                first_sent,
                tries: 1,
                refused: false,
            },
        );
        Ok(())
    }

    /// Sends again every retry that is due.
    pub async fn send_due_retries(
        &mut self,
        ws: &mut Ws,
        doc: &str,
        shared: &DocShared,
    ) -> Result<(), WsError> {
        let now = tokio::time::Instant::now();
        while let Some((due, _)) = self.retries.front() {
            if *due > now {
                break;
            }
            let Some((_, id)) = self.retries.pop_front() else {
                break;
            };
            let Some(pending) = self.pending.get_mut(&id) else {
                continue;
            };
            pending.tries += 1;
            shared.resends.fetch_add(1, Relaxed);
            send_update(ws, doc, &id, &pending.update).await?;
        }
        Ok(())
    }

    /// The server acknowledged `ack`: the timeline learns its offset.
    pub fn on_ack(&mut self, ack: Ack, shared: &DocShared, outcome: &mut DocOutcome) {
        let (Some(pending), Some(offset)) = (self.pending.remove(&ack.id), ack.offset) else {
            outcome.stray_acks += 1;
            return;
        };
        let now = Instant::now();
        shared.timeline().acked(offset, pending.first_sent, now);
        shared.acked.fetch_add(1, Relaxed);
        shared.max_acked.fetch_max(offset, Relaxed);
        if let Some(started) = shared.started.get() {
            shared
                .last_ack_micros
                .fetch_max(micros_between(*started, now), Relaxed);
        }
    }

    /// An error that names one of this editor's pending ids: `rate_limited`
    /// and `internal` are sent again after [`RETRY_AFTER`] (at most
    /// [`MAX_TRIES`] times), anything else drops the update. True when the
    /// update was dropped (the replica holds an edit the server does not).
    pub fn on_error(&mut self, body: &ErrorBody, shared: &DocShared) -> bool {
        let Some(id) = body.id.as_deref() else {
            return false;
        };
        let Some(pending) = self.pending.get_mut(id) else {
            return false;
        };
        let retry = matches!(body.code, ErrorCode::RateLimited | ErrorCode::Internal);
        if retry && pending.tries < MAX_TRIES {
            pending.refused = true;
            let due = tokio::time::Instant::now() + RETRY_AFTER;
            self.retries.push_back((due, id.to_owned()));
            false
        } else {
            self.pending.remove(id);
            if !self.stopped {
                self.stopped = true;
                shared.editors_stopped.fetch_add(1, Relaxed);
            }
            if retry {
                shared.abandoned.fetch_add(1, Relaxed);
            } else {
                shared.refused.fetch_add(1, Relaxed);
            }
            if body.code == ErrorCode::TooLarge {
                // The document is full: nobody's edits fit any more.
                let acked = shared.acked.load(Relaxed);
                let _ = shared.full_at_acked.set(acked);
                shared.stop_editing.cancel();
            }
            true
        }
    }

    /// Whether the next fresh update has to wait: `max_in_flight` are
    /// unacknowledged, or a refused one is (unless `send_past_retries`).
    pub fn held(&self) -> bool {
        self.pending.len() >= self.max_in_flight
            || (!self.send_past_retries && self.pending.values().any(|pending| pending.refused))
    }

    /// When the next retry is due, if any.
    pub fn next_retry(&self) -> Option<tokio::time::Instant> {
        self.retries.front().map(|(due, _)| *due)
    }
}

/// The moment of an editor's next fresh update: a fixed schedule, which
/// skips ahead rather than bursting when the client fell behind it.
pub fn next_edit_after(previous: tokio::time::Instant, period: Duration) -> tokio::time::Instant {
    let next = previous + period;
    let now = tokio::time::Instant::now();
    if next + period < now {
        now
    } else {
        next
    }
}
