//! Owns a persisted channel's row on disk (its epoch and latest offset) and
//! the envelope ids written to channels (`sent_ids`): reading a row, taking
//! the next offset in the writer's transaction, and recording where a
//! `(user, envelope id)` was stored.
//!
//! A channel gets its row with its first write, never with a load: a
//! channel nobody wrote to is read as empty, in this process's epoch, which
//! is the epoch its first write then stores (one process writes the file).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{params, Connection, OptionalExtension};

use crate::protocol::Channel;

/// A `channel` column reads back as a [`Channel`]; a name outside the
/// grammar is a conversion error, never a panic.
impl FromSql for Channel {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|err| FromSqlError::Other(Box::new(err)))
    }
}

/// The epoch a channel gets when its row is created: one per process, so a
/// room loaded while still empty (this epoch, offset 0) and the same room
/// after its first message agree, before and after a restart.
fn process_epoch() -> &'static str {
    static EPOCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    EPOCH.get_or_init(crate::server::hub::new_epoch)
}

/// The epoch and latest offset of `channel`, if it has a row.
fn existing(db: &Connection, channel: &str) -> Result<Option<(String, u64)>, rusqlite::Error> {
    db.prepare_cached("SELECT epoch, latest FROM channels WHERE name = ?1")?
        .query_row([channel], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
        })
        .optional()
}

/// The epoch and latest offset of `channel`, or those it will have when it
/// is first written to: never creates it.
pub(super) fn or_new(db: &Connection, channel: &str) -> Result<(String, u64), rusqlite::Error> {
    Ok(existing(db, channel)?.unwrap_or_else(|| (process_epoch().to_owned(), 0)))
}

/// Takes `channel`'s next offset in the writer's transaction: its row's
/// `latest` + 1, stored; a channel's first write creates its row.
pub(super) fn next_offset(db: &Connection, channel: &str) -> Result<u64, rusqlite::Error> {
    let offset = match existing(db, channel)? {
        Some((_, latest)) => {
            db.prepare_cached("UPDATE channels SET latest = ?2 WHERE name = ?1")?
                .execute(params![channel, latest as i64 + 1])?;
            latest + 1
        }
        None => {
            db.prepare_cached("INSERT INTO channels (name, epoch, latest) VALUES (?1, ?2, 1)")?
                .execute(params![channel, process_epoch()])?;
            1
        }
    };
    Ok(offset)
}

/// Where `user_id`'s write with envelope id `client_id` was stored, if it
/// was: the idempotency key of `chat_send` and `doc_update`, read by the
/// append itself and by a resend over the rate limit.
pub(super) fn sent_offset(
    db: &Connection,
    user_id: &str,
    client_id: &str,
) -> Result<Option<(Channel, u64)>, rusqlite::Error> {
    db.prepare_cached("SELECT channel, offset FROM sent_ids WHERE user_id = ?1 AND client_id = ?2")?
        .query_row(params![user_id, client_id], |row| {
            Ok((row.get::<_, Channel>(0)?, row.get::<_, i64>(1)? as u64))
        })
        .optional()
}

/// Records that `user_id`'s write with envelope id `client_id` was stored
/// at `offset` of `channel`, in the write's transaction.
pub(super) fn record_sent(
    db: &Connection,
    user_id: &str,
    client_id: &str,
    channel: &str,
    offset: u64,
) -> Result<(), rusqlite::Error> {
    db.prepare_cached(
        "INSERT INTO sent_ids (user_id, client_id, channel, offset) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user_id, client_id, channel, offset as i64])?;
    Ok(())
}
