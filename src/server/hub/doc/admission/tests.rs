//! The pre-scan and admission against hostile frames crafted by hand (each
//! a few dozen bytes claiming huge counts, skips, unknown references,
//! circles), and a document loaded with pending content from an older
//! server. Real updates of many shapes are in `generated.rs`.

use super::super::scan::{scan, ScanError, MAX_ANY_DEPTH};
use super::*;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, Text, Transact, Update};

/// lib0 v1 bytes written by hand.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn var(mut self, mut value: u64) -> Self {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
        self
    }
    fn byte(mut self, byte: u8) -> Self {
        self.0.push(byte);
        self
    }
    fn string(self, text: &str) -> Self {
        let mut this = self.var(text.len() as u64);
        this.0.extend_from_slice(text.as_bytes());
        this
    }
    fn done(self) -> Vec<u8> {
        self.0
    }
}

const HUGE: u64 = 1 << 31;
/// A string item in the root text `text` (no origins: parent named).
const STRING_ITEM: u8 = 4;
const ORIGIN_STRING_ITEM: u8 = 0x80 | 4;
const ANY_ITEM: u8 = 8;

/// One client with one block, the rest of the block written by `block`.
fn one_block(client: u64, clock: u64, block: impl FnOnce(Bytes) -> Bytes) -> Bytes {
    block(Bytes::default().var(1).var(1).var(client).var(clock))
}

fn refused(bytes: &[u8]) -> ScanError {
    assert!(bytes.len() <= 102, "{} bytes", bytes.len());
    scan(bytes).expect_err("refused")
}

#[test]
fn hostile_counts_are_refused_before_anything_is_reserved() {
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "2^31 clients",
            Bytes::default().var(HUGE).var(1).var(1).var(0).done(),
        ),
        (
            "2^31 blocks",
            Bytes::default()
                .var(1)
                .var(HUGE)
                .var(7)
                .var(0)
                .byte(0)
                .var(1)
                .done(),
        ),
        (
            "u32::MAX blocks",
            Bytes::default()
                .var(1)
                .var(u32::MAX as u64)
                .var(7)
                .var(0)
                .done(),
        ),
        (
            "2^31 deleting clients",
            Bytes::default()
                .var(0)
                .var(HUGE)
                .var(1)
                .var(1)
                .var(0)
                .var(1)
                .done(),
        ),
        (
            "2^31 deleted ranges",
            Bytes::default()
                .var(0)
                .var(1)
                .var(7)
                .var(HUGE)
                .var(0)
                .var(1)
                .done(),
        ),
        (
            "2^31 JSON values",
            one_block(7, 0, |b| {
                b.byte(2).var(1).string("text").var(HUGE).string("x")
            })
            .var(0)
            .done(),
        ),
        (
            "2^31 any values",
            one_block(7, 0, |b| {
                b.byte(ANY_ITEM).var(1).string("text").var(HUGE).byte(126)
            })
            .var(0)
            .done(),
        ),
        (
            "an array of 2^40 values",
            one_block(7, 0, |b| {
                b.byte(ANY_ITEM)
                    .var(1)
                    .string("text")
                    .var(1)
                    .byte(117)
                    .var(1 << 40)
                    .byte(126)
            })
            .var(0)
            .done(),
        ),
        (
            "a map of 2^31 entries",
            one_block(7, 0, |b| {
                b.byte(ANY_ITEM)
                    .var(1)
                    .string("text")
                    .var(1)
                    .byte(118)
                    .var(HUGE)
                    .string("k")
            })
            .var(0)
            .done(),
        ),
        (
            "a string of 2^31 bytes",
            one_block(7, 0, |b| {
                b.byte(STRING_ITEM)
                    .var(1)
                    .string("text")
                    .var(HUGE)
                    .byte(b'a')
            })
            .var(0)
            .done(),
        ),
    ];
    for (what, bytes) in frames {
        let err = refused(&bytes);
        assert!(
            matches!(err, ScanError::Count { .. } | ScanError::Read(_)),
            "{what}: {err:?}"
        );
    }
}

#[test]
fn deep_nesting_is_refused_before_yrs_recurses() {
    let mut b = one_block(7, 0, |b| b.byte(ANY_ITEM).var(1).string("text").var(1));
    for _ in 0..MAX_ANY_DEPTH {
        b = b.byte(117).var(1);
    }
    let bytes = b.byte(126).var(0).done();
    assert_eq!(scan(&bytes), Err(ScanError::Deep));
    // One level less is fine (and yrs reads it).
    let mut b = one_block(7, 0, |b| b.byte(ANY_ITEM).var(1).string("text").var(1));
    for _ in 0..MAX_ANY_DEPTH - 1 {
        b = b.byte(117).var(1);
    }
    let bytes = b.byte(126).var(0).done();
    scan(&bytes).expect("nested within the bound");
    Update::decode_v1(&bytes).expect("yrs reads it");
}

#[test]
fn skips_doubles_empties_overflows_and_trailing_bytes_are_refused() {
    let text = |b: Bytes, s: &str| b.byte(STRING_ITEM).var(1).string("text").string(s);
    // Client 7: "a" at 0, a skip of 5, "b" at 6.
    let skip = Bytes::default().var(1).var(3).var(7).var(0);
    let skip = text(text(skip, "a").byte(10).var(5), "b").var(0).done();
    assert_eq!(scan(&skip), Err(ScanError::Skips(7)));
    let twice = text(
        text(Bytes::default().var(2).var(1).var(7).var(0), "a")
            .var(1)
            .var(7)
            .var(5),
        "b",
    );
    assert_eq!(scan(&twice.var(0).done()), Err(ScanError::Twice(7)));
    let empty = Bytes::default().var(1).var(0).var(7).var(0).var(0).done();
    assert!(matches!(scan(&empty), Err(ScanError::Count { .. })));
    let overflow = text(one_block(7, u32::MAX as u64 - 1, |b| b), "abc")
        .var(0)
        .done();
    assert_eq!(scan(&overflow), Err(ScanError::Clock(7)));
    let trailing = text(one_block(7, 0, |b| b), "a").var(0).byte(0).done();
    assert_eq!(scan(&trailing), Err(ScanError::Trailing));
    let weak = one_block(7, 0, |b| b.byte(7).var(1).string("text").byte(7))
        .var(0)
        .done();
    assert_eq!(scan(&weak), Err(ScanError::Content(7)));
}

/// `update` pre-scanned and admitted against `doc`.
pub(super) fn admitted(doc: &Doc, update: &[u8]) -> Result<(), Refusal> {
    scan(update)?.admit(&doc.transact().state_vector())
}

pub(super) fn apply(doc: &Doc, update: &[u8]) {
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).unwrap())
        .unwrap();
}

fn insert(doc: &Doc, at: u32, what: &str) -> Vec<u8> {
    let before = doc.transact().state_vector();
    let text = doc.get_or_insert_text("text");
    text.insert(&mut doc.transact_mut(), at, what);
    doc.transact().encode_state_as_update_v1(&before)
}

#[test]
fn updates_that_cannot_integrate_are_refused() {
    let server = Doc::new();
    let ada = Doc::with_client_id(1);
    let first = insert(&ada, 0, "ab");
    let second = insert(&ada, 2, "cd");
    let third = insert(&ada, 4, "ef");
    // Starting past the document's clock.
    assert_eq!(admitted(&server, &second), Err(Refusal::Gap(1)));
    // A hole inside: the first and third merged, the second missing.
    let merged = yrs::merge_updates_v1([first.as_slice(), third.as_slice()]).unwrap();
    assert!(
        admitted(&server, &merged).is_err(),
        "a merged update with a hole"
    );
    // Bob's edit after Ada's text, sent to a server that lacks Ada's.
    let bob = Doc::with_client_id(2);
    bob.transact_mut()
        .apply_update(Update::decode_v1(&first).unwrap())
        .unwrap();
    let after = insert(&bob, 2, "!");
    assert_eq!(
        admitted(&server, &after),
        Err(Refusal::Unknown(super::super::scan::Id {
            client: 1,
            clock: 1
        }))
    );
    let before = bob.transact().state_vector();
    bob.get_or_insert_text("text")
        .remove_range(&mut bob.transact_mut(), 0, 1);
    let deletion = bob.transact().encode_state_as_update_v1(&before);
    assert_eq!(
        admitted(&server, &deletion),
        Err(Refusal::UnknownDeletion(1))
    );
    // With Ada's text in, all of it is admitted, in order.
    for update in [&first, &second, &third, &after, &deletion] {
        admitted(&server, update).unwrap();
        server
            .transact_mut()
            .apply_update(Update::decode_v1(update).unwrap())
            .unwrap();
        assert!(!server.transact().has_missing_updates());
    }
}

#[test]
fn blocks_depending_on_each_other_in_a_circle_are_refused() {
    // Client 1's "a" after client 2's "b", and "b" after "a".
    let item =
        |b: Bytes, origin: u64, s: &str| b.byte(ORIGIN_STRING_ITEM).var(origin).var(0).string(s);
    let circle = item(
        item(Bytes::default().var(2).var(1).var(2).var(0), 1, "b")
            .var(1)
            .var(1)
            .var(0),
        2,
        "a",
    )
    .var(0)
    .done();
    assert_eq!(admitted(&Doc::new(), &circle), Err(Refusal::Circular));
    // A block after itself.
    let own = one_block(1, 0, |b| item(b, 1, "a")).var(0).done();
    assert_eq!(admitted(&Doc::new(), &own), Err(Refusal::Circular));
    // yrs would keep both pending.
    let doc = Doc::new();
    let _ = doc
        .transact_mut()
        .apply_update(Update::decode_v1(&circle).unwrap());
    assert!(doc.transact().has_missing_updates());
}

/// A note an older server let fill with pending content is cleaned when it
/// is loaded (rebuilt from its stored rows and installed); a compaction's
/// fold of a prefix of the log keeps what later rows may complete.
#[test]
fn a_loaded_document_drops_pending_content_stored_before() {
    let ada = Doc::with_client_id(1);
    let first = insert(&ada, 0, "a");
    let _never_sent = insert(&ada, 1, "b");
    let third = insert(&ada, 2, &"z".repeat(10_000));
    let hole = yrs::merge_updates_v1([first.as_slice(), third.as_slice()]).unwrap();
    let polluted = Doc::new();
    apply(&polluted, &hole);
    assert!(polluted.transact().has_missing_updates());
    let stored = polluted
        .transact()
        .encode_state_as_update_v1(&Default::default());
    assert!(stored.len() > 10_000, "the pending content is in the state");
    let folded = super::super::rebuild(&stored, [first.clone()]);
    assert!(folded.transact().has_missing_updates(), "a fold keeps it");
    let ring = crate::server::hub::ring::Ring::new(10);
    let loaded = super::super::DocState::new("e1".into(), ring, folded);
    assert!(loaded.state().len() < 100, "{} bytes", loaded.state().len());
    assert_eq!(loaded.text(), "a");
}
