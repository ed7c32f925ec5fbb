//! Owns one client's copy of the shared note: a yrs document whose `text`
//! every `doc_update` from the server is applied to (a malformed update or a
//! panic inside yrs is an error, never the load generator's end), the
//! offsets it saw, the editor's typing (one letter per update) and a
//! fingerprint of the text to compare replicas by.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pulse::server::hub::{decode_update, DocError};
use rand::rngs::StdRng;
use rand::Rng;
use yrs::{Assoc, Doc, GetString, IndexedSequence, StickyIndex, Text, TextRef, Transact};

/// What editors type: one lowercase letter per update.
const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";

/// Why an update from the server could not be applied to a replica.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error(transparent)]
    Decode(#[from] DocError),
    #[error("yrs refused it: {0}")]
    Apply(String),
    #[error("yrs panicked applying it")]
    Panicked,
}

/// One client's copy of the document and what it saw of the channel.
pub struct Replica {
    pub doc: Doc,
    pub text: TextRef,
    /// The last offset seen (from `subscribed`, then each `doc_update`).
    pub last_offset: u64,
    /// `doc_update`s whose offset skipped some, and offsets seen again.
    pub gaps: u64,
    pub repeats: u64,
}

impl Replica {
    /// An empty replica; `client_id` is the Yjs client id its edits carry.
    pub fn new(client_id: Option<u64>) -> Self {
        let doc = client_id.map_or_else(Doc::new, Doc::with_client_id);
        let text = doc.get_or_insert_text("text");
        Replica {
            doc,
            text,
            last_offset: 0,
            gaps: 0,
            repeats: 0,
        }
    }

    /// Applies a base64 Yjs v1 update from the server; a panic inside yrs
    /// is an error, never the load generator's end.
    pub fn apply_base64(&self, update: &str) -> Result<(), ReplicaError> {
        let update = decode_update(&BASE64.decode(update)?)?;
        let applied = catch_unwind(AssertUnwindSafe(|| {
            self.doc.transact_mut().apply_update(update)
        }));
        match applied {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(ReplicaError::Apply(err.to_string())),
            Err(_) => Err(ReplicaError::Panicked),
        }
    }

    /// Takes the offset of a `doc_update`; false when it was seen already.
    pub fn observe(&mut self, offset: u64) -> bool {
        if offset <= self.last_offset {
            self.repeats += 1;
            return false;
        }
        if offset > self.last_offset + 1 {
            self.gaps += 1;
        }
        self.last_offset = offset;
        true
    }

    /// Inserts one random letter at index `at` (past the end: at the end;
    /// `None`: a random spot) and returns the transaction's update (Yjs v1,
    /// as a yrs app's update observer sends it) and the index used.
    pub fn type_letter(&self, at: Option<u32>, rng: &mut StdRng) -> (Vec<u8>, u32) {
        let mut txn = self.doc.transact_mut();
        let len = self.text.len(&txn);
        let at = at.map_or_else(|| rng.random_range(0..=len), |at| at.min(len));
        let letter = rng.random_range(0..LETTERS.len());
        self.text.insert(&mut txn, at, &LETTERS[letter..=letter]);
        (txn.encode_update_v1(), at)
    }

    /// A cursor right after the letter at index `at`, that stays there
    /// whatever others insert before it (a Yjs relative position).
    pub fn cursor_after(&self, at: u32) -> Option<StickyIndex> {
        let txn = self.doc.transact();
        self.text.sticky_index(&txn, at + 1, Assoc::Before)
    }

    /// Where `cursor` is now, as an index into the text.
    pub fn cursor_index(&self, cursor: &StickyIndex) -> Option<u32> {
        let txn = self.doc.transact();
        cursor.get_offset(&txn).map(|offset| offset.index)
    }

    /// The text's length in characters and a hash of it, to compare replicas.
    pub fn fingerprint(&self) -> TextPrint {
        TextPrint::of(&self.text.get_string(&self.doc.transact()))
    }
}

/// A text's length and hash: replicas are compared by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPrint {
    pub chars: usize,
    hash: u64,
}

impl TextPrint {
    pub fn of(text: &str) -> Self {
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        TextPrint {
            chars: text.chars().count(),
            hash: hasher.finish(),
        }
    }
}

/// The elapsed microseconds from `from` to `to` (0 if `to` is earlier).
pub fn micros_between(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse::server::hub::encode_state;
    use rand::SeedableRng;

    #[test]
    fn replicas_that_exchange_their_edits_converge() {
        let mut rng = StdRng::seed_from_u64(1);
        let a = Replica::new(Some(11));
        let b = Replica::new(Some(22));
        let mut from_a = Vec::new();
        let mut from_b = Vec::new();
        for _ in 0..20 {
            from_a.push(BASE64.encode(a.type_letter(None, &mut rng).0));
            from_b.push(BASE64.encode(b.type_letter(Some(1000), &mut rng).0));
        }
        for update in &from_b {
            a.apply_base64(update).expect("a yrs update applies");
        }
        for update in from_a.iter().rev() {
            b.apply_base64(update).expect("a yrs update applies");
        }
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().chars, 40);
    }

    #[test]
    fn typing_at_a_cursor_makes_a_smaller_state_than_random_spots() {
        let mut rng = StdRng::seed_from_u64(2);
        let (typed, scattered) = (Replica::new(Some(1)), Replica::new(Some(2)));
        let mut cursor = None;
        for _ in 0..200 {
            let at = cursor.as_ref().and_then(|c| typed.cursor_index(c));
            let (_, typed_at) = typed.type_letter(at, &mut rng);
            cursor = typed.cursor_after(typed_at);
            scattered.type_letter(None, &mut rng);
        }
        let size = |replica: &Replica| encode_state(&replica.doc).len();
        assert_eq!(typed.fingerprint().chars, 200);
        assert!(size(&typed) * 4 < size(&scattered));
    }

    #[test]
    fn a_cursor_stays_after_its_letter_when_others_insert_before_it() {
        let mut rng = StdRng::seed_from_u64(3);
        let (mine, theirs) = (Replica::new(Some(1)), Replica::new(Some(2)));
        let (first, at) = mine.type_letter(None, &mut rng);
        let cursor = mine.cursor_after(at).expect("a cursor inside the text");
        theirs.apply_base64(&BASE64.encode(first)).expect("applies");
        for _ in 0..2 {
            let (before_mine, _) = theirs.type_letter(Some(0), &mut rng);
            mine.apply_base64(&BASE64.encode(before_mine))
                .expect("applies");
        }
        assert_eq!(mine.cursor_index(&cursor), Some(3));
    }

    #[test]
    fn a_malformed_update_is_an_error_not_a_panic() {
        let replica = Replica::new(None);
        assert!(matches!(
            replica.apply_base64("not base64!"),
            Err(ReplicaError::Base64(_))
        ));
        let garbage = BASE64.encode([0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(replica.apply_base64(&garbage).is_err());
    }

    #[test]
    fn offsets_count_gaps_and_repeats() {
        let mut replica = Replica::new(None);
        replica.last_offset = 4;
        assert!(replica.observe(5));
        assert!(replica.observe(7));
        assert!(!replica.observe(6));
        assert_eq!((replica.gaps, replica.repeats), (1, 1));
    }
}
