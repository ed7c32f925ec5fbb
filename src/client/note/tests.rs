use super::*;
use crate::client::note::color_of;

/// A clock that stands still: every edit falls in one undo step.
fn clock() -> Arc<dyn Clock> {
    Arc::new(|| 1_000u64)
}

fn note(client: u64) -> Note {
    Note::new(client)
}

fn units(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

fn change(old: &str, new: &str, caret: usize) -> (usize, usize, String) {
    let change = Change::between(&units(old), &units(new), caret).expect("a change");
    (
        change.at,
        change.removed,
        String::from_utf16(&change.inserted).unwrap(),
    )
}

#[test]
fn the_change_is_where_the_caret_says() {
    assert_eq!(change("", "a", 1), (0, 0, "a".into()));
    // Typing `a` at the end of `aa`: an insert at 2, not at 0.
    assert_eq!(change("aa", "aaa", 3), (2, 0, "a".into()));
    assert_eq!(change("aa", "aaa", 1), (0, 0, "a".into()));
    // Backspace in the middle of `abba`.
    assert_eq!(change("abba", "aba", 2), (2, 1, "".into()));
    assert_eq!(change("abba", "aba", 1), (1, 1, "".into()));
    // A selection replaced by a paste.
    assert_eq!(
        change("hello world", "hello there", 11),
        (6, 5, "there".into())
    );
    assert!(Change::between(&units("same"), &units("same"), 2).is_none());
}

#[test]
fn a_change_never_splits_a_surrogate_pair() {
    // 😀 and 😁 share their first UTF-16 unit.
    let (at, removed, inserted) = change("a😀b", "a😁b", 3);
    assert_eq!((at, removed, inserted.as_str()), (1, 2, "😁"));
    let (at, removed, inserted) = change("😀", "😀😀", 4);
    assert_eq!((at, removed, inserted.as_str()), (2, 0, "😀"));
}

#[test]
fn edits_travel_as_updates_and_replicas_converge() {
    let mut ada = note(1);
    let mut bob = note(2);
    let update = ada.edit("hello", 5).unwrap();
    bob.apply_remote(&update).unwrap();
    // Both type at the same spot at once.
    let from_ada = ada.edit("hello ada", 9).unwrap();
    let from_bob = bob.edit("hello bob", 9).unwrap();
    ada.apply_remote(&from_bob).unwrap();
    bob.apply_remote(&from_ada).unwrap();
    assert_eq!(ada.text(), bob.text());
    assert!(ada.text().contains(" ada") && ada.text().contains(" bob"));
    // Applying twice changes nothing.
    ada.apply_remote(&from_bob).unwrap();
    assert_eq!(ada.text(), bob.text());
    assert_eq!(ada.edit(&ada.text(), 0), None);
}

#[test]
fn two_people_typing_at_one_place_each_keep_their_words_whole() {
    let mut ada = note(1);
    let mut bob = note(2);
    bob.apply_remote(&ada.edit("x", 1).unwrap()).unwrap();
    // Both carets at the end; each types a word, a key at a time, while the
    // other's keys arrive between theirs.
    let (mut ada_caret, mut bob_caret) = (1, 1);
    for (a, b) in "ada".chars().zip("bob".chars()) {
        let mut typed = ada.text();
        typed.insert(ada_caret as usize, a);
        let from_ada = ada.edit(&typed, ada_caret + 1).unwrap();
        ada_caret += 1;
        let mut typed = bob.text();
        typed.insert(bob_caret as usize, b);
        let from_bob = bob.edit(&typed, bob_caret + 1).unwrap();
        bob_caret += 1;
        let (a_sticky, b_sticky) = (
            ada.sticky(ada_caret).unwrap(),
            bob.sticky(bob_caret).unwrap(),
        );
        ada.apply_remote(&from_bob).unwrap();
        bob.apply_remote(&from_ada).unwrap();
        ada_caret = ada.index_of(&a_sticky).unwrap();
        bob_caret = bob.index_of(&b_sticky).unwrap();
    }
    assert_eq!(ada.text(), bob.text());
    assert!(
        ["xadabob", "xbobada"].contains(&ada.text().as_str()),
        "{}",
        ada.text()
    );
}

#[test]
fn a_caret_stays_between_the_same_characters_under_remote_edits() {
    let mut ada = note(1);
    let mut bob = note(2);
    bob.apply_remote(&ada.edit("one two", 7).unwrap()).unwrap();
    // Bob's caret after "one".
    let caret = bob.sticky(3).unwrap();
    // Ada inserts before it and deletes after it.
    let update = ada.edit("zero one two", 5).unwrap();
    bob.apply_remote(&update).unwrap();
    let update = ada.edit("zero one", 8).unwrap();
    bob.apply_remote(&update).unwrap();
    assert_eq!(bob.text(), "zero one");
    assert_eq!(bob.index_of(&caret), Some(8));
}

#[test]
fn undo_takes_back_ones_own_edits_only() {
    let mut ada = note(1);
    let mut history = ada.undo_manager(clock());
    let mut bob = note(2);
    let update = ada.edit("mine", 4).unwrap();
    bob.apply_remote(&update).unwrap();
    bob.apply_remote(&ada.edit("mine!", 5).unwrap()).unwrap();
    let theirs = bob.edit("theirs mine!", 7).unwrap();
    ada.apply_remote(&theirs).unwrap();
    // Ada's edits were quick (one undo step); Bob's stays.
    let undone = ada.undo(&mut history, false).expect("something to undo");
    assert_eq!(ada.text(), "theirs ");
    bob.apply_remote(&undone).unwrap();
    assert_eq!(bob.text(), "theirs ");
    let redone = ada.undo(&mut history, true).expect("something to redo");
    bob.apply_remote(&redone).unwrap();
    assert_eq!(
        (ada.text().as_str(), bob.text().as_str()),
        ("theirs mine!", "theirs mine!")
    );
}

#[test]
fn carets_travel_as_yjs_relative_positions() {
    let mut ada = note(7);
    let empty = serde_json::to_value(ada.sticky(0).unwrap()).unwrap();
    assert_eq!(empty, serde_json::json!({"tname": "text", "assoc": -1}));
    ada.edit("abc", 3).unwrap();
    // After "a": stuck to "a" (clock 0), on its far side.
    let inside = serde_json::to_value(ada.sticky(1).unwrap()).unwrap();
    assert_eq!(
        inside,
        serde_json::json!({"item": {"client": 7, "clock": 0}, "assoc": -1})
    );
    // What a Yjs client writes (its default association) reads back.
    let from_yjs: StickyIndex =
        serde_json::from_value(serde_json::json!({"item": {"client": 7, "clock": 2}, "assoc": 0}))
            .unwrap();
    assert_eq!(ada.index_of(&from_yjs), Some(2));
    // The start stays the start; the end stays after the last character.
    let (start, end) = (ada.sticky(0).unwrap(), ada.sticky(3).unwrap());
    ada.edit("abcd", 4).unwrap();
    assert_eq!(
        (ada.index_of(&start), ada.index_of(&end)),
        (Some(0), Some(3))
    );
}

#[test]
fn co_editors_are_seen_with_their_carets_and_leave_with_a_null_state() {
    let mut ada = note(1);
    let mut bob = note(2);
    bob.apply_remote(&ada.edit("shared text", 11).unwrap())
        .unwrap();
    let user = EditorUser {
        id: "guest:ada".into(),
        name: "ada".into(),
        color: color_of("guest:ada").into(),
    };
    let state = ada.awareness(&user, Some((0, 6)));
    bob.apply_awareness(&state).unwrap();
    let peers = bob.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].user, user);
    assert_eq!((peers[0].anchor, peers[0].head), (Some(0), Some(6)));
    // A page ignores its own state; an older clock is ignored too.
    ada.apply_awareness(&state).unwrap();
    assert!(ada.peers().is_empty());
    let removal = encode_awareness(1, 2, "null".into());
    bob.apply_awareness(&removal).unwrap();
    assert!(bob.peers().is_empty());
    bob.apply_awareness(&state).unwrap();
    assert!(bob.peers().is_empty(), "clock 1 is older than the removal");
    assert_eq!(bob.apply_awareness(&[]), Ok(()));
    assert!(bob.apply_awareness(&[9, 9]).is_err());
}

#[test]
fn merged_updates_make_the_same_text() {
    let mut ada = note(1);
    let first = ada.edit("ab", 2).unwrap();
    let second = ada.edit("abc", 3).unwrap();
    let third = ada.edit("bc", 0).unwrap();
    let merged = merge_updates(&[&first, &second, &third]).unwrap();
    let mut bob = note(2);
    bob.apply_remote(&merged).unwrap();
    assert_eq!(bob.text(), "bc");
}
