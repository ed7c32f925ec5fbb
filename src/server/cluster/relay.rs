//! Owns the Redis relay of persisted channels: publishing each message this
//! instance committed on `pulse:{channel}`, listening (SUBSCRIBE) to the
//! channels this instance's hub holds, and delivering what arrives, in
//! offset order, filling any gap from the store.
//!
//! Why a gap can be filled: PostgreSQL gives a channel's offsets in commit
//! order (one group at a time, cluster-wide), so when offset k is known, every
//! offset below it is committed and readable. Gaps come from messages that
//! were published before this instance listened, from two instances' publishes
//! crossing in Redis, and from Redis being away; each is repaired the moment
//! the next message arrives, when a channel is loaded, and after a reconnect.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::protocol::{Channel, ServerEnvelope, ServerMessage};
use crate::server::frames;
use crate::server::hub::{
    Delivery, Hub, RelayCommand, RelayLink, Relayed, CHAT_HISTORY, INBOX_HISTORY,
};
use crate::server::store::Store;

/// How long a channel this hub no longer holds stays subscribed in Redis (a
/// load in progress holds nothing yet).
const LINGER: Duration = Duration::from_secs(30);

/// How long to wait before connecting to Redis again.
const RECONNECT: Duration = Duration::from_secs(1);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("Redis (--redis): {0}")]
    Redis(#[from] redis::RedisError),
}

/// The Redis channel carrying `channel`.
fn key(channel: &Channel) -> String {
    format!("pulse:{channel}")
}

/// Connects to Redis at `url`, starts the relay's two tasks and routes the
/// hub's persisted channels through them. Fails when Redis cannot be
/// reached at start; later outages are ridden out.
pub async fn start(url: &str, hub: Hub, store: Store) -> Result<(), RelayError> {
    let client = redis::Client::open(url)?;
    let publisher = client.get_connection_manager().await?;
    let (publish, outgoing) = mpsc::unbounded_channel();
    let (commands, asked) = mpsc::unbounded_channel();
    tokio::spawn(publish_all(publisher, outgoing, hub.clone()));
    tokio::spawn(listen(client, asked, hub.clone(), store));
    hub.relay_through(RelayLink { publish, commands });
    Ok(())
}

/// Publishes what this instance committed, in commit order. A message that
/// cannot be published is stored all the same: this hub delivers it at
/// once, and the other instances fill it in from the store.
async fn publish_all(
    mut redis: ConnectionManager,
    mut outgoing: mpsc::UnboundedReceiver<Relayed>,
    hub: Hub,
) {
    while let Some(message) = outgoing.recv().await {
        let (channel, frame) = match &message {
            Relayed::Chat(chat) => (&chat.channel, ServerMessage::Chat(chat.clone())),
            Relayed::Notification(note) => {
                (&note.channel, ServerMessage::Notification(note.clone()))
            }
        };
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(format!("pulse:{channel}"))
            .arg(frames::encode(frame).as_str())
            .query_async(&mut redis)
            .await;
        if let Err(err) = published {
            tracing::warn!(%err, %channel, "cannot publish through Redis; delivered here only");
            match &message {
                Relayed::Chat(chat) => drop(hub.deliver_chat(chat)),
                Relayed::Notification(note) => drop(hub.deliver_notification(note)),
            }
        }
    }
}

/// The listening side: (re)connects, keeps the watched channels subscribed,
/// delivers what arrives, answers the hub's commands; ends with the hub.
async fn listen(
    client: redis::Client,
    mut asked: mpsc::UnboundedReceiver<RelayCommand>,
    hub: Hub,
    store: Store,
) {
    let relay = Listener { hub, store };
    // Channels subscribed (or to subscribe once connected), and since when.
    let mut watched: HashMap<Channel, Instant> = HashMap::new();
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(err) => {
                tracing::warn!(%err, "cannot reach Redis; retrying");
                let retry = tokio::time::sleep(RECONNECT);
                tokio::pin!(retry);
                loop {
                    tokio::select! {
                        () = &mut retry => break,
                        command = asked.recv() => match command {
                            None => return,
                            Some(command) => relay.command(command, None, &mut watched).await,
                        },
                    }
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        for channel in watched.keys() {
            if let Err(err) = sink.subscribe(key(channel)).await {
                tracing::warn!(%err, %channel, "cannot subscribe in Redis");
            }
        }
        // Whatever was committed while this instance did not listen.
        for channel in watched.keys() {
            relay.catch_up(channel).await;
        }
        let mut sweep = tokio::time::interval(LINGER);
        loop {
            tokio::select! {
                command = asked.recv() => match command {
                    None => return,
                    Some(command) => relay.command(command, Some(&mut sink), &mut watched).await,
                },
                message = stream.next() => match message {
                    Some(message) => relay.receive(message.get_payload_bytes()).await,
                    None => break,
                },
                _ = sweep.tick() => relay.sweep(&mut sink, &mut watched).await,
            }
        }
        tracing::warn!("lost the Redis pub/sub connection; reconnecting");
    }
}

/// What the listening task works with.
struct Listener {
    hub: Hub,
    store: Store,
}

impl Listener {
    async fn command(
        &self,
        command: RelayCommand,
        sink: Option<&mut PubSubSink>,
        watched: &mut HashMap<Channel, Instant>,
    ) {
        match command {
            RelayCommand::Watch(channel, listening) => {
                if !watched.contains_key(&channel) {
                    if let Some(sink) = sink {
                        if let Err(err) = sink.subscribe(key(&channel)).await {
                            tracing::warn!(%err, %channel, "cannot subscribe in Redis");
                        }
                    }
                }
                watched.insert(channel, Instant::now());
                let _ = listening.send(());
            }
            RelayCommand::Loaded(channel) => self.catch_up(&channel).await,
        }
    }

    /// Unsubscribes channels this hub has not held for a while.
    async fn sweep(&self, sink: &mut PubSubSink, watched: &mut HashMap<Channel, Instant>) {
        let stale: Vec<Channel> = watched
            .iter()
            .filter(|(channel, since)| since.elapsed() >= LINGER && !self.hub.has(channel))
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in stale {
            watched.remove(&channel);
            if let Err(err) = sink.unsubscribe(key(&channel)).await {
                tracing::warn!(%err, %channel, "cannot unsubscribe in Redis");
            }
        }
    }

    /// Delivers one published frame.
    async fn receive(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let envelope = match ServerEnvelope::from_json(text) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::warn!(%err, "unreadable message from Redis");
                return;
            }
        };
        match envelope.message {
            ServerMessage::Chat(message) => {
                if let Delivery::Gap { latest } = self.hub.deliver_chat(&message) {
                    let channel = Channel::Chat(message.room.clone());
                    self.fill_chat(&channel, latest, message.offset).await;
                    if let Delivery::Gap { .. } = self.hub.deliver_chat(&message) {
                        self.hub.deliver_chat_after_gap(&message);
                    }
                }
            }
            ServerMessage::Notification(notification) => {
                if let Delivery::Gap { latest } = self.hub.deliver_notification(&notification) {
                    if let Ok(channel) = notification.channel.parse::<Channel>() {
                        self.fill_inbox(&channel, latest).await;
                    }
                    if let Delivery::Gap { .. } = self.hub.deliver_notification(&notification) {
                        self.hub.deliver_notification_after_gap(&notification);
                    }
                }
            }
            _ => {}
        }
    }

    /// Delivers what this hub lacks of a channel it holds, from the store.
    async fn catch_up(&self, channel: &Channel) {
        let Some(latest) = self.hub.held_latest(channel) else {
            return;
        };
        match channel {
            Channel::Chat(_) => self.fill_chat(channel, latest, i64::MAX as u64).await,
            Channel::User(_) => self.fill_inbox(channel, latest).await,
            _ => {}
        }
    }

    /// Delivers the messages of a room after `latest` and before `before`,
    /// read from the store (at most a room's history: beyond that, the room's
    /// history starts again after the gap).
    async fn fill_chat(&self, channel: &Channel, latest: u64, before: u64) {
        let wanted = before.saturating_sub(latest + 1).min(CHAT_HISTORY as u64) as usize;
        if wanted == 0 {
            return;
        }
        let missing = match self
            .store
            .chat_before(channel.to_string(), before, wanted)
            .await
        {
            Ok(missing) => missing,
            Err(err) => {
                tracing::error!(%err, %channel, "cannot fill a gap from the store");
                return;
            }
        };
        for message in missing.iter().filter(|message| message.offset > latest) {
            if let Delivery::Gap { .. } = self.hub.deliver_chat(message) {
                self.hub.deliver_chat_after_gap(message);
            }
        }
    }

    /// Delivers the notifications of a user's channel after `latest`, from
    /// the store's newest ones.
    async fn fill_inbox(&self, channel: &Channel, latest: u64) {
        let Channel::User(user) = channel else {
            return;
        };
        let stored = self
            .store
            .load_inbox(user.clone(), INBOX_HISTORY, |stored| stored.recent)
            .await;
        match stored {
            Ok(recent) => {
                for notification in recent.iter().filter(|n| n.offset > latest) {
                    if let Delivery::Gap { .. } = self.hub.deliver_notification(notification) {
                        self.hub.deliver_notification_after_gap(notification);
                    }
                }
            }
            Err(err) => tracing::error!(%err, %channel, "cannot fill a gap from the store"),
        }
    }
}
