//! `doc_update` and `doc_awareness`: a shared document's edits and who is
//! editing where. An update is charged against the rate first, then
//! pre-scanned (every count bounded by its bytes), admitted only if it
//! integrates fully into the committed document (else `invalid`), decoded
//! and checked with yrs against it before it is stored, changing nothing
//! (one that would pass 1 MiB is `too_large`), stored exactly once per
//! envelope id, and only then applied in memory, acknowledged and published,
//! in commit order (a gap before it is filled from the store); the document
//! is compacted in the background when due. A duplicate or a failed append
//! leaves memory as it was. Awareness is charged against its pace, then
//! decoded here (never under the hub's lock), stamped with the connection's
//! identity, relayed at most 10 times a second — removals too, folded into
//! the next relay — and never stored.

use base64::Engine as _;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use super::subscribe::install;
use super::Connection;
use crate::protocol::{
    Ack, Channel, DocAwarenessRequest, DocUpdateRequest, ErrorBody, ErrorCode, ServerMessage,
};
use crate::server::frames;
use crate::server::hub::{
    decode_awareness, fill_doc, measure_doc_update, scan_update, DocError, Fit, Hub, Refusal,
    Reservation, SubscribeError, SubscriberId, UpdateShape,
};
use crate::server::store::{DocAppended, DocDraft, Store};

/// Document updates a connection may send per second, on average (a fast
/// typist makes about ten; a paste is one).
pub const DOC_RATE: f64 = 30.0;
/// Document updates a connection may send in a burst (an outbox replayed
/// after a reconnect).
pub const DOC_BURST: f64 = 60.0;
/// The least time between two awareness relays of one connection
/// (PROTOCOL.md Limits: at most 10 a second).
pub const AWARENESS_INTERVAL: Duration = Duration::from_millis(100);
/// How often an update is retried when its document was dropped from
/// memory between its load and its application.
const LOAD_ATTEMPTS: usize = 3;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One connection's awareness pace: relays at most every
/// [`AWARENESS_INTERVAL`]; what arrives faster is kept in the hub and the
/// latest relayed by one delayed flush.
#[derive(Default, Clone)]
pub struct AwarenessPace {
    inner: Arc<Mutex<PaceState>>,
}

#[derive(Default)]
struct PaceState {
    last_relay: Option<Instant>,
    /// Documents whose latest states the scheduled flush will relay.
    pending: BTreeSet<Channel>,
}

impl AwarenessPace {
    fn state(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether an awareness update of `channel` arriving `now` may be
    /// relayed at once; if not, it is kept for the flush and `Some(at)` says
    /// when to schedule one (`None` when one is scheduled already).
    fn admit(&self, channel: &Channel, now: Instant) -> Result<(), Option<Instant>> {
        let mut state = self.state();
        if state.pending.is_empty() {
            match state.last_relay {
                Some(last) if now < last + AWARENESS_INTERVAL => {
                    state.pending.insert(channel.clone());
                    Err(Some(last + AWARENESS_INTERVAL))
                }
                _ => {
                    state.last_relay = Some(now);
                    Ok(())
                }
            }
        } else {
            state.pending.insert(channel.clone());
            Err(None)
        }
    }

    /// Relays, at `at`, the latest states of every document kept meanwhile.
    async fn flush(self, at: Instant, hub: Hub, owner: SubscriberId) {
        tokio::time::sleep_until(at).await;
        let pending = {
            let mut state = self.state();
            state.last_relay = Some(Instant::now());
            std::mem::take(&mut state.pending)
        };
        for channel in pending {
            hub.relay_awareness(&channel, owner);
        }
    }
}

impl Connection {
    /// Checked, stored (exactly once per envelope id), then applied in
    /// memory, acknowledged to the sender and published to the document's
    /// subscribers in commit order (the sender gets its `ack` before its own
    /// copy). What is not committed never reaches memory.
    pub(super) async fn doc_update(&mut self, request: DocUpdateRequest, id: Option<String>) {
        let fail = |code, message: &str| ErrorBody::new(code, message).with_id(id.clone());
        let (user, client_id) = match self.author("doc_update", &id) {
            Ok(author) => author,
            Err(body) => return self.send_error(body),
        };
        // Charged before anything is decoded: garbage costs a token too.
        if !self.doc_bucket.try_take(Instant::now().into_std()) {
            let message =
                format!("doc_update: at most {DOC_RATE} updates per second; wait a moment");
            return self.resend_or_limited(&user, client_id, message).await;
        }
        let (channel, update) = match doc_request(&request.doc, &request.update) {
            Ok(request) => request,
            Err(body) => return self.send_error(body.with_id(id)),
        };
        // Garbage is refused before the document is even loaded, and yrs
        // reads only what the pre-scan bounded.
        if update.is_empty() {
            return self.send_error(fail(ErrorCode::Invalid, "update: empty"));
        }
        let shape = match scan_update(&update) {
            Ok(shape) => shape,
            Err(err) => {
                let message = Refusal::from(err).to_string();
                return self.send_error(fail(ErrorCode::Invalid, &message));
            }
        };
        if let Err(err) = crate::server::hub::decode_update(&update) {
            return self.send_error(fail(ErrorCode::Invalid, &err.to_string()));
        }
        // A resend is acked with its first place and never stored again: an
        // id already stored may come back with other bytes (a client reusing
        // ids). One sent twice at once passes here twice; the store keeps
        // one, and only what it keeps reaches memory.
        let (user_id, resent) = (user.id.clone(), client_id.clone());
        let store = self.context.store.clone();
        let stored = self
            .wait(async move { store.sent(user_id, resent).await })
            .await;
        let store = self.context.store.clone();
        if let Ok(Some((channel, offset))) = stored {
            return self.send(ServerMessage::Ack(Ack::stored(client_id, channel, offset)));
        }
        let reservation = match self.check_doc_update(&channel, &update, &shape).await {
            Ok(reservation) => reservation,
            Err(body) => return self.send_error(body.with_id(id)),
        };
        let (hub, outbox) = (self.context.hub.clone(), self.outbox.clone());
        let runtime = tokio::runtime::Handle::current();
        let acked = client_id.clone();
        let draft = DocDraft {
            doc: request.doc,
            user,
            client_id: client_id.clone(),
            update,
        };
        let background = store.clone();
        let stored = self
            .wait(async move {
                store
                    .append_doc(draft, move |appended| {
                        let DocAppended::New(event) = appended else {
                            return;
                        };
                        let ack = Ack::stored(acked, event.channel.clone(), event.offset);
                        let _ = outbox.push(frames::encode(ServerMessage::Ack(ack)));
                        // Memory takes the update here, as committed.
                        let published = hub.publish_doc(event);
                        if let Some(upto) = published.compact_upto {
                            let compaction =
                                compact(hub.clone(), background.clone(), event.doc.clone(), upto);
                            runtime.spawn(compaction);
                        }
                        if published.fill {
                            let channel = Channel::Doc(event.doc.clone());
                            runtime.spawn(fill_doc(hub, background, channel));
                        }
                    })
                    .await
            })
            .await;
        drop(reservation);
        // A document nobody subscribes to leaves memory again (it is all on
        // disk): sending updates to many documents costs no memory.
        self.context.hub.release(&channel);
        match stored {
            // Acked at the commit, above.
            Ok(DocAppended::New(_)) => {}
            Ok(DocAppended::Duplicate { channel, offset }) => {
                self.send(ServerMessage::Ack(Ack::stored(client_id, channel, offset)));
            }
            Err(err) => {
                tracing::error!(%err, "cannot store a document update");
                self.send_error(fail(
                    ErrorCode::Internal,
                    "doc_update: the update could not be stored; send it again",
                ));
            }
        }
    }

    /// Loads the document if needed, admits `update` (of `shape`: it
    /// integrates fully) and checks it against the document, changing
    /// nothing; returns the growth it reserved until its commit.
    async fn check_doc_update(
        &mut self,
        channel: &Channel,
        update: &[u8],
        shape: &UpdateShape,
    ) -> Result<Reservation, ErrorBody> {
        let refused = |err: DocError| match err {
            DocError::TooLarge => ErrorBody::new(ErrorCode::TooLarge, err.to_string()),
            // Transient: a client sends it again later, as after a failed store.
            DocError::CatchingUp => ErrorBody::new(ErrorCode::Internal, err.to_string()),
            err => ErrorBody::new(ErrorCode::Invalid, err.to_string()),
        };
        let mut checked = None;
        for _ in 0..LOAD_ATTEMPTS {
            let (hub, store) = (self.context.hub.clone(), self.context.store.clone());
            if let Err(err) = self.wait(install(hub, store, channel.clone())).await {
                tracing::error!(%err, %channel, "cannot load a document");
                let message = format!("{channel}: the document could not be loaded; try again");
                return Err(ErrorBody::new(ErrorCode::Internal, message));
            }
            // Admitted against the document's state vector (read under its
            // lock, checked after it is released), then decoded here,
            // outside the lock (a yrs update is not `Send`: it is never held
            // across an await), and checked against the committed document.
            let hub = &self.context.hub;
            let checked_now = hub.admit_doc_update(channel, shape).and_then(|admitted| {
                match admitted.and_then(|()| crate::server::hub::decode_update(update)) {
                    Ok(decoded) => hub.check_doc_update(channel, &decoded, update.len()),
                    Err(err) => Ok(Err(err)),
                }
            });
            match checked_now {
                Ok(Ok(fit)) => {
                    checked = Some(fit);
                    break;
                }
                Ok(Err(err)) => return Err(refused(err)),
                // Dropped between the load and now (its last subscriber left).
                Err(SubscribeError::NotLoaded) => continue,
                Err(err) => {
                    return Err(ErrorBody::new(
                        ErrorCode::NotFound,
                        format!("{channel}: {err}"),
                    ))
                }
            }
        }
        let Some((fit, reservation)) = checked else {
            let message = format!("{channel}: the document could not be loaded; try again");
            return Err(ErrorBody::new(ErrorCode::Internal, message));
        };
        if let Fit::Measure { state, reserved } = fit {
            // Near the limit: tried on a copy, off the runtime's workers and
            // outside the document's lock.
            let update = update.to_vec();
            let measured =
                tokio::task::spawn_blocking(move || measure_doc_update(&state, &update, reserved))
                    .await;
            match measured {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(refused(err)),
                Err(_) => return Err(refused(DocError::Malformed("it cannot be applied".into()))),
            }
        }
        Ok(reservation)
    }

    /// Stamps and relays an awareness update to the document's other
    /// subscribers (paced), and keeps it for their snapshots.
    pub(super) fn doc_awareness(&mut self, request: DocAwarenessRequest, id: Option<String>) {
        let fail = |code, message: &str| ErrorBody::new(code, message).with_id(id.clone());
        let Some(user) = self.user.clone() else {
            return self.send_error(fail(
                ErrorCode::Unauthorized,
                "doc_awareness: only identified users may edit; send hello with a token",
            ));
        };
        let (channel, update) = match doc_request(&request.doc, &request.update) {
            Ok(request) => request,
            Err(body) => return self.send_error(body.with_id(id)),
        };
        if !self.registration.subscriptions.contains(&channel) {
            let message = format!("doc: subscribe to {channel} before sending awareness");
            return self.send_error(fail(ErrorCode::Invalid, &message));
        }
        // Charged against the pace before it is decoded; a paced one is
        // kept for the flush, which is scheduled whatever the decode says.
        let admitted = self.awareness_pace.admit(&channel, Instant::now());
        let hub = &self.context.hub;
        if let Err(Some(at)) = admitted {
            let pace = self.awareness_pace.clone();
            tokio::spawn(pace.flush(at, hub.clone(), self.subscriber));
        }
        let entries = match decode_awareness(&update) {
            Ok(entries) => entries,
            Err(err) => return self.send_error(fail(ErrorCode::Invalid, &err.to_string())),
        };
        if let Err(err) =
            hub.doc_awareness(&channel, self.subscriber, &user, entries, admitted.is_ok())
        {
            self.send_error(fail(ErrorCode::NotFound, &format!("{channel}: {err}")));
        }
    }
}

/// A request's document channel and its update's bytes, or `invalid`.
fn doc_request(doc: &str, update: &str) -> Result<(Channel, Vec<u8>), ErrorBody> {
    let channel = Channel::doc(doc)
        .map_err(|err| ErrorBody::new(ErrorCode::Invalid, format!("doc: {err}")))?;
    let update = BASE64
        .decode(update.as_bytes())
        .map_err(|err| ErrorBody::new(ErrorCode::Invalid, format!("update: not base64 ({err})")))?;
    Ok((channel, update))
}

/// Compacts a document's stored log up to `upto`, then tells the hub.
async fn compact(hub: Hub, store: Store, doc: String, upto: u64) {
    let channel = Channel::Doc(doc.clone());
    let compacted = match store.compact_doc(doc, upto).await {
        Ok(compacted) => Some(compacted),
        Err(err) => {
            tracing::error!(%err, %channel, "cannot compact a document");
            None
        }
    };
    hub.doc_compacted(&channel, compacted);
}
