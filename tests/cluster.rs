//! Several instances as one (`--redis` with `--database-url`): three servers
//! on one PostgreSQL and one Redis, each started for the test. Chat sent on
//! any instance reaches every instance's subscribers in offset order with
//! the same offsets; a client resumes on another instance than the one it
//! left with exactly what it missed; a mention on one instance notifies the
//! user's tab on another; messages committed while Redis was down reach
//! the other instances once it is back, in order, once each; and presence
//! is one list, with one stream of offsets, across instances.

mod common;

use common::cluster::{instance, instances as instances_with, SECRET};
use common::postgres::shared;
use common::redis::Redis;
use common::{Client, TestServer, PATIENCE};
use pulse::protocol::{
    ChatMessage, PresenceDiff, PresenceUser, ServerEnvelope, ServerMessage, Snapshot, Subscribed,
    Tick, UserStatus,
};
use serde_json::{json, Value};
use std::collections::HashMap;

const ADMIN_KEY: &str = "cluster-admin-key-0123456789";

/// `count` instances on one fresh database and `redis`, the simulator off.
async fn instances(redis: &Redis, count: usize) -> Vec<TestServer> {
    instances_with(redis, count, &["--tick-rate", "0"]).await
}

/// The next tick a client gets, waiting up to `limit` (longer than
/// `Client::recv` allows: a lease changing hands takes a few seconds).
async fn next_tick(client: &mut Client, limit: std::time::Duration) -> Tick {
    next_tick_sent(client, limit).await.0
}

/// [`next_tick`] with the moment its publisher sent it (in microseconds).
async fn next_tick_sent(client: &mut Client, limit: std::time::Duration) -> (Tick, i64) {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let frame = tokio::time::timeout_at(deadline, client.ws.next())
            .await
            .expect("a tick in time")
            .expect("open")
            .expect("healthy");
        let tokio_tungstenite::tungstenite::Message::Text(text) = frame else {
            continue;
        };
        for envelope in ServerEnvelope::from_json(&text).unwrap().unpack() {
            if let ServerMessage::Tick(tick) = envelope.message {
                return (tick, envelope.timestamp.unix_micros());
            }
        }
    }
}

/// Every instance's subscribers get the same ticks, with the same offsets,
/// one after another: the simulator runs once for the cluster, and Redis
/// gives the offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_have_one_offset_sequence_on_every_instance() {
    let redis = Redis::start();
    let servers = instances_with(&redis, 3, &["--tick-rate", "10", "--symbols", "AAPL"]).await;
    let mut seen: Vec<Vec<(u64, f64)>> = Vec::new();
    let mut watchers = Vec::new();
    for server in &servers {
        let mut watcher = Client::connected(server).await;
        subscribe(&mut watcher, "ticker:AAPL", None).await;
        watchers.push(watcher);
    }
    for watcher in &mut watchers {
        let mut ticks = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..15 {
            let (tick, at) = next_tick_sent(watcher, PATIENCE).await;
            ticks.push((tick.offset, tick.price));
            sent.push(at);
        }
        assert!(
            ticks.windows(2).all(|w| w[1].0 == w[0].0 + 1),
            "one after another: {ticks:?}"
        );
        // One simulator at 10 a second: 15 ticks span 1.4 s of the
        // publisher's clock (three would span under 0.5 s). A loaded machine
        // only stretches this.
        let span_ms = (sent[14] - sent[0]) / 1000;
        assert!(
            span_ms >= 1000,
            "15 ticks in {span_ms} ms: more than one simulator"
        );
        seen.push(ticks);
    }
    let prices: HashMap<u64, f64> = seen[0].iter().copied().collect();
    let mut shared = 0;
    for ticks in &seen[1..] {
        for (offset, price) in ticks {
            if let Some(first) = prices.get(offset) {
                assert_eq!(first, price, "offset {offset} is one tick everywhere");
                shared += 1;
            }
        }
    }
    assert!(shared > 0, "the watchers' windows overlap");
    // The one simulator is the one instance whose `/metrics` says it holds
    // the lease.
    let mut holders = 0;
    for server in &servers {
        let (_, metrics) = common::http_get(server.addr, "/metrics").await;
        let held = r#"pulse_lease_held{lease="pulse:simulator"} "#;
        let value = metrics.lines().find_map(|line| line.strip_prefix(held));
        holders += value
            .expect("a pulse_lease_held line")
            .trim()
            .parse::<u32>()
            .unwrap();
    }
    assert_eq!(holders, 1, "one instance holds the simulator's lease");
}

/// The instance holding the simulator's lease shuts down: it lets the lease
/// go, another takes it over within a second or so, and prices go on with
/// the next offset, from where they were, not from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_moves_to_another_instance_when_its_holder_stops() {
    let redis = Redis::start();
    let flags = [
        "--tick-rate",
        "10",
        "--symbols",
        "AAPL",
        "--admin-key",
        ADMIN_KEY,
    ];
    let url = shared().create_database();
    let holder = instance(&url, &redis, &flags).await;
    // A price far from the simulator's own (AAPL opens at 189.50): the
    // new holder must go on from it.
    let body = json!({"channel": "ticker:AAPL", "data": {"price": 1000.0}}).to_string();
    let (status, answer) =
        common::http_post(holder.addr, "/api/publish", Some(ADMIN_KEY), &body).await;
    assert_eq!(status, 200, "{answer}");
    // The second instance starts once the first holds the lease (it ticks).
    let mut watcher_on_holder = Client::connected(&holder).await;
    subscribe(&mut watcher_on_holder, "ticker:AAPL", None).await;
    next_tick(&mut watcher_on_holder, PATIENCE).await;
    let other = instance(&url, &redis, &flags).await;
    let mut watcher = Client::connected(&other).await;
    subscribe(&mut watcher, "ticker:AAPL", None).await;
    let before = next_tick(&mut watcher, PATIENCE).await;
    holder.shutdown().await;
    // The lease expires 3 s after its last renewal; the other instance tries
    // every second.
    let mut last = before.clone();
    let mut after = Vec::new();
    while after.len() < 5 {
        let tick = next_tick(&mut watcher, PATIENCE * 2).await;
        assert_eq!(tick.offset, last.offset + 1, "no gap, no restart");
        last = tick.clone();
        after.push(tick);
    }
    let price = after.last().unwrap().price;
    assert!(
        (900.0..1100.0).contains(&price),
        "prices went on from 1000, not from the simulator's start: {price}"
    );
}

async fn subscribe(client: &mut Client, channel: &str, since: Option<Value>) -> Subscribed {
    let mut entry = json!({ "channel": channel });
    if let Some(since) = since {
        entry["since"] = since;
    }
    client
        .send(&json!({"type": "subscribe", "data": {"channels": [entry]}}).to_string())
        .await;
    loop {
        match client.recv().await.message {
            ServerMessage::Subscribed(subscribed) => return subscribed,
            ServerMessage::Error(error) => panic!("subscribe refused: {error:?}"),
            _ => {}
        }
    }
}

async fn say(client: &mut Client, id: &str, text: &str) {
    say_in(client, "general", id, text).await;
}

async fn say_in(client: &mut Client, room: &str, id: &str, text: &str) {
    let frame = json!({"type": "chat_send", "id": id, "data": {"room": room, "text": text}});
    client.send(&frame.to_string()).await;
}

/// The next `count` chat messages a client receives (acks and the rest skipped).
async fn chats(client: &mut Client, count: usize) -> Vec<ChatMessage> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE * 4;
    while received.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "got {} of {count} messages: {:?}",
            received.len(),
            received
                .iter()
                .map(|m: &ChatMessage| m.offset)
                .collect::<Vec<_>>()
        );
        if let ServerMessage::Chat(message) = client.recv().await.message {
            received.push(message);
        }
    }
    received
}

/// Nothing more arrives within a moment (no message twice).
async fn no_more_chat(client: &mut Client) {
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        loop {
            if let ServerMessage::Chat(message) = client.recv().await.message {
                return message;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "one more: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_on_any_instance_reaches_every_instance_in_order() {
    const EACH: usize = 20;
    let redis = Redis::start();
    let servers = instances(&redis, 3).await;
    let mut readers = Vec::new();
    for (n, server) in servers.iter().enumerate() {
        let mut reader = Client::signed_in(server, &format!("Reader{n}")).await;
        subscribe(&mut reader, "chat:general", None).await;
        readers.push(reader);
    }
    // Senders on the first two instances, sending at once.
    let mut senders = Vec::new();
    for (n, server) in servers.iter().take(2).enumerate() {
        let mut sender = Client::signed_in(server, &format!("Sender{n}")).await;
        senders.push(tokio::spawn(async move {
            for m in 0..EACH {
                say(&mut sender, &format!("s{n}-{m}"), &format!("{n}/{m}")).await;
            }
            sender
        }));
    }
    let total = 2 * EACH;
    let mut seen: Vec<Vec<(u64, String)>> = Vec::new();
    for reader in &mut readers {
        let received = chats(reader, total).await;
        seen.push(
            received
                .iter()
                .map(|m| (m.offset, m.text.clone()))
                .collect(),
        );
    }
    let offsets: Vec<u64> = seen[0].iter().map(|(offset, _)| *offset).collect();
    assert_eq!(
        offsets,
        (1..=total as u64).collect::<Vec<_>>(),
        "in order, no gap"
    );
    assert_eq!(seen[1], seen[0], "the second instance saw the same");
    assert_eq!(seen[2], seen[0], "the third instance saw the same");
    for reader in &mut readers {
        no_more_chat(reader).await;
    }
    for sender in senders {
        sender.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_instance_with_exactly_what_it_missed() {
    let redis = Redis::start();
    let servers = instances(&redis, 3).await;
    let mut sender = Client::signed_in(&servers[1], "Sender").await;
    let mut leaver = Client::signed_in(&servers[0], "Leaver").await;
    let first = subscribe(&mut leaver, "chat:general", None).await;
    for m in 1..=3 {
        say(&mut sender, &format!("a{m}"), &format!("before {m}")).await;
    }
    let before = chats(&mut leaver, 3).await;
    assert_eq!(before.last().unwrap().offset, 3);
    drop(leaver);
    for m in 1..=4 {
        say(&mut sender, &format!("b{m}"), &format!("after {m}")).await;
    }
    // Each is on the third instance too before the client comes back there.
    let mut watcher = Client::signed_in(&servers[2], "Watcher").await;
    subscribe(
        &mut watcher,
        "chat:general",
        Some(json!({"offset": 3, "epoch": first.epoch})),
    )
    .await;
    chats(&mut watcher, 4).await;

    let mut back = Client::signed_in(&servers[2], "Leaver").await;
    let since = json!({"offset": 3, "epoch": first.epoch});
    let resumed = subscribe(&mut back, "chat:general", Some(since)).await;
    assert!(
        resumed.recovered,
        "the epoch is the room's, the same everywhere"
    );
    let missed: Vec<String> = chats(&mut back, 4)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(missed, ["after 1", "after 2", "after 3", "after 4"]);
    no_more_chat(&mut back).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_on_one_instance_reaches_the_user_on_another() {
    let redis = Redis::start();
    let servers = instances(&redis, 2).await;
    let mut bob = Client::signed_in(&servers[1], "Bob").await;
    subscribe(&mut bob, "user:guest:bob", None).await;
    let mut ann = Client::signed_in(&servers[0], "Ann").await;
    say(&mut ann, "m1", "hello @bob").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no notification");
        if let ServerMessage::Notification(notification) = bob.recv().await.message {
            assert_eq!(notification.offset, 1);
            assert!(notification.title.contains("Ann"), "{notification:?}");
            break;
        }
    }
}

/// Redis goes away while clients chat: what is committed meanwhile is acked
/// (the store has it) and reaches the other instance once Redis is back,
/// before anything newer, each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_committed_while_redis_is_down_arrive_once_it_is_back() {
    let redis = Redis::start();
    let servers = instances(&redis, 2).await;
    let mut reader = Client::signed_in(&servers[1], "Reader").await;
    subscribe(&mut reader, "chat:general", None).await;
    let mut sender = Client::signed_in(&servers[0], "Sender").await;
    say(&mut sender, "m1", "one").await;
    assert_eq!(chats(&mut reader, 1).await[0].offset, 1);

    redis.stop();
    say(&mut sender, "m2", "two").await;
    say(&mut sender, "m3", "three").await;
    let mut acked = HashMap::new();
    while acked.len() < 3 {
        if let ServerMessage::Ack(ack) = sender.recv().await.message {
            acked.insert(ack.id, ack.offset);
        }
    }
    assert_eq!(acked["m3"], Some(3), "stored and acked without Redis");

    redis.restart();
    let back: Vec<(u64, String)> = chats(&mut reader, 2)
        .await
        .into_iter()
        .map(|m| (m.offset, m.text))
        .collect();
    assert_eq!(back, [(2, "two".to_owned()), (3, "three".to_owned())]);
    say(&mut sender, "m4", "four").await;
    let next = chats(&mut reader, 1).await;
    assert_eq!((next[0].offset, next[0].text.as_str()), (4, "four"));
    no_more_chat(&mut reader).await;
}

/// The instance holding the lease is killed (SIGKILL: it cannot let the
/// lease go): the lease expires and another instance takes the simulator
/// over within a few seconds; ticks go on with the next offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_simulator_is_replaced_within_seconds() {
    use common::process::Pulse;
    let redis = Redis::start();
    let url = shared().create_database();
    let redis_url = redis.url();
    let mut flags = common::shared_flags(&url, &redis_url);
    flags.extend(["--tick-rate", "10", "--symbols", "AAPL"]);
    let mut holder = Pulse::start(&common::temp_db(), &flags, &[]);
    let mut on_holder = Client::connect_to(holder.addr, None).await;
    on_holder.hello().await;
    subscribe(&mut on_holder, "ticker:AAPL", None).await;
    next_tick(&mut on_holder, PATIENCE).await;
    let other = Pulse::start(&common::temp_db(), &flags, &[]);
    let mut watcher = Client::connect_to(other.addr, None).await;
    watcher.hello().await;
    subscribe(&mut watcher, "ticker:AAPL", None).await;
    let before = next_tick(&mut watcher, PATIENCE).await;
    holder.kill();
    // The lease expires 3 s after its last renewal; the other instance tries
    // every second (the wait allows twice that).
    let mut last = before;
    for _ in 0..5 {
        let tick = next_tick(&mut watcher, PATIENCE * 2).await;
        assert_eq!(tick.offset, last.offset + 1, "no gap, no restart");
        last = tick;
    }
}

/// A room no instance holds at start (not the pinned #general): a reader's
/// subscribe makes its instance listen, load it and catch up; messages sent
/// on an instance that does not hold the room reach it in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_loaded_on_demand_is_shared_in_order() {
    let redis = Redis::start();
    let servers = instances(&redis, 2).await;
    let mut sender = Client::signed_in(&servers[0], "Sender").await;
    // Committed before anyone on the second instance opens the room.
    for m in 1..=3 {
        say_in(
            &mut sender,
            "ops",
            &format!("early{m}"),
            &format!("early {m}"),
        )
        .await;
    }
    let mut acks = 0;
    while acks < 3 {
        if let ServerMessage::Ack(_) = sender.recv().await.message {
            acks += 1;
        }
    }
    let mut reader = Client::signed_in(&servers[1], "Reader").await;
    let joined = subscribe(&mut reader, "chat:ops", None).await;
    assert_eq!(joined.offset, 3, "loaded with what was committed");
    for m in 1..=5 {
        say_in(
            &mut sender,
            "ops",
            &format!("late{m}"),
            &format!("late {m}"),
        )
        .await;
    }
    let late: Vec<(u64, String)> = chats(&mut reader, 5)
        .await
        .into_iter()
        .map(|m| (m.offset, m.text))
        .collect();
    let expected: Vec<(u64, String)> = (1..=5).map(|m| (m + 3, format!("late {m}"))).collect();
    assert_eq!(late, expected);
    no_more_chat(&mut reader).await;
}

/// Who is online as a presence subscriber sees it: the snapshot of its
/// `subscribed`, with every diff (or fresh `subscribed`) applied since.
struct Online {
    users: HashMap<String, PresenceUser>,
    epoch: String,
    offset: u64,
    /// The users of every fresh `subscribed` that replaced the list.
    renewals: Vec<Vec<String>>,
}

impl Online {
    /// Subscribes `client` to presence (resuming from `since`, if given).
    async fn watch(client: &mut Client, since: Option<Value>) -> (Online, Subscribed) {
        let subscribed = subscribe(client, "presence", since).await;
        let mut online = Online {
            users: HashMap::new(),
            epoch: String::new(),
            offset: 0,
            renewals: Vec::new(),
        };
        online.renew(&subscribed);
        (online, subscribed)
    }

    fn renew(&mut self, subscribed: &Subscribed) {
        self.epoch = subscribed.epoch.clone();
        self.offset = subscribed.offset;
        if let Some(Snapshot::Presence(snapshot)) = &subscribed.snapshot {
            self.users = snapshot
                .users
                .iter()
                .map(|u| (u.id.clone(), u.clone()))
                .collect();
        }
    }

    /// Applies what arrives until `done` holds (or fails after `limit`);
    /// every diff must be the next offset (no gap, nothing twice).
    async fn until(
        &mut self,
        client: &mut Client,
        limit: std::time::Duration,
        done: impl Fn(&HashMap<String, PresenceUser>) -> bool,
    ) -> Vec<PresenceDiff> {
        let mut diffs = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.users) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let envelope = client
                .recv_within(left)
                .await
                .unwrap_or_else(|| panic!("presence never settled: {:?}", self.users));
            self.take(envelope.message, &mut diffs);
        }
        diffs
    }

    /// Applies what arrives until nothing has for half a second.
    async fn settle(&mut self, client: &mut Client) -> Vec<PresenceDiff> {
        let mut diffs = Vec::new();
        let quiet = std::time::Duration::from_millis(500);
        while let Some(envelope) = client.recv_within(quiet).await {
            self.take(envelope.message, &mut diffs);
        }
        diffs
    }

    /// Applies one message (a diff must be the next offset: no gap, nothing
    /// twice; a fresh `subscribed` replaces the list).
    fn take(&mut self, message: ServerMessage, diffs: &mut Vec<PresenceDiff>) {
        match message {
            ServerMessage::PresenceDiff(diff) => {
                assert_eq!(diff.offset, self.offset + 1, "diffs in a row: {diff:?}");
                self.offset = diff.offset;
                for user in &diff.leaves {
                    self.users.remove(&user.id);
                }
                for user in diff.joins.iter().chain(&diff.updates) {
                    self.users.insert(user.id.clone(), user.clone());
                }
                diffs.push(diff);
            }
            ServerMessage::Subscribed(subscribed) if subscribed.channel == "presence" => {
                self.renew(&subscribed);
                self.renewals.push(self.users.keys().cloned().collect());
            }
            _ => {}
        }
    }
}

fn shows(users: &HashMap<String, PresenceUser>, id: &str, status: UserStatus, tabs: u32) -> bool {
    users
        .get(id)
        .is_some_and(|u| u.status == status && u.connections == tabs)
}

/// Presence is one list with one stream of offsets: a user with a tab on
/// each of two instances is one user with two connections on the third;
/// every instance tells the same list at the same offset; a tab going away
/// counts for the user only when all are away; closing one tab updates the
/// count without a leave; the last tab leaves after the grace; a subscriber
/// resumes on another instance with exactly the diffs it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_one_list_across_instances() {
    let redis = Redis::start();
    let flags = ["--tick-rate", "0", "--presence-grace-ms", "300"];
    let servers = instances_with(&redis, 3, &flags).await;
    let mut readers = Vec::new();
    for (n, server) in servers.iter().enumerate() {
        let mut client = Client::signed_in(server, &format!("Reader{n}")).await;
        let (online, _) = Online::watch(&mut client, None).await;
        readers.push((client, online));
    }
    let mut on_a = Client::signed_in(&servers[0], "Ann").await;
    let on_b = Client::signed_in(&servers[1], "Ann").await;
    let everyone = |u: &HashMap<String, PresenceUser>| {
        shows(u, "guest:ann", UserStatus::Online, 2)
            && (0..3).all(|n| u.contains_key(&format!("guest:reader{n}")))
    };
    for (client, online) in &mut readers {
        online.until(client, PATIENCE, everyone).await;
    }
    // The same list at the same offset, whichever instance tells it.
    for (client, online) in &mut readers {
        online.settle(client).await;
    }
    let (_, first) = &readers[0];
    for (_, online) in &readers[1..] {
        assert_eq!(
            (&online.epoch, online.offset, &online.users),
            (&first.epoch, first.offset, &first.users)
        );
    }

    // A subscriber that leaves, and comes back on another instance.
    let mut leaver = Client::signed_in(&servers[0], "Leaver").await;
    let (left, _) = Online::watch(&mut leaver, None).await;
    drop(leaver);

    let (watcher, online) = &mut readers[2];
    let mut on_b = on_b;
    on_b.send(r#"{"type":"status","data":{"status":"away"}}"#)
        .await;
    let diffs = online.settle(watcher).await;
    assert!(
        diffs
            .iter()
            .flat_map(|d| d.updates.iter())
            .all(|u| u.id != "guest:ann"),
        "one tab of two away changes nothing: {diffs:?}"
    );
    on_a.send(r#"{"type":"status","data":{"status":"away"}}"#)
        .await;
    online
        .until(watcher, PATIENCE, |u| {
            shows(u, "guest:ann", UserStatus::Away, 2)
        })
        .await;
    drop(on_a);
    let closed = online
        .until(watcher, PATIENCE, |u| {
            shows(u, "guest:ann", UserStatus::Away, 1)
        })
        .await;
    assert!(
        closed
            .iter()
            .all(|d| d.leaves.iter().all(|u| u.id != "guest:ann")),
        "no leave while a tab is open: {closed:?}"
    );
    drop(on_b);
    let gone = online
        .until(watcher, PATIENCE * 2, |u| !u.contains_key("guest:ann"))
        .await;
    assert!(
        gone.iter()
            .all(|d| d.joins.iter().all(|u| u.id != "guest:ann")),
        "no flapping: {gone:?}"
    );
    online.settle(watcher).await;

    let mut back = Client::signed_in(&servers[1], "Back").await;
    let since = json!({"offset": left.offset, "epoch": left.epoch});
    let (mut resumed, subscribed) = Online::watch(&mut back, Some(since)).await;
    assert!(subscribed.recovered, "one epoch on every instance");
    resumed.users = left.users.clone();
    resumed.offset = left.offset;
    resumed
        .until(&mut back, PATIENCE, |u| u.contains_key("guest:back"))
        .await;
    online
        .until(watcher, PATIENCE, |u| u.contains_key("guest:back"))
        .await;
    resumed.settle(&mut back).await;
    online.settle(watcher).await;
    assert_eq!(resumed.offset, online.offset, "exactly what it missed");
    assert_eq!(resumed.users, online.users);
}

/// SIGKILL of the instance that leads presence: its users leave the
/// others' list once its connections expire (the heartbeat's expiry, then
/// the grace), another instance takes the lead, and users elsewhere never
/// flap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_users_leave_after_the_expiry_and_the_grace() {
    use common::process::Pulse;
    let redis = Redis::start();
    let url = shared().create_database();
    let redis_url = redis.url();
    let mut flags = common::shared_flags(&url, &redis_url);
    flags.extend(["--jwt-secret", SECRET, "--presence-grace-ms", "500"]);
    // The first instance takes the presence lease.
    let mut doomed = Pulse::start(&common::temp_db(), &flags, &[]);
    let mut bob = Client::signed_in_to(doomed.addr, "Bob").await;
    let (mut bobs, _) = Online::watch(&mut bob, None).await;
    bobs.until(&mut bob, PATIENCE, |u| u.contains_key("guest:bob"))
        .await;
    let survivor = Pulse::start(&common::temp_db(), &flags, &[]);
    let mut carol = Client::signed_in_to(survivor.addr, "Carol").await;
    let (mut online, _) = Online::watch(&mut carol, None).await;
    online
        .until(&mut carol, PATIENCE, |u| {
            u.contains_key("guest:bob") && u.contains_key("guest:carol")
        })
        .await;
    let killed = tokio::time::Instant::now();
    doomed.kill();
    let diffs = online
        .until(&mut carol, PATIENCE * 3, |u| !u.contains_key("guest:bob"))
        .await;
    let took = killed.elapsed();
    // Its connections' entries expire 3 s after their last refresh (at most
    // 1 s before the kill), then the grace runs.
    assert!(
        took >= std::time::Duration::from_millis(2_000 + 500),
        "the expiry and the grace hold: {took:?}"
    );
    assert!(
        diffs
            .iter()
            .all(|d| d.leaves.iter().all(|u| u.id == "guest:bob") && d.joins.is_empty()),
        "only bob leaves: {diffs:?}"
    );
    assert!(shows(&online.users, "guest:carol", UserStatus::Online, 1));

    // Bob's page reconnects to the survivor and is listed again.
    let _bob = Client::signed_in_to(survivor.addr, "Bob").await;
    online
        .until(&mut carol, PATIENCE * 2, |u| {
            shows(u, "guest:bob", UserStatus::Online, 1)
        })
        .await;
}

/// Redis restarted (every key lost): each instance writes its connections
/// again, the leader starts a new epoch with its whole list, and every
/// subscriber gets a fresh `subscribed` with it; changes after that flow as
/// before. Nobody who stayed connected leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_comes_back_whole_after_redis_restarts() {
    let redis = Redis::start();
    let flags = ["--tick-rate", "0", "--presence-grace-ms", "300"];
    let servers = instances_with(&redis, 2, &flags).await;
    let _ann = Client::signed_in(&servers[0], "Ann").await;
    let mut watcher = Client::signed_in(&servers[1], "Watcher").await;
    let (mut online, before) = Online::watch(&mut watcher, None).await;
    online
        .until(&mut watcher, PATIENCE, |u| {
            u.contains_key("guest:ann") && u.contains_key("guest:watcher")
        })
        .await;

    redis.stop();
    std::thread::sleep(std::time::Duration::from_secs(1));
    redis.restart();
    let _bob = Client::signed_in(&servers[0], "Bob").await;
    let mut diffs = online
        .until(&mut watcher, PATIENCE * 3, |u| u.contains_key("guest:bob"))
        .await;
    // Past the time a taken-over list is kept without its connections
    // read (6 s) and the grace: anyone whose connection was not found again
    // would have left by now.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(7);
    while tokio::time::Instant::now() < deadline {
        diffs.extend(online.settle(&mut watcher).await);
    }
    assert_ne!(online.epoch, before.epoch, "a new epoch");
    assert!(
        diffs.iter().all(|d| d.leaves.is_empty()),
        "nobody left: {diffs:?}"
    );
    assert!(
        !online.renewals.is_empty(),
        "the new epoch renewed the list"
    );
    for renewal in &online.renewals {
        assert!(
            renewal.contains(&"guest:ann".to_owned())
                && renewal.contains(&"guest:watcher".to_owned()),
            "nobody still connected drops out of a renewed list: {renewal:?}"
        );
    }
    assert!(online.users.contains_key("guest:ann"));
    assert!(online.users.contains_key("guest:watcher"));
    // Another instance tells the same list.
    let mut other = Client::signed_in(&servers[0], "Other").await;
    let (mut second, _) = Online::watch(&mut other, None).await;
    second
        .until(&mut other, PATIENCE, |u| u.contains_key("guest:other"))
        .await;
    online
        .until(&mut watcher, PATIENCE, |u| u.contains_key("guest:other"))
        .await;
    second.settle(&mut other).await;
    online.settle(&mut watcher).await;
    assert_eq!(
        (&second.epoch, second.offset),
        (&online.epoch, online.offset)
    );
    assert_eq!(second.users, online.users);
}

/// The next notification a client gets.
async fn notification(client: &mut Client) -> pulse::protocol::Notification {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no notification");
        if let ServerMessage::Notification(notification) = client.recv().await.message {
            return notification;
        }
    }
}

/// Marking a notification read on one instance is what every instance's
/// unread snapshot says from then on (a tab opened on another instance
/// does not show it unread again), and a notification that arrives later
/// still counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_read_on_one_instance_are_read_on_every_instance() {
    let redis = Redis::start();
    let servers = instances(&redis, 2).await;
    let mut on_a = Client::signed_in(&servers[0], "Bob").await;
    subscribe(&mut on_a, "user:guest:bob", None).await;
    let mut on_b = Client::signed_in(&servers[1], "Bob").await;
    subscribe(&mut on_b, "user:guest:bob", None).await;
    let mut ann = Client::signed_in(&servers[0], "Ann").await;
    say(&mut ann, "m1", "first @bob").await;
    say(&mut ann, "m2", "second @bob").await;
    let first = notification(&mut on_a).await;
    notification(&mut on_a).await;
    notification(&mut on_b).await;
    notification(&mut on_b).await;

    let read = json!({"type": "mark_read", "id": "r1",
        "data": {"notification_ids": [first.notification_id]}});
    on_b.send(&read.to_string()).await;
    loop {
        if let ServerMessage::Ack(ack) = on_b.recv().await.message {
            assert_eq!(ack.id, "r1");
            break;
        }
    }
    say(&mut ann, "m3", "third @bob").await;
    notification(&mut on_a).await;

    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut tab = Client::signed_in(&servers[0], "Bob").await;
        let subscribed = subscribe(&mut tab, "user:guest:bob", None).await;
        let Some(Snapshot::Unread(unread)) = subscribed.snapshot else {
            panic!("an unread snapshot: {subscribed:?}");
        };
        let texts: Vec<String> = unread.unread.iter().map(|n| n.body.clone()).collect();
        if unread.total_unread == 2 {
            assert!(texts.iter().all(|t| !t.contains("first")), "{texts:?}");
            assert!(texts.iter().any(|t| t.contains("third")), "{texts:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still unread on the other instance: {texts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Redis lost an instance's hash of connections between two heartbeats
/// (here: deleted), and a new connection on that instance comes first: its
/// change is not written alone (which would hide the instance's other
/// connections from the leader); the hash is written whole, and nobody who
/// stayed connected leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_hash_of_connections_is_written_whole_again() {
    let redis = Redis::start();
    let flags = ["--tick-rate", "0", "--presence-grace-ms", "2000"];
    let servers = instances_with(&redis, 2, &flags).await;
    let _ann = Client::signed_in(&servers[0], "Ann").await;
    let _bob = Client::signed_in(&servers[0], "Bob").await;
    let mut watcher = Client::signed_in(&servers[1], "Watcher").await;
    let (mut online, _) = Online::watch(&mut watcher, None).await;
    online
        .until(&mut watcher, PATIENCE, |u| {
            u.contains_key("guest:ann") && u.contains_key("guest:bob")
        })
        .await;

    let hashes = redis.cli(&["--scan", "--pattern", "pulse:presence:conns:*"]);
    for hash in hashes.lines() {
        redis.cli(&["DEL", hash]);
    }
    let _cid = Client::signed_in(&servers[0], "Cid").await;
    // Longer than the expiry, a read of every hash and the grace.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(6);
    let mut diffs = Vec::new();
    while tokio::time::Instant::now() < deadline {
        diffs.extend(online.settle(&mut watcher).await);
    }
    for id in ["guest:ann", "guest:bob", "guest:cid", "guest:watcher"] {
        assert!(online.users.contains_key(id), "{id} is listed: {diffs:?}");
    }
    assert!(
        diffs.iter().all(|d| d.leaves.is_empty()),
        "nobody left: {diffs:?}"
    );
}

/// The presence leader publishes only while it holds its lease: when
/// another holds it (here a made-up holder, as when the leader was paused
/// past its lease and another took over), nothing it decides goes out;
/// once that lease lapses an instance leads again and the list catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_diffs_are_fenced_by_the_leaders_lease() {
    let redis = Redis::start();
    let flags = ["--tick-rate", "0", "--presence-grace-ms", "300"];
    let servers = instances_with(&redis, 2, &flags).await;
    let mut watcher = Client::signed_in(&servers[1], "Watcher").await;
    let (mut online, _) = Online::watch(&mut watcher, None).await;
    online
        .until(&mut watcher, PATIENCE, |u| u.contains_key("guest:watcher"))
        .await;
    let taken = tokio::time::Instant::now();
    redis.cli(&["SET", "pulse:presence:leader", "intruder", "PX", "3000"]);
    let _dan = Client::signed_in(&servers[0], "Dan").await;
    online
        .until(&mut watcher, PATIENCE * 2, |u| u.contains_key("guest:dan"))
        .await;
    let took = taken.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(2_900),
        "published while another held the lease: {took:?}"
    );
}

/// A resend racing on two instances (one user's two connections, on two
/// instances, sending the same envelope ids at once) is stored once: both
/// connections are acked with the same offset, and every instance's
/// readers get each message once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_racing_on_two_instances_is_stored_once() {
    const IDS: usize = 10;
    let redis = Redis::start();
    let servers = instances(&redis, 3).await;
    let mut reader = Client::signed_in(&servers[2], "Reader").await;
    subscribe(&mut reader, "chat:general", None).await;
    let mut racers = Vec::new();
    // Both connections are open before either sends.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    for server in servers.iter().take(2) {
        let mut racer = Client::signed_in(server, "Racer").await;
        let start = start.clone();
        racers.push(tokio::spawn(async move {
            start.wait().await;
            for m in 0..IDS {
                say(&mut racer, &format!("race-{m}"), &format!("once {m}")).await;
            }
            let mut acked = HashMap::new();
            while acked.len() < IDS {
                if let ServerMessage::Ack(ack) = racer.recv().await.message {
                    acked.insert(ack.id, ack.offset);
                }
            }
            acked
        }));
    }
    let mut acks = Vec::new();
    for racer in racers {
        acks.push(racer.await.unwrap());
    }
    assert_eq!(acks[0], acks[1], "the same offset on both instances");
    let texts: Vec<(u64, String)> = chats(&mut reader, IDS)
        .await
        .into_iter()
        .map(|m| (m.offset, m.text))
        .collect();
    let offsets: Vec<u64> = texts.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (1..=IDS as u64).collect::<Vec<_>>());
    let mut distinct: Vec<&String> = texts.iter().map(|(_, text)| text).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), IDS, "each once: {texts:?}");
    no_more_chat(&mut reader).await;
}

/// The simulator publishes only while Redis says its instance holds the
/// lease: when another holds it (here a made-up holder, as when the holder
/// was paused past its lease and another took over), no tick of it goes
/// out; once that lease lapses the instance takes the lease again and the
/// ticks go on with the next offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_ticks_are_fenced_by_its_lease() {
    let redis = Redis::start();
    let flags = ["--tick-rate", "10", "--symbols", "AAPL"];
    let servers = instances_with(&redis, 1, &flags).await;
    let mut watcher = Client::connected(&servers[0]).await;
    subscribe(&mut watcher, "ticker:AAPL", None).await;
    let before = next_tick(&mut watcher, PATIENCE).await;
    let micros = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64
    };
    redis.cli(&["SET", "pulse:simulator", "intruder", "PX", "3000"]);
    let taken = micros();
    let mut last = before;
    loop {
        let (tick, sent) = next_tick_sent(&mut watcher, PATIENCE * 2).await;
        assert_eq!(tick.offset, last.offset + 1, "no gap, no restart");
        last = tick;
        // A tick already on its way when the lease was taken may arrive.
        if sent <= taken + 50_000 {
            continue;
        }
        assert!(
            sent >= taken + 2_900_000,
            "a tick published {} ms after another took the lease",
            (sent - taken) / 1000
        );
        break;
    }
}

/// Publishes `price` on `ticker:{symbol}` through `server`'s
/// `/api/publish`; answers the offset the cluster gave it.
async fn publish_price(server: &TestServer, symbol: &str, price: f64) -> u64 {
    let body = json!({"channel": format!("ticker:{symbol}"), "data": {"price": price}});
    let (status, answer) = common::http_post(
        server.addr,
        "/api/publish",
        Some(ADMIN_KEY),
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["offset"].as_u64().expect("an offset")
}

/// The next tick a subscriber gets, which must come as a `tick`: a fresh
/// `subscribed` in its place (the subscription started again) fails.
async fn live_tick(client: &mut Client) -> Tick {
    loop {
        match client.recv().await.message {
            ServerMessage::Tick(tick) => return tick,
            ServerMessage::Subscribed(again) => {
                panic!("a fresh subscribed instead of a tick: {again:?}")
            }
            _ => {}
        }
    }
}

/// The ticks a resumed subscription replays, after its `subscribed`.
async fn replayed_ticks(client: &mut Client, count: usize) -> Vec<u64> {
    let mut offsets = Vec::new();
    while offsets.len() < count {
        offsets.push(live_tick(client).await.offset);
    }
    offsets
}

/// A symbol that never had a tick, watched on two instances: both
/// subscribers are told one epoch (the cluster's, not each instance's),
/// the first tick (published on one instance) and the second (on the
/// other) reach both as ticks 1 and 2, and a client resuming from the
/// `subscribed` it got, on any instance, is recovered with exactly the ticks
/// it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_tick_of_a_new_symbol_reaches_subscribers_waiting_for_it() {
    let redis = Redis::start();
    let flags = ["--tick-rate", "0", "--admin-key", ADMIN_KEY];
    let servers = instances_with(&redis, 3, &flags).await;
    let (a, b, c) = (&servers[0], &servers[1], &servers[2]);
    let mut on_a = Client::connected(a).await;
    let mut on_c = Client::connected(c).await;
    let first_a = subscribe(&mut on_a, "ticker:NEWSYM", None).await;
    let first_c = subscribe(&mut on_c, "ticker:NEWSYM", None).await;
    for first in [&first_a, &first_c] {
        assert_eq!(first.offset, 0, "no tick yet: {first:?}");
        assert!(first.snapshot.is_none(), "no quote yet: {first:?}");
    }
    // Until its first tick, what Redis keeps of the symbol expires; from
    // then on it is kept.
    let keys = ["pulse:offset:ticker:NEWSYM", "pulse:epoch:ticker:NEWSYM"];
    let ttl = |key| redis.cli(&["PTTL", key]).trim().parse::<i64>().unwrap();
    let unticked = keys.map(ttl);
    assert_eq!(publish_price(a, "NEWSYM", 10.0).await, 1);
    for watcher in [&mut on_a, &mut on_c] {
        let tick = live_tick(watcher).await;
        assert_eq!((tick.offset, tick.price), (1, 10.0));
    }
    for (key, ttl) in keys.iter().zip(unticked) {
        assert!((1..=90_000).contains(&ttl), "{key} expires: {ttl}");
    }
    assert_eq!(keys.map(ttl), [-1, -1], "kept once ticked");
    assert_eq!(publish_price(c, "NEWSYM", 11.0).await, 2);
    for watcher in [&mut on_a, &mut on_c] {
        let tick = live_tick(watcher).await;
        assert_eq!((tick.offset, tick.price), (2, 11.0));
    }
    assert_eq!(first_a.epoch, first_c.epoch, "one epoch for the cluster");
    // From before the first tick, on an instance that never held the
    // symbol; and from after it, where it was subscribed.
    for (server, since, missed) in [(b, 0, vec![1, 2]), (a, 1, vec![2])] {
        let mut resumed = Client::connected(server).await;
        let since = json!({"offset": since, "epoch": first_a.epoch});
        let answer = subscribe(&mut resumed, "ticker:NEWSYM", Some(since)).await;
        assert!(answer.recovered, "{answer:?}");
        assert_eq!(
            (answer.epoch.as_str(), answer.offset),
            (first_a.epoch.as_str(), 2)
        );
        assert_eq!(replayed_ticks(&mut resumed, missed.len()).await, missed);
    }
}

/// A symbol first subscribed while Redis is away is served with an epoch of
/// its instance's; once Redis is back, that instance's subscribers get the
/// cluster's (a fresh `subscribed`, still before any tick, the same epoch
/// another instance answers), and the first tick then reaches them as
/// tick 1 of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symbol_subscribed_while_redis_is_away_takes_the_clusters_epoch_once_it_is_back() {
    let redis = Redis::start();
    let flags = ["--tick-rate", "0", "--admin-key", ADMIN_KEY];
    let servers = instances_with(&redis, 2, &flags).await;
    let (a, c) = (&servers[0], &servers[1]);
    // Both serve (they need Redis to start) before it goes away.
    let mut on_a = Client::connected(a).await;
    let mut on_c = Client::connected(c).await;
    redis.stop();
    let alone = subscribe(&mut on_a, "ticker:NEWSYM", None).await;
    assert_eq!(alone.offset, 0);
    redis.restart();
    // The relay reconnects every second.
    let renewed = loop {
        let envelope = on_a
            .recv_within(PATIENCE * 3)
            .await
            .expect("a fresh subscribed once Redis is back");
        match envelope.message {
            ServerMessage::Subscribed(renewed) => break renewed,
            ServerMessage::Tick(tick) => panic!("a tick before the cluster's epoch: {tick:?}"),
            _ => {}
        }
    };
    assert_ne!(renewed.epoch, alone.epoch, "{renewed:?}");
    assert_eq!((renewed.offset, renewed.recovered), (0, false));
    assert!(renewed.snapshot.is_none(), "{renewed:?}");
    let kept = redis.cli(&["GET", "pulse:epoch:ticker:NEWSYM"]);
    assert_eq!(kept.trim(), renewed.epoch, "the epoch Redis holds");
    let ttl = redis.cli(&["PTTL", "pulse:epoch:ticker:NEWSYM"]);
    let ttl: i64 = ttl.trim().parse().unwrap();
    assert!(
        (1..=90_000).contains(&ttl),
        "held and renewed, yet expiring: {ttl}"
    );
    let first_c = subscribe(&mut on_c, "ticker:NEWSYM", None).await;
    assert_eq!(first_c.epoch, renewed.epoch, "one epoch for the cluster");
    // C's own connection to Redis may take a moment to come back too.
    assert_eq!(publish_price_once_redis_answers(c, "NEWSYM", 10.0).await, 1);
    for watcher in [&mut on_a, &mut on_c] {
        let tick = live_tick(watcher).await;
        assert_eq!((tick.offset, tick.price), (1, 10.0));
    }
}

/// Two deployments share one Redis, each under its own `--redis-prefix`
/// and with its own database: chat on one reaches that deployment's other
/// instance and never the other deployment (the same room name on both),
/// and every key either writes starts with its prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_share_one_redis_under_their_own_prefixes() {
    let redis = Redis::start();
    let blue = instances_with(&redis, 2, &["--tick-rate", "0", "--redis-prefix", "blue"]).await;
    let green = instances_with(&redis, 1, &["--tick-rate", "0", "--redis-prefix", "green"]).await;
    let mut blue_reader = Client::signed_in(&blue[1], "Bea").await;
    subscribe(&mut blue_reader, "chat:general", None).await;
    let mut green_reader = Client::signed_in(&green[0], "Gus").await;
    subscribe(&mut green_reader, "chat:general", None).await;
    let mut sender = Client::signed_in(&blue[0], "Ann").await;
    say(&mut sender, "b-1", "only for blue").await;
    let got = chats(&mut blue_reader, 1).await;
    assert_eq!(got[0].text, "only for blue");
    no_more_chat(&mut green_reader).await;
    let keys = redis.cli(&["--scan", "--pattern", "*"]);
    let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    assert!(keys.iter().any(|k| k.starts_with("blue:")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("green:")), "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("blue:") || k.starts_with("green:")),
        "{keys:?}"
    );
}

/// `publish_price`, again until Redis (just started again) answers.
async fn publish_price_once_redis_answers(server: &TestServer, symbol: &str, price: f64) -> u64 {
    let body = json!({"channel": format!("ticker:{symbol}"), "data": {"price": price}});
    for _ in 0..50 {
        let (status, answer) = common::http_post(
            server.addr,
            "/api/publish",
            Some(ADMIN_KEY),
            &body.to_string(),
        )
        .await;
        if status == 200 {
            return answer["offset"].as_u64().expect("an offset");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("Redis never answered a publish again");
}

/// A Redis started again from an older snapshot (a restore from a backup)
/// holds offsets the cluster already used after it: the ticker starts a new
/// epoch there instead of handing out those offsets again under the old
/// one, and its subscriber gets a fresh `subscribed` with the new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restored_from_an_older_snapshot_starts_a_new_ticker_epoch() {
    let redis = Redis::start();
    let flags = ["--tick-rate", "0", "--admin-key", ADMIN_KEY];
    let servers = instances_with(&redis, 1, &flags).await;
    let server = &servers[0];
    let mut watcher = Client::connected(server).await;
    let first = subscribe(&mut watcher, "ticker:SNAP", None).await;
    for n in 1..=5u64 {
        if n == 4 {
            // The backup: offsets 4 and 5 come after it.
            redis.save();
        }
        assert_eq!(publish_price(server, "SNAP", n as f64).await, n);
        assert_eq!(live_tick(&mut watcher).await.offset, n);
    }
    redis.restart_from_snapshot();
    let offset = publish_price_once_redis_answers(server, "SNAP", 6.0).await;
    assert_eq!(offset, 1, "offsets start again, under a new epoch");
    // The relay reconnects every second.
    let renewed = loop {
        let envelope = watcher
            .recv_within(PATIENCE * 3)
            .await
            .expect("a fresh subscribed with the new epoch");
        match envelope.message {
            ServerMessage::Subscribed(renewed) => break renewed,
            ServerMessage::Tick(tick) => panic!("a tick under the old epoch: {tick:?}"),
            _ => {}
        }
    };
    assert_ne!(renewed.epoch, first.epoch);
}
