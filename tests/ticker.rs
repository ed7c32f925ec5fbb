//! Ticker channels against a real server: subscribe, snapshots, resume by
//! offsets, unsubscribe, the publish API, and a slow reader beside a fast one.

mod common;

use common::{http_get, http_post, Client, TestServer};
use pulse::protocol::{ServerMessage, Snapshot, Subscribed, Tick};
use serde_json::json;

const KEY: &str = "test-admin-key-0123";

/// A server whose prices move only through `/api/publish`.
async fn quiet_server() -> TestServer {
    TestServer::start(&["--tick-rate", "0", "--symbols", "AAPL", "--admin-key", KEY]).await
}

async fn publish(server: &TestServer, symbol: &str, price: f64) -> u64 {
    let body =
        json!({"channel": format!("ticker:{symbol}"), "data": {"price": price, "volume": 100}});
    let (status, answer) =
        http_post(server.addr, "/api/publish", Some(KEY), &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    answer["offset"].as_u64().unwrap()
}

impl Client {
    async fn subscribe(&mut self, channels: serde_json::Value) {
        let frame = json!({"type": "subscribe", "data": {"channels": channels}, "id": "s"});
        self.send(&frame.to_string()).await;
    }

    async fn subscribed(&mut self) -> Subscribed {
        match self.recv().await.message {
            ServerMessage::Subscribed(subscribed) => subscribed,
            other => panic!("expected subscribed, got {other:?}"),
        }
    }

    async fn tick(&mut self) -> Tick {
        match self.recv().await.message {
            ServerMessage::Tick(tick) => tick,
            other => panic!("expected tick, got {other:?}"),
        }
    }

    /// Sends `ping` and collects everything before the `pong`.
    async fn until_pong(&mut self) -> Vec<ServerMessage> {
        self.send(r#"{"type":"ping","data":{}}"#).await;
        let mut seen = Vec::new();
        loop {
            match self.recv().await.message {
                ServerMessage::Pong(_) => return seen,
                other => seen.push(other),
            }
        }
    }
}

/// A symbol with no tick yet can be subscribed; its snapshot is null until
/// the outside feed starts it, and then ticks flow with offsets from 1.
#[tokio::test]
async fn a_symbol_without_ticks_subscribes_and_then_receives_the_first() {
    let server = quiet_server().await;
    let mut client = Client::connected(&server).await;
    client.subscribe(json!([{"channel": "ticker:NEWCO"}])).await;
    let answer = client.subscribed().await;
    assert_eq!(
        (answer.offset, answer.recovered, answer.snapshot),
        (0, false, None)
    );
    assert_eq!(publish(&server, "NEWCO", 12.5).await, 1);
    let tick = client.tick().await;
    assert_eq!(
        (tick.channel.to_string().as_str(), tick.offset, tick.price),
        ("ticker:NEWCO", 1, 12.5)
    );
    assert_eq!((tick.change, tick.volume), (0.0, 100));
    publish(&server, "NEWCO", 13.75).await;
    let tick = client.tick().await;
    assert_eq!((tick.offset, tick.change, tick.change_pct), (2, 1.25, 10.0));
}

/// One `subscribe` with several channels answers each in order, an invalid
/// name with an `error` for that channel alone.
#[tokio::test]
async fn several_channels_in_one_subscribe_are_answered_in_order() {
    let server = quiet_server().await;
    publish(&server, "AAPL", 190.0).await;
    let mut client = Client::connected(&server).await;
    client
        .subscribe(json!([{"channel": "ticker:AAPL"}, {"channel": "ticker:bad"}, {"channel": "ticker:MSFT"}]))
        .await;
    let first = client.subscribed().await;
    assert_eq!(first.channel, "ticker:AAPL");
    let Some(Snapshot::Ticker(snapshot)) = first.snapshot else {
        panic!("AAPL has a snapshot")
    };
    assert_eq!(
        (snapshot.quote.price, snapshot.recent.as_slice()),
        (190.0, &[190.0][..])
    );
    match client.recv().await.message {
        ServerMessage::Error(error) => {
            assert_eq!(error.channel.as_deref(), Some("ticker:bad"));
            assert_eq!(error.id.as_deref(), Some("s"));
        }
        other => panic!("expected an error for ticker:bad, got {other:?}"),
    }
    assert_eq!(client.subscribed().await.channel, "ticker:MSFT");
}

/// After `unsubscribe` no more ticks of that channel arrive; others still do.
#[tokio::test]
async fn unsubscribe_stops_one_channel_and_keeps_the_others() {
    let server = quiet_server().await;
    let mut client = Client::connected(&server).await;
    client
        .subscribe(json!([{"channel": "ticker:AAPL"}, {"channel": "ticker:MSFT"}]))
        .await;
    client.subscribed().await;
    client.subscribed().await;
    client
        .send(r#"{"type":"unsubscribe","data":{"channels":["ticker:AAPL"]}}"#)
        .await;
    match client.recv().await.message {
        ServerMessage::Unsubscribed(u) => assert_eq!(u.channel, "ticker:AAPL"),
        other => panic!("expected unsubscribed, got {other:?}"),
    }
    publish(&server, "AAPL", 1.0).await;
    publish(&server, "MSFT", 2.0).await;
    let seen = client.until_pong().await;
    let channels: Vec<_> = seen
        .iter()
        .map(|m| match m {
            ServerMessage::Tick(t) => t.channel.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(channels, ["ticker:MSFT"]);
}

/// A client that reconnects with its last `{offset, epoch}` gets every
/// missed tick in order, then live ones: no gap, no double.
#[tokio::test]
async fn a_resume_replays_exactly_the_missed_ticks() {
    let server = quiet_server().await;
    let mut first = Client::connected(&server).await;
    first.subscribe(json!([{"channel": "ticker:AAPL"}])).await;
    let epoch = first.subscribed().await.epoch;
    for price in [1.0, 2.0, 3.0] {
        publish(&server, "AAPL", price).await;
    }
    let mut last_seen = 0;
    for expected in 1..=3 {
        last_seen = first.tick().await.offset;
        assert_eq!(last_seen, expected);
    }
    drop(first);

    publish(&server, "AAPL", 4.0).await;
    publish(&server, "AAPL", 5.0).await;
    let mut again = Client::connected(&server).await;
    again
        .subscribe(
            json!([{"channel": "ticker:AAPL", "since": {"offset": last_seen, "epoch": epoch}}]),
        )
        .await;
    let answer = again.subscribed().await;
    assert!(answer.recovered);
    assert_eq!((answer.offset, answer.snapshot), (5, None));
    assert_eq!(again.tick().await.offset, 4);
    assert_eq!(again.tick().await.offset, 5);
    publish(&server, "AAPL", 6.0).await;
    let live = again.tick().await;
    assert_eq!((live.offset, live.price), (6, 6.0));
}

/// A resume point from another epoch (an earlier server run) or older than
/// the 300 ticks kept gets `recovered: false` and a fresh snapshot.
#[tokio::test]
async fn an_unrecoverable_resume_gets_a_fresh_snapshot() {
    let server = quiet_server().await;
    let mut client = Client::connected(&server).await;
    client.subscribe(json!([{"channel": "ticker:AAPL"}])).await;
    let epoch = client.subscribed().await.epoch;
    drop(client);
    for n in 0..305 {
        publish(&server, "AAPL", 100.0 + n as f64).await;
    }
    for since in [
        json!({"offset": 300, "epoch": "not-this-run"}),
        json!({"offset": 2, "epoch": epoch}),
    ] {
        let mut client = Client::connected(&server).await;
        client
            .subscribe(json!([{"channel": "ticker:AAPL", "since": since}]))
            .await;
        let answer = client.subscribed().await;
        assert!(!answer.recovered, "{since}");
        assert_eq!(answer.offset, 305);
        let Some(Snapshot::Ticker(snapshot)) = answer.snapshot else {
            panic!("a snapshot")
        };
        assert_eq!(snapshot.quote.offset, 305);
        assert_eq!(snapshot.recent.len(), 60);
        assert!(client.until_pong().await.is_empty(), "nothing replayed");
    }
    // Offset 5 is the oldest resume point still covered (ticks 6..=305 kept).
    let mut client = Client::connected(&server).await;
    client
        .subscribe(json!([{"channel": "ticker:AAPL", "since": {"offset": 5, "epoch": epoch}}]))
        .await;
    assert!(client.subscribed().await.recovered);
    assert_eq!(client.until_pong().await.len(), 300);
}

/// The publish API needs the admin key, validates its body with clear 400s,
/// and is off (404) when the server has no key.
#[tokio::test]
async fn the_publish_api_checks_the_key_and_the_body() {
    let off = TestServer::start(&["--tick-rate", "0"]).await;
    let body = r#"{"channel":"ticker:XYZ","data":{"price":1.5}}"#;
    assert_eq!(
        http_post(off.addr, "/api/publish", Some("x"), body).await.0,
        404
    );

    let server = quiet_server().await;
    assert_eq!(
        http_post(server.addr, "/api/publish", None, body).await.0,
        401
    );
    assert_eq!(
        http_post(server.addr, "/api/publish", Some("wrong"), body)
            .await
            .0,
        401
    );
    let cases = [
        ("{", "bad_json", "JSON"),
        (r#"{"data":{"price":1}}"#, "invalid", "channel"),
        (
            r#"{"channel":"ticker:xyz","data":{"price":1}}"#,
            "invalid",
            "channel",
        ),
        (
            r#"{"channel":"chat:general","data":{"price":1}}"#,
            "invalid",
            "channel",
        ),
        (r#"{"channel":"ticker:XYZ","data":{}}"#, "invalid", "price"),
        (
            r#"{"channel":"ticker:XYZ","data":{"price":"cheap"}}"#,
            "invalid",
            "data.price",
        ),
        (
            r#"{"channel":"ticker:XYZ","data":{"price":-3}}"#,
            "invalid",
            "data.price",
        ),
        (
            r#"{"channel":"ticker:XYZ","data":{"price":1,"volume":-1}}"#,
            "invalid",
            "data.volume",
        ),
    ];
    for (body, code, names) in cases {
        let (status, answer) = http_post(server.addr, "/api/publish", Some(KEY), body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{body}: {message}");
    }
    let (status, answer) = http_post(server.addr, "/api/publish", Some(KEY), body).await;
    assert_eq!(
        (status, &answer),
        (200, &json!({"channel": "ticker:XYZ", "offset": 1}))
    );
}

/// The built-in simulator moves the default symbols by itself.
#[tokio::test]
async fn the_simulator_ticks_every_symbol() {
    let server =
        TestServer::start(&["--symbols", "AAA,BBB", "--tick-rate", "20", "--seed", "1"]).await;
    let mut client = Client::connected(&server).await;
    client
        .subscribe(json!([{"channel": "ticker:AAA"}, {"channel": "ticker:BBB"}]))
        .await;
    client.subscribed().await;
    client.subscribed().await;
    let mut symbols = std::collections::BTreeSet::new();
    while symbols.len() < 2 {
        let tick = client.tick().await;
        assert!(tick.price > 0.0);
        symbols.insert(tick.symbol);
    }
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("pulse_ticks_published_total"), "{metrics}");
}
