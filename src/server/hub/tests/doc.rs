//! Documents: whole reloads renew subscribers outside the live budget, and
//! what the server sends on its own stays bounded.

use super::*;
use crate::protocol::Snapshot;
use crate::server::store::StoredDoc;
use crate::server::ws::outbox::PushError;
use base64::Engine as _;

/// A document as the store loads it: `text` in its `Y.Text`, at offset
/// `latest`, with no update kept for replay.
fn stored_note(latest: u64, text: &str) -> StoredDoc {
    use yrs::{Text, Transact};
    let doc = yrs::Doc::new();
    let content = doc.get_or_insert_text("text");
    content.insert(&mut doc.transact_mut(), 0, text);
    StoredDoc {
        epoch: "stored".into(),
        latest,
        recent: Vec::new(),
        doc,
        compacted_upto: latest,
    }
}

/// A document reloaded whole (more was missed than the store replays)
/// renews its subscribers with a `subscribed` the server sends on its own.
/// That is a subscribe answer: a subscriber with live traffic queued near
/// its budget is not closed by a ~750 KB one, and gets both, in order.
#[tokio::test]
async fn a_reloaded_document_renews_subscribers_outside_the_live_budget() {
    let hub = hub();
    let channel = Channel::Doc("notes".into());
    hub.install_doc(&channel, stored_note(1, "short"));
    let outbox = Outbox::new(1 << 20);
    hub.subscribe(1, &outbox, &channel, None).unwrap();
    drain(&outbox).await;
    let live = frames::encode(ServerMessage::Pong(crate::protocol::Empty {}));
    let mut queued = 0;
    while queued + live.len() <= 1_000_000 {
        outbox.push(live.clone()).unwrap();
        queued += live.len();
    }

    let text = "n".repeat(560_000);
    hub.reinstall_doc(&channel, stored_note(5_000, &text));
    assert_eq!(outbox.push(live.clone()), Ok(()), "not closed");
    let got = drain(&outbox).await;
    let renewed = got
        .iter()
        .find(|m| matches!(m, ServerMessage::Subscribed(_)))
        .map(subscribed)
        .expect("a fresh subscribed");
    assert_eq!((renewed.offset, renewed.recovered), (5_000, false));
    let Some(Snapshot::Doc(snapshot)) = &renewed.snapshot else {
        panic!("a document snapshot: {:?}", renewed.snapshot)
    };
    assert!(snapshot.state.len() > 700_000, "{}", snapshot.state.len());
    let state = BASE64.decode(&snapshot.state).unwrap();
    assert_eq!(text_of(&rebuild(&state, [])), text);
    assert_eq!(got.len(), 1_000_000 / live.len() + 2, "every live frame");
}

/// What the server sends on its own is still bounded: a subscriber that
/// never reads is closed once the renewals it holds pass the answer bound
/// (`MAX_ANSWER_BYTES`), although they never touch its live budget.
#[tokio::test]
async fn renewals_a_subscriber_never_reads_are_bounded() {
    use crate::server::ws::outbox::MAX_ANSWER_BYTES;
    let hub = hub();
    let channel = Channel::Doc("notes".into());
    hub.install_doc(&channel, stored_note(1, "short"));
    // A live budget far above the answer bound: only the latter can close it.
    let outbox = Outbox::new(16 * MAX_ANSWER_BYTES);
    hub.subscribe(1, &outbox, &channel, None).unwrap();
    let text = "n".repeat(560_000);
    let mut reloads = 0;
    while outbox.push(frames::encode(ServerMessage::Pong(
        crate::protocol::Empty {},
    ))) == Ok(())
    {
        reloads += 1;
        assert!(reloads <= 20, "still open after {reloads} renewals");
        hub.reinstall_doc(&channel, stored_note(1 + reloads, &text));
    }
    assert!(reloads * 747_000 > MAX_ANSWER_BYTES as u64, "{reloads}");
    assert_eq!(
        outbox.push(frames::encode(ServerMessage::Pong(
            crate::protocol::Empty {}
        ))),
        Err(PushError::Closed)
    );
}
