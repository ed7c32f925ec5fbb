//! Owns a persisted channel's row in PostgreSQL (its epoch and latest
//! offset) and the envelope ids written to channels (`sent_ids`): reading a
//! row, taking the next offset in the writer's transaction, and claiming a
//! `(user, envelope id)` once.
//!
//! A channel gets its row with its first write, never with a load: a
//! channel nobody wrote to is read as empty, in the database's epoch
//! (`pulse_epoch`, fixed by the migration that created it), which is the
//! epoch its first write then stores. So every instance answers the same
//! epoch for it before and after that write, and loading stays a read.

use deadpool_postgres::Transaction;
use tokio_postgres::types::{FromSql, Type};

use super::{from_db, to_db};
use crate::protocol::Channel;
use crate::server::store::StoreError;

/// A `channel` column (`text`) reads back as a [`Channel`]; a name outside
/// the grammar is a conversion error (read with `try_get`), never a panic.
impl<'a> FromSql<'a> for Channel {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(<&str as FromSql>::from_sql(ty, raw)?.parse()?)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// The epoch and latest offset of `channel`, if it has a row.
pub(super) async fn existing(
    db: &Transaction<'_>,
    channel: &str,
) -> Result<Option<(String, u64)>, StoreError> {
    let row = db
        .query_opt(
            &db.prepare_cached("SELECT epoch, latest FROM channels WHERE name = $1")
                .await?,
            &[&channel],
        )
        .await?;
    Ok(row.map(|row| (row.get(0), from_db(row.get(1)))))
}

/// The epoch and latest offset of `channel`, or those it will have when it
/// is first written to (`epoch`, the database's, and 0): never creates it.
pub(super) async fn or_new(
    db: &Transaction<'_>,
    channel: &str,
    epoch: &str,
) -> Result<(String, u64), StoreError> {
    Ok(existing(db, channel)
        .await?
        .unwrap_or_else(|| (epoch.to_owned(), 0)))
}

/// Takes `channel`'s next offset: the row's `latest`, incremented in this
/// transaction (which holds the row until it ends, so no other transaction
/// gets the same offset, and a rollback gives it back); a channel's first
/// write creates its row, in `epoch` (the database's).
pub(super) async fn next_offset(
    db: &Transaction<'_>,
    channel: &str,
    epoch: &str,
) -> Result<u64, StoreError> {
    let row = db
        .query_one(
            &db.prepare_cached(
                "INSERT INTO channels (name, epoch, latest) VALUES ($1, $2, 1)
                 ON CONFLICT (name) DO UPDATE SET latest = channels.latest + 1
                 RETURNING latest",
            )
            .await?,
            &[&channel, &epoch],
        )
        .await?;
    Ok(from_db(row.get(0)))
}

/// Claims `(user_id, client_id)` for a write about to be stored in
/// `channel`, or returns where the earlier write with that key was stored.
/// The claim is the primary key of `sent_ids`: of two instances racing on
/// one resend, the second waits for the first's commit and then finds it.
pub(super) async fn claim(
    db: &Transaction<'_>,
    user_id: &str,
    client_id: &str,
    channel: &str,
) -> Result<Option<(Channel, u64)>, StoreError> {
    let claimed = db
        .execute(
            &db.prepare_cached(
                "INSERT INTO sent_ids (user_id, client_id, channel, seq) VALUES ($1, $2, $3, 0)
                 ON CONFLICT DO NOTHING",
            )
            .await?,
            &[&user_id, &client_id, &channel],
        )
        .await?;
    if claimed == 1 {
        return Ok(None);
    }
    sent_offset(db, user_id, client_id).await
}

/// Records the offset a claimed write got (`claim`).
pub(super) async fn settle_claim(
    db: &Transaction<'_>,
    user_id: &str,
    client_id: &str,
    offset: u64,
) -> Result<(), StoreError> {
    db.execute(
        &db.prepare_cached("UPDATE sent_ids SET seq = $3 WHERE user_id = $1 AND client_id = $2")
            .await?,
        &[&user_id, &client_id, &to_db(offset)],
    )
    .await?;
    Ok(())
}

/// Where `user_id`'s write with envelope id `client_id` was stored, if it was.
pub(super) async fn sent_offset(
    db: &Transaction<'_>,
    user_id: &str,
    client_id: &str,
) -> Result<Option<(Channel, u64)>, StoreError> {
    let row = db
        .query_opt(
            &db.prepare_cached(
                "SELECT channel, seq FROM sent_ids WHERE user_id = $1 AND client_id = $2",
            )
            .await?,
            &[&user_id, &client_id],
        )
        .await?;
    match row {
        Some(row) => Ok(Some((row.try_get(0)?, from_db(row.get(1))))),
        None => Ok(None),
    }
}
