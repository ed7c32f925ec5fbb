//! Owns shared documents on disk: the append-only log of Yjs updates (one
//! row per acknowledged update, with its offset and author), exactly once
//! per (user, envelope id) like chat; the compacted state that folds the
//! log's older rows; and loading a document back into memory.
//!
//! Loading a document is a read (one snapshot on a read connection, the
//! rebuild on the blocking pool); it never waits for the writer.
//! Compaction never holds the writer for long: the fold (rebuilding the
//! document from the stored state and rows, which may take milliseconds for
//! a large one) runs on a read connection on the blocking pool, and only
//! the swap (write the new state, delete the folded rows) is a writer job.

use base64::Engine as _;
use rusqlite::{params, Connection, OptionalExtension};

use super::channels::{self, next_offset, record_sent, sent_offset};
use super::Sqlite;
use crate::protocol::{Channel, DocUpdateEvent, UserRef};
use crate::server::hub::{encode_state, rebuild, DOC_HISTORY};
use crate::server::store::model::{DocAppended, DocDraft, DocRead, StoredDoc};
use crate::server::store::StoreError;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The compacted state of `channel` and the offset it covers (empty, 0 for
/// a document never compacted).
fn state_row(db: &Connection, channel: &str) -> Result<(Vec<u8>, u64), rusqlite::Error> {
    Ok(db
        .query_row(
            "SELECT state, upto FROM doc_states WHERE channel = ?1",
            [channel],
            |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)? as u64)),
        )
        .optional()?
        .unwrap_or_default())
}

/// The stored update rows of `channel` after `offset`, oldest first.
fn rows_after(
    db: &Connection,
    channel: &str,
    offset: u64,
) -> Result<Vec<(u64, UserRef, Vec<u8>)>, rusqlite::Error> {
    let mut statement = db.prepare_cached(
        "SELECT offset, user_id, user_name, update_v1 FROM doc_updates
         WHERE channel = ?1 AND offset > ?2 ORDER BY offset",
    )?;
    let rows = statement.query_map(params![channel, offset as i64], |row| {
        Ok((
            row.get::<_, i64>(0)? as u64,
            UserRef {
                id: row.get(1)?,
                name: row.get(2)?,
            },
            row.get::<_, Vec<u8>>(3)?,
        ))
    })?;
    rows.collect()
}

impl Sqlite {
    /// A document's epoch, latest offset, newest `keep` updates and the
    /// document itself. Its rows are read in one snapshot on a read
    /// connection (a compaction, swapped in by the writer in one
    /// transaction, is seen whole or not at all), and it is rebuilt on the
    /// blocking pool once that connection is free again: a load never waits
    /// for the writer, and no write waits for a load. A document nobody
    /// wrote to has no row and is read as empty, with the epoch its first
    /// update will store.
    pub async fn load_doc(&self, doc_id: String, keep: usize) -> Result<StoredDoc, StoreError> {
        let channel = Channel::Doc(doc_id.clone()).to_string();
        let read = self
            .read(move |db| {
                let snapshot = db.unchecked_transaction()?;
                let (epoch, latest) = channels::or_new(&snapshot, &channel)?;
                let (state, upto) = state_row(&snapshot, &channel)?;
                // The rows kept after a compaction reach back before `upto`
                // (for resume); the document needs only those after it.
                let rows = rows_after(&snapshot, &channel, upto.saturating_sub(keep as u64))?;
                Ok(DocRead {
                    epoch,
                    latest,
                    state,
                    upto,
                    rows,
                })
            })
            .await?;
        read.rebuild(doc_id, keep).await
    }

    /// Appends an update to its document's log with the next offset, unless
    /// this user already sent this `client_id` (then nothing is written).
    /// `on_commit` gets what was stored after the commit, in commit order.
    pub async fn append_doc<F>(
        &self,
        draft: DocDraft,
        on_commit: F,
    ) -> Result<DocAppended, StoreError>
    where
        F: FnOnce(&DocAppended) + Send + 'static,
    {
        self.write(
            move |db| append(db, draft),
            move |appended| {
                on_commit(&appended);
                appended
            },
        )
        .await
    }

    /// Folds the log of document `doc_id` up to offset `upto` into its
    /// stored state, and deletes the rows no resume needs any more (all but
    /// the newest [`DOC_HISTORY`]). The fold runs on a read connection; only
    /// the swap waits for the writer. Returns the offset now compacted.
    pub async fn compact_doc(&self, doc_id: String, upto: u64) -> Result<u64, StoreError> {
        let channel = Channel::Doc(doc_id).to_string();
        let name = channel.clone();
        let (state, from) = self
            .read(move |db| {
                // One snapshot for both reads: a compaction finishing between
                // them could delete rows this fold still needs.
                let snapshot = db.unchecked_transaction()?;
                let (state, from) = state_row(&snapshot, &name)?;
                let rows = rows_after(&snapshot, &name, from)?;
                let folded = rows
                    .into_iter()
                    .take_while(|(offset, ..)| *offset <= upto)
                    .map(|(.., update)| update);
                Ok((encode_state(&rebuild(&state, folded)), from))
            })
            .await?;
        if upto <= from {
            return Ok(from);
        }
        self.write(
            move |db| {
                // Another compaction may have got further meanwhile.
                let (_, now) = state_row(db, &channel)?;
                if now >= upto {
                    return Ok(now);
                }
                db.execute(
                    "INSERT INTO doc_states (channel, state, upto) VALUES (?1, ?2, ?3)
                     ON CONFLICT (channel) DO UPDATE SET state = excluded.state, upto = excluded.upto",
                    params![channel, state, upto as i64],
                )?;
                db.execute(
                    "DELETE FROM doc_updates WHERE channel = ?1 AND offset <= ?2",
                    params![channel, upto.saturating_sub(DOC_HISTORY as u64) as i64],
                )?;
                Ok(upto)
            },
            |upto| upto,
        )
        .await
    }

    /// How many update rows document `doc_id` keeps on disk (for tests and
    /// operators: compaction keeps it bounded).
    pub async fn doc_rows(&self, doc_id: String) -> Result<u64, StoreError> {
        let channel = Channel::Doc(doc_id).to_string();
        self.read(move |db| {
            Ok(db.query_row(
                "SELECT count(*) FROM doc_updates WHERE channel = ?1",
                [channel],
                |row| row.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }
}

/// Reads a document's updates after an offset, for a gap's fill.
impl Sqlite {
    /// Up to `limit` stored updates of document `doc_id` after `offset`,
    /// oldest first: a read, never a writer job.
    pub async fn doc_updates_after(
        &self,
        doc_id: String,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<DocUpdateEvent>, StoreError> {
        self.read(move |db| {
            let name = Channel::Doc(doc_id.clone());
            let channel = name.to_string();
            let mut statement = db.prepare_cached(
                "SELECT offset, user_id, user_name, update_v1 FROM doc_updates
                 WHERE channel = ?1 AND offset > ?2 ORDER BY offset LIMIT ?3",
            )?;
            let rows =
                statement.query_map(params![channel, offset as i64, limit as i64], |row| {
                    Ok(DocUpdateEvent {
                        channel: name.clone(),
                        offset: row.get::<_, i64>(0)? as u64,
                        doc: doc_id.clone(),
                        user: UserRef {
                            id: row.get(1)?,
                            name: row.get(2)?,
                        },
                        update: BASE64.encode(row.get::<_, Vec<u8>>(3)?),
                    })
                })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

/// The transaction body of `append_doc`.
fn append(db: &Connection, draft: DocDraft) -> Result<DocAppended, StoreError> {
    let DocDraft {
        doc,
        user,
        client_id,
        update,
    } = draft;
    let name = Channel::Doc(doc.clone());
    let channel = name.to_string();
    if let Some((channel, offset)) = sent_offset(db, &user.id, &client_id)? {
        return Ok(DocAppended::Duplicate { channel, offset });
    }
    let offset = next_offset(db, &channel)?;
    db.prepare_cached(
        "INSERT INTO doc_updates (channel, offset, user_id, user_name, update_v1)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![channel, offset as i64, user.id, user.name, update])?;
    record_sent(db, &user.id, &client_id, &channel, offset)?;
    Ok(DocAppended::New(DocUpdateEvent {
        channel: name,
        offset,
        doc,
        update: BASE64.encode(update),
        user,
    }))
}
