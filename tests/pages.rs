//! The server-rendered page with a full shared note: the page carries the
//! note's beginning (bounded), never its whole state, for visitors signed
//! out and signed in alike.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::{http, http_post, Client, TestServer};
use pulse::client::{NOTE_MORE_MARKER, NOTE_PREVIEW_BYTES};
use pulse::protocol::{ErrorCode, ServerMessage};
use serde_json::json;
use std::time::Duration;
use yrs::{Doc, ReadTxn, Text, Transact};

/// How much more a page with any note may weigh than a page with an empty
/// one: the rendered beginning appears three times (the text area, the
/// caret overlay that repeats it, and the state the page hydrates from),
/// plus a little for the words around it.
const NOTE_IN_PAGE_AT_MOST: usize = 3 * NOTE_PREVIEW_BYTES + 2048;

/// How the note starts (the page must show it).
const BEGINNING: &str = "The note begins here, and goes on for a long while. ";

async fn server() -> TestServer {
    TestServer::start(&[
        "--tick-rate",
        "0",
        "--jwt-secret",
        "pages-test-secret-0123456789abcdef",
    ])
    .await
}

/// A guest token for `name`.
async fn token(server: &TestServer, name: &str) -> String {
    let (status, answer) = http_post(
        server.addr,
        "/api/login",
        None,
        &json!({ "name": name }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

/// `GET /`, signed in when `token` is given; the page's body.
async fn page(server: &TestServer, token: Option<&str>) -> String {
    let cookie = token.map(|token| format!("pulse_token={token}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
    let (status, body) = http(server.addr, "GET", "/", &headers, "").await;
    assert_eq!(status, 200);
    body
}

/// Fills `doc:notes` through the protocol, 45 KB of text per `doc_update`,
/// until the server refuses one as `too_large` (the note is then within one
/// update of its 1 MiB limit); returns how many bytes of text it holds.
async fn fill_the_note(server: &TestServer) -> usize {
    let mut ada = Client::signed_in(server, "Ada").await;
    let doc = Doc::with_client_id(1);
    let text = doc.get_or_insert_text("text");
    let mut held = 0;
    for n in 0..40 {
        let chunk = if n == 0 {
            format!("{BEGINNING}{}", "y".repeat(45_000 - BEGINNING.len()))
        } else {
            "y".repeat(45_000)
        };
        let before = doc.transact().state_vector();
        text.insert(&mut doc.transact_mut(), held as u32, &chunk);
        let update = BASE64.encode(doc.transact().encode_state_as_update_v1(&before));
        let id = format!("fill-{n}");
        let frame = json!({"type": "doc_update", "id": id,
            "data": {"doc": "notes", "update": update}})
        .to_string();
        ada.send(&frame).await;
        loop {
            match ada.recv().await.message {
                ServerMessage::Ack(ack) if ack.id == id => break,
                ServerMessage::Error(error) if error.code == ErrorCode::RateLimited => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    ada.send(&frame).await;
                }
                ServerMessage::Error(error) if error.code == ErrorCode::TooLarge => {
                    return held;
                }
                ServerMessage::Error(error) => panic!("update {n} refused: {error:?}"),
                _ => {}
            }
        }
        held += chunk.len();
    }
    panic!("the note took 40 × 45 KB")
}

/// With the note full (about a mebibyte of text), a page rendered for a
/// visitor who is not signed in, and one for a signed-in user, stay within
/// [`NOTE_IN_PAGE_AT_MOST`] of a page with an empty note, and show the
/// note's beginning with the marker that more follows.
#[tokio::test]
async fn a_page_carries_the_notes_beginning_not_the_whole_note() {
    let server = server().await;
    let token = token(&server, "Reader").await;
    let empty_anonymous = page(&server, None).await.len();
    let empty_signed_in = page(&server, Some(&token)).await.len();

    let held = fill_the_note(&server).await;
    assert!(held > 900_000, "the note holds {held} bytes of text");

    for (who, empty, body) in [
        ("anonymous", empty_anonymous, page(&server, None).await),
        (
            "signed in",
            empty_signed_in,
            page(&server, Some(&token)).await,
        ),
    ] {
        assert!(
            body.len() <= empty + NOTE_IN_PAGE_AT_MOST,
            "{who}: a page of {} bytes with a full note (empty note: {empty})",
            body.len()
        );
        let area = body.find("<textarea").expect("the note's text area");
        let text = &body[area..][body[area..].find('>').unwrap() + 1..];
        assert!(
            text.starts_with(BEGINNING),
            "{who}: the note's beginning is shown: {}",
            &text[..200.min(text.len())]
        );
        let end = text.find("</textarea>").unwrap();
        assert!(
            text[..end].ends_with(&format!("y{NOTE_MORE_MARKER}")),
            "{who}: the text area says more follows"
        );
    }
}
