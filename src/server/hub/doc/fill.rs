//! Owns filling a gap in a document's offsets from the store: the updates
//! after the last one applied here are read (a read, never a writer job)
//! and delivered in order, the held ones following; when the store no
//! longer keeps the rows (compacted away), the document is reloaded whole
//! and its subscribers renewed. One task per gap, spawned by whoever found
//! it, outside any hub lock and off the commit path.

use std::time::Duration;

use crate::protocol::Channel;
use crate::server::hub::{Delivery, Hub, DOC_HISTORY};
use crate::server::store::Store;

/// Updates read per page.
const PAGE: usize = 256;
/// How long to wait before reading again after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// Fills the gap before the updates `channel` holds back, reading the store
/// until nothing waits any more (or the document left memory). A store
/// that fails is tried again every [`RETRY`]: nothing is skipped meanwhile,
/// and the document goes on as it was.
pub async fn fill(hub: Hub, store: Store, channel: Channel) {
    let Channel::Doc(id) = &channel else {
        return;
    };
    loop {
        let Some(latest) = hub.doc_latest(&channel) else {
            return;
        };
        let page = match store.doc_updates_after(id.clone(), latest, PAGE).await {
            Ok(page) => page,
            Err(err) => {
                tracing::error!(%err, %channel, "cannot fill a document's gap from the store; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let full = page.len() == PAGE;
        if page.first().is_some_and(|first| first.offset > latest + 1) {
            // Compacted away: the document comes back whole.
            match store.load_doc(id.clone(), DOC_HISTORY).await {
                Ok(stored) => hub.reinstall_doc(&channel, stored),
                Err(err) => {
                    tracing::error!(%err, %channel, "cannot reload a document; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
            continue;
        }
        for event in &page {
            if let Delivery::NotHeld = hub.deliver_doc(event) {
                return;
            }
        }
        if full {
            continue;
        }
        if !hub.doc_filled(&channel) {
            return;
        }
        if page.is_empty() {
            // Held updates wait behind offsets the store did not show yet
            // (a commit not visible to this read): read again shortly.
            tokio::time::sleep(RETRY).await;
        }
    }
}
