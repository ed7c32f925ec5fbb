//! The note feature: the page's replica of the shared note ([`Note`]) and
//! what the note panel shows of it (the text, whether it is loaded and
//! live, co-editors, the person's moved selection, a refused edit), and the
//! person's editing: input, IME composition (remote updates held until it
//! ends), undo and redo of this page's own edits, the caret shared with
//! co-editors (at the socket driver's pace). Remote updates, snapshots and
//! refusals are in `note/sync.rs`.

mod sync;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use leptos::prelude::*;

use super::connection::{Connection, ToDriver};
use super::identity::Identity;
use crate::client::initial::NotePreview;
use crate::client::note::{color_of, EditorUser, Note, Peer, NOTE_DOC};
use crate::protocol::{ClientMessage, DocAwarenessRequest};

/// Updates and awareness travel as standard base64.
pub(super) const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The note's replica and what the panel shows; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct SharedNote {
    /// The page's replica of the shared note (its undo history is apart:
    /// see [`NOTE_UNDO`]).
    note: StoredValue<Note>,
    /// The note's text, as the text area shows it: until the note is
    /// loaded, the beginning the server rendered (with a marker when the
    /// note goes on); then the replica's text.
    pub text: RwSignal<String>,
    /// Whether the replica holds the note's state from the server (the
    /// `subscribed` snapshot of this connection or an earlier one): only
    /// then may the person edit it. The page is rendered with the note's
    /// beginning only, never its state; an edit measured against a replica
    /// without that state would insert the whole text again.
    pub loaded: RwSignal<bool>,
    /// Whether the rendered beginning of the note is not all of it.
    pub cut: RwSignal<bool>,
    /// The person's selection after a remote edit moved the text around it:
    /// the view puts it back into the text area.
    pub selection_moved: RwSignal<Option<(u32, u32)>>,
    /// Co-editors and their carets, in name order.
    pub peers: RwSignal<Vec<Peer>>,
    /// Whether the note is live: signed in and subscribed on this connection.
    pub live: RwSignal<bool>,
    /// Why the server refused an edit of the note, for the panel.
    pub warning: RwSignal<Option<String>>,
    /// The person's selection in the note as the view last said (`None`:
    /// the note is not focused).
    selection: StoredValue<Option<(u32, u32)>>,
    /// Remote updates held while the person composes text (IME): `Some`
    /// while composing.
    held: StoredValue<Option<Vec<Vec<u8>>>>,
    connection: Connection,
    identity: Identity,
}

impl SharedNote {
    /// The note as rendered: its beginning shown, read-only until loaded.
    pub fn new(preview: Option<&NotePreview>, connection: Connection, identity: Identity) -> Self {
        SharedNote {
            note: StoredValue::new(new_note()),
            text: RwSignal::new(preview.map(NotePreview::shown).unwrap_or_default()),
            loaded: RwSignal::new(false),
            cut: RwSignal::new(preview.is_some_and(|note| note.more)),
            selection_moved: RwSignal::new(None),
            peers: RwSignal::new(Vec::new()),
            live: RwSignal::new(false),
            warning: RwSignal::new(None),
            selection: StoredValue::new(None),
            held: StoredValue::new(None),
            connection,
            identity,
        }
    }

    /// The person changed the note: `value` is the text area's text and
    /// `selection` its selection after the change. While they compose text
    /// (IME) nothing is taken until the composition ends.
    pub fn input(&self, value: &str, selection: (u32, u32)) {
        self.selection.set_value(Some(selection));
        // The text area is read-only until then (see `loaded`).
        if !self.loaded.get_untracked() || self.held.with_value(Option::is_some) {
            return;
        }
        let update = self
            .note
            .try_update_value(|note| {
                // The undo history starts with the first edit.
                with_undo(note, |_, _| ());
                note.edits(value, selection.1)
            })
            .unwrap_or_default();
        for update in update {
            self.local(update);
        }
    }

    /// A composition (IME) starts or ends; at its end the composed text is
    /// taken as one edit, then the co-editors' updates held meanwhile.
    pub fn composing(&self, composing: bool, value: &str, selection: (u32, u32)) {
        if composing {
            self.held.set_value(Some(Vec::new()));
            return;
        }
        let held = self.held.try_update_value(Option::take).flatten();
        self.input(value, selection);
        for update in held.unwrap_or_default() {
            self.remote(&update);
        }
    }

    /// Undoes (or redoes) the person's own last edit of the note.
    pub fn undo(&self, redo: bool) {
        if !self.loaded.get_untracked() {
            return;
        }
        let selection = self.selection.get_value();
        let result = self.note.try_update_value(|note| {
            let stickies = selection.map(|(a, h)| (note.sticky(a), note.sticky(h)));
            let update = with_undo(note, |note, undo| note.undo(undo, redo))?;
            let moved =
                stickies.and_then(|(a, h)| Some((note.index_of(&a?)?, note.index_of(&h?)?)));
            Some((update, moved))
        });
        if let Some(Some((update, moved))) = result {
            self.moved(moved);
            self.local(update);
        }
    }

    /// The person's selection in the note as last known (`None`: not focused).
    pub fn caret(&self) -> Option<(u32, u32)> {
        self.selection.get_value()
    }

    /// The person's selection moved (or the note lost focus: `None`).
    pub fn select(&self, selection: Option<(u32, u32)>) {
        self.selection.set_value(selection);
        self.share_cursor();
    }

    /// Asks the driver to share where this page's caret is (it paces them;
    /// the latest always goes).
    pub fn share_cursor(&self) {
        self.connection.ask(ToDriver::ShareCursor { renew: false });
    }

    /// This page's awareness update as the driver sends it: `None` unless
    /// signed in and the note is live.
    pub fn cursor_message(&self) -> Option<ClientMessage> {
        let user = self.identity.user.get_untracked()?;
        if !self.live.get_untracked() {
            return None;
        }
        let me = EditorUser {
            color: color_of(&user.id).to_owned(),
            id: user.id,
            name: user.name,
        };
        let selection = self.selection.get_value();
        let update = self
            .note
            .try_update_value(|note| note.awareness(&me, selection))?;
        Some(ClientMessage::DocAwareness(DocAwarenessRequest {
            doc: NOTE_DOC.to_owned(),
            update: BASE64.encode(update),
        }))
    }

    /// An edit of this page: into the outbox (it survives a reload), then
    /// shown and sent.
    fn local(&self, update: Vec<u8>) {
        let Some(user) = self.identity.user.get_untracked() else {
            return;
        };
        self.connection.enqueue_note(&user, &update);
        self.changed();
        self.share_cursor();
    }

    fn moved(&self, moved: Option<(u32, u32)>) {
        if let Some(moved) = moved {
            if self.selection.get_value() != Some(moved) {
                self.selection.set_value(Some(moved));
                self.selection_moved.set(Some(moved));
            }
        }
    }

    /// The note's text or carets changed: the signals follow (the text
    /// once the note is loaded: until then the rendered beginning stays).
    fn changed(&self) {
        if self.loaded.get_untracked() {
            let text = self.note.with_value(Note::text);
            if self.text.with_untracked(|shown| *shown != text) {
                self.text.set(text);
            }
        }
        self.peers.set(self.note.with_value(Note::peers));
    }
}

/// A replica of the note with a random Yjs client id (53 bits, as Yjs
/// draws them).
fn new_note() -> Note {
    let client = (crate::client::browser::random() * (1u64 << 53) as f64) as u64;
    Note::new(client.max(1))
}

thread_local! {
    /// The undo history of this page's note, with the Yjs client id of the
    /// replica it belongs to. Not in the reactive arena: yrs' undo manager is
    /// not `Send`, and only a page in a browser (one thread) edits; the
    /// server renders the note but never makes one.
    static NOTE_UNDO: std::cell::RefCell<Option<(u64, yrs::undo::UndoManager<()>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `work` with `note`'s undo history, made on first use (timed by the
/// browser's clock, which groups quick edits into one step).
fn with_undo<R>(
    note: &mut Note,
    work: impl FnOnce(&mut Note, &mut yrs::undo::UndoManager<()>) -> R,
) -> R {
    NOTE_UNDO.with(|cell| {
        let mut slot = cell.borrow_mut();
        let client = note.client_id();
        if slot.as_ref().is_none_or(|(owner, _)| *owner != client) {
            let clock = std::sync::Arc::new(|| crate::client::browser::now_ms() as u64);
            *slot = Some((client, note.undo_manager(clock)));
        }
        let (_, undo) = slot.as_mut().expect("made above");
        work(note, undo)
    })
}
