//! Connections driven through in-memory sockets: no network, exact control
//! over how fast the "client" reads, on paused time where timing matters.

use super::*;
use crate::protocol::{Ack, Channel, ServerEnvelope, ServerMessage};
use crate::server::hub::Quote;
use clap::Parser;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A socket whose inbound frames come from the test and whose outbound
/// frames go into a channel of `capacity`: when the test stops reading,
/// the server's writer blocks, as on a client that stopped reading.
struct TestSocket {
    inbound: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
    outbound: mpsc::Sender<Message>,
}

/// A frame that makes the test socket panic when the connection reads
/// it, as a bug anywhere in the connection's task would.
const PANIC: &str = "panic in the connection task";

impl Stream for TestSocket {
    type Item = Result<Message, axum::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inbound.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(Message::Text(text)))) = &next {
            assert_ne!(text.as_str(), PANIC, "the test asked for a panic");
        }
        next
    }
}

impl Sink<Message> for TestSocket {
    type Error = mpsc::SendError;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.outbound.poll_ready_unpin(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.outbound.start_send_unpin(item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.outbound.poll_flush_unpin(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.outbound.poll_close_unpin(cx)
    }
}

struct TestClient {
    to_server: mpsc::UnboundedSender<Result<Message, axum::Error>>,
    from_server: mpsc::Receiver<Message>,
}

impl TestClient {
    fn send(&self, json: &str) {
        self.to_server
            .unbounded_send(Ok(Message::Text(json.into())))
            .unwrap();
    }

    /// The next server messages of one frame (batches unpacked).
    async fn recv(&mut self) -> Vec<ServerMessage> {
        loop {
            match self.from_server.next().await.expect("socket open") {
                Message::Text(text) => {
                    let envelope = ServerEnvelope::from_json(&text).unwrap();
                    return envelope.unpack().into_iter().map(|e| e.message).collect();
                }
                Message::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn context() -> ConnectionContext {
    context_with(&[])
}

/// A context whose config has these flags besides `--tick-rate 0`; its
/// tokens live 60 s.
fn context_with(flags: &[&str]) -> ConnectionContext {
    let metrics = Arc::new(Metrics::default());
    let mut args = vec!["pulse", "--tick-rate", "0"];
    args.extend_from_slice(flags);
    ConnectionContext {
        config: Arc::new(Config::parse_from(args)),
        shutdown: CancellationToken::new(),
        hub: Hub::new(metrics.clone(), std::time::Duration::from_secs(5)),
        auth: Arc::new(Auth::new(b"test", std::time::Duration::from_secs(60))),
        store: Store::open(
            &std::env::temp_dir().join(format!("pulse-conn-{}.db", uuid::Uuid::new_v4().simple())),
        )
        .unwrap(),
        metrics,
        admin: crate::server::admin::Admin::new(None),
        admin_session: false,
        tls: false,
        transport: super::Transport::WebSocket,
    }
}

fn connect(context: &ConnectionContext, capacity: usize) -> TestClient {
    let (to_server, inbound) = mpsc::unbounded();
    let (outbound, from_server) = mpsc::channel(capacity);
    tokio::spawn(serve_connection(
        TestSocket { inbound, outbound },
        context.clone(),
    ));
    TestClient {
        to_server,
        from_server,
    }
}

fn quote(symbol: &str, n: u64) -> Quote {
    Quote {
        symbol: symbol.into(),
        price: n as f64,
        change: 0.0,
        change_pct: 0.0,
        volume: n,
    }
}

const SUBSCRIBE: &str = r#"{"type":"subscribe","data":{"channels":[{"channel":"ticker:AAA"},{"channel":"ticker:BBB"}]}}"#;

/// A client that stops reading holds at most one queued tick per symbol,
/// while a client that reads gets every tick, gap-free, and the publisher
/// never waits for either.
#[tokio::test]
async fn a_stalled_reader_is_conflated_while_a_reader_gets_every_tick() {
    let context = context();
    let mut stalled = connect(&context, 1);
    let mut reader = connect(&context, 1024);
    for client in [&stalled, &reader] {
        client.send(r#"{"type":"hello","data":{}}"#);
        client.send(SUBSCRIBE);
    }
    let mut answers = Vec::new();
    while answers.len() < 3 {
        answers.extend(reader.recv().await);
    }
    // The stalled client reads its answers, then stops reading.
    let mut stalled_answers = Vec::new();
    while stalled_answers.len() < 3 {
        stalled_answers.extend(stalled.recv().await);
    }

    let rounds = 5_000;
    let mut next = [1u64, 1u64];
    for n in 1..=rounds {
        context.hub.publish_tick(quote("AAA", n));
        context.hub.publish_tick(quote("BBB", n));
        // Read as we go so the reader is never behind by more than a round.
        while next.iter().any(|&offset| offset <= n) {
            for message in reader.recv().await {
                let ServerMessage::Tick(tick) = message else {
                    panic!("{message:?}")
                };
                let slot = usize::from(tick.symbol == "BBB");
                assert_eq!(tick.offset, next[slot], "gap-free and in order");
                next[slot] += 1;
            }
        }
    }
    let conflated = context.metrics.ticks_conflated.get();
    assert!(
        conflated >= 2 * rounds - 10,
        "only {conflated} ticks conflated"
    );

    // What the stalled client finally reads is a handful of frames ending
    // with the latest tick of each symbol, not 10,000 ticks.
    let mut late = Vec::new();
    while let Ok(Some(frame)) = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        stalled.from_server.next(),
    )
    .await
    {
        if let Message::Text(text) = frame {
            late.extend(ServerEnvelope::from_json(&text).unwrap().unpack());
        }
    }
    assert!(late.len() <= 6, "{} messages were queued", late.len());
    let last_offsets: Vec<u64> = late
        .iter()
        .filter_map(|e| match &e.message {
            ServerMessage::Tick(tick) => Some(tick.offset),
            _ => None,
        })
        .collect();
    assert!(
        last_offsets.iter().filter(|&&o| o == rounds).count() == 2,
        "{last_offsets:?}"
    );
}

fn user(name: &str) -> UserRef {
    UserRef {
        id: format!("guest:{}", name.to_lowercase()),
        name: name.into(),
    }
}

fn hello_with(token: &str) -> String {
    format!(r#"{{"type":"hello","data":{{"token":"{token}"}}}}"#)
}

/// Reads until the server's close frame; returns its code and reason.
async fn close_of(client: &mut TestClient) -> (u16, String) {
    while let Some(frame) = client.from_server.next().await {
        if let Message::Close(frame) = frame {
            let frame = frame.expect("a close frame with a code");
            return (frame.code, frame.reason.to_string());
        }
    }
    panic!("the socket ended without a close frame");
}

/// PROTOCOL 1.1: an open connection whose token expires is closed with
/// 4001 (here 60 s plus the 5 s leeway), on paused time.
#[tokio::test(start_paused = true)]
async fn an_open_connection_is_closed_with_4001_when_its_token_expires() {
    let context = context_with(&["--heartbeat-ms", "300000"]);
    let token = context.auth.mint(&user("Exp"));
    let mut client = connect(&context, 64);
    client.send(&hello_with(&token));
    assert!(matches!(client.recv().await[0], ServerMessage::Welcome(_)));
    let opened = Instant::now();
    assert_eq!(close_of(&mut client).await, (4001, "token expired".into()));
    let lived = opened.elapsed();
    assert!(
        lived >= std::time::Duration::from_secs(59) && lived <= std::time::Duration::from_secs(66),
        "{lived:?}"
    );
}

/// `refresh` with a new token of the same user moves the expiry and is
/// acked; one for another user or a forged one is refused and changes
/// nothing.
#[tokio::test(start_paused = true)]
async fn refresh_extends_an_open_connection_and_bad_tokens_change_nothing() {
    let context = context_with(&["--heartbeat-ms", "300000"]);
    let me = user("Ref");
    let mut client = connect(&context, 64);
    client.send(&hello_with(&context.auth.mint(&me)));
    client.recv().await;

    let someone_else = context.auth.mint(&user("Other"));
    client.send(&format!(
        r#"{{"type":"refresh","data":{{"token":"{someone_else}"}},"id":"r-0"}}"#
    ));
    let [ServerMessage::Error(error)] = &client.recv().await[..] else {
        panic!("expected an error")
    };
    assert_eq!(
        (error.code, error.id.as_deref()),
        (ErrorCode::Unauthorized, Some("r-0"))
    );
    client.send(r#"{"type":"refresh","data":{"token":"not.a.token"}}"#);
    let [ServerMessage::Error(error)] = &client.recv().await[..] else {
        panic!("expected an error")
    };
    assert_eq!(error.code, ErrorCode::Unauthorized);

    let longer = Auth::new(b"test", std::time::Duration::from_secs(600)).mint(&me);
    client.send(&format!(
        r#"{{"type":"refresh","data":{{"token":"{longer}"}},"id":"r-1"}}"#
    ));
    assert_eq!(
        client.recv().await,
        [ServerMessage::Ack(Ack::bare("r-1".into()))]
    );
    // Long past the first token's expiry, the connection still answers.
    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
    client.send(r#"{"type":"ping","data":{}}"#);
    assert_eq!(client.recv().await, [ServerMessage::Pong(Empty {})]);
    // And the new token's expiry closes it in the end.
    assert_eq!(close_of(&mut client).await, (4001, "token expired".into()));
}

/// However a connection's task ends, a panic included, it leaves nothing
/// behind: no subscription in the hub, no place in the connection count,
/// and its user leaves presence after the grace.
#[tokio::test(start_paused = true)]
async fn a_connection_task_that_panics_leaves_nothing_behind() {
    let context = context_with(&["--heartbeat-ms", "300000"]);
    let mut client = connect(&context, 64);
    client.send(&hello_with(&context.auth.mint(&user("Pat"))));
    client.recv().await;
    client.send(SUBSCRIBE);
    let mut answers = Vec::new();
    while answers.len() < 2 {
        answers.extend(client.recv().await);
    }
    let aaa = Channel::Ticker("AAA".into());
    assert_eq!(context.hub.subscriber_count(&aaa), 1);
    assert_eq!(context.metrics.connections_open.get(), 1);
    assert_eq!(context.hub.presence_users().len(), 1);

    client.send(PANIC);
    assert_eq!(close_of(&mut client).await.0, 1011);
    assert_eq!(context.hub.subscriber_count(&aaa), 0);
    assert_eq!(context.metrics.connections_open.get(), 0);
    tokio::time::sleep(context.config.presence_grace() * 2).await;
    assert!(context.hub.presence_users().is_empty());
}

/// A message other than a tick is never dropped: a client that falls
/// more than the outbox budget behind is closed with 4008 instead.
#[tokio::test]
async fn a_reader_too_far_behind_on_replies_is_closed_with_4008() {
    let context = context();
    let mut client = connect(&context, 1);
    client.send(r#"{"type":"hello","data":{}}"#);
    client.recv().await;
    // About 40 bytes per pong: 1 MiB of budget is some 26,000 of them.
    for _ in 0..40_000 {
        client.send(r#"{"type":"ping","data":{}}"#);
    }
    let mut close = None;
    while let Some(frame) = client.from_server.next().await {
        if let Message::Close(frame) = frame {
            close = frame;
            break;
        }
    }
    assert_eq!(close.map(|f| f.code), Some(4008));
    assert_eq!(context.metrics.slow_consumers.get(), 1);
}

/// While the store is slow (its writer held busy), a connection waiting to
/// store a chat message still reads its socket: a `ping` sent after the
/// `chat_send` is answered at once, and the message behind it is handled in
/// its turn after the `ack`.
#[tokio::test]
async fn a_connection_waiting_on_the_store_still_reads_and_answers_pings() {
    let context = context();
    let mut client = connect(&context, 64);
    client.send(&hello_with(&context.auth.mint(&user("Wai"))));
    client.recv().await;
    let held = crate::server::store::testing::hold_writer(&context.store).await;
    client.send(r#"{"type":"chat_send","data":{"room":"general","text":"hi"},"id":"c-1"}"#);
    client.send(r#"{"type":"ping","data":{}}"#);
    client.send(r#"{"type":"unsubscribe","data":{"channels":["ticker:AAA"]}}"#);
    let pong = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv())
        .await
        .expect("the ping is answered while the write waits");
    assert_eq!(pong, [ServerMessage::Pong(Empty {})]);

    held.release().await;
    let mut after = Vec::new();
    while after.len() < 2 {
        after.extend(client.recv().await);
    }
    assert!(
        matches!(&after[0], ServerMessage::Ack(ack) if ack.id == "c-1"),
        "{after:?}"
    );
    assert!(
        matches!(&after[1], ServerMessage::Unsubscribed(_)),
        "{after:?}"
    );
}

/// The sender hears its `ack` before its own copy of the message, so a page
/// can turn its pending line into the message in place.
#[tokio::test]
async fn the_sender_gets_its_ack_before_its_own_copy() {
    let context = context();
    let mut client = connect(&context, 64);
    client.send(&hello_with(&context.auth.mint(&user("Ord"))));
    client.recv().await;
    client.send(r#"{"type":"subscribe","data":{"channels":[{"channel":"chat:general"}]}}"#);
    while !client
        .recv()
        .await
        .iter()
        .any(|m| matches!(m, ServerMessage::Subscribed(_)))
    {}
    for n in 1..=3 {
        let send = format!(
            r#"{{"type":"chat_send","data":{{"room":"general","text":"m{n}"}},"id":"c-{n}"}}"#
        );
        client.send(&send);
        let mut after = Vec::new();
        while after.len() < 2 {
            after.extend(client.recv().await);
        }
        let id = format!("c-{n}");
        assert!(
            matches!(&after[0], ServerMessage::Ack(ack) if ack.id == id),
            "{after:?}"
        );
        assert!(
            matches!(&after[1], ServerMessage::Chat(m) if m.text == format!("m{n}")),
            "{after:?}"
        );
    }
}

/// A connection that sends no `hello` within the protocol's 10 s is closed
/// with 4001; one that did is not closed by that deadline (paused time).
#[tokio::test(start_paused = true)]
async fn the_hello_deadline_closes_only_connections_without_hello() {
    let context = context();
    let mut silent = connect(&context, 64);
    let started = Instant::now();
    assert_eq!(
        close_of(&mut silent).await,
        (4001, "no hello within the time allowed".into())
    );
    assert_eq!(started.elapsed(), context.config.hello_timeout());

    let mut greeted = connect(&context, 64);
    greeted.send(r#"{"type":"hello","data":{}}"#);
    greeted.recv().await;
    tokio::time::sleep(context.config.hello_timeout() * 2).await;
    greeted.send(r#"{"type":"ping","data":{}}"#);
    assert_eq!(greeted.recv().await, [ServerMessage::Pong(Empty {})]);
}

/// A client from which nothing arrives for two heartbeats is closed with
/// 1001 `heartbeat timeout`, after the server pinged it (paused time).
#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_after_two_heartbeats() {
    let context = context();
    let mut client = connect(&context, 64);
    client.send(r#"{"type":"hello","data":{}}"#);
    client.recv().await;
    let started = Instant::now();
    let mut pings = 0;
    let close = loop {
        match client.from_server.next().await.expect("socket open") {
            Message::Ping(_) => pings += 1,
            Message::Close(frame) => break frame.expect("a close frame"),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        (close.code, close.reason.as_str()),
        (1001, "heartbeat timeout")
    );
    assert_eq!(started.elapsed(), context.config.heartbeat() * 2);
    assert!(pings >= 1, "the server pinged before giving up");
}

/// A channel listed many times in one `subscribe` is answered once, for its
/// first entry (PROTOCOL.md: one `subscribed` or `error` per channel): 2,000
/// entries of `ticker:AAA` among two of `ticker:BBB` give two `subscribed`,
/// then the `pong` sent after them.
#[tokio::test]
async fn a_channel_listed_many_times_in_one_subscribe_is_answered_once() {
    let context = context();
    for n in 1..=60 {
        context.hub.publish_tick(quote("AAA", n));
    }
    let mut client = connect(&context, 64);
    client.send(r#"{"type":"hello","data":{}}"#);
    client.recv().await;
    let mut entries = vec![r#"{"channel":"ticker:AAA"}"#; 2_000];
    entries.insert(1, r#"{"channel":"ticker:BBB"}"#);
    entries.push(r#"{"channel":"ticker:BBB","since":{"offset":0,"epoch":"other"}}"#);
    client.send(&format!(
        r#"{{"type":"subscribe","data":{{"channels":[{}]}}}}"#,
        entries.join(",")
    ));
    client.send(r#"{"type":"ping","data":{}}"#);
    let mut answered = Vec::new();
    'pong: loop {
        for message in client.recv().await {
            match message {
                ServerMessage::Pong(_) => break 'pong,
                ServerMessage::Subscribed(answer) => {
                    answered.push((answer.channel, answer.snapshot.is_some()))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(answered.len(), 2, "{} answers", answered.len());
    let answered: Vec<(&str, bool)> = answered.iter().map(|(c, s)| (c.as_str(), *s)).collect();
    assert_eq!(answered, [("ticker:AAA", true), ("ticker:BBB", false)]);
    assert_eq!(
        context.hub.subscriber_count(&Channel::Ticker("AAA".into())),
        1
    );
}
