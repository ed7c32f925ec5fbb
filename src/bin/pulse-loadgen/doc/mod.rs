//! Owns the shared-note run (`--mode doc`, issue 12): `--editors` identified
//! clients each keep a yrs replica of one document (`doc:{--doc}`) and, at
//! `--edit-rate` per second each, insert one letter at a random spot of their
//! own replica and send the update as a `doc_update` with a fresh envelope id;
//! `--readers` more clients only subscribe. Every client applies every
//! `doc_update` it receives to its replica (an editor skips its own copy,
//! which yrs would ignore anyway). A `rate_limited` answer is sent again with
//! the same id after [`RETRY_AFTER`](editor::RETRY_AFTER), and the editor types nothing new until
//! it is acknowledged, so the server receives each editor's updates in order
//! (`--send-past-retries` keeps typing, which the server then receives out
//! of order).
//!
//! An editor has at most `--max-in-flight` updates unacknowledged (it holds
//! further edits meanwhile, so that a slow server gets a bounded backlog). `--edit-at cursor` types after the editor's
//! previous letter (a Yjs relative position), as a person does, instead of
//! at a random spot each time.
//!
//! Editing starts once every client is subscribed and stops after
//! `--total-updates` fresh updates (or `--duration` seconds, or when the
//! server first answers `too_large`: the document is full); the run then
//! waits for the last acks and for every open client to receive every
//! acknowledged offset. Measured:
//! - acknowledged updates per second (the ack comes after the update is on disk);
//! - update-to-peer latency: an editor notes when it first sent each envelope
//!   id; its `ack` maps the update's offset to that moment, and every other
//!   client of this process looks the offset up when the `doc_update` with it
//!   arrives (a receipt that comes before the sender read its ack waits for it);
//! - the sender's send-to-ack time;
//! - the offsets every client saw (gaps, repeats) and whether every replica
//!   ended with the text of a fresh subscriber's snapshot, whose decoded size
//!   is the document's state size.
//!
//! The server's CPU and memory are not read here: `bench/bench.py` samples
//! them over `ramp_up_secs` .. `ramp_up_secs + duration_secs` of this report.
//!
//! Here: the run's shape and its phases (ramp-up, editing, drain, final
//! snapshot). One client is in `client.rs`, an editor's sending and resending
//! in `editor.rs`, joining the document in `join.rs`, the counters every task
//! shares in `shared.rs`, the report in `report.rs`, a yrs replica in
//! `replica.rs` and the send/receipt moments in `timeline.rs`.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pulse::protocol::Channel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::latency::LatencyMs;
use crate::net::{self, CONNECT_TIMEOUT};
use crate::plan::Plan;
use crate::tasks::{self, wait_until, PROGRESS_EVERY};
use client::run_client;
use join::{final_snapshot, SUBSCRIBE_TIMEOUT};
pub use report::DocReport;
use shared::DocShared;

mod client;
mod editor;
mod join;
mod replica;
mod report;
mod shared;
mod timeline;

/// How long the run waits, after editing stopped, for the last acks and for
/// every client to receive every acknowledged update.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// The run's shape, from the flags.
#[derive(Debug, Clone)]
pub struct DocPlan {
    /// The document id (`doc:{doc}`).
    pub doc: String,
    pub editors: u64,
    pub readers: u64,
    /// Fresh updates per second per editor.
    pub edit_rate: f64,
    /// Editing stops after this many fresh updates (all editors together).
    pub total_updates: Option<u64>,
    /// Editing stops after this long in any case.
    pub duration: Duration,
    /// Keep sending fresh updates while a refused one waits for its resend.
    pub send_past_retries: bool,
    /// Updates one editor may have sent and not seen acknowledged.
    pub max_in_flight: usize,
    /// Where editors type.
    pub edit_at: EditAt,
    /// New connections per second while ramping up.
    pub connect_rate: u32,
}

impl DocPlan {
    fn clients(&self) -> u64 {
        self.editors + self.readers
    }

    fn channel(&self) -> String {
        Channel::Doc(self.doc.clone()).to_string()
    }
}

/// Where an editor types each letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EditAt {
    /// At a random spot of its replica, every time (the worst case for the
    /// document's size: no two letters merge into one Yjs item).
    Random,
    /// Right after its previous letter, like someone typing (from a random
    /// first spot); runs of letters merge into one Yjs item.
    Cursor,
}

/// Distinct random 32-bit Yjs client ids, one per editor (a browser's Yjs
/// draws its client id the same way).
fn editor_client_ids(editors: u64, rng: &mut StdRng) -> Vec<u64> {
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    while (ids.len() as u64) < editors {
        let id = u64::from(rng.random::<u32>());
        if seen.insert(id) {
            ids.push(id);
        }
    }
    ids
}

/// Prints the counters to stderr every [`PROGRESS_EVERY`].
fn spawn_progress(shared: Arc<DocShared>, clients: u64, started: Instant) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PROGRESS_EVERY);
        interval.tick().await;
        let (mut last_at, mut last_acked, mut last_received) = (Instant::now(), 0, 0);
        loop {
            interval.tick().await;
            let now = Instant::now();
            let (acked, received) = (shared.acked.load(Relaxed), shared.received.load(Relaxed));
            let secs = now.duration_since(last_at).as_secs_f64();
            eprintln!(
                "[{:>4}s] doc: subscribed {}/{clients}, acked {acked} ({:.0}/s), \
                 received {:.0}/s, in flight {}, lagging {}",
                started.elapsed().as_secs(),
                shared.subscribed.load(Relaxed),
                (acked - last_acked) as f64 / secs,
                (received - last_received) as f64 / secs,
                shared.in_flight(),
                shared.lagging(),
            );
            (last_at, last_acked, last_received) = (now, acked, received);
        }
    })
}

/// Runs the whole shared-note scenario and returns its report.
pub async fn run(plan: Arc<Plan>, doc: DocPlan, interrupted: CancellationToken) -> DocReport {
    let doc = Arc::new(doc);
    let clients = doc.clients();
    let run_id: u32 = rand::random();
    let mut rng = StdRng::seed_from_u64(u64::from(run_id));
    let client_ids = editor_client_ids(doc.editors, &mut rng);
    let shared = Arc::new(DocShared::new(clients, doc.total_updates, interrupted));
    let started = Instant::now();
    let progress = spawn_progress(Arc::clone(&shared), clients, started);

    let stop = shared.stop.clone();
    let handles = tasks::launch_paced(clients, doc.connect_rate, &stop, |index| {
        let client_id = usize::try_from(index)
            .ok()
            .and_then(|i| client_ids.get(i))
            .copied();
        tokio::spawn(run_client(
            index,
            client_id,
            run_id,
            Arc::clone(&plan),
            Arc::clone(&doc),
            Arc::clone(&shared),
        ))
    })
    .await;
    let ramp_limit = Duration::from_secs_f64(clients as f64 / f64::from(doc.connect_rate))
        + CONNECT_TIMEOUT * 2
        + SUBSCRIBE_TIMEOUT;
    wait_until(&shared.stop, ramp_limit, || {
        shared.subscribed.load(Relaxed) + shared.failed.load(Relaxed) >= clients
    })
    .await;

    let ramp_up = started.elapsed();
    let editing_from = Instant::now();
    let _ = shared.started.set(editing_from);
    shared.editing.cancel();
    let editors = (0..doc.editors)
        .filter_map(|index| shared.positions.get(usize::try_from(index).ok()?))
        .filter(|position| position.open.load(Relaxed))
        .count() as u64;
    wait_until(&shared.stop, doc.duration, || {
        let all_stopped = shared.editors_stopped.load(Relaxed) >= editors;
        all_stopped
            || shared
                .total
                .is_some_and(|total| shared.reserved.load(Relaxed) >= total)
    })
    .await;
    shared.stop_editing.cancel();
    let drained = || shared.in_flight() == 0 && shared.lagging() == 0;
    wait_until(&shared.stop, DRAIN_LIMIT, drained).await;
    let drained_in_time = drained();
    let window = editing_from.elapsed();
    let final_snapshot = if shared.stop.is_cancelled() {
        None
    } else {
        Some(final_snapshot(&plan, &doc, run_id).await)
    };
    let was_interrupted = shared.stop.is_cancelled();
    shared.stop.cancel();

    let edit_secs = shared.last_ack_micros.load(Relaxed) as f64 / 1e6;
    let acked = shared.acked.load(Relaxed);
    let received = shared.received.load(Relaxed);
    let mut report = DocReport {
        mode: "doc",
        url: plan.url.clone(),
        channel: doc.channel(),
        editors: doc.editors,
        readers: doc.readers,
        edit_rate: doc.edit_rate,
        offered_per_sec: doc.edit_rate * doc.editors as f64,
        total_updates: doc.total_updates,
        send_past_retries: doc.send_past_retries,
        max_in_flight: doc.max_in_flight,
        edit_at: Some(doc.edit_at),
        editors_stopped: shared.editors_stopped.load(Relaxed),
        full_at_acked: shared.full_at_acked.get().copied(),
        subscribed: shared.subscribed.load(Relaxed),
        ramp_up_secs: ramp_up.as_secs_f64(),
        edit_secs,
        duration_secs: window.as_secs_f64(),
        drained: drained_in_time,
        updates_sent: shared.sent.load(Relaxed),
        resends: shared.resends.load(Relaxed),
        acked,
        refused: shared.refused.load(Relaxed),
        abandoned: shared.abandoned.load(Relaxed),
        acked_per_sec: if edit_secs > 0.0 {
            acked as f64 / edit_secs
        } else {
            0.0
        },
        received,
        received_per_sec: received as f64 / window.as_secs_f64().max(1e-9),
        final_snapshot,
        interrupted: was_interrupted,
        ..DocReport::default()
    };
    {
        let timeline = shared.timeline();
        report.update_to_peer_ms = LatencyMs::from_histogram(&timeline.to_peer);
        report.ack_ms = LatencyMs::from_histogram(&timeline.to_ack);
        report.unmatched_receipts = timeline.unmatched();
    }
    let grace = net::CLOSE_TIMEOUT + Duration::from_secs(2);
    let (outcomes, unfinished) = tasks::join_within(handles, grace).await;
    report.unfinished_clients = unfinished;
    for outcome in outcomes {
        report.add(outcome);
    }
    progress.abort();
    report
}
