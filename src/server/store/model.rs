//! Owns what the store's callers hand in and get back, whichever database
//! runs: drafts to append, what an append did, persisted channels as loaded,
//! and the rules both databases apply the same way (who an `@mention`
//! notifies and what the notification says, a new channel's epoch).

use super::StoreError;
use crate::protocol::{Channel, ChatMessage, DocUpdateEvent, Notification, Timestamp, UserRef};

/// Unread notifications in a user's snapshot (PROTOCOL.md: the newest 100).
pub const UNREAD_SNAPSHOT: usize = 100;

/// PROTOCOL.md 1.1, Limits: "`@mentions` notify at most 10 distinct users
/// per message". Counted in users, not names: `@ada` that finds both `ada`
/// and `guest:ada` counts 2.
pub const MAX_MENTIONED_USERS: usize = 10;

/// How much of the message a mention's notification quotes.
const BODY_CHARS: usize = 200;

/// A chat message to store, as the connection validated it.
#[derive(Debug, Clone)]
pub struct ChatDraft {
    pub room: String,
    pub user: UserRef,
    /// The envelope id: the idempotency key, per user.
    pub client_id: String,
    pub text: String,
    pub sent_at: Timestamp,
    /// The case-folded names the text `@mentions` ([`mentions`]).
    pub mentioned: Vec<String>,
}

/// What `append_chat` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// A new message, now on disk.
    New(ChatMessage),
    /// This user already sent this envelope id: the original's place.
    Duplicate { channel: Channel, offset: u64 },
}

impl Appended {
    pub fn channel_offset(&self) -> (&Channel, u64) {
        match self {
            Appended::New(message) => (&message.channel, message.offset),
            Appended::Duplicate { channel, offset } => (channel, *offset),
        }
    }
}

/// A persisted channel as loaded at start: its epoch, latest offset and the
/// newest messages (oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChat {
    /// The stored epoch, or for a room with no message yet the one its first
    /// message will store.
    pub epoch: String,
    pub latest: u64,
    pub recent: Vec<ChatMessage>,
}

/// An update to store, as the connection decoded and applied it.
#[derive(Debug, Clone)]
pub struct DocDraft {
    /// The document id (`doc:{id}`).
    pub doc: String,
    pub user: UserRef,
    /// The envelope id: the idempotency key, per user.
    pub client_id: String,
    /// The Yjs v1 update, decoded from its base64.
    pub update: Vec<u8>,
}

/// What `append_doc` did.
#[derive(Debug, Clone, PartialEq)]
pub enum DocAppended {
    /// A new update, now on disk.
    New(DocUpdateEvent),
    /// This user already sent this envelope id: the original's place.
    Duplicate { channel: Channel, offset: u64 },
}

/// A document as loaded: its epoch and latest offset, the newest updates
/// (oldest first, for resume) and the document with every update applied.
pub struct StoredDoc {
    pub epoch: String,
    pub latest: u64,
    pub recent: Vec<DocUpdateEvent>,
    pub doc: yrs::Doc,
    /// The offset the stored compacted state covers.
    pub compacted_upto: u64,
}

/// A user's channel as loaded: epoch, latest offset, the newest
/// notifications (for resume) and the unread ones (the snapshot).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInbox {
    /// The stored epoch, or for a user who never had a notification the one
    /// their first notification will store.
    pub epoch: String,
    pub latest: u64,
    pub recent: Vec<Notification>,
    pub unread: Unread,
}

/// What a user's snapshot says about unread notifications: the newest
/// [`UNREAD_SNAPSHOT`] of them, oldest first, and how many there are in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unread {
    pub newest: Vec<Notification>,
    pub total: u64,
}

/// A stored document's update rows (offset, author, Yjs update), oldest
/// first, as loading needs them: the updates after `upto` (what the
/// compacted state lacks, to apply to it) and the newest `keep` rows as
/// update events (what a resume replays).
pub(super) fn split_doc_rows(
    doc_id: &str,
    channel: &Channel,
    rows: Vec<(u64, UserRef, Vec<u8>)>,
    upto: u64,
    keep: usize,
) -> (Vec<Vec<u8>>, Vec<DocUpdateEvent>) {
    use base64::Engine as _;
    let unfolded = rows
        .iter()
        .filter(|(offset, ..)| *offset > upto)
        .map(|(.., update)| update.clone())
        .collect();
    let skip = rows.len().saturating_sub(keep);
    let recent = rows
        .into_iter()
        .skip(skip)
        .map(|(offset, user, update)| DocUpdateEvent {
            channel: channel.clone(),
            offset,
            doc: doc_id.to_owned(),
            update: base64::engine::general_purpose::STANDARD.encode(update),
            user,
        })
        .collect();
    (unfolded, recent)
}

/// A document as one read snapshot holds it, before its rebuild: the
/// channel's epoch and latest offset, the compacted state and the offset it
/// covers, and the update rows from `keep` before that offset on.
pub(super) struct DocRead {
    pub epoch: String,
    pub latest: u64,
    pub state: Vec<u8>,
    pub upto: u64,
    pub rows: Vec<(u64, UserRef, Vec<u8>)>,
}

impl DocRead {
    /// The document rebuilt from what was read (milliseconds for a large
    /// one) on the blocking pool: never in a writer, never on an async
    /// worker, and with no database connection held.
    pub(super) async fn rebuild(
        self,
        doc_id: String,
        keep: usize,
    ) -> Result<StoredDoc, StoreError> {
        let DocRead {
            epoch,
            latest,
            state,
            upto,
            rows,
        } = self;
        let rebuilt = tokio::task::spawn_blocking(move || {
            let channel = Channel::Doc(doc_id.clone());
            let (unfolded, recent) = split_doc_rows(&doc_id, &channel, rows, upto, keep);
            (crate::server::hub::rebuild(&state, unfolded), recent)
        });
        let (doc, recent) = rebuilt.await?;
        Ok(StoredDoc {
            epoch,
            latest,
            recent,
            doc,
            compacted_upto: upto,
        })
    }
}

/// The names `@mentioned` in a chat text: `@` then letters, digits, `.`,
/// `_` or `-`, case-folded (user ids are matched case-folded), each once, in
/// order of appearance.
pub fn mentions(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (index, _) in text.match_indices('@') {
        let before = text[..index].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric()) {
            continue; // an e-mail address, not a mention
        }
        let name: String = text[index + 1..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect();
        let id = name.trim_end_matches(['.', '-']).to_lowercase();
        if !id.is_empty() && !found.contains(&id) {
            found.push(id);
        }
    }
    found
}

/// Who a message notifies: for each mentioned name in order, the known ids
/// it matched (`lookup`: the user `name` and `guest:name`, case-folded,
/// sorted), never the author, each once, at most [`MAX_MENTIONED_USERS`].
pub(super) fn mentioned_users<E>(
    author: &str,
    mentioned: &[String],
    mut lookup: impl FnMut(&str) -> Result<Vec<String>, E>,
) -> Result<Vec<String>, E> {
    let mut users: Vec<String> = Vec::new();
    for name in mentioned {
        for id in lookup(&name.to_lowercase())? {
            if id == author || users.contains(&id) {
                continue;
            }
            if users.len() == MAX_MENTIONED_USERS {
                return Ok(users);
            }
            users.push(id);
        }
    }
    Ok(users)
}

/// The title and body of the notification a mention in `message` sends.
pub(super) fn mention_notice(message: &ChatMessage) -> (String, String) {
    let title = format!("{} mentioned you in #{}", message.user.name, message.room);
    let body: String = message.text.chars().take(BODY_CHARS).collect();
    (title, body)
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn mentions_are_case_folded_names_after_an_at_sign() {
        assert_eq!(mentions("hi @Bob and @alice."), ["bob", "alice"]);
        assert_eq!(mentions("@bob @BOB"), ["bob"]);
        assert!(mentions("mail me at ann@example.com").is_empty());
        assert!(mentions("just @ nothing").is_empty());
        assert_eq!(mentions("@Zoë!"), ["zoë"]);
    }
}
