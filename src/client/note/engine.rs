//! Owns the note's engine: a [`Note`] replica with its undo history, behind
//! the [`NoteReplica`] seam. This is the split module's root: on a split
//! build everything reached from [`new_replica`] (yrs, the replica, undo,
//! awareness, merging) is moved into the note's wasm module, so it is pure
//! Rust — no JavaScript, no clock (the undo manager's clock is a cell the
//! caller sets with each call), no random source.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use yrs::undo::UndoManager;

use super::replica::{merge_updates, Note};
use super::{EditorUser, NoteError, NoteReplica, Peer, Selection};

/// A replica of the note with Yjs client id `client_id` and an empty undo
/// history.
pub fn new_replica(client_id: u64) -> Box<dyn NoteReplica> {
    Box::new(NoteEngine::new(client_id))
}

/// [`Note`] and its undo history, timed by the `now_ms` callers pass in.
struct NoteEngine {
    note: Note,
    undo: UndoManager<()>,
    /// What the undo manager reads as the time: set before every edit.
    now: Arc<AtomicU64>,
}

impl NoteEngine {
    fn new(client_id: u64) -> Self {
        let note = Note::new(client_id);
        let now = Arc::new(AtomicU64::new(0));
        let clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::Relaxed))
        };
        let undo = note.undo_manager(clock);
        NoteEngine { note, undo, now }
    }

    fn tick(&self, now_ms: f64) {
        self.now.store(now_ms.max(0.0) as u64, Ordering::Relaxed);
    }

    /// Runs `work` and says where `selection` is after it.
    fn keeping<R>(
        &mut self,
        selection: Option<Selection>,
        work: impl FnOnce(&mut Self) -> R,
    ) -> (R, Option<Selection>) {
        let stickies = selection.map(|(a, h)| (self.note.sticky(a), self.note.sticky(h)));
        let result = work(self);
        let moved =
            stickies.and_then(|(a, h)| Some((self.note.index_of(&a?)?, self.note.index_of(&h?)?)));
        (result, moved)
    }
}

impl NoteReplica for NoteEngine {
    fn client_id(&self) -> u64 {
        self.note.client_id()
    }

    fn text(&self) -> String {
        self.note.text()
    }

    fn apply_remote(
        &mut self,
        update: &[u8],
        selection: Option<Selection>,
    ) -> Result<Option<Selection>, NoteError> {
        let (applied, moved) = self.keeping(selection, |me| me.note.apply_remote(update));
        applied.map(|()| moved)
    }

    fn edits(&mut self, value: &str, caret: u32, now_ms: f64) -> Vec<Vec<u8>> {
        self.tick(now_ms);
        self.note.edits(value, caret)
    }

    fn undo(
        &mut self,
        redo: bool,
        selection: Option<Selection>,
        now_ms: f64,
    ) -> Option<(Vec<u8>, Option<Selection>)> {
        self.tick(now_ms);
        let (update, moved) = self.keeping(selection, |me| me.note.undo(&mut me.undo, redo));
        update.map(|update| (update, moved))
    }

    fn awareness(&mut self, me: &EditorUser, selection: Option<Selection>) -> Vec<u8> {
        self.note.awareness(me, selection)
    }

    fn apply_awareness(&mut self, update: &[u8]) -> Result<(), NoteError> {
        self.note.apply_awareness(update)
    }

    fn forget_peers(&mut self) {
        self.note.forget_peers();
    }

    fn peers(&self) -> Vec<Peer> {
        self.note.peers()
    }

    fn merge(&self, first: &[u8], second: &[u8]) -> Option<Vec<u8>> {
        merge_updates(&[first, second]).ok()
    }

    fn fresh(&self, client_id: u64) -> Box<dyn NoteReplica> {
        new_replica(client_id)
    }
}
