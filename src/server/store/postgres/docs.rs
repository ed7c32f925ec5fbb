//! Owns shared documents in PostgreSQL: the log of Yjs updates exactly once
//! per (user, envelope id), the compacted state folding its older rows, and
//! loading a document back into memory. A load is a read (a read-only
//! snapshot on a pooled connection of its own, never a writer job nor under
//! the writers' lock, writing nothing); rebuilding a document (which may
//! take milliseconds for a large one) runs on the blocking pool, never on
//! the task that awaits the database.

use std::sync::Arc;

use base64::Engine as _;
use deadpool_postgres::Transaction;

use super::channels::{self, claim, next_offset, settle_claim};
use super::{from_db, to_db, Postgres};
use crate::protocol::{Channel, DocUpdateEvent, UserRef};
use crate::server::hub::{encode_state, rebuild, DOC_HISTORY};
use crate::server::store::model::{DocAppended, DocDraft, DocRead, StoredDoc};
use crate::server::store::StoreError;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The compacted state of `channel` and the offset it covers (empty, 0 for
/// a document never compacted).
async fn state_row(db: &Transaction<'_>, channel: &str) -> Result<(Vec<u8>, u64), StoreError> {
    let row = db
        .query_opt(
            &db.prepare_cached("SELECT state, upto FROM doc_states WHERE channel = $1")
                .await?,
            &[&channel],
        )
        .await?;
    Ok(row
        .map(|row| (row.get(0), from_db(row.get(1))))
        .unwrap_or_default())
}

/// The stored update rows of `channel` after `offset`, oldest first.
async fn rows_after(
    db: &Transaction<'_>,
    channel: &str,
    offset: u64,
) -> Result<Vec<(u64, UserRef, Vec<u8>)>, StoreError> {
    let rows = db
        .query(
            &db.prepare_cached(
                "SELECT seq, user_id, user_name, update_v1 FROM doc_updates
                 WHERE channel = $1 AND seq > $2 ORDER BY seq",
            )
            .await?,
            &[&channel, &to_db(offset)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                from_db(row.get(0)),
                UserRef {
                    id: row.get(1),
                    name: row.get(2),
                },
                row.get(3),
            )
        })
        .collect())
}

/// The document of `state` with `updates` applied, built off the runtime.
async fn rebuilt(state: Vec<u8>, updates: Vec<Vec<u8>>) -> Result<yrs::Doc, StoreError> {
    Ok(tokio::task::spawn_blocking(move || rebuild(&state, updates)).await?)
}

impl Postgres {
    /// A document's epoch, latest offset, newest `keep` updates and the
    /// document itself, read in one read-only snapshot on a pooled
    /// connection of its own (a compaction is seen whole or not at all) and
    /// rebuilt on the blocking pool with no connection held: a load never
    /// waits for this instance's writer or for the writers' lock all
    /// instances share, and writes nothing (a document nobody wrote to is
    /// read as empty, in the epoch its first update will store).
    pub(crate) async fn load_doc(
        &self,
        doc_id: String,
        keep: usize,
    ) -> Result<StoredDoc, StoreError> {
        let channel = Channel::Doc(doc_id.clone()).to_string();
        let epoch = self.epoch.clone();
        let read = self
            .read(Box::new(move |db| {
                Box::pin(async move {
                    let (epoch, latest) = channels::or_new(db, &channel, &epoch).await?;
                    let (state, upto) = state_row(db, &channel).await?;
                    // The rows kept after a compaction reach back before
                    // `upto` (for resume); the document needs those after it.
                    let rows = rows_after(db, &channel, upto.saturating_sub(keep as u64)).await?;
                    Ok(DocRead {
                        epoch,
                        latest,
                        state,
                        upto,
                        rows,
                    })
                })
            }))
            .await?;
        read.rebuild(doc_id, keep).await
    }

    /// Appends an update with its document's next offset, unless this user
    /// already sent this `client_id`.
    pub(crate) async fn append_doc<F>(
        &self,
        draft: DocDraft,
        on_commit: F,
    ) -> Result<DocAppended, StoreError>
    where
        F: FnOnce(&DocAppended) + Send + 'static,
    {
        let epoch = self.epoch.clone();
        self.write(
            Box::new(move |db| Box::pin(append(db, draft, epoch))),
            move |appended| {
                on_commit(&appended);
                appended
            },
        )
        .await
    }

    /// Folds the log of `doc_id` up to `upto` into its stored state and
    /// deletes the rows no resume needs (all but the newest
    /// [`DOC_HISTORY`]). The fold reads one snapshot on a connection of its
    /// own; only the swap is a writer job.
    pub(crate) async fn compact_doc(&self, doc_id: String, upto: u64) -> Result<u64, StoreError> {
        let channel = Channel::Doc(doc_id).to_string();
        let name = channel.clone();
        let (state, from) = self
            .read(Box::new(move |db| {
                Box::pin(async move {
                    let (state, from) = state_row(db, &name).await?;
                    let folded = rows_after(db, &name, from)
                        .await?
                        .into_iter()
                        .take_while(|(offset, ..)| *offset <= upto)
                        .map(|(.., update)| update)
                        .collect();
                    let doc = rebuilt(state, folded).await?;
                    Ok((encode_state(&doc), from))
                })
            }))
            .await?;
        if upto <= from {
            return Ok(from);
        }
        self.write(
            Box::new(move |db| {
                Box::pin(async move {
                    // Another compaction (of this instance or another) may
                    // have got further meanwhile.
                    let (_, now) = state_row(db, &channel).await?;
                    if now >= upto {
                        return Ok(now);
                    }
                    db.execute(
                        "INSERT INTO doc_states (channel, state, upto) VALUES ($1, $2, $3)
                         ON CONFLICT (channel) DO UPDATE SET state = excluded.state, upto = excluded.upto",
                        &[&channel, &state, &to_db(upto)],
                    )
                    .await?;
                    db.execute(
                        "DELETE FROM doc_updates WHERE channel = $1 AND seq <= $2",
                        &[&channel, &to_db(upto.saturating_sub(DOC_HISTORY as u64))],
                    )
                    .await?;
                    Ok(upto)
                })
            }),
            |upto| upto,
        )
        .await
    }

    /// How many update rows document `doc_id` keeps.
    pub(crate) async fn doc_rows(&self, doc_id: String) -> Result<u64, StoreError> {
        let channel = Channel::Doc(doc_id).to_string();
        self.read(Box::new(move |db| {
            Box::pin(async move {
                let count: i64 = db
                    .query_one(
                        "SELECT count(*) FROM doc_updates WHERE channel = $1",
                        &[&channel],
                    )
                    .await?
                    .get(0);
                Ok(from_db(count))
            })
        }))
        .await
    }
}

/// Reads a document's updates after an offset, for a gap's fill.
impl Postgres {
    /// Up to `limit` stored updates of document `doc_id` after `offset`,
    /// oldest first: a read on a connection of its own, never a writer job.
    pub(crate) async fn doc_updates_after(
        &self,
        doc_id: String,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<DocUpdateEvent>, StoreError> {
        self.read(Box::new(move |db| {
            Box::pin(async move {
                let name = Channel::Doc(doc_id.clone());
                let channel = name.to_string();
                let rows = db
                    .query(
                        &db.prepare_cached(
                            "SELECT seq, user_id, user_name, update_v1 FROM doc_updates
                             WHERE channel = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                        )
                        .await?,
                        &[&channel, &to_db(offset), &(limit as i64)],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| DocUpdateEvent {
                        channel: name.clone(),
                        offset: from_db(row.get(0)),
                        doc: doc_id.clone(),
                        user: UserRef {
                            id: row.get(1),
                            name: row.get(2),
                        },
                        update: BASE64.encode(row.get::<_, Vec<u8>>(3)),
                    })
                    .collect())
            })
        }))
        .await
    }
}

/// The transaction body of `append_doc`.
async fn append(
    db: &Transaction<'_>,
    draft: DocDraft,
    epoch: Arc<str>,
) -> Result<DocAppended, StoreError> {
    let DocDraft {
        doc,
        user,
        client_id,
        update,
    } = draft;
    let name = Channel::Doc(doc.clone());
    let channel = name.to_string();
    if let Some((channel, offset)) = claim(db, &user.id, &client_id, &channel).await? {
        return Ok(DocAppended::Duplicate { channel, offset });
    }
    let offset = next_offset(db, &channel, &epoch).await?;
    db.execute(
        &db.prepare_cached(
            "INSERT INTO doc_updates (channel, seq, user_id, user_name, update_v1)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .await?,
        &[&channel, &to_db(offset), &user.id, &user.name, &update],
    )
    .await?;
    settle_claim(db, &user.id, &client_id, offset).await?;
    Ok(DocAppended::New(DocUpdateEvent {
        channel: name,
        offset,
        doc,
        update: BASE64.encode(update),
        user,
    }))
}
