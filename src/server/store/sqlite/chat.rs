//! Owns chat rooms on disk: a persisted channel's epoch and latest offset,
//! appending a message (and its mentions' notifications) exactly once per
//! (user, envelope id), and reading the recent history back.

use rusqlite::{params, Connection, OptionalExtension};

use super::{mentions, Sqlite};
use crate::protocol::{Channel, ChatMessage, Notification, Timestamp, UserRef};
use crate::server::store::model::{new_channel_epoch, Appended, ChatDraft, StoredChat};
use crate::server::store::StoreError;

/// The epoch and latest offset of `channel`, if it exists: a channel gets
/// its row with its first message, so reading one never writes.
pub(super) fn existing_channel(
    db: &Connection,
    channel: &str,
) -> Result<Option<(String, u64)>, rusqlite::Error> {
    db.query_row(
        "SELECT epoch, latest FROM channels WHERE name = ?1",
        [channel],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)),
    )
    .optional()
}

/// Where `user_id`'s message with envelope id `client_id` was stored, if it
/// was: the idempotency key of `chat_send`, read by the append itself and by
/// a resend over the rate limit.
pub(super) fn sent_offset(
    db: &Connection,
    user_id: &str,
    client_id: &str,
) -> Result<Option<(String, u64)>, rusqlite::Error> {
    db.prepare_cached("SELECT channel, offset FROM sent_ids WHERE user_id = ?1 AND client_id = ?2")?
        .query_row(params![user_id, client_id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
        })
        .optional()
}

/// The epoch and latest offset of `channel`, or those it will have: a
/// channel nobody wrote to yet is read as empty, never created.
pub(super) fn channel_or_new(
    db: &Connection,
    channel: &str,
) -> Result<(String, u64), rusqlite::Error> {
    Ok(existing_channel(db, channel)?.unwrap_or_else(|| (new_channel_epoch().to_owned(), 0)))
}

/// The epoch and latest offset of `channel`, creating the row on first use
/// (only when a message is about to be stored in it).
pub(super) fn channel_row(
    db: &Connection,
    channel: &str,
) -> Result<(String, u64), rusqlite::Error> {
    if let Some(found) = existing_channel(db, channel)? {
        return Ok(found);
    }
    let epoch = new_channel_epoch().to_owned();
    db.execute(
        "INSERT INTO channels (name, epoch, latest) VALUES (?1, ?2, 0)",
        params![channel, epoch],
    )?;
    Ok((epoch, 0))
}

fn message_from_row(row: &rusqlite::Row<'_>) -> Result<ChatMessage, rusqlite::Error> {
    let channel: String = row.get(0)?;
    let sent_at: String = row.get(6)?;
    let room = match channel.parse::<Channel>() {
        Ok(Channel::Chat(room)) => room,
        _ => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("`{channel}` is not a chat channel").into(),
            ))
        }
    };
    Ok(ChatMessage {
        room,
        channel,
        offset: row.get::<_, i64>(1)? as u64,
        msg_id: row.get(2)?,
        user: UserRef {
            id: row.get(3)?,
            name: row.get(4)?,
        },
        text: row.get(5)?,
        sent_at: Timestamp::parse(&sent_at).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                6,
                rusqlite::types::Type::Text,
                "bad sent_at".into(),
            )
        })?,
    })
}

const COLUMNS: &str = "channel, offset, msg_id, user_id, user_name, text, sent_at";

impl Sqlite {
    /// A chat channel's epoch, latest offset and newest `keep` messages,
    /// handed to `then` on the writer thread after its group is committed.
    ///
    /// This is a writer job, not a read, on purpose: the writer is the only
    /// thing that commits messages, and it runs `then` (which installs the
    /// channel in the hub) in queue order with every other job's callback. A
    /// message queued before this load is in what it reads; one queued after
    /// is published after the install. So nothing committed between the read
    /// and the install is missed or doubled. (It also creates the channel's
    /// row on first use, which is a write.) It runs once per channel the hub
    /// loads, so it costs the writer little.
    pub async fn load_chat<R, F>(
        &self,
        channel: String,
        keep: usize,
        then: F,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(StoredChat) -> R + Send + 'static,
    {
        self.write(
            move |db| {
                let (epoch, latest) = channel_or_new(db, &channel)?;
                let mut statement = db.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM chat_messages WHERE channel = ?1 ORDER BY offset DESC LIMIT ?2"
                ))?;
                let mut recent = statement
                    .query_map(params![channel, keep as i64], message_from_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                recent.reverse();
                Ok(StoredChat { epoch, latest, recent })
            },
            then,
        )
        .await
    }

    /// Up to `limit` messages of `channel` before `offset`, oldest first
    /// (for loading older history). A read: it never waits for the writer.
    pub async fn chat_before(
        &self,
        channel: String,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        self.read(move |db| {
            let mut statement = db.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM chat_messages WHERE channel = ?1 AND offset < ?2 ORDER BY offset DESC LIMIT ?3"
            ))?;
            let mut messages = statement
                .query_map(params![channel, offset as i64, limit as i64], message_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            messages.reverse();
            Ok(messages)
        })
        .await
    }

    /// Where `user_id`'s message with envelope id `client_id` was stored, if
    /// it was: a resend is acked with this, even over the rate limit.
    pub async fn sent(
        &self,
        user_id: String,
        client_id: String,
    ) -> Result<Option<(String, u64)>, StoreError> {
        self.read(move |db| Ok(sent_offset(db, &user_id, &client_id)?))
            .await
    }

    /// Appends the draft to its room with the next offset, together with the
    /// notifications of the users it `@mentions` (at most
    /// `MAX_MENTIONED_USERS`), all in one transaction, unless this user
    /// already sent this `client_id` (then nothing is written, and nobody is
    /// notified again). `on_commit` gets what was stored after the commit, in
    /// commit order, so what it publishes keeps that order.
    pub async fn append_chat<F>(
        &self,
        draft: ChatDraft,
        on_commit: F,
    ) -> Result<Appended, StoreError>
    where
        F: FnOnce(&Appended, &[Notification]) + Send + 'static,
    {
        self.write(
            move |db| append(db, draft),
            move |(appended, notified)| {
                on_commit(&appended, &notified);
                appended
            },
        )
        .await
    }
}

/// The transaction body of `append_chat`.
fn append(db: &Connection, draft: ChatDraft) -> Result<(Appended, Vec<Notification>), StoreError> {
    let ChatDraft {
        room,
        user,
        client_id,
        text,
        sent_at,
        mentioned,
    } = draft;
    let channel = Channel::Chat(room.clone()).to_string();
    if let Some((channel, offset)) = sent_offset(db, &user.id, &client_id)? {
        return Ok((Appended::Duplicate { channel, offset }, Vec::new()));
    }
    let (_, latest) = channel_row(db, &channel)?;
    let offset = latest + 1;
    let message = ChatMessage {
        channel: channel.clone(),
        offset,
        room,
        msg_id: uuid::Uuid::new_v4().simple().to_string(),
        user,
        text,
        sent_at,
    };
    db.execute(
        &format!("INSERT INTO chat_messages ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            channel,
            offset as i64,
            message.msg_id,
            message.user.id,
            message.user.name,
            message.text,
            message.sent_at.to_string()
        ],
    )?;
    db.execute(
        "UPDATE channels SET latest = ?2 WHERE name = ?1",
        params![channel, offset as i64],
    )?;
    db.execute(
        "INSERT INTO sent_ids (user_id, client_id, channel, offset) VALUES (?1, ?2, ?3, ?4)",
        params![message.user.id, client_id, channel, offset as i64],
    )?;
    let notified = mentions::notify(db, &message, &mentioned)?;
    Ok((Appended::New(message), notified))
}
