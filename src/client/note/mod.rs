//! The shared note (`doc:notes`) as the page sees it, without its engine:
//! the types every part of the page shares (co-editors, the palette, the
//! errors) and [`NoteReplica`], the seam behind which the page's replica
//! lives. The replica itself (yrs, undo, awareness, merging) is in
//! `replica.rs` and `engine.rs`; `load.rs` brings it in — as a second wasm
//! module on a split build (`cfg(pulse_split)`), compiled in otherwise.
//!
//! Nothing of yrs, JS or leptos crosses the seam: the engine's code must stay
//! pure Rust so that the wasm splitter can move it out of the main module
//! (leptos#4347: wasm-bindgen glue inside a split chunk fails at call time).

mod engine;
pub mod load;
mod replica;
#[cfg(feature = "browser")]
pub mod trigger;

pub use crate::protocol::EditorUser;
pub use engine::new_replica;
pub use replica::{merge_updates, Note};

/// The note every page shows.
pub const NOTE_DOC: &str = "notes";
/// The longest insertion one update carries (UTF-16 units): with Yjs'
/// encoding and base64 it stays well under the 64 KiB message limit.
pub const EDIT_CHUNK: usize = 8_192;

/// Why something the server sent could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("not a Yjs update: {0}")]
    Update(String),
    #[error("not an awareness update: {0}")]
    Awareness(String),
}

/// A co-editor as the panel shows them: their caret and selection resolved
/// to offsets in the current text (`None` when the text they point at has
/// not arrived yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub client: u64,
    pub user: EditorUser,
    pub anchor: Option<u32>,
    pub head: Option<u32>,
}

/// A selection in the note's text: anchor and head, in UTF-16 units.
pub type Selection = (u32, u32);

/// The page's replica of the note with its undo history, behind a trait
/// object made by the engine: main code only calls through it. Positions
/// are UTF-16 offsets; time comes in as `now_ms` (the engine reads no
/// clock); updates are Yjs v1 bytes.
pub trait NoteReplica {
    /// This replica's Yjs client id.
    fn client_id(&self) -> u64;
    /// The note's text.
    fn text(&self) -> String;
    /// Applies an update from the server (or another tab's outbox) and
    /// says where `selection` is now, kept between the same characters.
    fn apply_remote(
        &mut self,
        update: &[u8],
        selection: Option<Selection>,
    ) -> Result<Option<Selection>, NoteError>;
    /// The person changed the text to `value` with the caret at `caret`:
    /// the updates of that change (none if the text is the same).
    fn edits(&mut self, value: &str, caret: u32, now_ms: f64) -> Vec<Vec<u8>>;
    /// Undoes (or redoes) this page's own last edit: its update and where
    /// `selection` is after it.
    fn undo(
        &mut self,
        redo: bool,
        selection: Option<Selection>,
        now_ms: f64,
    ) -> Option<(Vec<u8>, Option<Selection>)>;
    /// This page's awareness update (`me` with `selection`, or no caret).
    fn awareness(&mut self, me: &EditorUser, selection: Option<Selection>) -> Vec<u8>;
    /// Takes co-editors' awareness states.
    fn apply_awareness(&mut self, update: &[u8]) -> Result<(), NoteError>;
    /// Forgets every co-editor.
    fn forget_peers(&mut self);
    /// Co-editors with their carets, in name order.
    fn peers(&self) -> Vec<Peer>;
    /// Two updates merged into one (for the outbox), `None` if either is
    /// not an update.
    fn merge(&self, first: &[u8], second: &[u8]) -> Option<Vec<u8>>;
    /// An empty replica with another client id and no history (sign-out,
    /// a refused edit): made by the engine already loaded.
    fn fresh(&self, client_id: u64) -> Box<dyn NoteReplica>;
}

/// The palette co-editors' carets are drawn in (readable on light and dark
/// backgrounds); the stylesheet has a class per colour (`peer-0` ...), as
/// the page's Content-Security-Policy allows no inline styles.
pub const PALETTE: [&str; 8] = [
    "#d9480f", "#2b8a3e", "#1971c2", "#9c36b5", "#c2255c", "#0b7285", "#e67700", "#5f3dc4",
];

/// The palette index of a user: fixed per user id.
pub fn color_index(user_id: &str) -> usize {
    let hash = user_id
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    hash as usize % PALETTE.len()
}

/// The colour a user's caret is drawn in (what this page's awareness state
/// says as `user.color`).
pub fn color_of(user_id: &str) -> &'static str {
    PALETTE[color_index(user_id)]
}
