//! `--log-format json` against the real binary: every line is one JSON
//! object, and the lines about a connection carry the instance, the
//! connection's id, its address and (once signed in) its user in `span`, so an operator's
//! collector can follow one connection, or one user across reconnects.

mod common;

use common::process::Pulse;
use common::{http_post, Client};
use pulse::protocol::ServerMessage;
use serde_json::{json, Value};
use std::time::Duration;

/// Says `hello` (with `token` if any) and returns the `welcome`'s connection
/// id and user id.
async fn welcomed(client: &mut Client, token: Option<&str>) -> (String, Option<String>) {
    let data = match token {
        Some(token) => json!({ "token": token }),
        None => json!({}),
    };
    client
        .send(&json!({"type": "hello", "data": data}).to_string())
        .await;
    match client.recv().await.message {
        ServerMessage::Welcome(welcome) => (welcome.connection_id, welcome.user.map(|u| u.id)),
        other => panic!("expected welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn json_logs_parse_and_carry_the_connections_instance_id_and_user() {
    let db = common::temp_db();
    let mut pulse = Pulse::start(
        &db,
        &["--log-format", "json"],
        &[("RUST_LOG", "info,pulse=debug")],
    );
    let (status, answer) = http_post(pulse.addr, "/api/login", None, r#"{"name":"Logan"}"#).await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["token"].as_str().unwrap().to_owned();
    let mut signed_in = Client::connect_to(pulse.addr, None).await;
    let (signed_in_id, user) = welcomed(&mut signed_in, Some(&token)).await;
    let user = user.expect("a signed-in welcome names its user");
    let mut anonymous = Client::connect_to(pulse.addr, None).await;
    let (anonymous_id, _) = welcomed(&mut anonymous, None).await;

    // Shutdown closes both with 1001, which each connection logs.
    pulse.terminate();
    assert!(signed_in.closed().await.is_some());
    assert!(anonymous.closed().await.is_some());
    assert!(pulse.exited_within(Duration::from_secs(15)).await.is_some());

    let lines: Vec<Value> = pulse
        .log()
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
    let listening = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("listening on")
        })
        .expect("a listening line");
    let instance = listening["instance"]
        .as_str()
        .expect("the instance's name")
        .to_owned();
    assert!(!instance.is_empty());

    let closing = |id: &str| {
        lines
            .iter()
            .find(|l| {
                l["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("closing connection")
                    && l["span"]["connection"] == id
            })
            .unwrap_or_else(|| panic!("no closing line for {id} in {lines:#?}"))
            .clone()
    };
    let line = closing(&signed_in_id);
    assert_eq!(line["span"]["instance"], instance.as_str());
    assert_eq!(line["span"]["user"], user.as_str());
    assert_eq!(line["span"]["client"], "127.0.0.1");
    assert_eq!(line["code"], 1001);
    let line = closing(&anonymous_id);
    assert_eq!(line["span"]["instance"], instance.as_str());
    assert!(line["span"].get("user").is_none(), "{line}");
}
