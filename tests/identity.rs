//! Identity rules of PROTOCOL 1.1 against a real server: guests live in the
//! `guest:` namespace and can never act as a backend's user, and a server
//! with an empty or short secret or admin key refuses to start.

mod common;

use clap::Parser;
use common::{http_post, temp_db, Client, TestServer};
use jsonwebtoken::{encode, EncodingKey, Header};
use pulse::server::{serve, Config, ServerError};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "identity-test-secret-0123456789abcdef";
const KEY: &str = "identity-admin-key-0123";

/// A token for `sub` as another backend sharing the secret would mint it.
fn backend_token(sub: &str, name: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({ "sub": sub, "name": name, "exp": exp });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A guest who calls themselves "1042" is `guest:1042`: they cannot read the
/// notifications of the backend's user `1042`, who still gets their own.
#[tokio::test]
async fn a_guest_named_like_a_backend_user_is_not_that_user() {
    let flags = [
        "--tick-rate",
        "0",
        "--jwt-secret",
        SECRET,
        "--admin-key",
        KEY,
    ];
    let server = TestServer::start(&flags).await;
    let (status, login) = http_post(server.addr, "/api/login", None, r#"{"name":"1042"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(login["user"]["id"], "guest:1042");

    let mut guest = Client::signed_in(&server, "1042").await;
    guest
        .send(r#"{"type":"subscribe","data":{"channels":[{"channel":"user:1042"}]}}"#)
        .await;
    assert_eq!(guest.recv_json().await["data"]["code"], "forbidden");

    let mut owner = Client::connect(&server).await;
    let hello = json!({"type":"hello","data":{"token": backend_token("1042", "Real 1042")}});
    owner.send(&hello.to_string()).await;
    assert_eq!(owner.recv_json().await["data"]["user"]["id"], "1042");
    owner
        .send(r#"{"type":"subscribe","data":{"channels":[{"channel":"user:1042"}]}}"#)
        .await;
    assert_eq!(owner.recv_json().await["type"], "subscribed");
    let body = json!({"user": "1042", "title": "For the real one"}).to_string();
    let (status, _) = http_post(server.addr, "/api/notify", Some(KEY), &body).await;
    assert_eq!(status, 200);
    let delivered = owner.recv_json().await;
    assert_eq!(delivered["data"]["title"], "For the real one");
}

async fn start_with(flags: &[&str]) -> Result<(), ServerError> {
    let db = temp_db();
    let mut args = vec!["pulse", "--tick-rate", "0", "--db", &db];
    args.extend_from_slice(flags);
    let config = Config::try_parse_from(args).expect("flags parse");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A server that starts serves until the shutdown future completes: give
    // it one that is already complete, so a good config returns Ok at once.
    serve(listener, config, async {}).await
}

/// `PULSE_JWT_SECRET=""` or a secret under 32 bytes, and an admin key under
/// 16 characters, stop the server before it serves anything.
#[tokio::test]
async fn empty_or_short_secrets_are_refused_at_start() {
    for flags in [
        &["--jwt-secret", ""][..],
        &["--jwt-secret", "0123456789abcdef0123456789abcde"],
        &["--admin-key", ""],
        &["--admin-key", "short-key"],
    ] {
        let started = start_with(flags).await;
        assert!(
            matches!(started, Err(ServerError::Config(_))),
            "{flags:?}: {started:?}"
        );
    }
    start_with(&["--jwt-secret", SECRET, "--admin-key", KEY])
        .await
        .expect("long enough secrets start");
}
