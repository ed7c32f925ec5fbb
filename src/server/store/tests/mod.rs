//! One suite for both databases: every test here is written once and runs
//! against a SQLite file in a temporary folder and against a database of its
//! own on a throwaway PostgreSQL cluster (`tests/common/postgres.rs`, started
//! once per test process). What only one of them has is tested beside it
//! (`sqlite/tests.rs`).

mod channels;
mod chat;
mod docs;
mod mentions;
mod migrations;
mod notifications;

#[path = "../../../../tests/common/postgres.rs"]
pub(super) mod cluster;

use super::*;
use crate::protocol::{Timestamp, UserRef};

/// Where a test's data lives, so that it can open the store again on it (a
/// restart).
pub(super) enum Place {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Place {
    fn sqlite() -> Place {
        let dir =
            std::env::temp_dir().join(format!("pulse-store-{}", uuid::Uuid::new_v4().simple()));
        Place::Sqlite(dir.join("nested").join("pulse.db"))
    }

    fn postgres() -> Place {
        Place::Postgres(cluster::shared().create_database())
    }

    /// Keeps the store's writer from writing until dropped, as another
    /// process would: SQLite's write lock (`BEGIN IMMEDIATE` on a connection
    /// of its own to the file), or the advisory lock every PostgreSQL writer
    /// group takes, held by a session of its own.
    async fn hold_write_lock(&self) -> WriteLock {
        match self {
            Place::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).expect("the file opens");
                connection
                    .execute_batch("BEGIN IMMEDIATE")
                    .expect("the write lock is free");
                WriteLock::Sqlite(connection)
            }
            Place::Postgres(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("PostgreSQL connects");
                tokio::spawn(connection);
                client
                    .execute("SELECT pg_advisory_lock($1)", &[&postgres::WRITE_LOCK])
                    .await
                    .expect("the writers' lock is free");
                WriteLock::Postgres(client)
            }
        }
    }

    /// Opens (the first time: creates and migrates) the store on this place.
    async fn open(&self) -> Store {
        match self {
            Place::Sqlite(path) => Store::open(path).expect("SQLite opens"),
            Place::Postgres(url) => Store::connect(url).await.expect("PostgreSQL connects"),
        }
    }
}

/// The writers' lock held by [`Place::hold_write_lock`]; released on drop
/// (the connection or session ends).
#[allow(dead_code)] // held for its drop only
pub(super) enum WriteLock {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

/// Runs each named `async fn(Place)` of the calling module as two tests,
/// `sqlite::name` and `postgres::name`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::server::store::tests::Place::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::server::store::tests::Place::postgres()).await
                }
            )*
        }
    };
}
use both;

pub(super) fn ann() -> UserRef {
    UserRef {
        id: "ann".into(),
        name: "Ann".into(),
    }
}

pub(super) fn now() -> Timestamp {
    Timestamp::parse("2026-11-25T17:30:00.123456Z").unwrap()
}

pub(super) fn draft(user: UserRef, id: &str, text: &str) -> ChatDraft {
    ChatDraft {
        room: "general".into(),
        user,
        client_id: id.into(),
        text: text.into(),
        sent_at: now(),
        mentioned: mentions(text),
    }
}

async fn send(store: &Store, user: UserRef, id: &str, text: &str) -> Appended {
    store
        .append_chat(draft(user, id, text), |_, _| {})
        .await
        .unwrap()
}
