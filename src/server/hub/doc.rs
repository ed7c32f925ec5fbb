//! Owns one shared document in memory (a `doc:{id}` channel): the yrs
//! document every committed update is applied to, its size against the 1 MiB
//! limit, the recent update frames kept for resume, and the awareness states
//! of who is editing where (relayed, never stored).
//!
//! Memory holds only what the store committed: a client's update is checked
//! against the committed document without changing it, and applied only
//! once its commit is published, in offset order (`order.rs`, `publish.rs`;
//! a gap is filled from the store by `fill.rs`), so a live replica always
//! equals a fresh snapshot and a fresh load.
//!
//! Everything a client sends is pre-scanned (`scan.rs`: every count bounded
//! by the bytes that follow it) and checked against the document
//! (`admission.rs`: it integrates fully, nothing stays pending) before yrs
//! decodes or applies it; a panic inside yrs (it asserts on some impossible
//! inputs in debug builds) is caught and answered as a malformed update,
//! never taken down the server. Awareness is decoded and checked on the
//! connection's task (`awareness.rs`), never under the channel's lock.

pub mod admission;
pub mod awareness;
mod lib0;
pub mod scan;

pub(super) mod channel;
mod fill;
mod order;
mod publish;

use axum::extract::ws::Utf8Bytes;
use std::panic::{catch_unwind, AssertUnwindSafe};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update, WriteTxn};

use admission::Refusal;
use awareness::{Editors, Entries};

use super::ring::Ring;
use super::SubscriberId;
use crate::protocol::UserRef;
pub use fill::fill;
use order::Order;
pub(super) use publish::{accept, after_reload};
pub use publish::{DocPublished, Reservation};

/// The largest a document's state may grow (PROTOCOL.md Limits), in bytes
/// of its encoded Yjs state.
pub const MAX_DOC_BYTES: usize = 1024 * 1024;
/// How much an update may grow the encoded state, per byte of its own, in
/// the estimate (splitting a run with deletions costs an item header each;
/// measured: about 2 to 3).
const GROWTH: usize = 4;
/// How many updates may be applied between two exact measures of the state
/// (below half the limit; above it, every update is measured).
const MEASURE_EVERY: usize = 64;
/// Updates a document keeps in memory for resume (older ones: the snapshot).
pub const DOC_HISTORY: usize = 1000;
/// A document is compacted (its update log folded into its state) after
/// this many updates, or [`COMPACT_BYTES`] of them, whichever comes first.
pub const COMPACT_EVERY: u64 = 500;
/// See [`COMPACT_EVERY`].
pub const COMPACT_BYTES: usize = 256 * 1024;
/// The longest awareness state one client may announce, in bytes of JSON.
pub const MAX_AWARENESS_STATE: usize = 4096;
/// How many awareness client ids one connection may announce in a document
/// (a page has one; a few allow for reloads sharing a connection).
pub const MAX_CLIENTS_PER_CONNECTION: usize = 8;

/// Why an update or awareness update was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("update: not a Yjs v1 update ({0})")]
    Malformed(String),
    #[error("update: the document would grow past {MAX_DOC_BYTES} bytes")]
    TooLarge,
    #[error("update: not a y-protocols awareness update ({0})")]
    BadAwareness(String),
    #[error(
        "update: it follows an update of Yjs client {0} this document has not received; send that one first (updates of one client in order)"
    )]
    Gap(u64),
    /// Like `Gap`, while the document waits for updates committed elsewhere
    /// (a fill from the store is under way): the missing update may be one
    /// already acknowledged and held here, so this is "later", not "never".
    #[error("update: this document is catching up with updates committed elsewhere; send it again in a moment")]
    CatchingUp,
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// A document in memory.
pub struct DocState {
    pub epoch: String,
    /// The `doc_update` frames of the newest updates, for resume.
    pub ring: Ring<Utf8Bytes>,
    doc: Doc,
    /// An estimate of the encoded state's size: exact after a measure, plus
    /// [`GROWTH`] times every update applied since (one that deletes every
    /// other character of a long run grows the state by more than its own
    /// size), measured again every [`MEASURE_EVERY`] updates.
    size_bound: usize,
    /// Updates applied since the last exact measure.
    since_measure: usize,
    editors: Editors,
    /// The offset the store's compacted state covers.
    pub compacted_upto: u64,
    /// Bytes of updates published since that compaction.
    bytes_since_compaction: usize,
    /// A compaction is under way (at most one per document).
    compacting: bool,
    /// Committed updates waiting for the ones before them (`order.rs`).
    order: Order,
    /// Growth reserved by updates checked and not yet committed or failed
    /// (each [`GROWTH`] times its bytes): counted against the limit, so
    /// updates checked at once cannot pass it together.
    reserved: usize,
}

/// What a check against the committed document decided about an update it
/// let through.
#[derive(Debug, PartialEq, Eq)]
pub enum Fit {
    /// Well below the limit by the estimate.
    Fits,
    /// Near the limit: try it on a copy of `state` (the committed document)
    /// and measure, with `reserved` bytes claimed by others (see [`measure`]).
    Measure { state: Vec<u8>, reserved: usize },
}

/// Whether `update`, tried on a copy of the committed `state` (outside any
/// lock), leaves the document within [`MAX_DOC_BYTES`] with `reserved`
/// bytes claimed by updates checked before it.
pub fn measure(state: &[u8], update: &[u8], reserved: usize) -> Result<(), DocError> {
    let copy = rebuild(state, []);
    apply(&copy, decode_update(update)?)?;
    if encode_state(&copy).len() + reserved > MAX_DOC_BYTES {
        return Err(DocError::TooLarge);
    }
    Ok(())
}

/// Decodes a Yjs v1 update, turning a decoder panic into an error.
pub fn decode_update(bytes: &[u8]) -> Result<Update, DocError> {
    match catch_unwind(|| Update::decode_v1(bytes)) {
        Ok(Ok(update)) => Ok(update),
        Ok(Err(err)) => Err(DocError::Malformed(err.to_string())),
        Err(_) => Err(DocError::Malformed("it cannot be read".into())),
    }
}

/// Applies `update` to `doc`; a yrs error or panic is a malformed update.
/// Whatever yrs could not integrate is dropped and the update refused:
/// nothing may stay pending in a document (admission refuses such updates
/// before they get here; this is the last line).
fn apply(doc: &Doc, update: Update) -> Result<(), DocError> {
    integrate(doc, update)?;
    if prune_pending(doc) {
        tracing::error!("an admitted document update left content pending; dropped it");
        return Err(DocError::Malformed(
            "it refers to content the document does not hold".into(),
        ));
    }
    Ok(())
}

/// Applies `update` to `doc` as yrs does (keeping what it cannot integrate
/// yet as pending).
fn integrate(doc: &Doc, update: Update) -> Result<(), DocError> {
    let applied = catch_unwind(AssertUnwindSafe(|| doc.transact_mut().apply_update(update)));
    match applied {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(DocError::Malformed(err.to_string())),
        Err(_) => Err(DocError::Malformed("it cannot be applied".into())),
    }
}

/// Drops whatever `doc` holds pending (content waiting for content it never
/// received); returns whether there was any.
fn prune_pending(doc: &Doc) -> bool {
    if !doc.transact().has_missing_updates() {
        return false;
    }
    catch_unwind(AssertUnwindSafe(|| doc.transact_mut().prune_pending())).ok();
    true
}

/// The whole state of `doc` as one v1 update.
pub fn encode_state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

/// The text of `doc`'s `Y.Text` named `text` (empty if a client made `text`
/// something else, which yrs may refuse with a panic).
pub fn text_of(doc: &Doc) -> String {
    use yrs::GetString;
    catch_unwind(AssertUnwindSafe(|| {
        let text = doc.get_or_insert_text("text");
        let txn = doc.transact();
        text.get_string(&txn)
    }))
    .unwrap_or_default()
}

/// A document built from a compacted state and the updates after it (the
/// store's rows); an unreadable row is skipped and logged, never fatal.
/// What cannot integrate yet is kept pending here (a compaction folds only a
/// prefix of the log; later rows may complete it); [`DocState::new`] drops
/// what is still pending once the whole log is in.
pub fn rebuild(state: &[u8], updates: impl IntoIterator<Item = Vec<u8>>) -> Doc {
    let doc = Doc::new();
    for bytes in std::iter::once(state.to_vec()).chain(updates) {
        if bytes.is_empty() {
            continue;
        }
        if let Err(err) = decode_update(&bytes).and_then(|update| integrate(&doc, update)) {
            tracing::error!(%err, "a stored document update cannot be applied");
        }
    }
    doc
}

impl DocState {
    /// A document as loaded: `doc` holds every stored update; `ring` the
    /// frames of the newest ones. What is still pending in it (stored by a
    /// server that did not refuse updates which cannot integrate) is
    /// dropped: nothing else can complete it, and it would count toward the
    /// 1 MiB bound unseen.
    pub fn new(epoch: String, ring: Ring<Utf8Bytes>, doc: Doc) -> Self {
        if prune_pending(&doc) {
            tracing::warn!("a stored document held content that cannot integrate; dropped it");
        }
        let size_bound = encode_state(&doc).len();
        DocState {
            epoch,
            ring,
            doc,
            size_bound,
            since_measure: 0,
            editors: Editors::default(),
            compacted_upto: 0,
            bytes_since_compaction: 0,
            compacting: false,
            order: Order::default(),
            reserved: 0,
        }
    }

    /// Replaces the document and its history with the store's (more was
    /// missed than can be replayed), keeping the editors' awareness, the
    /// updates held for after it and the growth reserved.
    pub fn reload(&mut self, epoch: String, ring: Ring<Utf8Bytes>, doc: Doc, compacted_upto: u64) {
        let editors = std::mem::take(&mut self.editors);
        let order = std::mem::take(&mut self.order);
        let reserved = self.reserved;
        *self = DocState::new(epoch, ring, doc);
        self.editors = editors;
        self.order = order;
        self.reserved = reserved;
        self.compacted_upto = compacted_upto;
    }

    /// Counts an update of `bytes` just published at `offset`; returns the
    /// offset to compact up to when a compaction is due (and not under way).
    pub fn compaction_due(&mut self, offset: u64, bytes: usize) -> Option<u64> {
        self.bytes_since_compaction += bytes;
        let due = offset.saturating_sub(self.compacted_upto) >= COMPACT_EVERY
            || self.bytes_since_compaction >= COMPACT_BYTES;
        if !due || self.compacting {
            return None;
        }
        self.compacting = true;
        Some(offset)
    }

    /// The store finished a compaction up to `upto` (`None`: it failed, and
    /// the next update tries again).
    pub fn compacted(&mut self, upto: Option<u64>) {
        self.compacting = false;
        if let Some(upto) = upto.filter(|&upto| upto > self.compacted_upto) {
            self.compacted_upto = upto;
            self.bytes_since_compaction = 0;
        }
    }

    /// Applies an update the store committed, as a fresh load replays it
    /// (an update yrs cannot apply is logged and skipped, as there), and
    /// counts it toward the size estimate.
    pub fn apply_committed(&mut self, bytes: &[u8]) {
        if let Err(err) = decode_update(bytes).and_then(|update| apply(&self.doc, update)) {
            tracing::error!(%err, "a stored document update cannot be applied");
        }
        self.size_bound += GROWTH * bytes.len();
        self.since_measure += 1;
        if self.since_measure >= MEASURE_EVERY {
            self.size_bound = encode_state(&self.doc).len();
            self.since_measure = 0;
        }
    }

    /// Checks a client's update (decoded from `len` bytes) against the
    /// committed document, changing nothing: one that follows an update of
    /// its client the document lacks is refused, and so is one that would
    /// take the state past [`MAX_DOC_BYTES`] with the growth others reserved.
    ///
    /// Below half the limit the size is estimated (see `size_bound`); above
    /// it the answer is [`Fit::Measure`], and the caller tries the update on
    /// a copy ([`measure`]) outside the document's lock. The state encoded
    /// for that copy makes the estimate exact again (only the estimate
    /// changes here).
    pub fn check_update(&mut self, update: &Update, len: usize) -> Result<Fit, DocError> {
        // An update that skips clocks of a client is refused: yrs 0.28 is
        // meant to hold such an update back until the gap is filled, but was
        // seen to lose acknowledged letters that way (pulse-loadgen --mode
        // doc --send-past-retries). A client sends its own updates in order.
        let known = self.doc.transact().state_vector();
        if let Some((client, _)) = update
            .state_vector_lower()
            .iter()
            .find(|(client, lowest)| **lowest > known.get(client))
        {
            if self.order.filling() {
                return Err(DocError::CatchingUp);
            }
            return Err(DocError::Gap(client.get()));
        }
        if self.size_bound + self.reserved + GROWTH * len <= MAX_DOC_BYTES / 2 {
            return Ok(Fit::Fits);
        }
        let state = self.state();
        self.size_bound = state.len();
        self.since_measure = 0;
        Ok(Fit::Measure {
            state,
            reserved: self.reserved,
        })
    }

    /// Claims (or, `false`, gives back) the growth of an update of `len`
    /// bytes between its check and its commit.
    pub fn reserve(&mut self, len: usize, claim: bool) {
        if claim {
            self.reserved += GROWTH * len;
        } else {
            // A document reloaded meanwhile may not hold the claim any more.
            self.reserved = self.reserved.saturating_sub(GROWTH * len);
        }
    }

    /// Checks and, if it passes, applies a client's update at once, as a
    /// commit would (for tests of the checks and the application).
    #[cfg(test)]
    pub fn apply_update(&mut self, bytes: &[u8]) -> Result<(), DocError> {
        let update = decode_update(bytes)?;
        if let Fit::Measure { state, reserved } = self.check_update(&update, bytes.len())? {
            measure(&state, bytes, reserved)?;
        }
        self.apply_committed(bytes);
        Ok(())
    }

    /// The document's state vector (what an update is admitted against).
    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// The whole state, for a snapshot.
    pub fn state(&self) -> Vec<u8> {
        encode_state(&self.doc)
    }

    /// The text of the `Y.Text` named `text` (what the page renders).
    pub fn text(&self) -> String {
        text_of(&self.doc)
    }

    /// Every editor's awareness state, as one awareness update.
    pub fn awareness(&self) -> Vec<u8> {
        self.editors.all()
    }

    /// Takes a connection's checked awareness entries (see
    /// [`Editors::take`]); returns what to relay now, if anything.
    pub fn awareness_from(
        &mut self,
        owner: SubscriberId,
        user: &UserRef,
        entries: Entries,
        relay: bool,
    ) -> Option<Vec<u8>> {
        self.editors.take(owner, user, entries, relay)
    }

    /// Every editor's state as a `doc_awareness` frame of `channel` (`None`
    /// when nobody is editing).
    pub fn awareness_frame(&self, channel: &crate::protocol::Channel) -> Option<Utf8Bytes> {
        if self.editors.is_empty() {
            return None;
        }
        Some(self::channel::awareness_frame(channel, &self.awareness()))
    }

    /// The current states `owner` announced and what it removed since its
    /// last relay, as one update (its paced relay); `None` if nothing.
    pub fn awareness_of(&mut self, owner: SubscriberId) -> Option<Vec<u8>> {
        self.editors.latest_of(owner)
    }

    /// Removes every state `owner` announced (it left or died): the removal
    /// update for the others, or `None` if it had none.
    pub fn remove_editor(&mut self, owner: SubscriberId) -> Option<Vec<u8>> {
        self.editors.remove_owner(owner)
    }
}

#[cfg(test)]
mod tests;
