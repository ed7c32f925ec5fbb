//! Owns notifications in PostgreSQL: each user's persisted `user:{id}`
//! channel, storing and reading notifications, marking them read, and
//! remembering the users ever identified (what `@name` resolves against).

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::channels::{self, next_offset};
use super::{from_db, to_db, Postgres};
use crate::protocol::{Channel, Notification, Timestamp, UserRef};
use crate::server::store::model::{StoredInbox, Unread, UNREAD_SNAPSHOT};
use crate::server::store::StoreError;

const COLUMNS: &str = "channel, seq, notification_id, title, body, created_at";

fn from_row(row: &Row) -> Result<Notification, StoreError> {
    let created_at: String = row.get(5);
    Ok(Notification {
        channel: row.try_get(0)?,
        offset: from_db(row.get(1)),
        notification_id: row.get(2),
        title: row.get(3),
        body: row.get(4),
        created_at: Timestamp::parse(&created_at)
            .ok_or_else(|| StoreError::Malformed(format!("created_at `{created_at}`")))?,
    })
}

/// The newest `limit` notifications of `channel` (only unread ones when
/// `unread_only`), oldest first.
async fn newest(
    db: &Transaction<'_>,
    channel: &str,
    limit: usize,
    unread_only: bool,
) -> Result<Vec<Notification>, StoreError> {
    let filter = if unread_only { "AND NOT read" } else { "" };
    let rows = db
        .query(
            &db.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM notifications WHERE channel = $1 {filter}
                 ORDER BY seq DESC LIMIT $2"
            ))
            .await?,
            &[&channel, &(limit as i64)],
        )
        .await?;
    let mut newest = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    newest.reverse();
    Ok(newest)
}

/// The [`Unread`] of `channel`: one bounded read and one count.
async fn unread(db: &Transaction<'_>, channel: &str) -> Result<Unread, StoreError> {
    let newest = newest(db, channel, UNREAD_SNAPSHOT, true).await?;
    let total: i64 = db
        .query_one(
            &db.prepare_cached(
                "SELECT count(*) FROM notifications WHERE channel = $1 AND NOT read",
            )
            .await?,
            &[&channel],
        )
        .await?
        .get(0);
    Ok(Unread {
        newest,
        total: from_db(total),
    })
}

impl Postgres {
    /// Remembers an identified user (so mentions can find them).
    pub(crate) async fn remember_user(
        &self,
        user: UserRef,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(
            Box::new(move |db| {
                Box::pin(async move {
                    db.execute(
                        &db.prepare_cached(
                            "INSERT INTO users (id, name, first_seen) VALUES ($1, $2, $3)
                             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                        )
                        .await?,
                        &[&user.id, &user.name, &now.to_string()],
                    )
                    .await?;
                    Ok(())
                })
            }),
            |()| (),
        )
        .await
    }

    /// Stores a notification for `user_id` with its channel's next offset.
    pub(crate) async fn append_notification<F>(
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
        let epoch = self.epoch.clone();
        self.write(
            Box::new(move |db| {
                Box::pin(
                    async move { insert(db, &user_id, &title, &body, &created_at, &epoch).await },
                )
            }),
            move |notification| {
                on_commit(&notification);
                notification
            },
        )
        .await
    }

    /// A user's channel, handed to `then` after the commit (a writer job
    /// for the reason `load_chat` gives, and like it a read).
    pub(crate) async fn load_inbox<R, F>(
        &self,
        user_id: String,
        keep: usize,
        then: F,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(StoredInbox) -> R + Send + 'static,
    {
        let epoch = self.epoch.clone();
        self.write(
            Box::new(move |db| {
                Box::pin(async move {
                    let channel = Channel::User(user_id).to_string();
                    let (epoch, latest) = channels::or_new(db, &channel, &epoch).await?;
                    let recent = newest(db, &channel, keep, false).await?;
                    let unread = unread(db, &channel).await?;
                    Ok(StoredInbox {
                        epoch,
                        latest,
                        recent,
                        unread,
                    })
                })
            }),
            then,
        )
        .await
    }

    /// Marks these notifications of `user_id` read; `on_commit` gets the
    /// ids that were unread (in the order asked) and the [`Unread`] after.
    pub(crate) async fn mark_read<F>(
        &self,
        user_id: String,
        ids: Vec<String>,
        on_commit: F,
    ) -> Result<Vec<String>, StoreError>
    where
        F: FnOnce(&[String], Unread) + Send + 'static,
    {
        self.write(
            Box::new(move |db| {
                Box::pin(async move {
                    let rows = db
                        .query(
                            &db.prepare_cached(
                                "UPDATE notifications SET read = true
                                 WHERE user_id = $1 AND notification_id = ANY($2) AND NOT read
                                 RETURNING notification_id",
                            )
                            .await?,
                            &[&user_id, &ids],
                        )
                        .await?;
                    let marked: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
                    let mut changed: Vec<String> = Vec::with_capacity(marked.len());
                    for id in ids {
                        if marked.contains(&id) && !changed.contains(&id) {
                            changed.push(id);
                        }
                    }
                    let unread = unread(db, &Channel::User(user_id).to_string()).await?;
                    Ok((changed, unread))
                })
            }),
            move |(changed, unread): (Vec<String>, Unread)| {
                on_commit(&changed, unread);
                changed
            },
        )
        .await
    }
}

/// Stores a notification for `user_id` with its channel's next offset, in
/// the caller's transaction (`append_notification`, or a chat message's
/// mentions).
pub(super) async fn insert(
    db: &Transaction<'_>,
    user_id: &str,
    title: &str,
    body: &str,
    created_at: &Timestamp,
    epoch: &str,
) -> Result<Notification, StoreError> {
    let name = Channel::User(user_id.to_owned());
    let channel = name.to_string();
    let offset = next_offset(db, &channel, epoch).await?;
    let notification = Notification {
        channel: name,
        offset,
        notification_id: uuid::Uuid::new_v4().simple().to_string(),
        title: title.to_owned(),
        body: body.to_owned(),
        created_at: *created_at,
    };
    db.execute(
        &db.prepare_cached(&format!(
            "INSERT INTO notifications ({COLUMNS}, user_id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .await?,
        &[
            &channel,
            &to_db(offset),
            &notification.notification_id,
            &notification.title,
            &notification.body,
            &notification.created_at.to_string(),
            &user_id,
        ],
    )
    .await?;
    Ok(notification)
}
