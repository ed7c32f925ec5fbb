//! Owns `@mentions`: finding them in a chat text, resolving them against the
//! users ever identified, and the cap on how many users one message notifies.
//! The notifications are written in the chat message's own transaction, so a
//! message is never on disk without them, and a resend adds none.

use rusqlite::Connection;

use super::notifications;
use crate::protocol::{ChatMessage, Notification};

/// PROTOCOL.md 1.1, Limits: "`@mentions` notify at most 10 distinct users
/// per message". Counted in users, not names: `@ada` that finds both `ada`
/// and `guest:ada` counts 2.
pub const MAX_MENTIONED_USERS: usize = 10;

/// How much of the message a mention's notification quotes.
const BODY_CHARS: usize = 200;

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

/// Stores, in the caller's transaction, one notification for each known user
/// that `mentioned` names, other than the author: the user whose id is the
/// name or `guest:` and the name (case-folded), in order of mention, and at
/// most `MAX_MENTIONED_USERS` of them.
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
    let mut users: Vec<String> = Vec::new();
    'names: for name in mentioned {
        let ids = lookup
            .query_map([name.to_lowercase()], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        for id in ids {
            if id == message.user.id || users.contains(&id) {
                continue;
            }
            if users.len() == MAX_MENTIONED_USERS {
                break 'names;
            }
            users.push(id);
        }
    }
    let title = format!("{} mentioned you in #{}", message.user.name, message.room);
    let body: String = message.text.chars().take(BODY_CHARS).collect();
    users
        .iter()
        .map(|id| notifications::insert(db, id, &title, &body, &message.sent_at))
        .collect()
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
