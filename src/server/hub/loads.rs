//! Owns loading a document into the hub beside the store's writer. A load
//! reads one snapshot of the store (a read, so it never waits for a write);
//! whatever is committed after that snapshot is published while the load
//! runs, so the hub keeps every update published for a document with a load
//! under way (bounded) and the load applies those after its snapshot before
//! it installs the document: nothing committed around a load is lost or
//! applied twice, as when loading was a writer job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{
    doc::accept, frames, lock, ChannelState, DocState, History, Hub, Ring, Subscriber, SubscriberId,
};
use crate::protocol::{Channel, DocUpdateEvent, ServerMessage};
use crate::server::store::{Store, StoreError, StoredDoc};

/// The most updates kept for the loads of one document under way.
pub const LOAD_KEPT: usize = super::DOC_HISTORY;
/// The most bytes of updates (as base64) kept for the loads of one document.
pub const LOAD_KEPT_BYTES: usize = 8 * 1024 * 1024;
/// How often a load that was overtaken (more was published while it read
/// than it may keep) reads the store again before it gives up.
const LOAD_ATTEMPTS: usize = 3;

/// Why a document could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("more updates were committed while the document loaded than a load keeps")]
    Overtaken,
}

/// The loads of one document under way, and the updates published since
/// the first of them began, in commit order.
#[derive(Default)]
pub(super) struct Loading {
    loaders: usize,
    kept: Vec<DocUpdateEvent>,
    bytes: usize,
    /// More was published than may be kept: every load under way reads again.
    overtaken: bool,
}

impl Loading {
    fn keep(&mut self, event: &DocUpdateEvent) {
        if self.overtaken {
            return;
        }
        let bytes = self.bytes + event.update.len();
        if self.kept.len() == LOAD_KEPT || bytes > LOAD_KEPT_BYTES {
            self.overtaken = true;
            self.kept = Vec::new();
            self.bytes = 0;
            return;
        }
        self.kept.push(event.clone());
        self.bytes = bytes;
    }
}

/// A load of a document under way: from its creation until it is dropped,
/// the hub keeps what is published for the document.
pub(super) struct DocLoad<'a> {
    hub: &'a Hub,
    channel: Channel,
}

impl Drop for DocLoad<'_> {
    fn drop(&mut self) {
        let mut loads = lock(&self.hub.inner.loads);
        if let Some(loading) = loads.get_mut(&self.channel) {
            loading.loaders -= 1;
            if loading.loaders == 0 {
                loads.remove(&self.channel);
            }
        }
    }
}

impl Hub {
    /// Loads document `channel` from `store` into memory unless it is held.
    /// The store is read beside its writer; what is committed meanwhile is
    /// published meanwhile, kept here, and applied after the snapshot.
    pub async fn load_doc(&self, store: &Store, channel: &Channel) -> Result<(), LoadError> {
        let Channel::Doc(id) = channel else {
            return Ok(());
        };
        for _ in 0..LOAD_ATTEMPTS {
            if self.has(channel) {
                return Ok(());
            }
            // Before the read: whatever its snapshot lacks is published later.
            let load = self.doc_load(channel);
            let stored = store.load_doc(id.clone(), super::DOC_HISTORY).await?;
            if self.install_loaded(&load, stored) {
                return Ok(());
            }
        }
        Err(LoadError::Overtaken)
    }

    /// Starts keeping what is published for `channel` until the load drops.
    pub(super) fn doc_load(&self, channel: &Channel) -> DocLoad<'_> {
        lock(&self.inner.loads)
            .entry(channel.clone())
            .or_default()
            .loaders += 1;
        DocLoad {
            hub: self,
            channel: channel.clone(),
        }
    }

    /// Keeps a committed update for the loads of its document under way.
    /// Called before the update is delivered to the document in memory, and
    /// never under the channel map's lock.
    pub(super) fn keep_for_loads(&self, channel: &Channel, event: &DocUpdateEvent) {
        if let Some(loading) = lock(&self.inner.loads).get_mut(channel) {
            loading.keep(event);
        }
    }

    /// Installs what `load` read, with the updates published since its
    /// snapshot applied (unless the document is held already: that one is
    /// newer). False when the load was overtaken and must read again.
    pub(super) fn install_loaded(&self, load: &DocLoad<'_>, stored: StoredDoc) -> bool {
        let channel = &load.channel;
        let mut doc = Some(doc_state(stored));
        let mut seen = 0;
        let no_one: HashMap<SubscriberId, Arc<dyn Subscriber>> = HashMap::new();
        loop {
            // Applied outside every lock: decoding never holds others up.
            let Some(newer) = self.kept_since(channel, seen) else {
                return false;
            };
            seen += newer.len();
            let held = doc.as_mut().expect("installed only below");
            for event in &newer {
                // Older ones are in the snapshot; one after a gap (another
                // instance's commit) is left to the document's gap handling.
                if event.offset == held.ring.latest() + 1 {
                    accept(held, &no_one, event.clone());
                }
            }
            let installed = self.counted(|channels| {
                if channels.contains_key(channel) {
                    return Some(true);
                }
                let loads = lock(&self.inner.loads);
                let loading = loads.get(channel).expect("kept while loading");
                if loading.overtaken {
                    return Some(false);
                }
                if loading.kept.len() > seen {
                    return None;
                }
                let history = History::Doc(doc.take().expect("installed once"));
                let state = ChannelState::new(channel, history);
                channels.insert(channel.clone(), Arc::new(Mutex::new(state)));
                Some(true)
            });
            if let Some(installed) = installed {
                return installed;
            }
        }
    }

    /// The updates kept for `channel`'s loads from the `seen`th on; `None`
    /// when the loads were overtaken.
    fn kept_since(&self, channel: &Channel, seen: usize) -> Option<Vec<DocUpdateEvent>> {
        let loads = lock(&self.inner.loads);
        let loading = loads.get(channel).expect("kept while loading");
        (!loading.overtaken).then(|| loading.kept[seen..].to_vec())
    }
}

/// A document as loaded from the store, ready for the hub.
pub(super) fn doc_state(stored: StoredDoc) -> DocState {
    let base = stored.latest - stored.recent.len() as u64;
    let mut ring = Ring::after_offset(super::DOC_HISTORY, base);
    for event in stored.recent {
        ring.push(frames::encode(ServerMessage::DocUpdate(event)));
    }
    let mut doc = DocState::new(stored.epoch, ring, stored.doc);
    doc.compacted_upto = stored.compacted_upto;
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::UserRef;
    use crate::server::metrics::Metrics;
    use base64::Engine as _;
    use std::time::Duration;
    use yrs::{ReadTxn, Text, Transact};

    fn hub() -> Hub {
        Hub::new(Arc::new(Metrics::default()), Duration::from_millis(50))
    }

    fn plans() -> Channel {
        Channel::Doc("plans".into())
    }

    /// The update `offset` of `doc:plans` carrying `update` (base64).
    fn event(offset: u64, update: String) -> DocUpdateEvent {
        DocUpdateEvent {
            channel: "doc:plans".parse().unwrap(),
            offset,
            doc: "plans".into(),
            update,
            user: UserRef {
                id: "ann".into(),
                name: "Ann".into(),
            },
        }
    }

    /// An editor's replica: types at the end and returns the update (base64).
    fn type_(doc: &yrs::Doc, what: &str) -> String {
        let before = doc.transact().state_vector();
        let text = doc.get_or_insert_text("text");
        let end = text.len(&doc.transact());
        text.insert(&mut doc.transact_mut(), end, what);
        let update = doc.transact().encode_state_as_update_v1(&before);
        base64::engine::general_purpose::STANDARD.encode(update)
    }

    /// The document as the store read it: `doc`'s state at offset `latest`.
    fn stored(doc: &yrs::Doc, latest: u64) -> StoredDoc {
        let state = super::super::encode_state(doc);
        StoredDoc {
            epoch: "stored".into(),
            latest,
            recent: Vec::new(),
            doc: super::super::rebuild(&state, []),
            compacted_upto: latest,
        }
    }

    /// Updates committed after a load's snapshot are published while it
    /// runs: the load applies them (and only them) before it installs the
    /// document, and their own delivery after the install changes nothing.
    #[test]
    fn updates_published_while_a_document_loads_follow_its_snapshot() {
        let hub = hub();
        let editor = yrs::Doc::with_client_id(7);
        let first = event(1, type_(&editor, "one "));
        let snapshot = stored(&editor, 1);
        let load = hub.doc_load(&plans());
        let second = event(2, type_(&editor, "two "));
        let third = event(3, type_(&editor, "three"));
        // The first was committed before the snapshot, published after it.
        for published in [&first, &second, &third] {
            let published = hub.publish_doc(published);
            assert_eq!((published.compact_upto, published.fill), (None, false));
        }
        assert!(!hub.has(&plans()), "nothing held before the install");
        assert!(hub.install_loaded(&load, snapshot));
        drop(load);
        assert_eq!(hub.doc_text(&plans()).as_deref(), Some("one two three"));
        assert_eq!(hub.latest(&plans()), 3);
        // Delivered once more after the install (its publish had kept it
        // for the load first): known, nothing changes.
        hub.publish_doc(&third);
        assert_eq!(hub.latest(&plans()), 3);
        hub.publish_doc(&event(4, type_(&editor, "!")));
        assert_eq!(hub.doc_text(&plans()).as_deref(), Some("one two three!"));
        assert!(
            lock(&hub.inner.loads).is_empty(),
            "nothing kept after the load"
        );
    }

    /// A load keeps at most `LOAD_KEPT` updates: at the bound it installs,
    /// one past it the load is overtaken and must read the store again.
    #[test]
    fn a_load_keeps_up_to_its_bound_and_is_overtaken_past_it() {
        // An update of nothing: valid, and small.
        let nothing = || "AAA=".to_owned();
        for (published, installs) in [(LOAD_KEPT, true), (LOAD_KEPT + 1, false)] {
            let hub = hub();
            let load = hub.doc_load(&plans());
            for offset in 1..=published as u64 {
                hub.publish_doc(&event(offset, nothing()));
            }
            let empty = yrs::Doc::new();
            assert_eq!(hub.install_loaded(&load, stored(&empty, 0)), installs);
            assert_eq!(hub.has(&plans()), installs);
            if installs {
                assert_eq!(hub.latest(&plans()), published as u64);
            }
        }
    }

    /// The bytes kept are bounded too (`LOAD_KEPT_BYTES`).
    #[test]
    fn a_load_is_overtaken_past_its_bytes() {
        let hub = hub();
        let load = hub.doc_load(&plans());
        let big = "A".repeat(LOAD_KEPT_BYTES / 2);
        hub.publish_doc(&event(1, big.clone()));
        hub.publish_doc(&event(2, big.clone()));
        assert!(!lock(&hub.inner.loads)[&plans()].overtaken, "at the bound");
        hub.publish_doc(&event(3, "AAA=".into()));
        assert!(lock(&hub.inner.loads)[&plans()].overtaken, "past it");
        assert!(!hub.install_loaded(&load, stored(&yrs::Doc::new(), 0)));
    }
}
