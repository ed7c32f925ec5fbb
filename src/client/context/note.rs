//! The note feature: the page's replica of the shared note (behind the
//! [`NoteReplica`] seam, installed once its engine is here) and what the
//! note panel shows of it (the text, whether it is loaded and live,
//! co-editors, the person's moved selection, a refused edit, whether the
//! editor is loading), and the person's editing: input, IME composition
//! (remote updates held until it ends), undo and redo of this page's own
//! edits, the caret shared with co-editors (at the socket driver's pace).
//! Remote updates, snapshots and refusals are in `note/sync.rs`; frames
//! that arrive before the engine, and its installation, in
//! `note/pending.rs` and `note/install.rs`.

mod install;
mod pending;
mod sync;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use leptos::prelude::*;

use super::connection::{Connection, ConnectionStatus, ToDriver};
use super::identity::Identity;
use crate::client::initial::NotePreview;
use crate::client::note::{color_of, EditorUser, NoteReplica, Peer, Selection, NOTE_DOC};
use crate::protocol::{ClientMessage, DocAwarenessRequest};
pub use install::NoteEditor;

use pending::PendingNote;

/// Updates and awareness travel as standard base64.
pub(super) const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The engine's replica, once installed. Local to the thread: the engine is
/// not `Send` (yrs' undo manager).
type Engine = StoredValue<Option<Box<dyn NoteReplica>>, LocalStorage>;

/// The note's replica and what the panel shows; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct SharedNote {
    /// The page's replica of the shared note with its undo history: `None`
    /// until the note's engine is installed ([`NoteEditor`]). No slot at all
    /// on the server, which renders the note but never edits it: a local
    /// value would be dropped on another of its threads, and that panics.
    engine: Option<Engine>,
    /// What the server sent about the note before the engine was here,
    /// replayed into it on install.
    pending: StoredValue<PendingNote>,
    /// Whether the note's engine is here, coming, or failed to come.
    pub editor: RwSignal<NoteEditor>,
    /// Failed loads in a row (the retry's backoff).
    failures: StoredValue<u32>,
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
    pub selection_moved: RwSignal<Option<Selection>>,
    /// Co-editors and their carets, in name order.
    pub peers: RwSignal<Vec<Peer>>,
    /// Whether the note is live: signed in and subscribed on this connection.
    pub live: RwSignal<bool>,
    /// Why the server refused an edit of the note, for the panel.
    pub warning: RwSignal<Option<String>>,
    /// The person's selection in the note as the view last said (`None`:
    /// the note is not focused).
    selection: StoredValue<Option<Selection>>,
    /// Remote updates held while the person composes text (IME): `Some`
    /// while composing.
    held: StoredValue<Option<Vec<Vec<u8>>>>,
    connection: Connection,
    identity: Identity,
}

impl SharedNote {
    /// The note as rendered: its beginning shown, read-only until loaded.
    /// Without a split build the engine is compiled in and installed at
    /// once; with one it comes when the page asks (`load_editor`).
    pub fn new(preview: Option<&NotePreview>, connection: Connection, identity: Identity) -> Self {
        let note = SharedNote {
            engine: cfg!(any(feature = "browser", test)).then(|| StoredValue::new_local(None)),
            pending: StoredValue::new(PendingNote::default()),
            editor: RwSignal::new(NoteEditor::Absent),
            failures: StoredValue::new(0),
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
        };
        #[cfg(not(pulse_split))]
        if let Some(engine) = note.engine {
            engine.set_value(Some(crate::client::note::new_replica(new_client_id())));
            note.editor.set(NoteEditor::Ready);
        }
        note
    }

    /// Whether the page is connected (tracked).
    fn connected(&self) -> bool {
        self.connection.status.get() == ConnectionStatus::Connected
    }

    /// Whether the engine is installed.
    fn installed(&self) -> bool {
        self.engine
            .is_some_and(|engine| engine.with_value(Option::is_some))
    }

    /// Runs `work` with the engine's replica, if it is installed.
    fn with_engine<R>(&self, work: impl FnOnce(&mut dyn NoteReplica) -> R) -> Option<R> {
        self.engine?
            .try_update_value(|engine| engine.as_mut().map(|engine| work(engine.as_mut())))
            .flatten()
    }

    /// The person changed the note: `value` is the text area's text and
    /// `selection` its selection after the change. While they compose text
    /// (IME) nothing is taken until the composition ends.
    pub fn input(&self, value: &str, selection: Selection) {
        self.selection.set_value(Some(selection));
        // The text area is read-only until then (see `loaded`).
        if !self.loaded.get_untracked() || self.held.with_value(Option::is_some) {
            return;
        }
        let now = crate::client::browser::now_ms();
        let updates = self
            .with_engine(|note| note.edits(value, selection.1, now))
            .unwrap_or_default();
        for update in updates {
            self.local(update);
        }
    }

    /// A composition (IME) starts or ends; at its end the composed text is
    /// taken as one edit, then the co-editors' updates held meanwhile.
    pub fn composing(&self, composing: bool, value: &str, selection: Selection) {
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
        let now = crate::client::browser::now_ms();
        if let Some(Some((update, moved))) =
            self.with_engine(|note| note.undo(redo, selection, now))
        {
            self.moved(moved);
            self.local(update);
        }
    }

    /// The person's selection in the note as last known (`None`: not focused).
    pub fn caret(&self) -> Option<Selection> {
        self.selection.get_value()
    }

    /// The person's selection moved (or the note lost focus: `None`).
    pub fn select(&self, selection: Option<Selection>) {
        self.selection.set_value(selection);
        self.share_cursor();
    }

    /// Asks the driver to share where this page's caret is (it paces them;
    /// the latest always goes).
    pub fn share_cursor(&self) {
        self.connection.ask(ToDriver::ShareCursor { renew: false });
    }

    /// This page's awareness update as the driver sends it: `None` unless
    /// signed in, the note is live and its engine is here.
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
        let update = self.with_engine(|note| note.awareness(&me, selection))?;
        Some(ClientMessage::DocAwareness(DocAwarenessRequest {
            doc: NOTE_DOC.to_owned(),
            update: BASE64.encode(update),
        }))
    }

    /// An edit of this page: into the outbox (it survives a reload; merged
    /// there by the engine), then shown and sent.
    fn local(&self, update: Vec<u8>) {
        let Some(user) = self.identity.user.get_untracked() else {
            return;
        };
        let Some(engine) = self.engine else { return };
        engine.with_value(|engine| {
            let merge = engine
                .as_ref()
                .map(|engine| move |a: &[u8], b: &[u8]| engine.merge(a, b));
            let merge = merge
                .as_ref()
                .map(|merge| merge as &dyn Fn(&[u8], &[u8]) -> Option<Vec<u8>>);
            self.connection.enqueue_note(&user, &update, merge);
        });
        self.changed();
        self.share_cursor();
    }

    fn moved(&self, moved: Option<Selection>) {
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
            if let Some(text) = self.with_engine(|note| note.text()) {
                if self.text.with_untracked(|shown| *shown != text) {
                    self.text.set(text);
                }
            }
        }
        self.peers
            .set(self.with_engine(|note| note.peers()).unwrap_or_default());
    }
}

/// A random Yjs client id (53 bits, as Yjs draws them), for a new replica.
fn new_client_id() -> u64 {
    let client = (crate::client::browser::random() * (1u64 << 53) as f64) as u64;
    client.max(1)
}
