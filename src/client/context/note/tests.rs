//! The note feature's tests: read-only until the state arrives, a new
//! replica after sign-out, refused edits.

use base64::Engine as _;
use leptos::prelude::*;

use super::super::testing::{ann, error, signed_in};
use super::super::Live;
use super::BASE64;
use crate::client::initial::{NotePreview, NOTE_MORE_MARKER};
use crate::client::note::{Note, NOTE_DOC};
use crate::client::InitialState;
use crate::protocol::{Channel, ClientMessage, ErrorCode, ServerMessage, Snapshot, Subscribed};

#[test]
fn a_refused_note_edit_is_dropped_with_what_follows_and_internal_means_later() {
    let owner = Owner::new();
    owner.set();
    let live = signed_in();
    live.apply(note_snapshot(""));
    live.note.input("abc", (3, 3));
    let sent = live.connection.outbox_due(0.0).send;
    let id = sent[0].id.clone().unwrap();
    assert!(matches!(sent[0].message, ClientMessage::DocUpdate(_)));
    live.note.input("abcd", (4, 4));
    live.refused(&error(ErrorCode::Internal, &id), 10.0);
    assert!(
        live.connection.outbox_due(20.0).send.is_empty(),
        "later, not at once"
    );
    let again = live.connection.outbox_due(10_000.0).send;
    assert_eq!(
        again[0].id.as_deref(),
        Some(id.as_str()),
        "the same edit again"
    );
    live.refused(&error(ErrorCode::TooLarge, &id), 10_001.0);
    assert!(
        live.connection.outbox_due(20_000.0).send.is_empty(),
        "dropped, with what followed"
    );
    assert!(live.note.warning.get_untracked().is_some());
}

/// The note's `subscribed` with a snapshot holding `text` (typed by
/// another replica; an empty note's state is the update of nothing).
fn note_snapshot(text: &str) -> ServerMessage {
    let mut other = Note::new(77);
    let state = other
        .edit(text, text.encode_utf16().count() as u32)
        .unwrap_or(vec![0, 0]);
    ServerMessage::Subscribed(Subscribed {
        channel: Channel::Doc(NOTE_DOC.into()).to_string(),
        epoch: "e".into(),
        offset: 1,
        recovered: false,
        snapshot: Some(Snapshot::Doc(crate::protocol::DocSnapshot {
            state: BASE64.encode(state),
            awareness: "AA==".into(),
        })),
    })
}

/// The text a server holding `state_text` ends up with after the edits
/// the page queued.
fn text_after_outbox(live: &Live, state_text: &str) -> String {
    let mut server = Note::new(78);
    let ServerMessage::Subscribed(answer) = note_snapshot(state_text) else {
        unreachable!()
    };
    let Some(Snapshot::Doc(snapshot)) = answer.snapshot else {
        unreachable!()
    };
    server
        .apply_remote(&BASE64.decode(snapshot.state).unwrap())
        .unwrap();
    for envelope in live.connection.outbox_due(0.0).send {
        if let ClientMessage::DocUpdate(update) = envelope.message {
            server
                .apply_remote(&BASE64.decode(update.update).unwrap())
                .unwrap();
        }
    }
    server.text()
}

#[test]
fn the_rendered_note_is_read_only_text_until_the_socket_brings_its_state() {
    let owner = Owner::new();
    owner.set();
    let live = Live::new(InitialState {
        user: Some(ann()),
        note: Some(NotePreview {
            text: "The beginning".into(),
            more: true,
        }),
        ..InitialState::default()
    });
    let note = live.note;
    let shown = format!("The beginning{NOTE_MORE_MARKER}");
    assert_eq!(note.text.get_untracked(), shown);
    assert!(note.cut.get_untracked());
    assert!(!note.loaded.get_untracked());
    // The note was rendered without its state: its subscription asks
    // for the snapshot, with no `since`.
    assert_eq!(
        live.connection
            .since(&Channel::Doc(NOTE_DOC.into()).to_string()),
        None
    );
    // Nothing is measured against the empty replica (it would insert
    // the rendered text again).
    note.input(&format!("{shown}!"), (15, 15));
    assert!(live.connection.outbox_due(0.0).send.is_empty());
    assert_eq!(note.text.get_untracked(), shown);

    live.apply(note_snapshot("The beginning and the rest"));
    assert!(note.loaded.get_untracked());
    assert!(!note.cut.get_untracked());
    assert_eq!(note.text.get_untracked(), "The beginning and the rest");
    // Now an edit is one change of the whole text, and nothing is doubled.
    note.input("The beginning and the rest.", (27, 27));
    assert_eq!(
        text_after_outbox(&live, "The beginning and the rest"),
        "The beginning and the rest."
    );
}

#[test]
fn a_new_replica_is_read_only_again_until_its_snapshot() {
    let owner = Owner::new();
    owner.set();
    let live = signed_in();
    live.apply(note_snapshot("shared text"));
    assert!(live.note.loaded.get_untracked());
    live.signed_out();
    assert!(
        !live.note.loaded.get_untracked(),
        "signed out: a new, empty replica"
    );
    // Signed in again (join sets the user before the socket's welcome):
    // typing before the snapshot changes nothing.
    live.identity.user.set(Some(ann()));
    live.note.input("shared text typed", (17, 17));
    assert!(live.connection.outbox_due(0.0).send.is_empty());
    live.apply(note_snapshot("shared text"));
    live.note.input("shared text typed", (17, 17));
    assert_eq!(text_after_outbox(&live, "shared text"), "shared text typed");
}

/// A `doc_update` of the note at `offset`, made by another replica.
fn note_update(update: &[u8], offset: u64) -> ServerMessage {
    ServerMessage::DocUpdate(crate::protocol::DocUpdateEvent {
        channel: Channel::Doc(NOTE_DOC.into()),
        doc: NOTE_DOC.into(),
        update: BASE64.encode(update),
        offset,
        user: crate::protocol::UserRef {
            id: "guest:bob".into(),
            name: "bob".into(),
        },
    })
}

#[test]
fn what_arrives_before_the_engine_waits_and_is_replayed_in_order_on_install() {
    let owner = Owner::new();
    owner.set();
    let live = signed_in();
    // A split build's page: no engine until it is fetched.
    live.note.uninstall();
    let mut other = Note::new(77);
    let first = other.edit("before", 6).unwrap();
    let second = other.edit("before and after", 16).unwrap();
    // An update older than the snapshot is dropped by it (the snapshot
    // holds it); one after it is replayed after it.
    live.apply(note_update(&[0, 0], 1));
    let snapshot = ServerMessage::Subscribed(Subscribed {
        channel: Channel::Doc(NOTE_DOC.into()).to_string(),
        epoch: "e".into(),
        offset: 2,
        recovered: false,
        snapshot: Some(Snapshot::Doc(crate::protocol::DocSnapshot {
            state: BASE64.encode(&first),
            awareness: "AA==".into(),
        })),
    });
    live.apply(snapshot);
    live.apply(note_update(&second, 3));
    assert!(live.note.live.get_untracked(), "live while it loads");
    assert!(
        !live.note.loaded.get_untracked(),
        "read-only until installed"
    );
    live.note.input("typed", (5, 5));
    assert!(live.connection.outbox_due(0.0).send.is_empty());

    live.note.install(crate::client::note::new_replica(5));
    assert_eq!(live.note.editor.get_untracked(), super::NoteEditor::Ready);
    assert!(live.note.loaded.get_untracked());
    assert_eq!(live.note.text.get_untracked(), "before and after");
    live.note.input("before and after!", (17, 17));
    assert_eq!(
        text_after_outbox(&live, "before and after"),
        "before and after!"
    );
}

#[test]
fn another_tabs_edits_taken_over_before_the_engine_are_applied_on_install() {
    let owner = Owner::new();
    owner.set();
    let live = signed_in();
    live.note.uninstall();
    let mut theirs = crate::client::outbox::Outbox::for_user("guest:ann");
    let mut tab = Note::new(9);
    theirs.push_note(&tab.edit("offline", 7).unwrap(), || "d-t".into(), None);
    live.adopt(theirs);
    live.apply(note_snapshot(""));
    live.note.install(crate::client::note::new_replica(5));
    assert_eq!(live.note.text.get_untracked(), "offline");
}
