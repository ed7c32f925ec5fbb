//! Owns the schema: an ordered list of migrations, applied once each and
//! counted in SQLite's `user_version`. Never edit a released migration; add one.

use rusqlite::{Connection, TransactionBehavior};

use crate::server::store::StoreError;

/// Migration N (1-based) brings the schema from version N-1 to N.
const MIGRATIONS: &[&str] = &[
    // 1: persisted channels (their epoch survives restarts), chat messages,
    // and the idempotency keys of chat_send (per user, the envelope id).
    "CREATE TABLE channels (
        name   TEXT PRIMARY KEY,
        epoch  TEXT NOT NULL,
        latest INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE chat_messages (
        channel   TEXT NOT NULL REFERENCES channels(name),
        offset    INTEGER NOT NULL,
        msg_id    TEXT NOT NULL UNIQUE,
        user_id   TEXT NOT NULL,
        user_name TEXT NOT NULL,
        text      TEXT NOT NULL,
        sent_at   TEXT NOT NULL,
        PRIMARY KEY (channel, offset)
    );
    CREATE TABLE sent_ids (
        user_id   TEXT NOT NULL,
        client_id TEXT NOT NULL,
        channel   TEXT NOT NULL,
        offset    INTEGER NOT NULL,
        PRIMARY KEY (user_id, client_id)
    );",
    // 2: notifications (one persisted `user:{id}` channel per user) and the
    // users ever identified, which `@name` mentions resolve against.
    "CREATE TABLE notifications (
        channel         TEXT NOT NULL REFERENCES channels(name),
        offset          INTEGER NOT NULL,
        notification_id TEXT NOT NULL UNIQUE,
        user_id         TEXT NOT NULL,
        title           TEXT NOT NULL,
        body            TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        read            INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (channel, offset)
    );
    CREATE INDEX notifications_unread ON notifications (user_id, read);
    CREATE TABLE users (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        first_seen TEXT NOT NULL
    );",
    // 3: `@ada` notifies the user `ada` or `guest:ada`, compared case-folded;
    // this index keeps each lookup one probe however many users there are.
    "CREATE INDEX users_folded_id ON users (lower(id));",
    // 4: shared documents (`doc:{id}` channels): the log of Yjs updates, and
    // the compacted state that covers every update up to `upto` (older log
    // rows are deleted once compacted; the newest stay for resume).
    "CREATE TABLE doc_updates (
        channel   TEXT NOT NULL REFERENCES channels(name),
        offset    INTEGER NOT NULL,
        user_id   TEXT NOT NULL,
        user_name TEXT NOT NULL,
        update_v1 BLOB NOT NULL,
        PRIMARY KEY (channel, offset)
    );
    CREATE TABLE doc_states (
        channel TEXT PRIMARY KEY REFERENCES channels(name),
        state   BLOB NOT NULL,
        upto    INTEGER NOT NULL
    );",
];

/// Applies every migration the file has not had yet.
pub fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    migrate_to(connection, MIGRATIONS.len())
}

/// Brings the file to version `target` (the latest, except in tests of an
/// upgrade), in one write transaction that reads the version first: of two
/// processes opening a new file at once, the second waits and finds it done.
pub(super) fn migrate_to(connection: &mut Connection, target: usize) -> Result<(), StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: usize = transaction.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().take(target).skip(version) {
        transaction.execute_batch(sql)?;
        transaction.pragma_update(None, "user_version", index + 1)?;
        tracing::info!(version = index + 1, "database migrated");
    }
    transaction.commit()?;
    Ok(())
}

/// The schema version the code expects.
#[cfg(test)]
pub fn latest_version() -> usize {
    MIGRATIONS.len()
}
