//! Owns which documents stay in memory after their last subscriber left:
//! the [`WARM_DOCS`] released most recently. A client that sends updates to
//! a document nobody subscribes to, or subscribes to one and leaves it again
//! and again, then costs no reload from the store each time. A warm document
//! is held like any other (what is published reaches it, so it stays
//! current); past the bound the one released longest ago is dropped, if
//! still nobody subscribes to it. At most `WARM_DOCS` × 1 MiB of state.

use std::collections::VecDeque;

use crate::protocol::Channel;

/// How many documents nobody subscribes to stay in memory.
pub const WARM_DOCS: usize = 4;

/// Documents released, oldest first (one may have been subscribed to again
/// since: it is not dropped then, only forgotten here).
#[derive(Default)]
pub(super) struct Warm {
    released: VecDeque<Channel>,
}

impl Warm {
    /// `channel` lost its last subscriber: it is the newest warm document.
    /// Returns those now past the bound, oldest first, to drop unless
    /// someone subscribes to them again.
    pub(super) fn released(&mut self, channel: &Channel) -> Vec<Channel> {
        self.released.retain(|warm| warm != channel);
        self.released.push_back(channel.clone());
        let past = self.released.len().saturating_sub(WARM_DOCS);
        self.released.drain(..past).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(n: usize) -> Channel {
        Channel::Doc(format!("d{n}"))
    }

    #[test]
    fn the_bound_keeps_the_newest_and_a_document_released_again_is_newest() {
        let mut warm = Warm::default();
        for n in 0..WARM_DOCS {
            assert!(warm.released(&doc(n)).is_empty(), "within the bound");
        }
        assert_eq!(warm.released(&doc(0)), Vec::<Channel>::new());
        assert_eq!(warm.released(&doc(WARM_DOCS)), vec![doc(1)], "one past it");
    }

    /// In the hub: the last `WARM_DOCS` documents released stay in memory,
    /// one past the bound drops the one released longest ago, and a warm
    /// document someone subscribes to again is never dropped under them.
    #[tokio::test]
    async fn the_hub_keeps_the_last_documents_released_warm() {
        use crate::server::hub::Hub;
        use crate::server::store::StoredDoc;
        let note = || StoredDoc {
            epoch: "stored".into(),
            latest: 0,
            recent: Vec::new(),
            doc: yrs::Doc::new(),
            compacted_upto: 0,
        };
        use crate::server::metrics::Metrics;
        use crate::server::ws::outbox::Outbox;
        let hub = Hub::new(
            std::sync::Arc::new(Metrics::default()),
            std::time::Duration::from_millis(50),
        );
        let outbox = Outbox::new(1 << 20);
        let docs: Vec<Channel> = (0..=WARM_DOCS).map(doc).collect();
        for channel in &docs {
            hub.install_doc(channel, note());
        }
        for channel in &docs[..WARM_DOCS] {
            hub.subscribe(1, &outbox, channel, None).unwrap();
            hub.unsubscribe(1, channel);
        }
        assert!(docs[..WARM_DOCS].iter().all(|d| hub.has(d)), "at the bound");
        // The oldest is subscribed to again, then one more is released.
        hub.subscribe(1, &outbox, &docs[0], None).unwrap();
        hub.release(&docs[WARM_DOCS]);
        assert!(docs.iter().all(|d| hub.has(d)), "a subscribed one stays");
        // Once it is released too, the one released longest ago goes.
        hub.unsubscribe(1, &docs[0]);
        assert!(!hub.has(&docs[1]), "one past the bound");
        let held = docs.iter().filter(|d| hub.has(d)).count();
        assert_eq!(held, WARM_DOCS);
    }
}
