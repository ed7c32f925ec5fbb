//! Owns chat rooms in PostgreSQL: appending a message and its mentions'
//! notifications exactly once per (user, envelope id), and reading history
//! back (a channel's row and the envelope ids: `channels.rs`).

use std::sync::Arc;

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::channels::{self, claim, next_offset, sent_offset, settle_claim};
use super::{from_db, notifications, to_db, Postgres};
use crate::protocol::{Channel, ChatMessage, Notification, Timestamp, UserRef};
use crate::server::store::model::{
    mention_notice, mentioned_users, Appended, ChatDraft, StoredChat,
};
use crate::server::store::StoreError;

const COLUMNS: &str = "channel, seq, msg_id, user_id, user_name, text, sent_at";

fn message_from_row(row: &Row) -> Result<ChatMessage, StoreError> {
    let channel: Channel = row.try_get(0)?;
    let Channel::Chat(room) = &channel else {
        return Err(StoreError::Malformed(format!(
            "`{channel}` is not a chat channel"
        )));
    };
    let room = room.clone();
    let sent_at: String = row.get(6);
    Ok(ChatMessage {
        room,
        channel,
        offset: from_db(row.get(1)),
        msg_id: row.get(2),
        user: UserRef {
            id: row.get(3),
            name: row.get(4),
        },
        text: row.get(5),
        sent_at: Timestamp::parse(&sent_at)
            .ok_or_else(|| StoreError::Malformed(format!("sent_at `{sent_at}`")))?,
    })
}

/// Messages of `channel` before `before` (exclusive), newest `limit`, oldest first.
async fn messages(
    db: &Transaction<'_>,
    channel: &str,
    before: u64,
    limit: usize,
) -> Result<Vec<ChatMessage>, StoreError> {
    let rows = db
        .query(
            &db.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM chat_messages WHERE channel = $1 AND seq < $2
                 ORDER BY seq DESC LIMIT $3"
            ))
            .await?,
            &[&channel, &to_db(before), &(limit as i64)],
        )
        .await?;
    let mut messages = rows
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    messages.reverse();
    Ok(messages)
}

impl Postgres {
    /// A chat channel's epoch, latest offset and newest `keep` messages,
    /// handed to `then` after the commit: a writer job, so that nothing this
    /// instance commits around the load is missed or published twice, but a
    /// read (a room nobody wrote to is read as empty, not created).
    pub(crate) async fn load_chat<R, F>(
        &self,
        channel: String,
        keep: usize,
        then: F,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(StoredChat) -> R + Send + 'static,
    {
        let epoch = self.epoch.clone();
        self.write(
            Box::new(move |db| {
                Box::pin(async move {
                    let (epoch, latest) = channels::or_new(db, &channel, &epoch).await?;
                    let recent = messages(db, &channel, u64::MAX, keep).await?;
                    Ok(StoredChat {
                        epoch,
                        latest,
                        recent,
                    })
                })
            }),
            then,
        )
        .await
    }

    /// Up to `limit` messages of `channel` before `offset`, oldest first.
    pub(crate) async fn chat_before(
        &self,
        channel: String,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        self.read(Box::new(move |db| {
            Box::pin(async move { messages(db, &channel, offset, limit).await })
        }))
        .await
    }

    /// Where `user_id`'s write with envelope id `client_id` was stored.
    pub(crate) async fn sent(
        &self,
        user_id: String,
        client_id: String,
    ) -> Result<Option<(Channel, u64)>, StoreError> {
        self.read(Box::new(move |db| {
            Box::pin(async move { sent_offset(db, &user_id, &client_id).await })
        }))
        .await
    }

    /// Appends the draft with its room's next offset and its mentions'
    /// notifications, in one transaction, unless the key was stored before.
    pub(crate) async fn append_chat<F>(
        &self,
        draft: ChatDraft,
        on_commit: F,
    ) -> Result<Appended, StoreError>
    where
        F: FnOnce(&Appended, &[Notification]) + Send + 'static,
    {
        let epoch = self.epoch.clone();
        self.write(
            Box::new(move |db| Box::pin(append(db, draft, epoch))),
            move |(appended, notified): (Appended, Vec<Notification>)| {
                on_commit(&appended, &notified);
                appended
            },
        )
        .await
    }
}

/// The transaction body of `append_chat`.
async fn append(
    db: &Transaction<'_>,
    draft: ChatDraft,
    epoch: Arc<str>,
) -> Result<(Appended, Vec<Notification>), StoreError> {
    let ChatDraft {
        room,
        user,
        client_id,
        text,
        sent_at,
        mentioned,
    } = draft;
    let name = Channel::Chat(room.clone());
    let channel = name.to_string();
    if let Some((channel, offset)) = claim(db, &user.id, &client_id, &channel).await? {
        return Ok((Appended::Duplicate { channel, offset }, Vec::new()));
    }
    let offset = next_offset(db, &channel, &epoch).await?;
    let message = ChatMessage {
        channel: name,
        offset,
        room,
        msg_id: uuid::Uuid::new_v4().simple().to_string(),
        user,
        text,
        sent_at,
    };
    db.execute(
        &db.prepare_cached(&format!(
            "INSERT INTO chat_messages ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .await?,
        &[
            &channel,
            &to_db(offset),
            &message.msg_id,
            &message.user.id,
            &message.user.name,
            &message.text,
            &message.sent_at.to_string(),
        ],
    )
    .await?;
    settle_claim(db, &message.user.id, &client_id, offset).await?;
    let notified = notify(db, &message, &mentioned, &epoch).await?;
    Ok((Appended::New(message), notified))
}

/// One notification, in this transaction, for each known user `mentioned`
/// names other than the author (`model::mentioned_users`).
async fn notify(
    db: &Transaction<'_>,
    message: &ChatMessage,
    mentioned: &[String],
    epoch: &str,
) -> Result<Vec<Notification>, StoreError> {
    if mentioned.is_empty() {
        return Ok(Vec::new());
    }
    // One query for every name (however many a text mentions, the writers'
    // lock is held for one round trip), ordered by bytes (`COLLATE "C"`) as
    // SQLite orders, whatever the database's locale.
    let wanted: Vec<String> = mentioned
        .iter()
        .flat_map(|name| {
            let name = name.to_lowercase();
            [format!("guest:{name}"), name]
        })
        .collect();
    let known: Vec<String> = db
        .query(
            &db.prepare_cached(
                "SELECT id FROM users WHERE lower(id) = ANY($1) ORDER BY id COLLATE \"C\"",
            )
            .await?,
            &[&wanted],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let users = mentioned_users(&message.user.id, mentioned, |name| {
        let guest = format!("guest:{name}");
        Ok::<_, StoreError>(
            known
                .iter()
                .filter(|id| {
                    let id = id.to_lowercase();
                    id == name || id == guest
                })
                .cloned()
                .collect(),
        )
    })?;
    let (title, body) = mention_notice(message);
    let mut notified = Vec::with_capacity(users.len());
    for id in &users {
        notified.push(notifications::insert(db, id, &title, &body, &message.sent_at, epoch).await?);
    }
    Ok(notified)
}
