//! Awareness, who is editing where: a client's y-protocols awareness update
//! decoded into checked [`Entries`] on the connection's own task (its count
//! of entries bounded by its bytes before anything is reserved, each state
//! a JSON object or `null` of at most 4 KiB), and the [`Editors`] a document
//! holds: each state by Yjs client id with the connection owning it, and
//! what a paced connection changed since its last relay, so that its next
//! relay (one per pace interval, removals included) carries the latest.

use std::collections::HashMap;
use std::sync::Arc;

use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::updates::encoder::Encode;
use yrs::ClientID;

use super::lib0::{ReadError, Reader};
use super::{DocError, MAX_AWARENESS_STATE, MAX_CLIENTS_PER_CONNECTION};
use crate::protocol::UserRef;
use crate::server::hub::SubscriberId;

/// One state of an awareness update: `null` (a removal) or a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub client: u64,
    pub clock: u32,
    pub state: serde_json::Value,
}

/// A decoded, checked awareness update, in the order its entries came.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entries(pub Vec<Entry>);

/// Decodes an awareness update (a count, then per entry a client id, a
/// clock and a JSON string); every state is checked before any is kept.
pub fn decode(bytes: &[u8]) -> Result<Entries, DocError> {
    let bad = |reason: String| DocError::BadAwareness(reason);
    let mut reader = Reader::new(bytes);
    let count = reader.var_u64().map_err(|err| bad(err.to_string()))?;
    // An entry takes three bytes at least: id, clock, an empty string.
    if count > (reader.remaining() / 3) as u64 {
        return Err(bad("it claims more states than its bytes can hold".into()));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (client, clock, json) = entry(&mut reader).map_err(|err| bad(err.to_string()))?;
        if json.len() > MAX_AWARENESS_STATE {
            return Err(bad(format!(
                "a state is at most {MAX_AWARENESS_STATE} bytes of JSON"
            )));
        }
        let state: serde_json::Value =
            serde_json::from_str(json).map_err(|err| bad(format!("state of {client}: {err}")))?;
        if !state.is_null() && !state.is_object() {
            return Err(bad("a state must be a JSON object".into()));
        }
        entries.push(Entry {
            client,
            clock,
            state,
        });
    }
    if reader.remaining() != 0 {
        return Err(bad("bytes follow its end".into()));
    }
    Ok(Entries(entries))
}

/// One entry's client id, clock and JSON text.
fn entry<'a>(reader: &mut Reader<'a>) -> Result<(u64, u32, &'a str), ReadError> {
    Ok((reader.var_u64()?, reader.var_u32()?, reader.string()?))
}

/// One editor's awareness state, as relayed (identity stamped by the server).
#[derive(Debug, Clone)]
struct Editor {
    /// The connection that announced it: whose end removes it.
    owner: SubscriberId,
    /// Whose state it is: the same user's next connection (a page that
    /// reconnected before the server noticed its old socket died) may take
    /// it over; nobody else may.
    user_id: String,
    clock: u32,
    json: Arc<str>,
}

/// The awareness states of one document's editors.
#[derive(Debug, Default)]
pub struct Editors {
    held: HashMap<u64, Editor>,
    /// States removed by a paced connection and not relayed yet, by client
    /// id: its owner and the removal's clock (its next relay carries them).
    removed: HashMap<u64, (SubscriberId, u32)>,
}

impl Editors {
    /// Takes a connection's awareness entries: each state is stamped with
    /// the connection's `user` (nobody appears as someone else), a state
    /// owned by another user's connection or older than the one held is left
    /// out, and `null` removes the sender's own. Returns what to relay now
    /// when `relay` (the connection is not paced); when paced, what changed
    /// is kept for its next relay ([`Editors::latest_of`]).
    pub fn take(
        &mut self,
        owner: SubscriberId,
        user: &UserRef,
        entries: Entries,
        relay: bool,
    ) -> Option<Vec<u8>> {
        let mut accepted = Vec::new();
        for entry in entries.0 {
            let client = entry.client;
            let held = self.held.get(&client);
            let theirs = |held: &Editor| held.owner != owner && held.user_id != user.id;
            if held.is_some_and(|held| theirs(held) || held.clock > entry.clock) {
                continue;
            }
            if entry.state.is_null() {
                if self.held.remove(&client).is_some() {
                    if relay {
                        accepted.push((client, entry.clock, Arc::from("null")));
                    } else {
                        self.removed.insert(client, (owner, entry.clock));
                    }
                }
                continue;
            }
            let Some(json) = stamp(entry.state, user) else {
                continue;
            };
            if held.is_none() && self.clients_of(owner) >= MAX_CLIENTS_PER_CONNECTION {
                continue;
            }
            let json: Arc<str> = json.into();
            self.removed.remove(&client);
            self.held.insert(
                client,
                Editor {
                    owner,
                    user_id: user.id.clone(),
                    clock: entry.clock,
                    json: json.clone(),
                },
            );
            accepted.push((client, entry.clock, json));
        }
        if !relay || accepted.is_empty() {
            return None;
        }
        accepted.extend(self.take_removed(owner));
        Some(encode_entries(accepted))
    }

    /// Every editor's state, as one awareness update.
    pub fn all(&self) -> Vec<u8> {
        encode_entries(
            self.held
                .iter()
                .map(|(&client, editor)| (client, editor.clock, editor.json.clone())),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// `owner`'s current states and the removals it made since its last
    /// relay, as one update (its paced relay); `None` if there are none.
    pub fn latest_of(&mut self, owner: SubscriberId) -> Option<Vec<u8>> {
        let mut entries: Vec<_> = self
            .held
            .iter()
            .filter(|(_, editor)| editor.owner == owner)
            .map(|(&client, editor)| (client, editor.clock, editor.json.clone()))
            .collect();
        entries.extend(self.take_removed(owner));
        (!entries.is_empty()).then(|| encode_entries(entries))
    }

    /// Removes every state `owner` announced (it left or died): the removal
    /// update for the others (with those it removed while paced), or `None`
    /// if it had none.
    pub fn remove_owner(&mut self, owner: SubscriberId) -> Option<Vec<u8>> {
        let mut removed = self.take_removed(owner);
        self.held.retain(|&client, editor| {
            if editor.owner == owner {
                // y-protocols drops a state on a newer clock with `null`.
                removed.push((client, editor.clock.wrapping_add(1), Arc::from("null")));
                false
            } else {
                true
            }
        });
        (!removed.is_empty()).then(|| encode_entries(removed))
    }

    fn take_removed(&mut self, owner: SubscriberId) -> Vec<(u64, u32, Arc<str>)> {
        let mut taken = Vec::new();
        self.removed.retain(|&client, &mut (by, clock)| {
            if by == owner {
                taken.push((client, clock, Arc::from("null")));
                false
            } else {
                true
            }
        });
        taken
    }

    fn clients_of(&self, owner: SubscriberId) -> usize {
        self.held.values().filter(|e| e.owner == owner).count()
    }
}

/// The state with `user.id` and `user.name` set to the connection's; `None`
/// unless it is an object. Other fields (`color`, `cursor`) are kept.
fn stamp(mut state: serde_json::Value, user: &UserRef) -> Option<String> {
    let object = state.as_object_mut()?;
    let person = object
        .entry("user")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if !person.is_object() {
        *person = serde_json::Value::Object(Default::default());
    }
    let person = person.as_object_mut()?;
    person.insert("id".into(), user.id.clone().into());
    person.insert("name".into(), user.name.clone().into());
    Some(state.to_string())
}

/// Entries `(client, clock, json)` as one y-protocols awareness update.
pub fn encode_entries(entries: impl IntoIterator<Item = (u64, u32, Arc<str>)>) -> Vec<u8> {
    let clients = entries
        .into_iter()
        .map(|(client, clock, json)| (ClientID::new(client), AwarenessUpdateEntry { clock, json }))
        .collect();
    AwarenessUpdate { clients }.encode_v1()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use yrs::updates::decoder::Decode;

    fn alice() -> UserRef {
        UserRef {
            id: "alice".into(),
            name: "Alice".into(),
        }
    }

    fn update(entries: &[(u64, u32, &str)]) -> Vec<u8> {
        encode_entries(
            entries
                .iter()
                .map(|&(client, clock, json)| (client, clock, Arc::from(json))),
        )
    }

    fn entries(list: &[(u64, u32, &str)]) -> Entries {
        decode(&update(list)).unwrap()
    }

    /// Client id → (clock, state is null).
    fn states(bytes: &[u8]) -> HashMap<u64, (u32, bool)> {
        AwarenessUpdate::decode_v1(bytes)
            .unwrap()
            .clients
            .into_iter()
            .map(|(client, entry)| (client.get(), (entry.clock, &*entry.json == "null")))
            .collect()
    }

    #[test]
    fn a_count_larger_than_the_bytes_is_refused_before_anything_is_reserved() {
        // 2^40 entries claimed in a dozen bytes; then 4 million in 100.
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 7, 1, 2, b'{', b'}'];
        assert!(matches!(decode(&huge), Err(DocError::BadAwareness(_))));
        let mut millions = vec![0x80, 0x80, 0x80, 0x02];
        millions.extend(std::iter::repeat_n(0u8, 96));
        assert!(matches!(decode(&millions), Err(DocError::BadAwareness(_))));
        let mut trailing = update(&[(7, 1, "{}")]);
        trailing.push(0);
        assert!(decode(&trailing).is_err());
    }

    #[test]
    fn real_updates_decode_as_yrs_reads_them() {
        let list = [
            (7, 1, r#"{"cursor":null}"#),
            (8, 9, "null"),
            (1 << 40, 3, "{}"),
        ];
        let decoded = entries(&list);
        assert_eq!(decoded.0.len(), 3);
        let yrs = AwarenessUpdate::decode_v1(&update(&list)).unwrap();
        for entry in &decoded.0 {
            let theirs = &yrs.clients[&ClientID::new(entry.client)];
            assert_eq!(entry.clock, theirs.clock);
            assert_eq!(
                entry.state,
                serde_json::from_str::<serde_json::Value>(&theirs.json).unwrap()
            );
        }
        assert_eq!(decode(&[0]).unwrap(), Entries::default());
    }

    #[test]
    fn a_paced_removal_is_folded_into_the_next_relay() {
        let mut editors = Editors::default();
        assert!(editors
            .take(1, &alice(), entries(&[(7, 1, "{}")]), true)
            .is_some());
        // Paced: nothing goes out now, the removal waits for the relay.
        assert_eq!(
            editors.take(1, &alice(), entries(&[(7, 2, "null")]), false),
            None
        );
        assert!(editors.is_empty());
        let relay = editors.latest_of(1).expect("the removal");
        assert_eq!(states(&relay), HashMap::from([(7, (2, true))]));
        assert_eq!(editors.latest_of(1), None, "relayed once");
    }

    #[test]
    fn a_state_set_again_while_paced_replaces_the_pending_removal() {
        let mut editors = Editors::default();
        editors.take(1, &alice(), entries(&[(7, 1, "{}")]), true);
        for clock in 2..50 {
            let state = if clock % 2 == 0 { "null" } else { "{}" };
            assert_eq!(
                editors.take(1, &alice(), entries(&[(7, clock, state)]), false),
                None
            );
        }
        // The last message (clock 49) set a state: that is what goes out.
        let relay = editors.latest_of(1).expect("the latest");
        assert_eq!(states(&relay), HashMap::from([(7, (49, false))]));
    }

    #[test]
    fn leaving_while_paced_removes_what_the_others_last_saw() {
        let mut editors = Editors::default();
        editors.take(1, &alice(), entries(&[(7, 1, "{}"), (8, 1, "{}")]), true);
        editors.take(1, &alice(), entries(&[(7, 2, "null")]), false);
        let removal = editors.remove_owner(1).expect("both");
        assert_eq!(
            states(&removal),
            HashMap::from([(7, (2, true)), (8, (2, true))])
        );
        assert_eq!(editors.latest_of(1), None);
    }
}
