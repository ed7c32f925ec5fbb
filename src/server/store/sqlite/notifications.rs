//! Owns notifications on disk: each user's persisted `user:{id}` channel,
//! storing and reading notifications, marking them read, and remembering the
//! users ever identified (what `@name` mentions resolve against).

use rusqlite::{params, Connection};

use super::channels::{self, next_offset};
use super::Sqlite;
use crate::protocol::{Channel, Notification, Timestamp, UserRef};
use crate::server::store::model::{StoredInbox, Unread, UNREAD_SNAPSHOT};
use crate::server::store::StoreError;

/// The [`Unread`] of `channel`: one bounded read and one count, however
/// many notifications wait.
fn unread(db: &rusqlite::Connection, channel: &str) -> Result<Unread, rusqlite::Error> {
    let mut newest = db
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE channel = ?1 AND read = 0 ORDER BY offset DESC LIMIT ?2"
        ))?
        .query_map(params![channel, UNREAD_SNAPSHOT as i64], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    newest.reverse();
    let total = db
        .prepare_cached("SELECT COUNT(*) FROM notifications WHERE channel = ?1 AND read = 0")?
        .query_row([channel], |row| row.get::<_, i64>(0))? as u64;
    Ok(Unread { newest, total })
}

const COLUMNS: &str = "channel, offset, notification_id, title, body, created_at";

fn from_row(row: &rusqlite::Row<'_>) -> Result<Notification, rusqlite::Error> {
    let created_at: String = row.get(5)?;
    Ok(Notification {
        channel: row.get(0)?,
        offset: row.get::<_, i64>(1)? as u64,
        notification_id: row.get(2)?,
        title: row.get(3)?,
        body: row.get(4)?,
        created_at: Timestamp::parse(&created_at).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                "bad created_at".into(),
            )
        })?,
    })
}

impl Sqlite {
    /// Remembers an identified user (so mentions can find them).
    pub async fn remember_user(&self, user: UserRef, now: Timestamp) -> Result<(), StoreError> {
        self.write(
            move |db| {
                db.execute(
                    "INSERT INTO users (id, name, first_seen) VALUES (?1, ?2, ?3)
                     ON CONFLICT(id) DO UPDATE SET name = excluded.name",
                    params![user.id, user.name, now.to_string()],
                )?;
                Ok(())
            },
            |()| (),
        )
        .await
    }

    /// Stores a notification for `user_id` with the next offset of its
    /// channel; `on_commit` runs after the commit, in commit order.
    pub async fn append_notification<F>(
        &self,
        user_id: String,
        title: String,
        body: String,
        created_at: Timestamp,
        on_commit: F,
    ) -> Result<Notification, StoreError>
    where
        F: FnOnce(&Notification) + Send + 'static,
    {
        self.write(
            move |db| Ok(insert(db, &user_id, &title, &body, &created_at)?),
            move |notification| {
                on_commit(&notification);
                notification
            },
        )
        .await
    }

    /// A user's channel, handed to `then` on the writer thread after its
    /// group is committed: a writer job for the reason `load_chat` gives.
    pub async fn load_inbox<R, F>(
        &self,
        user_id: String,
        keep: usize,
        then: F,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(StoredInbox) -> R + Send + 'static,
    {
        self.write(
            move |db| {
                let channel = Channel::User(user_id.clone()).to_string();
                let (epoch, latest) = channels::or_new(db, &channel)?;
                let mut recent = db
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM notifications WHERE channel = ?1 ORDER BY offset DESC LIMIT ?2"
                    ))?
                    .query_map(params![channel, keep as i64], from_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                recent.reverse();
                let unread = unread(db, &channel)?;
                Ok(StoredInbox { epoch, latest, recent, unread })
            },
            then,
        )
        .await
    }

    /// Marks these notifications of `user_id` read; `on_commit` gets the ids
    /// that were unread and the user's [`Unread`] after the change, after
    /// the commit (so the hub's snapshot refills from older ones).
    pub async fn mark_read<F>(
        &self,
        user_id: String,
        ids: Vec<String>,
        on_commit: F,
    ) -> Result<Vec<String>, StoreError>
    where
        F: FnOnce(&[String], Unread) + Send + 'static,
    {
        self.write(
            move |db| {
                let mut changed = Vec::new();
                for id in ids {
                    let updated = db.execute(
                        "UPDATE notifications SET read = 1 WHERE user_id = ?1 AND notification_id = ?2 AND read = 0",
                        params![user_id, id],
                    )?;
                    if updated > 0 {
                        changed.push(id);
                    }
                }
                let unread = unread(db, &Channel::User(user_id.clone()).to_string())?;
                Ok((changed, unread))
            },
            move |(changed, unread)| {
                on_commit(&changed, unread);
                changed
            },
        )
        .await
    }
}

/// Stores a notification for `user_id` with the next offset of its channel,
/// in the caller's transaction (`append_notification`, or a chat message's
/// mentions).
pub(super) fn insert(
    db: &Connection,
    user_id: &str,
    title: &str,
    body: &str,
    created_at: &Timestamp,
) -> Result<Notification, rusqlite::Error> {
    let name = Channel::User(user_id.to_owned());
    let channel = name.to_string();
    let offset = next_offset(db, &channel)?;
    let notification = Notification {
        channel: name,
        offset,
        notification_id: uuid::Uuid::new_v4().simple().to_string(),
        title: title.to_owned(),
        body: body.to_owned(),
        created_at: *created_at,
    };
    db.execute(
        &format!(
            "INSERT INTO notifications ({COLUMNS}, user_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        params![
            channel,
            notification.offset as i64,
            notification.notification_id,
            notification.title,
            notification.body,
            notification.created_at.to_string(),
            user_id
        ],
    )?;
    Ok(notification)
}
