//! A document's way from check to commit to subscribers, on a hub without a
//! network: a check changes nothing, growth is reserved until the commit,
//! and committed updates are applied in offset order, past a gap only once
//! it is filled.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use yrs::{Doc, ReadTxn, Text, Transact};

use crate::protocol::{Channel, DocUpdateEvent, ServerMessage, UserRef};
use crate::server::hub::{decode_update, DocError, Fit, Hub, MAX_DOC_BYTES};
use crate::server::metrics::Metrics;
use crate::server::store::StoredDoc;
use crate::server::ws::outbox::Outbox;

fn notes() -> Channel {
    Channel::Doc("notes".into())
}

/// A hub holding an empty `doc:notes` at offset `latest`, and a subscriber.
fn hub_with_note(latest: u64) -> (Hub, Arc<Outbox>) {
    let hub = Hub::new(Arc::new(Metrics::default()), Duration::from_millis(50));
    let stored = StoredDoc {
        epoch: "stored".into(),
        latest,
        recent: Vec::new(),
        doc: Doc::new(),
        compacted_upto: latest,
    };
    hub.install_doc(&notes(), stored);
    let outbox = Outbox::new(1 << 20);
    hub.subscribe(1, &outbox, &notes(), None).unwrap();
    (hub, outbox)
}

/// An update typing `what` into an empty document of Yjs client `client`.
fn typed(client: u64, what: &str) -> Vec<u8> {
    let doc = Doc::with_client_id(client);
    doc.get_or_insert_text("text")
        .insert(&mut doc.transact_mut(), 0, what);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&Default::default());
    update
}

/// The committed update at `offset` typing `what` (Yjs client `offset`).
fn committed(offset: u64, what: &str) -> DocUpdateEvent {
    DocUpdateEvent {
        channel: "doc:notes".parse().unwrap(),
        offset,
        doc: "notes".into(),
        update: crate::server::hub::BASE64.encode(typed(offset, what)),
        user: UserRef {
            id: "ann".into(),
            name: "Ann".into(),
        },
    }
}

/// The offsets of the `doc_update`s queued on `outbox` now (after the
/// subscribe answer).
async fn delivered(outbox: &Outbox) -> Vec<u64> {
    let messages = outbox.drain_messages().await;
    messages
        .into_iter()
        .filter_map(|message| match message {
            ServerMessage::DocUpdate(event) => Some(event.offset),
            _ => None,
        })
        .collect()
}

fn text(hub: &Hub) -> String {
    hub.doc_text(&notes()).unwrap()
}

#[tokio::test]
async fn a_check_changes_nothing_and_a_commit_applies_the_stored_bytes() {
    let (hub, outbox) = hub_with_note(0);
    delivered(&outbox).await;
    let bytes = typed(7, "checked");
    let update = decode_update(&bytes).unwrap();
    let (fit, reservation) = hub
        .check_doc_update(&notes(), &update, bytes.len())
        .unwrap()
        .unwrap();
    assert_eq!(fit, Fit::Fits);
    drop(reservation);
    assert_eq!(text(&hub), "", "a check changes nothing");
    assert_eq!(hub.doc_latest(&notes()), Some(0));

    let published = hub.publish_doc(&committed(1, "one"));
    assert!(!published.fill);
    assert_eq!(text(&hub), "one");
    assert_eq!(delivered(&outbox).await, [1]);
    // The same offset again (the relay bringing it back) is known.
    assert_eq!(
        hub.deliver_doc(&committed(1, "one")),
        crate::server::hub::Delivery::Known
    );
    assert_eq!(delivered(&outbox).await, Vec::<u64>::new());
}

#[tokio::test]
async fn updates_past_a_gap_wait_for_it_and_then_arrive_in_order() {
    let (hub, outbox) = hub_with_note(1);
    delivered(&outbox).await;
    assert!(
        hub.publish_doc(&committed(3, "c")).fill,
        "one fill asked for"
    );
    assert!(!hub.publish_doc(&committed(4, "d")).fill, "one at a time");
    assert_eq!(
        delivered(&outbox).await,
        Vec::<u64>::new(),
        "nothing skipped"
    );
    assert_eq!(text(&hub), "");
    assert_eq!(hub.doc_latest(&notes()), Some(1));
    // The fill brings offset 2; the held ones follow at once.
    assert_eq!(
        hub.deliver_doc(&committed(2, "b")),
        crate::server::hub::Delivery::Delivered
    );
    assert_eq!(delivered(&outbox).await, [2, 3, 4]);
    assert_eq!(hub.doc_latest(&notes()), Some(4));
    assert_eq!(text(&hub).len(), 3);
    assert!(!hub.doc_filled(&notes()), "nothing waits: the fill is over");
    assert!(
        hub.publish_doc(&committed(6, "f")).fill,
        "a new gap, a new fill"
    );
}

/// An update that builds on one acknowledged and held behind a gap is
/// "later" (`CatchingUp`, answered `internal`), never `invalid`, while the
/// fill runs; once the gap closes it passes.
#[tokio::test]
async fn an_update_building_on_a_held_one_waits_for_the_fill() {
    let (hub, _outbox) = hub_with_note(1);
    let client = Doc::with_client_id(3);
    let text = client.get_or_insert_text("text");
    text.insert(&mut client.transact_mut(), 0, "c");
    let mut held = committed(3, "");
    held.update = crate::server::hub::BASE64.encode(
        client
            .transact()
            .encode_state_as_update_v1(&Default::default()),
    );
    hub.publish_doc(&held);
    let before = client.transact().state_vector();
    text.insert(&mut client.transact_mut(), 1, "d");
    let next = client.transact().encode_state_as_update_v1(&before);
    let check = || {
        let update = decode_update(&next).unwrap();
        hub.check_doc_update(&notes(), &update, next.len())
            .unwrap()
            .map(|(fit, _)| fit)
    };
    assert_eq!(check(), Err(DocError::CatchingUp));
    hub.deliver_doc(&committed(2, "b"));
    assert_eq!(check(), Ok(Fit::Fits));
    assert!(!hub.doc_filled(&notes()));
}

#[tokio::test]
async fn a_resume_during_a_fill_replays_only_what_is_complete() {
    let (hub, first) = hub_with_note(0);
    hub.publish_doc(&committed(1, "a"));
    hub.publish_doc(&committed(3, "c"));
    let resumed = Outbox::new(1 << 20);
    let since = crate::protocol::Since {
        offset: 0,
        epoch: "stored".into(),
    };
    hub.subscribe(2, &resumed, &notes(), Some(&since)).unwrap();
    hub.deliver_doc(&committed(2, "b"));
    // Replayed 1, then 2 and 3 live: no hole, no double.
    assert_eq!(delivered(&resumed).await, [1, 2, 3]);
    assert_eq!(delivered(&first).await, [1, 2, 3]);
}

#[tokio::test]
async fn growth_reserved_by_a_check_counts_until_its_commit_or_failure() {
    let (hub, _outbox) = hub_with_note(0);
    // A note just under half the limit, committed.
    let big = typed(1, &"x".repeat(MAX_DOC_BYTES / 2 - 1000));
    let mut event = committed(1, "");
    event.update = crate::server::hub::BASE64.encode(&big);
    hub.publish_doc(&event);
    // Two updates of 150 KB checked at once: either alone fits (about
    // 800 KB), both together would not, so the second is measured with the
    // first's growth reserved and refused.
    let (one, two) = (
        typed(2, &"y".repeat(150_000)),
        typed(3, &"z".repeat(150_000)),
    );
    let check = |bytes: &[u8]| {
        let update = decode_update(bytes).unwrap();
        let checked = hub.check_doc_update(&notes(), &update, bytes.len());
        let (fit, reservation) = checked.unwrap()?;
        if let Fit::Measure { state, reserved } = fit {
            crate::server::hub::measure_doc_update(&state, bytes, reserved)?;
        }
        Ok::<_, DocError>(reservation)
    };
    let first = check(&one).expect("fits alone");
    assert_eq!(check(&two).err(), Some(DocError::TooLarge));
    // The first failed (its append did not commit): its growth is free.
    drop(first);
    let second = check(&two).expect("fits now");
    drop(second);
}
