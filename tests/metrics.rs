//! `/metrics` read by a Prometheus text parser while real traffic flows:
//! each metric is checked by how much it moved, against what the test's
//! clients saw (frames received, errors answered, closes), not only by name.

mod common;

use common::{http_get, http_post, Client, TestServer, PATIENCE};
use prometheus_parse::{Scrape, Value};
use pulse::protocol::ServerMessage;
use serde_json::json;

const KEY: &str = "metrics-test-admin-key";

/// One scrape of `/metrics`, parsed.
struct Metrics(Scrape);

async fn scrape(server: &TestServer) -> Metrics {
    let (status, body) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let lines = body.lines().map(|line| Ok(line.to_owned()));
    Metrics(Scrape::parse(lines).expect("/metrics parses as Prometheus text"))
}

impl Metrics {
    /// The value of the sample `name` with exactly these labels; 0 when
    /// the sample is absent (a labelled counter not yet moved).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|sample| sample.metric == name)
            .filter(|sample| {
                labels.len() == sample.labels.len()
                    && labels
                        .iter()
                        .all(|(key, value)| sample.labels.get(key) == Some(value))
            })
            .map(|sample| match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                ref other => panic!("{name} is not a number: {other:?}"),
            })
            .next()
            .unwrap_or(0.0)
    }

    /// Like [`Metrics::get`] but the sample must be there.
    fn present(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        assert!(
            self.0.samples.iter().any(|sample| sample.metric == name),
            "no {name} in {:?}",
            self.0.samples.iter().map(|s| &s.metric).collect::<Vec<_>>()
        );
        self.get(name, labels)
    }

    /// A histogram's observation count, checked against its `+Inf` bucket.
    fn count(&self, histogram: &str) -> f64 {
        let count = self.present(&format!("{histogram}_count"), &[]);
        let buckets = self
            .0
            .samples
            .iter()
            .find_map(|sample| match &sample.value {
                Value::Histogram(buckets) if sample.metric == histogram => Some(buckets),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{histogram} has buckets"));
        let infinite = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
        assert_eq!(infinite.count, count, "{histogram}: +Inf bucket == count");
        count
    }
}

/// A client that counts what it sends and receives.
struct Counted {
    client: Client,
    sent: u64,
    received: u64,
}

impl Counted {
    async fn send(&mut self, frame: serde_json::Value) {
        self.client.send(&frame.to_string()).await;
        self.sent += 1;
    }

    async fn recv(&mut self) -> ServerMessage {
        let message = self.client.recv().await.message;
        self.received += 1;
        message
    }

    /// Sends `ping` and returns everything received before its `pong`.
    async fn until_pong(&mut self) -> Vec<ServerMessage> {
        self.send(json!({"type": "ping", "data": {}})).await;
        let mut seen = Vec::new();
        loop {
            match self.recv().await {
                ServerMessage::Pong(_) => return seen,
                other => seen.push(other),
            }
        }
    }
}

async fn publish(server: &TestServer, price: f64) {
    let body = json!({"channel": "ticker:AAPL", "data": {"price": price, "volume": 1}});
    let (status, answer) =
        http_post(server.addr, "/api/publish", Some(KEY), &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
}

/// Scrapes until `histogram`'s count reached `at_least` (a frame's latency
/// is observed just after it is written, so a client may read it first).
async fn once_counted(server: &TestServer, histogram: &str, at_least: f64) -> Metrics {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = scrape(server).await;
        if metrics.count(histogram) >= at_least || tokio::time::Instant::now() > deadline {
            return metrics;
        }
        tokio::task::yield_now().await;
    }
}

/// Ticks, a chat send, errors, a rate limit, conflation and two closes
/// move exactly the metrics that say so; the delivery-latency histogram
/// counts every message delivered.
#[tokio::test]
async fn every_metric_moves_with_traffic() {
    let server = TestServer::start(&[
        "--tick-rate",
        "0",
        "--symbols",
        "AAPL",
        "--admin-key",
        KEY,
        // Ticks wait for company up to 1 s, so two in a row conflate.
        "--write-delay-ms",
        "1000",
    ])
    .await;
    let before = scrape(&server).await;
    assert_eq!(before.present("pulse_connections_open", &[]), 0.0);

    let mut ann = Counted {
        client: Client::signed_in(&server, "ann").await,
        sent: 1,
        received: 1,
    };
    ann.send(json!({"type": "subscribe", "data": {"channels": [{"channel": "ticker:AAPL"}]}}))
        .await;
    assert!(matches!(ann.recv().await, ServerMessage::Subscribed(_)));

    // Ticks two at a time: the second replaces the first while the writer
    // waits, unless the writer took the first already. Either way every
    // tick is delivered or counted as conflated.
    let (mut published, mut ticks) = (0u64, 0u64);
    for round in 0..20 {
        publish(&server, 100.0 + round as f64).await;
        publish(&server, 200.0 + round as f64).await;
        published += 2;
        let seen = ann.until_pong().await;
        assert!(seen.iter().all(|m| matches!(m, ServerMessage::Tick(_))));
        ticks += seen.len() as u64;
        if ticks < published {
            break;
        }
    }
    assert!(ticks < published, "no two ticks were ever conflated");

    // Errors: bad JSON and an invalid subscribe.
    ann.client.send(r#"{"type":"ping""#).await;
    ann.sent += 1;
    ann.send(json!({"type": "subscribe", "data": {"channels": "ticker:AAPL"}}))
        .await;
    for code in ["bad_json", "invalid"] {
        match ann.recv().await {
            ServerMessage::Error(error) => assert_eq!(error.code.as_str(), code),
            other => panic!("expected {code}, got {other:?}"),
        }
    }

    // Chat until rate limited: each acked send is a store commit.
    let (mut acked, mut limited) = (0u64, 0u64);
    for id in 0..100 {
        let text = format!("message {id}");
        ann.send(json!({"type": "chat_send", "data": {"room": "general", "text": text}, "id": id.to_string()}))
            .await;
        match ann.recv().await {
            ServerMessage::Ack(_) => acked += 1,
            ServerMessage::Error(error) if error.code.as_str() == "rate_limited" => {
                limited += 1;
                break;
            }
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    assert!(
        acked > 0 && limited == 1,
        "acked {acked}, limited {limited}"
    );

    let during = once_counted(
        &server,
        "pulse_delivery_latency_seconds",
        before.count("pulse_delivery_latency_seconds") + ann.received as f64,
    )
    .await;
    let moved =
        |name: &str, labels: &[(&str, &str)]| during.get(name, labels) - before.get(name, labels);
    let counted = |name: &str| during.count(name) - before.count(name);

    assert_eq!(during.get("pulse_connections_open", &[]), 1.0);
    let websocket = [("transport", "websocket"), ("tls", "false")];
    assert_eq!(
        during.get("pulse_connections_by_transport", &websocket),
        1.0
    );
    assert_eq!(
        during.get("pulse_subscriptions", &[("kind", "ticker")]),
        1.0
    );
    assert_eq!(during.get("pulse_subscriptions", &[("kind", "chat")]), 0.0);
    assert!(during.present("pulse_hub_channels", &[]) >= 1.0);
    assert_eq!(moved("pulse_connections_total", &[]), 1.0);
    assert_eq!(moved("pulse_messages_in_total", &[]), ann.sent as f64);
    assert_eq!(moved("pulse_messages_out_total", &[]), ann.received as f64);
    assert_eq!(
        counted("pulse_delivery_latency_seconds"),
        ann.received as f64,
        "one latency per message delivered"
    );
    assert!(counted("pulse_outbox_depth_bytes") >= 1.0);
    assert!(moved("pulse_outbox_depth_bytes_sum", &[]) > 0.0);
    assert_eq!(moved("pulse_ticks_published_total", &[]), published as f64);
    assert_eq!(
        moved("pulse_ticks_conflated_total", &[]),
        (published - ticks) as f64
    );
    for code in ["bad_json", "invalid", "rate_limited"] {
        assert_eq!(
            moved("pulse_protocol_errors_total", &[("code", code)]),
            1.0,
            "{code}"
        );
    }
    assert_eq!(moved("pulse_rate_limited_total", &[]), 1.0);
    // The sign-in writes too; group commit may join sends into one.
    let commits = moved("pulse_store_commits_total", &[]);
    assert!(commits >= 1.0, "{commits} commits for {acked} sends");
    assert_eq!(counted("pulse_store_commit_seconds"), commits);
    assert!(during.present("pulse_upgrade_rate", &[]) > 0.0);
    during.present("pulse_scheduling_lag_seconds", &[]);
    during.present("pulse_doc_loads_total", &[]);

    // Closes: one by the server (1009, a message too big), one by the peer.
    let mut big = Client::connect(&server).await;
    big.send(&"x".repeat(70_000)).await;
    let frame = big.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009);
    drop(ann);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let after = loop {
        let after = scrape(&server).await;
        let gone = after.get("pulse_connections_open", &[]) == 0.0;
        if gone || tokio::time::Instant::now() > deadline {
            break after;
        }
        tokio::task::yield_now().await;
    };
    let moved =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - during.get(name, labels);
    assert_eq!(after.get("pulse_connections_open", &[]), 0.0);
    assert_eq!(after.get("pulse_connections_by_transport", &websocket), 0.0);
    assert_eq!(after.get("pulse_subscriptions", &[("kind", "ticker")]), 0.0);
    assert_eq!(moved("pulse_connections_total", &[]), 1.0);
    assert_eq!(moved("pulse_closes_total", &[("code", "1009")]), 1.0);
    assert_eq!(moved("pulse_closes_total", &[("code", "peer")]), 1.0);
}

/// Scrapes until the sample `name{labels}` reached `at_least` (a histogram
/// observes a frame just after writing it, so a client may read it first).
async fn once_at_least(
    server: &TestServer,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) -> Metrics {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = scrape(server).await;
        if metrics.get(name, labels) >= at_least || tokio::time::Instant::now() > deadline {
            return metrics;
        }
        tokio::task::yield_now().await;
    }
}

/// Each channel subscribed to is timed once, by its kind, from its
/// `subscribe` to its first frame written (its `subscribed`); a refused
/// subscribe, which writes no frame of the channel, is not timed.
#[tokio::test]
async fn subscribe_to_first_message_is_timed_by_kind() {
    let server = TestServer::start(&["--tick-rate", "0", "--symbols", "AAPL,MSFT"]).await;
    let first = "pulse_subscribe_first_message_seconds_count";
    let before = scrape(&server).await;
    let mut ann = Client::signed_in(&server, "ann").await;
    let channels = json!([
        {"channel": "ticker:AAPL"},
        {"channel": "ticker:MSFT"},
        {"channel": "chat:general"},
        {"channel": "user:someone-else"},
    ]);
    ann.send(&json!({"type": "subscribe", "data": {"channels": channels}}).to_string())
        .await;
    let mut subscribed = 0;
    while subscribed < 3 {
        match ann.recv().await.message {
            ServerMessage::Subscribed(_) => subscribed += 1,
            ServerMessage::Error(error) => assert_eq!(error.code.as_str(), "forbidden"),
            other => panic!("expected subscribed, got {other:?}"),
        }
    }
    let during = once_at_least(&server, first, &[("kind", "chat")], 1.0).await;
    let during = if during.get(first, &[("kind", "ticker")]) < 2.0 {
        once_at_least(&server, first, &[("kind", "ticker")], 2.0).await
    } else {
        during
    };
    let moved =
        |kind: &str| during.get(first, &[("kind", kind)]) - before.get(first, &[("kind", kind)]);
    assert_eq!(moved("ticker"), 2.0, "two ticker subscriptions timed");
    assert_eq!(moved("chat"), 1.0, "one chat subscription timed");
    assert_eq!(moved("user"), 0.0, "a refused subscribe is not timed");
    let sum = during.get(
        "pulse_subscribe_first_message_seconds_sum",
        &[("kind", "chat")],
    );
    assert!(sum > 0.0, "a time was observed: {sum}");
}
