//! Owns bringing the note's engine in: `load_editor` fetches it (on a split
//! build, the note's wasm module; retried with a backoff when that fails),
//! and `install` puts it in place, replays what the server sent meanwhile
//! and applies the edits taken over from other tabs' outboxes.

use base64::Engine as _;
use leptos::prelude::*;

use super::pending::Pending;
use super::{new_client_id, SharedNote, BASE64};
use crate::client::note::NoteReplica;

/// The first retry of a failed load waits this long, each next one twice
/// as long, up to [`RETRY_MAX_MS`].
const RETRY_FIRST_MS: u64 = 2_000;
const RETRY_MAX_MS: u64 = 60_000;

/// Where the note's engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteEditor {
    /// Not asked for yet (anonymous visitors never ask).
    Absent,
    /// Being fetched.
    Loading,
    /// The last fetch failed; another follows.
    Retrying,
    /// Installed: the note is editable once its state is here.
    Ready,
}

impl SharedNote {
    /// Fetches the note's engine unless it is here or coming (a retry
    /// after a failure goes at once).
    pub fn load_editor(&self) {
        if matches!(
            self.editor.get_untracked(),
            NoteEditor::Loading | NoteEditor::Ready
        ) {
            return;
        }
        self.editor.set(NoteEditor::Loading);
        let note = *self;
        leptos::task::spawn_local(async move {
            match crate::client::note::load::load_replica(new_client_id()).await {
                Ok(engine) => note.install(engine),
                Err(_) => note.load_failed(),
            }
        });
    }

    /// Whether a failed load waits for the connection before it is tried
    /// again (while the page is offline, the module's server is most likely
    /// down too). Reads the connection's status tracked whatever the
    /// editor's state, so an effect that asks runs again when the page
    /// connects.
    pub fn waits_for_connection(&self) -> bool {
        let connected = self.connected();
        !connected && self.editor.get_untracked() == NoteEditor::Retrying
    }

    /// The fetch failed: the panel says so (the loader has logged why) and
    /// another one follows: later each time while the page is connected;
    /// when it is not, once it is again (`trigger.rs` watches for that), so
    /// a server that is down is not asked again and again. Coming into
    /// view again retries at once.
    pub(in crate::client::context) fn load_failed(&self) {
        if self.editor.get_untracked() == NoteEditor::Ready {
            return;
        }
        let failures = self.failures.get_value();
        self.failures.set_value(failures + 1);
        self.editor.set(NoteEditor::Retrying);
        let wait = (RETRY_FIRST_MS << failures.min(5)).min(RETRY_MAX_MS);
        let note = *self;
        set_timeout(
            move || {
                if note.editor.get_untracked() == NoteEditor::Retrying
                    && !note.waits_for_connection()
                {
                    note.load_editor();
                }
            },
            std::time::Duration::from_millis(wait),
        );
    }

    /// Puts the engine in place (unless one is there), then replays into it
    /// what the server sent before it, in order, and applies the edits
    /// taken over from other tabs (already in the outbox; applying one
    /// twice changes nothing). If the buffer overflowed, the note's state
    /// is asked for again.
    pub(in crate::client::context) fn install(&self, engine: Box<dyn NoteReplica>) {
        let Some(slot) = self.engine else { return };
        if self.installed() {
            return;
        }
        slot.set_value(Some(engine));
        self.failures.set_value(0);
        let (entries, overflowed) = self
            .pending
            .try_update_value(|p| p.take())
            .unwrap_or_default();
        for entry in entries {
            match entry {
                Pending::Snapshot { state, awareness } => self.snapshot(&state, &awareness),
                Pending::Update(update) => {
                    if let Ok(update) = BASE64.decode(update) {
                        self.remote(&update);
                    }
                }
                Pending::Awareness(update) => self.awareness(&update),
                Pending::ForgetPeers => {
                    self.with_engine(|note| note.forget_peers());
                }
            }
        }
        let adopted: Vec<Vec<u8>> = self
            .connection
            .with_outbox(|outbox| {
                outbox
                    .note()
                    .updates()
                    .filter_map(|update| BASE64.decode(update).ok())
                    .collect()
            })
            .unwrap_or_default();
        self.adopted(&adopted);
        if overflowed {
            self.resubscribe();
        }
        self.editor.set(NoteEditor::Ready);
        self.changed();
        self.share_cursor();
    }

    /// Edits taken over from another tab's outbox: applied to the replica
    /// when it is here (else the install applies them from the outbox).
    pub(in crate::client::context) fn adopted(&self, edits: &[Vec<u8>]) {
        if self.installed() {
            for update in edits {
                self.remote(update);
            }
        }
    }

    /// Takes the engine away again, as a split build's page starts (tests).
    #[cfg(test)]
    pub(in crate::client::context) fn uninstall(&self) {
        if let Some(engine) = self.engine {
            engine.set_value(None);
        }
        self.editor.set(NoteEditor::Absent);
    }
}
