//! Owns the PostgreSQL schema: an ordered list of migrations, applied once
//! each and counted in `pulse_schema`, all under one advisory lock, so that
//! of several instances starting at once one migrates and the others wait
//! and find it done. Never edit a released migration; add one.
//!
//! The tables mirror SQLite's (`sqlite/migrations.rs`), in PostgreSQL's
//! types; a channel's position is `seq` (`offset` is a reserved word here).

use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::server::store::StoreError;

/// The advisory lock held while migrating ("pulse" + 0).
const MIGRATION_LOCK: i64 = 0x7075_6c73_6500;

/// Migration N (1-based) brings the schema from version N-1 to N.
const MIGRATIONS: &[&str] = &[
    // 1: persisted channels (epoch, and the latest offset, which a write
    // increments in its transaction), chat messages, the idempotency keys of
    // chat_send and doc_update, notifications, and the users ever identified
    // (what `@name` resolves against, case-folded: hence the index).
    "CREATE TABLE channels (
        name   TEXT PRIMARY KEY,
        epoch  TEXT NOT NULL,
        latest BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE chat_messages (
        channel   TEXT NOT NULL REFERENCES channels(name),
        seq       BIGINT NOT NULL,
        msg_id    TEXT NOT NULL UNIQUE,
        user_id   TEXT NOT NULL,
        user_name TEXT NOT NULL,
        text      TEXT NOT NULL,
        sent_at   TEXT NOT NULL,
        PRIMARY KEY (channel, seq)
    );
    CREATE TABLE sent_ids (
        user_id   TEXT NOT NULL,
        client_id TEXT NOT NULL,
        channel   TEXT NOT NULL,
        seq       BIGINT NOT NULL,
        PRIMARY KEY (user_id, client_id)
    );
    CREATE TABLE notifications (
        channel         TEXT NOT NULL REFERENCES channels(name),
        seq             BIGINT NOT NULL,
        notification_id TEXT NOT NULL UNIQUE,
        user_id         TEXT NOT NULL,
        title           TEXT NOT NULL,
        body            TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        read            BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (channel, seq)
    );
    CREATE INDEX notifications_unread ON notifications (channel, seq) WHERE NOT read;
    CREATE TABLE users (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        first_seen TEXT NOT NULL
    );
    CREATE INDEX users_folded_id ON users (lower(id));",
    // 2: shared documents (`doc:{id}` channels): the log of Yjs updates, and
    // the compacted state that covers every update up to `upto`.
    "CREATE TABLE doc_updates (
        channel   TEXT NOT NULL REFERENCES channels(name),
        seq       BIGINT NOT NULL,
        user_id   TEXT NOT NULL,
        user_name TEXT NOT NULL,
        update_v1 BYTEA NOT NULL,
        PRIMARY KEY (channel, seq)
    );
    CREATE TABLE doc_states (
        channel TEXT PRIMARY KEY REFERENCES channels(name),
        state   BYTEA NOT NULL,
        upto    BIGINT NOT NULL
    );",
    // 3: the database's epoch, made once here: a channel nobody wrote to is
    // read in it and its first write stores it, so loading a channel writes
    // nothing and every instance answers one epoch for it. 12 hex digits,
    // as `hub::new_epoch` makes them.
    "CREATE TABLE pulse_epoch (epoch TEXT NOT NULL);
    INSERT INTO pulse_epoch (epoch)
        SELECT substr(md5(random()::text || clock_timestamp()::text), 1, 12);",
];

/// Brings the database to version `target` (the latest, except in tests of
/// an upgrade), in one transaction under the migration lock.
pub(crate) async fn migrate(pool: &Pool, target: usize) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS pulse_schema (version INTEGER NOT NULL);
             INSERT INTO pulse_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM pulse_schema);",
        )
        .await?;
    let version: i32 = transaction
        .query_one("SELECT version FROM pulse_schema", &[])
        .await?
        .get(0);
    let version = usize::try_from(version).unwrap_or(0);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Malformed(format!(
            "the database's schema is version {version}, newer than this Pulse knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().take(target).skip(version) {
        transaction.batch_execute(sql).await?;
        let reached = i32::try_from(index + 1).unwrap_or(i32::MAX);
        transaction
            .execute("UPDATE pulse_schema SET version = $1", &[&reached])
            .await?;
        tracing::info!(version = index + 1, "PostgreSQL schema migrated");
    }
    transaction.commit().await?;
    Ok(())
}

/// The database's epoch (migration 3), read once at start.
pub(super) async fn epoch(pool: &Pool) -> Result<Arc<str>, StoreError> {
    let client = pool.get().await?;
    let epoch: String = client
        .query_one("SELECT epoch FROM pulse_epoch", &[])
        .await?
        .get(0);
    Ok(epoch.into())
}

/// The schema version the code expects.
pub(super) fn latest_version() -> usize {
    MIGRATIONS.len()
}
