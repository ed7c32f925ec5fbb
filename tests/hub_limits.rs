//! The hub's limits against a real server (PROTOCOL.md "Limits: what no
//! client can do to the others"): a subscribe answer never closes the client,
//! snapshots are bounded, answers a client never reads are bounded too,
//! `status` is rate-limited and coalesced for observers, and channels nobody
//! uses cost no rows and no memory.

mod common;

use common::{http_get, http_post, temp_db, Client, TestServer};
use pulse::protocol::{ServerMessage, Snapshot, Subscribed, UserStatus};
use serde_json::json;
use std::time::Duration;

const SECRET: &str = "hub-limits-test-secret-of-32-bytes-at-least";
const KEY: &str = "hub-limits-admin-key-0123";

async fn server_on(db: &str) -> TestServer {
    TestServer::start(&[
        "--tick-rate",
        "0",
        "--jwt-secret",
        SECRET,
        "--admin-key",
        KEY,
        "--presence-grace-ms",
        "300",
        "--db",
        db,
    ])
    .await
}

/// Logs in as a guest named `name`, says `hello` with the token, and returns
/// the client with the user id the server gave (never guessed from the name).
async fn sign_in(server: &TestServer, name: &str) -> (Client, String) {
    let body = json!({ "name": name }).to_string();
    let (status, answer) = http_post(server.addr, "/api/login", None, &body).await;
    assert_eq!(status, 200, "{answer}");
    let mut client = Client::connect(server).await;
    let hello = json!({"type": "hello", "data": {"token": answer["token"]}});
    client.send(&hello.to_string()).await;
    match client.recv().await.message {
        ServerMessage::Welcome(welcome) => (client, welcome.user.expect("identified").id),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// Sends a ping and reads until its pong: the connection is alive, and
/// everything the server queued before the pong was read. Returns what came
/// before the pong.
async fn until_pong(client: &mut Client) -> Vec<ServerMessage> {
    client.send(r#"{"type":"ping","data":{}}"#).await;
    let mut before = Vec::new();
    loop {
        match client.recv().await.message {
            ServerMessage::Pong(_) => return before,
            other => before.push(other),
        }
    }
}

/// Subscribes to one channel and returns its `subscribed`, skipping live
/// messages of other channels.
async fn subscribe(
    client: &mut Client,
    channel: &str,
    since: Option<serde_json::Value>,
) -> Subscribed {
    let mut entry = json!({ "channel": channel });
    if let Some(since) = since {
        entry["since"] = since;
    }
    let frame = json!({"type": "subscribe", "data": {"channels": [entry]}});
    client.send(&frame.to_string()).await;
    loop {
        match client.recv().await.message {
            ServerMessage::Subscribed(answer) if answer.channel == channel => return answer,
            ServerMessage::Error(error) => panic!("subscribe {channel}: {error:?}"),
            _ => continue,
        }
    }
}

async fn hub_channels(server: &TestServer) -> u64 {
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("pulse_hub_channels "))
        .expect("the pulse_hub_channels gauge")
        .trim()
        .parse()
        .unwrap()
}

/// Sixteen users post ten 8 KB messages each (1.3 MB, more than the 1 MiB
/// outbox budget); a client resuming from before them stays connected and
/// gets `recovered: false` with the last 50 messages, never 4008. A short
/// gap is still replayed.
#[tokio::test]
async fn a_resume_larger_than_the_outbox_gets_a_snapshot_not_4008() {
    let server = server_on(&temp_db()).await;
    let (mut reader, _) = sign_in(&server, "Reader").await;
    let first = subscribe(&mut reader, "chat:flood", None).await;
    assert_eq!(first.offset, 0);
    // The reader keeps the room in memory and reads everything as it comes.
    let reading = tokio::spawn(async move {
        let mut chats = 0;
        while chats < 160 {
            if let ServerMessage::Chat(_) = reader.recv().await.message {
                chats += 1;
            }
        }
        reader
    });
    let text = "😀".repeat(2000); // 8,000 bytes of UTF-8
    for author in 0..16 {
        let (mut poster, _) = sign_in(&server, &format!("Poster{author}")).await;
        for n in 0..10 {
            let send = json!({"type": "chat_send", "id": format!("p{author}-{n}"),
                "data": {"room": "flood", "text": text}});
            poster.send(&send.to_string()).await;
        }
        let mut acks = 0;
        while acks < 10 {
            match poster.recv().await.message {
                ServerMessage::Ack(_) => acks += 1,
                ServerMessage::Error(error) => panic!("{error:?}"),
                _ => {}
            }
        }
    }
    let mut reader = reading.await.unwrap();

    let (mut late, _) = sign_in(&server, "Late").await;
    let since = json!({"offset": 0, "epoch": first.epoch});
    let answer = subscribe(&mut late, "chat:flood", Some(since)).await;
    assert_eq!(answer.offset, 160);
    assert!(!answer.recovered, "1.3 MB is over the replay limit");
    let Some(Snapshot::Chat(snapshot)) = &answer.snapshot else {
        panic!("expected a chat snapshot, got {:?}", answer.snapshot)
    };
    assert_eq!(snapshot.messages.len(), 50);
    assert_eq!(snapshot.messages.last().unwrap().offset, 160);
    let before_pong = until_pong(&mut late).await;
    assert!(
        before_pong.is_empty(),
        "no replay after a snapshot: {before_pong:?}"
    );

    // Ten messages (80 KB) are within the limit: replayed.
    let since = json!({"offset": 150, "epoch": first.epoch});
    let (mut blip, _) = sign_in(&server, "Blip").await;
    let answer = subscribe(&mut blip, "chat:flood", Some(since)).await;
    assert!(answer.recovered);
    let replayed: Vec<u64> = until_pong(&mut blip)
        .await
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Chat(chat) => Some(chat.offset),
            _ => None,
        })
        .collect();
    assert_eq!(replayed, (151..=160).collect::<Vec<_>>());
    until_pong(&mut reader).await;
}

/// 300 unread notifications: the snapshot has the newest 100 and
/// `total_unread: 300`; marking some read keeps the total exact and the
/// snapshot full.
#[tokio::test]
async fn a_big_inbox_gives_a_bounded_snapshot_and_the_total() {
    let server = server_on(&temp_db()).await;
    let (mut client, id) = sign_in(&server, "Inbox").await;
    for n in 1..=300 {
        let body = json!({"user": id, "title": format!("n{n}"), "body": "b".repeat(1000)});
        let (status, answer) =
            http_post(server.addr, "/api/notify", Some(KEY), &body.to_string()).await;
        assert_eq!(status, 200, "{answer}");
    }
    let channel = format!("user:{id}");
    let answer = subscribe(&mut client, &channel, None).await;
    let Some(Snapshot::Unread(snapshot)) = answer.snapshot else {
        panic!("expected an unread snapshot")
    };
    assert_eq!(snapshot.total_unread, 300);
    assert_eq!(snapshot.unread.len(), 100);
    let offsets: Vec<u64> = snapshot.unread.iter().map(|n| n.offset).collect();
    assert_eq!(
        offsets,
        (201..=300).collect::<Vec<_>>(),
        "the newest, oldest first"
    );
    until_pong(&mut client).await;

    let read: Vec<String> = snapshot.unread[90..]
        .iter()
        .map(|n| n.notification_id.clone())
        .collect();
    let mark = json!({"type": "mark_read", "id": "r-1", "data": {"notification_ids": read}});
    client.send(&mark.to_string()).await;
    loop {
        if let ServerMessage::Ack(ack) = client.recv().await.message {
            assert_eq!(ack.id, "r-1");
            break;
        }
    }
    let (mut other_tab, _) = sign_in(&server, "Inbox").await;
    let answer = subscribe(&mut other_tab, &channel, None).await;
    let Some(Snapshot::Unread(snapshot)) = answer.snapshot else {
        panic!("expected an unread snapshot")
    };
    assert_eq!(snapshot.total_unread, 290);
    let offsets: Vec<u64> = snapshot.unread.iter().map(|n| n.offset).collect();
    assert_eq!(
        offsets,
        (191..=290).collect::<Vec<_>>(),
        "refilled from older ones"
    );
}

/// One connection sends 500 `status` toggles: beyond 2 per second (bursts
/// of 5) they are answered `rate_limited` with their id; an observer of
/// presence stays connected and sees no more diffs about that user than
/// were accepted, the last one with the final status.
#[tokio::test]
async fn a_status_flood_is_rate_limited_and_observers_see_few_diffs() {
    let server = server_on(&temp_db()).await;
    let (mut observer, _) = sign_in(&server, "Observer").await;
    subscribe(&mut observer, "presence", None).await;
    let (mut flooder, flooder_id) = sign_in(&server, "Flooder").await;
    let status = |n: usize| {
        if n.is_multiple_of(2) {
            "away"
        } else {
            "online"
        }
    };
    for n in 0..500 {
        let frame = json!({"type": "status", "id": format!("s{n}"), "data": {"status": status(n)}});
        flooder.send(&frame.to_string()).await;
    }
    let mut limited = std::collections::BTreeSet::new();
    for message in until_pong(&mut flooder).await {
        match message {
            ServerMessage::Error(error) => {
                assert_eq!(error.code, pulse::protocol::ErrorCode::RateLimited);
                let id = error.id.expect("the envelope id");
                limited.insert(id[1..].parse::<usize>().unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let accepted: Vec<usize> = (0..500).filter(|n| !limited.contains(n)).collect();
    assert!(
        accepted.len() >= 5 && accepted.len() < 100,
        "{} accepted",
        accepted.len()
    );
    assert_eq!(&accepted[..5], [0, 1, 2, 3, 4], "the burst");
    let last = *accepted.last().unwrap();
    let final_status = if status(last) == "away" {
        UserStatus::Away
    } else {
        UserStatus::Online
    };

    let mut updates = 0;
    loop {
        let ServerMessage::PresenceDiff(diff) = observer.recv().await.message else {
            continue;
        };
        let Some(user) = diff.updates.iter().find(|u| u.id == flooder_id) else {
            continue;
        };
        updates += 1;
        if user.status == final_status {
            break;
        }
    }
    assert!(
        updates <= accepted.len(),
        "{updates} diffs for {} accepted",
        accepted.len()
    );
    until_pong(&mut observer).await;
}

/// 5,000 rooms subscribed and left store nothing and leave nothing in the
/// hub; neither do 256 unknown tickers.
#[tokio::test]
async fn unused_rooms_and_tickers_cost_no_rows_and_no_memory() {
    let db = temp_db();
    let server = server_on(&db).await;
    let (mut client, _) = sign_in(&server, "Roamer").await;
    let baseline = hub_channels(&server).await;
    for batch in 0..20 {
        let rooms: Vec<String> = (0..250).map(|n| format!("chat:room-{batch}-{n}")).collect();
        let entries: Vec<_> = rooms.iter().map(|room| json!({"channel": room})).collect();
        let frame = json!({"type": "subscribe", "data": {"channels": entries}});
        client.send(&frame.to_string()).await;
        for _ in 0..rooms.len() {
            match client.recv().await.message {
                ServerMessage::Subscribed(answer) => assert_eq!(answer.offset, 0),
                other => panic!("expected subscribed, got {other:?}"),
            }
        }
        let frame = json!({"type": "unsubscribe", "data": {"channels": rooms}});
        client.send(&frame.to_string()).await;
        for _ in 0..250 {
            assert!(matches!(
                client.recv().await.message,
                ServerMessage::Unsubscribed(_)
            ));
        }
    }
    let tickers: Vec<String> = (0..256).map(|n| format!("ticker:ZZ{n}")).collect();
    let entries: Vec<_> = tickers.iter().map(|t| json!({"channel": t})).collect();
    let frame = json!({"type": "subscribe", "data": {"channels": entries}});
    client.send(&frame.to_string()).await;
    for _ in 0..256 {
        assert!(matches!(
            client.recv().await.message,
            ServerMessage::Subscribed(_)
        ));
    }
    assert_eq!(hub_channels(&server).await, baseline + 256);
    let frame = json!({"type": "unsubscribe", "data": {"channels": tickers}});
    client.send(&frame.to_string()).await;
    for _ in 0..256 {
        assert!(matches!(
            client.recv().await.message,
            ServerMessage::Unsubscribed(_)
        ));
    }

    let rows: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM channels WHERE name LIKE 'chat:room-%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0, "subscribing to an empty room stores nothing");
    assert_eq!(
        hub_channels(&server).await,
        baseline,
        "nothing left in memory"
    );
}

/// Reads `/metrics` and returns the value of `name`.
async fn metric(server: &TestServer, name: &str) -> u64 {
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// A client that never reads keeps asking for a room whose snapshot is
/// ~410 KB (50 messages of 8 KB), the room twice in every frame: the server
/// answers each frame once and, once the answers it has not read pass their
/// bound (`MAX_ANSWER_BYTES`), closes it as a slow consumer instead of
/// queueing 40 MB more. A reader of the room is not disturbed.
#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_closed() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let server = server_on(&temp_db()).await;
    let (mut reader, _) = sign_in(&server, "Reader").await;
    subscribe(&mut reader, "chat:big", None).await;
    let text = "😀".repeat(2000); // 8,000 bytes of UTF-8
    for author in 0..5 {
        let (mut poster, _) = sign_in(&server, &format!("Poster{author}")).await;
        for n in 0..10 {
            let send = json!({"type": "chat_send", "id": format!("p{author}-{n}"),
                "data": {"room": "big", "text": text}});
            poster.send(&send.to_string()).await;
        }
        let mut acks = 0;
        while acks < 10 {
            match poster.recv().await.message {
                ServerMessage::Ack(_) => acks += 1,
                ServerMessage::Error(error) => panic!("{error:?}"),
                _ => {}
            }
        }
    }
    let mut chats = 0;
    while chats < 50 {
        if let ServerMessage::Chat(_) = reader.recv().await.message {
            chats += 1;
        }
    }

    let (mut hoarder, _) = sign_in(&server, "Hoarder").await;
    let entry = json!({"channel": "chat:big"});
    let frame = json!({"type": "subscribe", "data": {"channels": [entry, entry]}}).to_string();
    let mut sent = 0;
    while sent < 100 && hoarder.ws.send(Message::text(frame.clone())).await.is_ok() {
        sent += 1;
    }
    // Now read: what the kernel still held arrives, then the end (a close
    // frame, or the connection cut while the server could not write it).
    let mut answers = 0;
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match hoarder.ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(Message::Text(text))) => answers += text.matches("\"subscribed\"").count(),
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "still open after {sent} frames and {answers} answers read"
    );
    eprintln!("the hoarder sent {sent} frames and read {answers} answers before the end");
    assert!(answers < sent, "{answers} answers to {sent} frames");
    assert_eq!(metric(&server, "pulse_slow_consumers_total").await, 1);
    assert!(until_pong(&mut reader).await.is_empty());
    let again = subscribe(&mut reader, "chat:big", None).await;
    assert_eq!(again.offset, 50);
}
