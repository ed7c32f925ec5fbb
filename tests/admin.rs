//! The operators' view at `/admin`: off without `--admin-key`, refused
//! without the key (401) and the session cookie (the `admin` channel
//! `forbidden`), the cookie's flags, and snapshots that agree with
//! `/metrics` read at the same moment.

mod common;

use common::{http_get, http_response, Client, HttpResponse, TestServer, PATIENCE};
use futures::{SinkExt, StreamExt};
use prometheus_parse::{Scrape, Value};
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const KEY: &str = "admin-test-admin-key-0123";

async fn sign_in(addr: SocketAddr, key: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    http_response(addr, "POST", "/admin/session", &all, &format!("key={key}")).await
}

/// The session cookie's `name=value` from a sign-in's `Set-Cookie`.
fn session(response: &HttpResponse) -> String {
    let set_cookie = response.header("set-cookie").expect("a Set-Cookie");
    set_cookie.split(';').next().unwrap().to_owned()
}

/// A raw WebSocket client (the admin frames are read as JSON).
struct Socket(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Socket {
    /// Opens `/ws`, with this `Cookie` header if given, and says `hello`.
    async fn open(addr: SocketAddr, cookie: Option<&str>) -> Socket {
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("cookie", cookie.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut socket = Socket(ws);
        socket.send(json!({"type": "hello", "data": {}})).await;
        assert_eq!(socket.next().await["type"], "welcome");
        socket
    }

    async fn send(&mut self, message: Json) {
        self.0
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// The next messages of one frame (a batch unpacked).
    async fn frame(&mut self) -> Vec<Json> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.0.next())
                .await
                .expect("a frame in time")
                .expect("open")
                .expect("healthy");
            if let Message::Text(text) = frame {
                let message: Json = serde_json::from_str(&text).unwrap();
                if message["type"] == "batch" {
                    return message["data"]["messages"].as_array().unwrap().clone();
                }
                return vec![message];
            }
        }
    }

    async fn next(&mut self) -> Json {
        self.frame().await.remove(0)
    }

    async fn subscribe_admin(&mut self) -> Vec<Json> {
        self.send(json!({"type": "subscribe", "data": {"channels": [{"channel": "admin"}]}}))
            .await;
        self.frame().await
    }
}

/// Without `--admin-key` the view does not exist.
#[tokio::test]
async fn the_admin_view_is_off_without_a_key() {
    let server = TestServer::start(&["--tick-rate", "0"]).await;
    assert_eq!(http_get(server.addr, "/admin").await.0, 404);
    assert_eq!(sign_in(server.addr, KEY, &[]).await.status, 404);
}

/// No session, no key or a wrong key: 401 and the form again; the right
/// key sets an HttpOnly, SameSite=Strict, Path=/ session cookie (not
/// `Secure` over plain HTTP) that opens the view.
#[tokio::test]
async fn signing_in_needs_the_key_and_sets_a_strict_http_only_cookie() {
    let server = TestServer::start(&["--tick-rate", "0", "--admin-key", KEY]).await;
    let (status, page) = http_get(server.addr, "/admin").await;
    assert_eq!(status, 401);
    assert!(page.contains("name=\"key\""), "the sign-in form: {page}");

    for wrong in ["", "not-the-key", &KEY[..KEY.len() - 1]] {
        let refused = sign_in(server.addr, wrong, &[]).await;
        assert_eq!(refused.status, 401, "key {wrong:?}");
        assert!(refused.header("set-cookie").is_none());
    }

    let signed_in = sign_in(server.addr, KEY, &[]).await;
    assert_eq!(signed_in.status, 303);
    assert_eq!(signed_in.header("location"), Some("/admin"));
    let cookie = signed_in.header("set-cookie").unwrap();
    let flags: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(flags.contains(&flag), "{flag} in {cookie}");
    }
    assert!(
        !flags.contains(&"Secure"),
        "not Secure over plain HTTP: {cookie}"
    );
    assert!(!cookie.contains(KEY), "the key itself is never the cookie");

    let view = http_response(
        server.addr,
        "GET",
        "/admin",
        &[("Cookie", &session(&signed_in))],
        "",
    )
    .await;
    assert_eq!(view.status, 200);
    assert!(view
        .body
        .contains("<caption>Each instance and the total</caption>"));
    assert!(view.header("content-security-policy").is_some());
    // A forged session is no session.
    let forged = http_response(
        server.addr,
        "GET",
        "/admin",
        &[("Cookie", "pulse_admin=eyJhbGciOiJIUzI1NiJ9.e30.x")],
        "",
    )
    .await;
    assert_eq!(forged.status, 401);
}

/// The cookie is `Secure` when a trusted proxy says the request came over
/// TLS, and only then.
#[tokio::test]
async fn the_cookie_is_secure_when_a_trusted_proxy_says_https() {
    let https = [("X-Forwarded-Proto", "https")];
    let trusting = TestServer::start(&[
        "--tick-rate",
        "0",
        "--admin-key",
        KEY,
        "--trusted-proxies",
        "127.0.0.1",
    ])
    .await;
    let cookie = sign_in(trusting.addr, KEY, &https).await;
    assert!(cookie.header("set-cookie").unwrap().ends_with("; Secure"));
    let plain = sign_in(trusting.addr, KEY, &[]).await;
    assert!(!plain.header("set-cookie").unwrap().contains("Secure"));

    let untrusting = TestServer::start(&["--tick-rate", "0", "--admin-key", KEY]).await;
    let claimed = sign_in(untrusting.addr, KEY, &https).await;
    assert!(!claimed.header("set-cookie").unwrap().contains("Secure"));
}

/// A connection opened without the session (anonymous, signed in as a
/// user, or with a forged cookie) is refused the `admin` channel.
#[tokio::test]
async fn the_admin_channel_is_forbidden_without_the_session() {
    let server = TestServer::start(&["--tick-rate", "0", "--admin-key", KEY]).await;
    let mut user = Client::signed_in(&server, "ann").await;
    user.send(r#"{"type":"subscribe","data":{"channels":[{"channel":"admin"}]},"id":"s1"}"#)
        .await;
    let answer = user.recv_json().await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["data"]["code"], "forbidden");
    assert_eq!(answer["data"]["channel"], "admin");
    assert_eq!(answer["data"]["id"], "s1");

    for cookie in [None, Some("pulse_admin=forged")] {
        let mut socket = Socket::open(server.addr, cookie).await;
        let answer = socket.subscribe_admin().await;
        assert_eq!(answer[0]["type"], "error", "{cookie:?}: {answer:?}");
        assert_eq!(answer[0]["data"]["code"], "forbidden");
    }
}

/// One scrape of `/metrics`: (connections open, messages in, messages out).
async fn scrape(addr: SocketAddr) -> (f64, f64, f64) {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let get = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => panic!("{name} is not a number"),
            })
            .unwrap_or(0.0)
    };
    (
        get("pulse_connections_open"),
        get("pulse_messages_in_total"),
        get("pulse_messages_out_total"),
    )
}

/// `pulse_connections_by_transport{transport, tls}` in one scrape.
async fn scrape_transport(addr: SocketAddr, transport: &str, tls: &str) -> f64 {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sample = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "pulse_connections_by_transport"
                && s.labels.get("transport") == Some(transport)
                && s.labels.get("tls") == Some(tls)
        })
        .unwrap_or_else(|| panic!("{transport} tls={tls} in /metrics"));
    match sample.value {
        Value::Gauge(v) | Value::Untyped(v) => v,
        _ => panic!("not a gauge"),
    }
}

/// The relay's numbers in one scrape of `/metrics` (with `--redis`):
/// queue depth by kind (ordered, ticks, awareness), lag in seconds, and
/// messages past the bound.
async fn scrape_relay(addr: SocketAddr) -> ([f64; 3], f64, f64) {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let get = |name: &str, kind: Option<&str>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && kind.is_none_or(|k| s.labels.get("kind") == Some(k)))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => panic!("{name} is not a number"),
            })
            .unwrap_or_else(|| panic!("{name} {kind:?} in /metrics"))
    };
    let depth = ["ordered", "ticks", "awareness"].map(|k| get("pulse_relay_queue_depth", Some(k)));
    (
        depth,
        get("pulse_relay_lag_seconds", None),
        get("pulse_relay_behind_total", None),
    )
}

/// With the session the socket gets `subscribed`, then a snapshot a
/// second; a snapshot's connection count equals `/metrics` read right after
/// it, and its message counters are within the few messages that moved in
/// between (the snapshot frames themselves).
#[tokio::test]
async fn snapshots_agree_with_metrics_read_at_the_same_moment() {
    let server = TestServer::start(&["--tick-rate", "0", "--admin-key", KEY]).await;
    let cookie = session(&sign_in(server.addr, KEY, &[]).await);
    let mut admin = Socket::open(server.addr, Some(&cookie)).await;
    let answer = admin.subscribe_admin().await;
    assert_eq!(answer[0]["type"], "subscribed", "{answer:?}");
    assert_eq!(answer[0]["data"]["channel"], "admin");

    let _others = [
        Client::connected(&server).await,
        Client::signed_in(&server, "bob").await,
    ];
    let mut agreed = false;
    for _ in 0..10 {
        let snapshot = loop {
            let message = admin.next().await;
            if message["type"] == "admin" {
                break message["data"].clone();
            }
        };
        let (connections, messages_in, messages_out) = scrape(server.addr).await;
        let mine = &snapshot["instances"][0];
        let number = |value: &Json| value.as_f64().unwrap();
        if number(&snapshot["total"]["connections"]) != 3.0 {
            continue; // taken before the other two connected
        }
        assert_eq!(number(&mine["connections"]), connections);
        let messages = [
            (number(&mine["messages_in"]), messages_in),
            (number(&mine["messages_out"]), messages_out),
        ];
        for (seen, scraped) in messages {
            assert!(
                scraped >= seen && scraped - seen <= 3.0,
                "snapshot {seen}, /metrics {scraped}"
            );
        }
        assert_eq!(snapshot["instances"].as_array().unwrap().len(), 1);
        assert_eq!(
            mine.get("relay"),
            Some(&Json::Null),
            "no relay without --redis"
        );
        // The three connections by transport, as /metrics counts them.
        for (field, transport, tls, expected) in [
            ("websocket", "websocket", "false", 3.0),
            ("websocket_tls", "websocket", "true", 0.0),
            ("sse", "sse", "false", 0.0),
            ("sse_tls", "sse", "true", 0.0),
        ] {
            let seen = mine["by_transport"][field].as_f64();
            assert_eq!(seen, Some(expected), "by_transport.{field} in {mine}");
            assert_eq!(
                scrape_transport(server.addr, transport, tls).await,
                expected
            );
        }
        assert!(
            !mine["history"].as_array().unwrap().is_empty(),
            "a chart point"
        );
        agreed = true;
        break;
    }
    assert!(agreed, "no snapshot counted the three connections");

    // Unsubscribing stops the snapshots.
    admin
        .send(json!({"type": "unsubscribe", "data": {"channels": ["admin"]}}))
        .await;
    loop {
        let message = admin.next().await;
        if message["type"] == "unsubscribed" {
            break;
        }
    }
    admin.send(json!({"type": "ping", "data": {}})).await;
    assert_eq!(admin.next().await["type"], "pong");
}

/// Two instances on one Redis (and PostgreSQL): the view on either shows
/// both, each with its own connections, the total, and which instance
/// holds the simulator's and presence's leases (one each), and each
/// instance's relay numbers as its own `/metrics` says them.
#[tokio::test]
async fn with_several_instances_the_view_shows_each_and_the_total() {
    let redis = common::redis::Redis::start();
    let database = common::postgres::shared().create_database();
    let redis_url = redis.url();
    let mut flags = common::shared_flags(&database, &redis_url);
    // The simulator runs (slowly), so its lease is held somewhere.
    flags.extend(["--tick-rate", "1", "--admin-key", KEY]);
    let first = TestServer::start(&flags).await;
    let second = TestServer::start(&flags).await;

    let cookie = session(&sign_in(first.addr, KEY, &[]).await);
    let mut admin = Socket::open(first.addr, Some(&cookie)).await;
    let _elsewhere = [
        Client::connected(&second).await,
        Client::connected(&second).await,
    ];
    assert_eq!(admin.subscribe_admin().await[0]["type"], "subscribed");

    // Leases change hands within seconds of a start: read snapshots until
    // both instances report and both leases are held.
    for _ in 0..30 {
        let message = admin.next().await;
        if message["type"] != "admin" {
            continue;
        }
        let snapshot = &message["data"];
        let instances = snapshot["instances"].as_array().unwrap();
        let connections: Vec<u64> = instances
            .iter()
            .map(|i| i["connections"].as_u64().unwrap())
            .collect();
        let leases: Vec<String> = instances
            .iter()
            .flat_map(|i| i["leases"].as_array().unwrap().clone())
            .map(|lease| lease.as_str().unwrap().to_owned())
            .collect();
        let held = |name: &str| leases.iter().filter(|l| *l == name).count();
        if connections != [1, 2] || held("simulator") != 1 || held("presence:leader") != 1 {
            continue;
        }
        assert_eq!(
            instances[0]["instance"], snapshot["instance"],
            "this one first"
        );
        assert_ne!(instances[0]["instance"], instances[1]["instance"]);
        assert_eq!(snapshot["total"]["connections"], 3);
        for (stats, addr) in instances.iter().zip([first.addr, second.addr]) {
            let relay = &stats["relay"];
            assert!(relay.is_object(), "relay numbers with --redis: {stats}");
            let (depth, lag, behind) = scrape_relay(addr).await;
            for (kind, scraped) in ["ordered", "ticks", "awareness"].iter().zip(depth) {
                let seen = relay["depth"][kind].as_f64().expect("a depth");
                // The queue drains and refills between the two readings.
                assert!(
                    (seen - scraped).abs() <= 5.0,
                    "{kind}: snapshot {seen}, /metrics {scraped}"
                );
            }
            let seen_lag = relay["lag_seconds"].as_f64().expect("a lag");
            assert!(
                (seen_lag - lag).abs() <= 1.0,
                "lag: snapshot {seen_lag}, /metrics {lag}"
            );
            let seen_behind = relay["behind"].as_f64().expect("behind");
            assert!(
                behind >= seen_behind,
                "behind: snapshot {seen_behind}, /metrics {behind}"
            );
            assert!(
                behind - seen_behind <= 5.0,
                "behind: snapshot {seen_behind}, /metrics {behind}"
            );
        }
        redis.stop();
        return;
    }
    panic!("no snapshot showed both instances with their connections and leases");
}

/// With Redis and PostgreSQL each snapshot carries the instance's round
/// trips to both (measured on the snapshot's tick) and the relay's total,
/// and the page shows them in its relay table; with SQLite and no Redis
/// there is no round trip to show.
#[tokio::test]
async fn snapshots_carry_redis_and_postgres_round_trips_and_the_relay_total() {
    let redis = common::redis::Redis::start();
    let database = common::postgres::shared().create_database();
    let redis_url = redis.url();
    let mut flags = common::shared_flags(&database, &redis_url);
    flags.extend(["--tick-rate", "0", "--admin-key", KEY]);
    let server = TestServer::start(&flags).await;
    let cookie = session(&sign_in(server.addr, KEY, &[]).await);
    let mut admin = Socket::open(server.addr, Some(&cookie)).await;
    assert_eq!(admin.subscribe_admin().await[0]["type"], "subscribed");
    let snapshot = loop {
        let message = admin.next().await;
        if message["type"] == "admin" {
            break message["data"].clone();
        }
    };
    let mine = &snapshot["instances"][0];
    for field in ["redis_rtt_ms", "postgres_rtt_ms"] {
        let rtt = mine[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field}: {mine}"));
        assert!(rtt > 0.0, "{field}: {rtt}");
        assert_eq!(
            snapshot["total"][field], mine[field],
            "one instance: its own"
        );
    }
    assert_eq!(
        snapshot["total"]["relay"], mine["relay"],
        "one instance: its own"
    );
    assert!(snapshot["total"]["relay"].is_object());
    let page = http_response(server.addr, "GET", "/admin", &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Redis RTT"), "{}", page.body);
    assert!(page.body.contains("PostgreSQL RTT"), "{}", page.body);
    redis.stop();

    let alone = TestServer::start(&["--tick-rate", "0", "--admin-key", KEY]).await;
    let cookie = session(&sign_in(alone.addr, KEY, &[]).await);
    let mut admin = Socket::open(alone.addr, Some(&cookie)).await;
    admin.subscribe_admin().await;
    let snapshot = loop {
        let message = admin.next().await;
        if message["type"] == "admin" {
            break message["data"].clone();
        }
    };
    let mine = &snapshot["instances"][0];
    assert!(mine["redis_rtt_ms"].is_null(), "{mine}");
    assert!(mine["postgres_rtt_ms"].is_null(), "{mine}");
    assert!(snapshot["total"]["relay"].is_null());
}
