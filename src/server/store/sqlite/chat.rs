//! Owns chat rooms on disk: appending a message (and its mentions'
//! notifications) exactly once per (user, envelope id), and reading the
//! recent history back (a channel's row and the envelope ids:
//! `channels.rs`).

use rusqlite::{params, Connection};

use super::channels::{self, next_offset, record_sent, sent_offset};
use super::{mentions, Sqlite};
use crate::protocol::{Channel, ChatMessage, Notification, Timestamp, UserRef};
use crate::server::store::model::{Appended, ChatDraft, StoredChat};
use crate::server::store::StoreError;

fn message_from_row(row: &rusqlite::Row<'_>) -> Result<ChatMessage, rusqlite::Error> {
    let channel: Channel = row.get(0)?;
    let sent_at: String = row.get(6)?;
    let room = match &channel {
        Channel::Chat(room) => room.clone(),
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
    /// and the install is missed or doubled. It writes nothing (a room
    /// nobody wrote to is read as empty), and runs once per channel the hub
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
                let (epoch, latest) = channels::or_new(db, &channel)?;
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
    ) -> Result<Option<(Channel, u64)>, StoreError> {
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
    let name = Channel::Chat(room.clone());
    let channel = name.to_string();
    if let Some((channel, offset)) = sent_offset(db, &user.id, &client_id)? {
        return Ok((Appended::Duplicate { channel, offset }, Vec::new()));
    }
    let offset = next_offset(db, &channel)?;
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
    record_sent(db, &message.user.id, &client_id, &channel, offset)?;
    let notified = mentions::notify(db, &message, &mentioned)?;
    Ok((Appended::New(message), notified))
}
