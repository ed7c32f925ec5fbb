//! Owns one doc-run client from login to close: it joins, then reads and
//! applies every `doc_update` (timing the ones peers sent), hands acks and
//! errors to its editor if it is one, edits on the editor's schedule while
//! editing is on, and records how its socket ended and what its replica
//! holds.

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pulse::protocol::{DocUpdateEvent, ErrorCode, ServerEnvelope, ServerMessage};
use rand::Rng;

use super::editor::{next_edit_after, Editing};
use super::join::{join, Member};
use super::replica::TextPrint;
use super::shared::DocShared;
use super::DocPlan;
use crate::frames::{self, Incoming, ABNORMAL_CLOSE};
use crate::net;
use crate::plan::Plan;

/// What happened to one client.
#[derive(Debug, Default)]
pub struct DocOutcome {
    pub join_error: Option<String>,
    /// The close code when the server (or the network) ended the socket first.
    pub closed_early: Option<u16>,
    /// `error` answers, per code.
    pub errors: BTreeMap<&'static str, u64>,
    pub rate_limited: u64,
    pub received: u64,
    pub gaps: u64,
    pub repeats: u64,
    /// `doc_update`s the replica could not apply, and frames that were not
    /// server envelopes.
    pub bad_updates: u64,
    pub bad_frames: u64,
    /// Acks of ids this editor had no pending update for.
    pub stray_acks: u64,
    /// Edits skipped: a refused update or `--max-in-flight` were unacknowledged.
    pub edits_held: u64,
    /// This editor's updates the server refused for good (its replica holds
    /// them, the server does not).
    pub refused: u64,
    pub text: Option<TextPrint>,
}

/// Takes one text frame's messages: applies `doc_update`s, times peers'
/// updates, and hands acks and errors to the editor.
fn on_messages(
    received_at: Instant,
    messages: Vec<ServerEnvelope>,
    index: usize,
    member: &mut Member,
    editing: Option<&mut Editing>,
    shared: &DocShared,
    outcome: &mut DocOutcome,
) {
    let mut editing = editing;
    for message in messages {
        match message.message {
            ServerMessage::DocUpdate(event) => {
                on_doc_update(event, received_at, index, member, shared, outcome);
            }
            ServerMessage::Ack(ack) => {
                if let Some(editing) = editing.as_deref_mut() {
                    editing.on_ack(ack, shared, outcome);
                } else {
                    outcome.stray_acks += 1;
                }
            }
            ServerMessage::Error(body) => {
                *outcome.errors.entry(body.code.as_str()).or_default() += 1;
                if body.code == ErrorCode::RateLimited {
                    outcome.rate_limited += 1;
                }
                if let Some(editing) = editing.as_deref_mut() {
                    outcome.refused += u64::from(editing.on_error(&body, shared));
                }
            }
            _ => {}
        }
    }
}

/// One `doc_update`: checks its offset, times it unless it is the client's
/// own, and applies it.
fn on_doc_update(
    event: DocUpdateEvent,
    received_at: Instant,
    index: usize,
    member: &mut Member,
    shared: &DocShared,
    outcome: &mut DocOutcome,
) {
    outcome.received += 1;
    shared.received.fetch_add(1, Relaxed);
    if !member.replica.observe(event.offset) {
        return;
    }
    if let Some(position) = shared.positions.get(index) {
        position.last.store(event.offset, Relaxed);
    }
    // An editor's own copy: already in its replica.
    if event.user.name == member.name {
        return;
    }
    shared.timeline().received(event.offset, received_at);
    if member.replica.apply_base64(&event.update).is_err() {
        outcome.bad_updates += 1;
    }
}

/// Reads, applies and (for an editor) edits until the run stops or the
/// socket ends; a socket that ends first leaves its close code in `outcome`.
async fn take_part(
    index: usize,
    member: &mut Member,
    mut editing: Option<Editing>,
    doc: &DocPlan,
    shared: &DocShared,
    outcome: &mut DocOutcome,
) {
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
    let mut edit_timer = pin!(tokio::time::sleep_until(far()));
    let mut retry_timer = pin!(tokio::time::sleep_until(far()));
    let mut started = false;
    let mut editing_over = editing.is_none();
    loop {
        let incoming = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return,
            () = shared.editing.cancelled(), if !started && !editing_over => {
                started = true;
                if let Some(editing) = &mut editing {
                    // A random phase, so that the editors do not send together.
                    let phase = editing.period.mul_f64(editing.rng.random::<f64>());
                    edit_timer.as_mut().reset(tokio::time::Instant::now() + phase);
                }
                continue;
            }
            () = shared.stop_editing.cancelled(), if !editing_over => {
                editing_over = true;
                continue;
            }
            () = &mut edit_timer, if started && !editing_over => {
                let Some(editing) = &mut editing else { continue };
                let deadline = edit_timer.deadline();
                edit_timer.as_mut().reset(next_edit_after(deadline, editing.period));
                if editing.stopped {
                    editing_over = true;
                    continue;
                }
                if editing.held() {
                    outcome.edits_held += 1;
                    continue;
                }
                if !shared.reserve() {
                    editing_over = true;
                    continue;
                }
                if editing.send_fresh(member, &doc.doc, shared).await.is_err() {
                    outcome.closed_early.get_or_insert(ABNORMAL_CLOSE);
                    return;
                }
                continue;
            }
            () = &mut retry_timer => {
                if let Some(editing) = &mut editing {
                    if editing.send_due_retries(&mut member.ws, &doc.doc, shared).await.is_err() {
                        outcome.closed_early.get_or_insert(ABNORMAL_CLOSE);
                        return;
                    }
                    retry_timer.as_mut().reset(editing.next_retry().unwrap_or_else(far));
                } else {
                    retry_timer.as_mut().reset(far());
                }
                continue;
            }
            incoming = frames::next(&mut member.ws) => incoming,
        };
        match incoming {
            Incoming::Messages(received, messages) => {
                on_messages(
                    received.at,
                    messages,
                    index,
                    member,
                    editing.as_mut(),
                    shared,
                    outcome,
                );
                if let Some(due) = editing.as_ref().and_then(Editing::next_retry) {
                    if due < retry_timer.deadline() {
                        retry_timer.as_mut().reset(due);
                    }
                }
            }
            Incoming::Unreadable | Incoming::Binary => outcome.bad_frames += 1,
            Incoming::Closed(code) => {
                outcome.closed_early.get_or_insert(code);
            }
            Incoming::Ping | Incoming::Other => {}
            Incoming::Ended(_) => {
                outcome.closed_early.get_or_insert(ABNORMAL_CLOSE);
                return;
            }
        }
    }
}

/// One client from login to close. Never panics: every failure ends up in
/// the outcome. Client `index` is an editor when below `--editors`.
pub async fn run_client(
    index: u64,
    client_id: Option<u64>,
    run_id: u32,
    plan: Arc<Plan>,
    doc: Arc<DocPlan>,
    shared: Arc<DocShared>,
) -> DocOutcome {
    let editor = index < doc.editors;
    let mut outcome = DocOutcome::default();
    let name = if editor {
        format!("bench-editor-{index}")
    } else {
        format!("bench-reader-{index}")
    };
    let mut member = match join(&plan, &doc, index, name, client_id).await {
        Ok((member, _)) => member,
        Err(err) => {
            outcome.join_error = Some(err.kind());
            shared.failed.fetch_add(1, Relaxed);
            return outcome;
        }
    };
    let slot = usize::try_from(index).unwrap_or(usize::MAX);
    if let Some(position) = shared.positions.get(slot) {
        position.last.store(member.replica.last_offset, Relaxed);
        position.open.store(true, Relaxed);
    }
    shared.subscribed.fetch_add(1, Relaxed);
    let editing = editor.then(|| Editing::new(index, run_id, &doc));
    take_part(slot, &mut member, editing, &doc, &shared, &mut outcome).await;
    if let Some(position) = shared.positions.get(slot) {
        position.open.store(false, Relaxed);
    }
    outcome.gaps = member.replica.gaps;
    outcome.repeats = member.replica.repeats;
    outcome.text = Some(member.replica.fingerprint());
    if outcome.closed_early.is_none() {
        net::close_normally(&mut member.ws).await;
    }
    outcome
}
