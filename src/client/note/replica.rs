//! Owns the engine's replica of the shared note (`doc:notes`): a yrs document
//! counted in UTF-16 units (as a text area's selection is), local edits as
//! the smallest change between the text it had and the text it has now,
//! remote updates, undo and redo of the person's own edits only, carets as
//! sticky indices (Yjs relative positions) that stay put under remote edits,
//! and co-editors' awareness states.
//!
//! Pure: no DOM, no socket, no clock or random source of its own (the undo
//! manager's clock comes in; the document's guid is fixed), so every rule is
//! tested natively, and on a split build it all lives in the note's wasm
//! module (nothing here may call JavaScript: see `mod.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{EditorUser, NoteError, Peer, EDIT_CHUNK};
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::time::Clock;
use yrs::undo::{Options as UndoOptions, UndoManager};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Assoc, ClientID, Doc, GetString, IndexScope, IndexedSequence, OffsetKind, Options, Origin,
    ReadTxn, StickyIndex, Text, TextRef, Transact, Update,
};

/// The document's guid (fixed: see `Note::new`).
const GUID: &str = "pulse-notes";
/// The name of the note's text in the document (PROTOCOL.md).
const TEXT: &str = "text";
/// The origin of transactions that apply what the server sent: never undone.
const REMOTE: &str = "remote";
/// The origin of this page's own edits: what undo undoes.
const LOCAL: &str = "local";
/// Edits closer together than this are undone as one step.
const UNDO_GROUP_MS: u64 = 500;

/// A caret or selection in this replica's terms.
type Cursor = crate::protocol::Cursor<StickyIndex>;

/// One awareness state (its JSON is `protocol::EditorState`'s).
type EditorState = crate::protocol::EditorState<StickyIndex>;

/// The page's replica of the note.
pub struct Note {
    doc: Doc,
    text: TextRef,
    /// Awareness states of everyone but this page, by Yjs client id, with
    /// their clocks (kept for a removed one: an older state stays removed).
    peers: BTreeMap<u64, (u32, Option<EditorState>)>,
    /// This page's awareness clock.
    clock: u32,
}

impl std::fmt::Debug for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Note")
            .field("client", &self.client_id())
            .field("text", &self.text())
            .finish()
    }
}

impl Note {
    /// An empty replica with Yjs client id `client_id`.
    pub fn new(client_id: u64) -> Self {
        // A struct literal, not `Options::with_client_id`: that draws a
        // random guid, and yrs' random source calls JavaScript in a browser.
        // The guid names a document among subdocuments; this one has none.
        let options = Options {
            client_id: ClientID::new(client_id & ((1 << 53) - 1)),
            guid: GUID.into(),
            collection_id: None,
            offset_kind: OffsetKind::Utf16,
            skip_gc: false,
            auto_load: false,
            should_load: true,
            cleanup_formatting: true,
        };
        let doc = Doc::with_options(options);
        let text = doc.get_or_insert_text(TEXT);
        Note {
            doc,
            text,
            peers: BTreeMap::new(),
            clock: 0,
        }
    }

    /// The history of this replica's own edits, for undo and redo; `clock`
    /// times the grouping of quick edits into one step. Kept apart from the
    /// note (it is not `Send`, and only a page in a browser needs one).
    pub fn undo_manager(&self, clock: Arc<dyn Clock>) -> UndoManager<()> {
        let mut undo = UndoManager::with_options(UndoOptions {
            capture_timeout_millis: UNDO_GROUP_MS,
            tracked_origins: [Origin::from(LOCAL)].into_iter().collect(),
            capture_transaction: None,
            timestamp: clock,
            init_undo_stack: Vec::new(),
            init_redo_stack: Vec::new(),
        });
        undo.expand_scope(&self.doc, &self.text);
        undo
    }

    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// The note's text.
    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// The text's length in UTF-16 units.
    fn len(&self) -> u32 {
        self.text.len(&self.doc.transact())
    }

    /// Applies a Yjs v1 update from the server (a snapshot's state or a
    /// `doc_update`); applying one already applied changes nothing.
    pub fn apply_remote(&mut self, update: &[u8]) -> Result<(), NoteError> {
        let update = Update::decode_v1(update).map_err(|e| NoteError::Update(e.to_string()))?;
        self.doc
            .transact_mut_with(REMOTE)
            .apply_update(update)
            .map_err(|e| NoteError::Update(e.to_string()))
    }

    /// The person changed the text to `new` (the text area's value), with
    /// the caret at `caret` (UTF-16) after the change: applies the smallest
    /// change that makes it so and returns its update, or `None` if the text
    /// is the same. The caret decides where an ambiguous change happened
    /// (typing `a` in `aa` at the end is an insert at 2, not at 0).
    pub fn edit(&mut self, new: &str, caret: u32) -> Option<Vec<u8>> {
        let old: Vec<u16> = self.text().encode_utf16().collect();
        let new_units: Vec<u16> = new.encode_utf16().collect();
        let change = Change::between(&old, &new_units, caret as usize)?;
        let mut txn = self.doc.transact_mut_with(LOCAL);
        if change.removed > 0 {
            self.text
                .remove_range(&mut txn, change.at as u32, change.removed as u32);
        }
        if !change.inserted.is_empty() {
            let inserted = String::from_utf16_lossy(&change.inserted);
            self.text.insert(&mut txn, change.at as u32, &inserted);
        }
        Some(txn.encode_update_v1())
    }

    /// [`Note::edit`] for any size of change: a long insertion (a paste) is
    /// made in pieces of [`EDIT_CHUNK`] characters, one update each, so no
    /// update outgrows a message.
    pub fn edits(&mut self, new: &str, caret: u32) -> Vec<Vec<u8>> {
        let old: Vec<u16> = self.text().encode_utf16().collect();
        let new_units: Vec<u16> = new.encode_utf16().collect();
        let Some(change) = Change::between(&old, &new_units, caret as usize) else {
            return Vec::new();
        };
        if change.inserted.len() <= EDIT_CHUNK {
            return self.edit(new, caret).into_iter().collect();
        }
        let mut updates = Vec::new();
        let mut at = change.at;
        if change.removed > 0 {
            let mut txn = self.doc.transact_mut_with(LOCAL);
            self.text
                .remove_range(&mut txn, at as u32, change.removed as u32);
            updates.push(txn.encode_update_v1());
        }
        let mut rest = &change.inserted[..];
        while !rest.is_empty() {
            let mut cut = rest.len().min(EDIT_CHUNK);
            // Never between the halves of a surrogate pair.
            if cut < rest.len() && (0xDC00..=0xDFFF).contains(&rest[cut]) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            let mut txn = self.doc.transact_mut_with(LOCAL);
            self.text
                .insert(&mut txn, at as u32, &String::from_utf16_lossy(piece));
            updates.push(txn.encode_update_v1());
            at += piece.len();
            rest = tail;
        }
        updates
    }

    /// Undoes (or with `redo`, redoes) this page's last edit, never a
    /// co-editor's: its update. `undo` is this note's
    /// [`Note::undo_manager`].
    pub fn undo(&mut self, undo: &mut UndoManager<()>, redo: bool) -> Option<Vec<u8>> {
        let before = self.doc.transact().state_vector();
        let done = if redo {
            undo.redo_blocking()
        } else {
            undo.undo_blocking()
        };
        done.then(|| self.doc.transact().encode_state_as_update_v1(&before))
    }

    /// A caret position that stays after the same character whatever
    /// others insert or delete around it. It sticks to the character before
    /// it, so what a co-editor types at the same spot goes after the caret
    /// and two people typing at one place each keep their words whole.
    pub fn sticky(&self, index: u32) -> Option<StickyIndex> {
        let index = index.min(self.len());
        let sticky = self
            .text
            .sticky_index(&self.doc.transact(), index, Assoc::Before);
        // At the start there is no character before: Yjs then names the
        // text itself, which resolves to its start.
        sticky.or_else(|| {
            (index == 0).then(|| StickyIndex::new(IndexScope::Root(TEXT.into()), Assoc::Before))
        })
    }

    /// Where a sticky position is now (`None` if the text it names has not
    /// arrived).
    pub fn index_of(&self, sticky: &StickyIndex) -> Option<u32> {
        sticky
            .get_offset(&self.doc.transact())
            .map(|offset| offset.index)
    }

    /// This page's awareness state (`user` with a caret or selection from
    /// `anchor` to `head`, or none when the note is not focused), as an
    /// awareness update with the next clock.
    pub fn awareness(&mut self, user: &EditorUser, selection: Option<(u32, u32)>) -> Vec<u8> {
        let cursor = selection.and_then(|(anchor, head)| {
            Some(Cursor {
                anchor: self.sticky(anchor)?,
                head: self.sticky(head)?,
            })
        });
        let state = EditorState {
            user: user.clone(),
            cursor,
        };
        self.clock += 1;
        encode_awareness(self.client_id(), self.clock, state.to_json())
    }

    /// Takes co-editors' awareness states (a snapshot's or a relayed
    /// update); `null` removes one. This page's own state is ignored.
    pub fn apply_awareness(&mut self, update: &[u8]) -> Result<(), NoteError> {
        if update.is_empty() {
            return Ok(());
        }
        let update =
            AwarenessUpdate::decode_v1(update).map_err(|e| NoteError::Awareness(e.to_string()))?;
        for (client, entry) in update.clients {
            let client = client.get();
            if client == self.client_id() {
                continue;
            }
            let newer = self
                .peers
                .get(&client)
                .is_none_or(|(clock, _)| *clock <= entry.clock);
            if !newer {
                continue;
            }
            // A state this page cannot read counts as no state.
            let state = EditorState::from_json(&entry.json);
            self.peers.insert(client, (entry.clock, state));
        }
        Ok(())
    }

    /// Forgets every co-editor (the connection is gone; the snapshot of the
    /// next one says who is there).
    pub fn forget_peers(&mut self) {
        self.peers.clear();
    }

    /// Co-editors with their carets resolved in the current text, in the
    /// order of their names.
    pub fn peers(&self) -> Vec<Peer> {
        let mut peers: Vec<Peer> = self
            .peers
            .iter()
            .filter_map(|(client, (_, state))| Some((client, state.as_ref()?)))
            .map(|(client, state)| {
                let resolve = |pick: fn(&Cursor) -> &StickyIndex| {
                    state.cursor.as_ref().and_then(|c| self.index_of(pick(c)))
                };
                Peer {
                    client: *client,
                    user: state.user.clone(),
                    anchor: resolve(|c| &c.anchor),
                    head: resolve(|c| &c.head),
                }
            })
            .collect();
        peers.sort_by(|a, b| a.user.name.cmp(&b.user.name).then(a.client.cmp(&b.client)));
        peers
    }
}

/// One awareness state as an awareness update.
fn encode_awareness(client: u64, clock: u32, json: String) -> Vec<u8> {
    let entry = AwarenessUpdateEntry {
        clock,
        json: json.into(),
    };
    let clients = [(ClientID::new(client), entry)].into_iter().collect();
    AwarenessUpdate { clients }.encode_v1()
}

/// Merges Yjs v1 updates into one (for an outbox that sends one at a time).
pub fn merge_updates(updates: &[&[u8]]) -> Result<Vec<u8>, NoteError> {
    yrs::merge_updates_v1(updates).map_err(|e| NoteError::Update(e.to_string()))
}

/// The smallest change from one text to another, in UTF-16 units.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    at: usize,
    removed: usize,
    inserted: Vec<u16>,
}

impl Change {
    /// The change from `old` to `new` that leaves the caret (at `caret` in
    /// `new`) at the end of what was inserted; `None` if they are equal.
    fn between(old: &[u16], new: &[u16], caret: usize) -> Option<Change> {
        if old == new {
            return None;
        }
        let caret = caret.min(new.len());
        let is_high = |unit: u16| (0xD800..=0xDBFF).contains(&unit);
        let is_low = |unit: u16| (0xDC00..=0xDFFF).contains(&unit);
        // The unchanged end reaches back at most to the caret (what was
        // typed ends there)...
        let most = old.len().min(new.len() - caret);
        let mut suffix = old
            .iter()
            .rev()
            .zip(new.iter().rev())
            .take(most)
            .take_while(|(a, b)| a == b)
            .count();
        // ...and never splits a surrogate pair; nor does the unchanged start.
        if suffix > 0 && is_low(new[new.len() - suffix]) {
            suffix -= 1;
        }
        let most = (old.len() - suffix).min(new.len() - suffix);
        let mut prefix = old
            .iter()
            .zip(new)
            .take(most)
            .take_while(|(a, b)| a == b)
            .count();
        if prefix > 0 && is_high(new[prefix - 1]) {
            prefix -= 1;
        }
        Some(Change {
            at: prefix,
            removed: old.len() - suffix - prefix,
            inserted: new[prefix..new.len() - suffix].to_vec(),
        })
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
