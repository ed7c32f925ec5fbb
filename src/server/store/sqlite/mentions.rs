//! Owns storing `@mentions` in SQLite: resolving the mentioned names against
//! the users ever identified and writing their notifications in the chat
//! message's own transaction, so a message is never on disk without them,
//! and a resend adds none. Who is notified is `model::mentioned_users`.

use rusqlite::Connection;

use super::notifications;
use crate::protocol::{ChatMessage, Notification};
use crate::server::store::model::{mention_notice, mentioned_users};

/// Stores, in the caller's transaction, one notification for each known user
/// that `mentioned` names, other than the author (`mentioned_users`).
pub(super) fn notify(
    db: &Connection,
    message: &ChatMessage,
    mentioned: &[String],
) -> Result<Vec<Notification>, rusqlite::Error> {
    if mentioned.is_empty() {
        return Ok(Vec::new());
    }
    // `lower(id)` is indexed (migration 3), so each name is one index probe
    // however many users the file knows. SQLite's lower() folds ASCII only.
    let mut lookup = db.prepare_cached(
        "SELECT id FROM users WHERE lower(id) IN (?1, 'guest:' || ?1) ORDER BY id",
    )?;
    let users = mentioned_users(&message.user.id, mentioned, |name| {
        lookup
            .query_map([name], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()
    })?;
    let (title, body) = mention_notice(message);
    users
        .iter()
        .map(|id| notifications::insert(db, id, &title, &body, &message.sent_at))
        .collect()
}
