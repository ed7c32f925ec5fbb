//! Owns the Redis relay of persisted channels: publishing each message this
//! instance committed on `{prefix}:{channel}` (`keys.rs`), listening (SUBSCRIBE) to the
//! channels this instance's hub holds, and delivering what arrives, in
//! offset order, filling any gap from the store.
//!
//! Why a gap can be filled: PostgreSQL gives a channel's offsets in commit
//! order (one group at a time, cluster-wide), so when offset k is known, every
//! offset below it is committed and readable. Gaps come from messages that
//! were published before this instance listened, from two instances' publishes
//! crossing in Redis, and from Redis being away; each is repaired the moment
//! the next message arrives, when a channel is loaded, and after a reconnect.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::protocol::{Channel, PresenceDiff, ServerEnvelope, ServerMessage, Tick};
use crate::server::frames;
use crate::server::hub::{
    lock, Delivery, Hub, Quote, RelayCommand, RelayLink, Relayed, CHAT_HISTORY, DOC_HISTORY,
    INBOX_HISTORY, PRESENCE_HISTORY, TICKER_HISTORY,
};
use crate::server::store::Store;

use super::keys::Keys;

/// How long a channel this hub no longer holds stays subscribed in Redis (a
/// load in progress holds nothing yet).
const LINGER: Duration = Duration::from_secs(30);

/// Messages read per page when filling a gap from the store.
const FILL_PAGE: usize = 100;

/// How often a gap the store could not fill is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// How long to wait before connecting to Redis again.
const RECONNECT: Duration = Duration::from_secs(1);

/// How long Redis keeps the epoch of a ticker that has had no tick yet once
/// no instance holds it (each holder renews it every `LINGER`); its first
/// tick keeps it for good. So a subscribe to a made-up symbol costs Redis
/// nothing for long.
const UNTICKED_TTL: Duration = Duration::from_secs(90);

/// Tickers with no tick yet renewed per round trip to Redis.
const RENEW_BATCH: usize = 256;

/// How many awareness frames may wait for Redis (more are dropped).
const AWARENESS_QUEUE: usize = 1024;

/// Starts the relay's tasks on `client` (`publisher` is its shared
/// connection) and routes the hub's relayed channels through them.
/// `instance` names this instance in what only the others deliver.
pub(super) fn start(
    client: redis::Client,
    publisher: ConnectionManager,
    hub: Hub,
    store: Store,
    instance: String,
    keys: Keys,
) {
    let (publish, outgoing) = mpsc::unbounded_channel();
    let (commands, asked) = mpsc::unbounded_channel();
    let listening = listen(
        client,
        publisher.clone(),
        asked,
        hub.clone(),
        store,
        instance.clone(),
        keys.clone(),
    );
    tokio::spawn(listening);
    let (awareness, carets) = mpsc::channel(AWARENESS_QUEUE);
    tokio::spawn(publish_awareness(
        publisher.clone(),
        carets,
        instance.clone(),
        keys.clone(),
    ));
    tokio::spawn(publish_all(
        publisher,
        outgoing,
        hub.clone(),
        instance,
        keys,
    ));
    hub.relay_through(RelayLink {
        publish,
        commands,
        awareness,
    });
}

/// Publishes what this instance committed, in commit order. A message that
/// cannot be published is stored all the same: this hub delivers it at
/// once, and the other instances fill it in from the store.
async fn publish_all(
    mut redis: ConnectionManager,
    mut outgoing: mpsc::UnboundedReceiver<Relayed>,
    hub: Hub,
    instance: String,
    keys: Keys,
) {
    let tick_script = redis::Script::new(TICK_SCRIPT);
    while let Some(message) = outgoing.recv().await {
        let (channel, frame) = match message {
            Relayed::Tick(quote, answer) => {
                // No answer wanted: the simulator's tick, fenced by its lease.
                let fence = if answer.is_none() {
                    instance.as_str()
                } else {
                    ""
                };
                let offset = publish_tick(&mut redis, &tick_script, &keys, quote, fence).await;
                if let Some(answer) = answer {
                    let _ = answer.send(offset);
                }
                continue;
            }
            Relayed::Chat(ref chat) => (&chat.channel, ServerMessage::Chat(chat.clone())),
            Relayed::Notification(ref note) => {
                (&note.channel, ServerMessage::Notification(note.clone()))
            }
            Relayed::Doc(ref event) => (&event.channel, ServerMessage::DocUpdate(event.clone())),
        };
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(keys.channel(channel))
            .arg(frames::encode(frame).as_str())
            .query_async(&mut redis)
            .await;
        if let Err(err) = published {
            tracing::warn!(%err, %channel, "cannot publish through Redis; delivered here only");
            match &message {
                Relayed::Chat(chat) => drop(hub.deliver_chat(chat)),
                Relayed::Notification(note) => drop(hub.deliver_notification(note)),
                Relayed::Doc(event) => drop(hub.deliver_doc(event)),
                Relayed::Tick(..) => {}
            }
        }
    }
}

/// Publishes editors' awareness for the other instances, as
/// `{"awareness": <frame>, "from": instance}`; apart from what must arrive
/// (`publish_all`), so carets never hold chat or ticks back.
async fn publish_awareness(
    mut redis: ConnectionManager,
    mut carets: mpsc::Receiver<(Channel, Utf8Bytes)>,
    instance: String,
    keys: Keys,
) {
    while let Some((channel, frame)) = carets.recv().await {
        let carried = format!(r#"{{"awareness":{frame},"from":"{instance}"}}"#);
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(keys.channel(&channel))
            .arg(carried)
            .query_async(&mut redis)
            .await;
        if let Err(err) = published {
            // Live state only: the editor's next update carries it.
            tracing::debug!(%err, %channel, "cannot relay awareness");
        }
    }
}

/// Gives a tick the cluster's next offset of its channel and publishes it,
/// atomically: the offset (`INCR`), the epoch (kept while the offsets are:
/// a Redis that lost them, never had them, or started again from an older
/// snapshot starts a new one: every epoch ends with `.` and the first 12
/// hex digits of the `run_id` of the Redis that made it, which changes at
/// every Redis start, so offsets are never reused under one epoch; the epoch
/// that `OPEN_TICKER` gave subscribers before the first tick, with offset 0,
/// is kept, and from this tick on kept for good), the bounded history (a stream
/// whose ids are the offsets), the symbol's last quote (where a new
/// simulator resumes) and the `PUBLISH`, as `{"epoch", "frame"}`.
/// A simulator's tick is fenced: published only while Redis says this
/// instance holds the simulator's lease (else -1, and nothing changes), so
/// a holder paused past its lease never publishes beside the new one.
/// KEYS: offset, epoch, history, quotes, the simulator's lease. ARGV: the
/// frame with `OFFSET_MARK` for its offset, an epoch should none exist, the
/// symbol, the price, the Redis channel, the mark, the history's length,
/// the instance for a simulator's tick ('' for one from `/api/publish`).
const TICK_SCRIPT: &str = r#"
if ARGV[8] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[8] then return -1 end
local run = string.sub(string.match(redis.call('INFO', 'server'), 'run_id:(%x+)'), 1, 12)
local epoch = redis.call('GET', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 or not epoch or string.sub(epoch, -13) ~= '.' .. run then
  epoch = ARGV[2] .. '.' .. run
  redis.call('SET', KEYS[2], epoch)
  redis.call('SET', KEYS[1], 0)
  redis.call('DEL', KEYS[3])
end
local offset = redis.call('INCR', KEYS[1])
if offset == 1 then redis.call('PERSIST', KEYS[1]); redis.call('PERSIST', KEYS[2]) end
local frame = string.gsub(ARGV[1], ARGV[6], tostring(offset), 1)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], tostring(offset) .. '-1', 'f', frame)
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[5], '{"epoch":"' .. epoch .. '","frame":' .. frame .. '}')
return offset
"#;

/// Opens a ticker for an instance about to serve it: answers its epoch, its
/// latest offset and its newest kept ticks (newest first), atomically. A
/// ticker Redis does not know (never ticked, lost, or kept from another run
/// of Redis: see `TICK_SCRIPT`) gets an epoch now,
/// with offset 0, so that every instance answers its subscribers the epoch
/// its first tick will carry. Until that tick both keys expire unless
/// renewed (each call renews them), so unused symbols do not pile up.
/// KEYS: offset, epoch, history. ARGV: an epoch should none exist, the
/// time to live of an unticked ticker (ms), the history's length.
const OPEN_TICKER: &str = r#"
local run = string.sub(string.match(redis.call('INFO', 'server'), 'run_id:(%x+)'), 1, 12)
local offset = redis.call('GET', KEYS[1])
local epoch = redis.call('GET', KEYS[2])
if not epoch or string.sub(epoch, -13) ~= '.' .. run then
  offset = false
end
if not offset then
  offset = '0'
  epoch = ARGV[1] .. '.' .. run
  redis.call('SET', KEYS[1], offset, 'PX', ARGV[2])
  redis.call('SET', KEYS[2], epoch, 'PX', ARGV[2])
  redis.call('DEL', KEYS[3])
elseif offset == '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return {epoch, offset, redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[3])}
"#;

/// Stands for the offset in a tick's frame until the script knows it.
pub(super) const OFFSET_MARK: u64 = u64::MAX;

async fn publish_tick(
    redis: &mut ConnectionManager,
    script: &redis::Script,
    keys: &Keys,
    quote: Quote,
    fence: &str,
) -> Option<u64> {
    let channel = Channel::Ticker(quote.symbol.clone());
    let tick = Tick {
        channel: channel.to_string(),
        offset: OFFSET_MARK,
        symbol: quote.symbol.clone(),
        price: quote.price,
        change: quote.change,
        change_pct: quote.change_pct,
        volume: quote.volume,
    };
    let (offset_key, epoch_key, history_key) = keys.sequenced(&channel);
    let epoch = crate::server::hub::new_epoch();
    let published: redis::RedisResult<i64> = script
        .key(offset_key)
        .key(epoch_key)
        .key(history_key)
        .key(keys.quotes())
        .key(keys.simulator())
        .arg(frames::encode(ServerMessage::Tick(tick)).as_str())
        .arg(epoch)
        .arg(&quote.symbol)
        .arg(quote.price)
        .arg(keys.channel(&channel))
        .arg(OFFSET_MARK.to_string())
        .arg(TICKER_HISTORY)
        .arg(fence)
        .invoke_async(redis)
        .await;
    match published {
        Ok(offset) if offset > 0 => Some(offset as u64),
        Ok(_) => {
            tracing::debug!(%channel, "a tick of a simulator that lost its lease; not published");
            None
        }
        Err(err) => {
            // The ticker pauses (and /api/publish answers `internal`) while
            // Redis is away; prices go on from the last quote once it is back.
            tracing::warn!(%err, %channel, "cannot publish a tick through Redis");
            None
        }
    }
}

/// The listening side: (re)connects, keeps the watched channels subscribed,
/// delivers what arrives, answers the hub's commands; ends with the hub.
async fn listen(
    client: redis::Client,
    redis: ConnectionManager,
    mut asked: mpsc::UnboundedReceiver<RelayCommand>,
    hub: Hub,
    store: Store,
    instance: String,
    keys: Keys,
) {
    let relay = Listener {
        hub,
        store,
        instance,
        keys,
        redis,
        pending: Mutex::new(HashSet::new()),
        loading: Mutex::new(HashSet::new()),
        open_ticker: redis::Script::new(OPEN_TICKER),
    };
    // Channels subscribed (or to subscribe once connected), and since when:
    // presence always.
    let mut watched: HashMap<Channel, Instant> = HashMap::new();
    watched.insert(Channel::Presence, Instant::now());
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
            if let Err(err) = sink.subscribe(relay.keys.channel(channel)).await {
                tracing::warn!(%err, %channel, "cannot subscribe in Redis");
            }
        }
        // Whatever was committed while this instance did not listen.
        for channel in watched.keys() {
            relay.catch_up(channel).await;
        }
        relay.renew_unticked(&watched).await;
        let mut sweep = tokio::time::interval(LINGER);
        let mut retry = tokio::time::interval(RETRY);
        loop {
            tokio::select! {
                _ = retry.tick() => relay.retry().await,
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
    /// This instance's name (it skips the awareness it relayed itself).
    instance: String,
    /// This deployment's key names.
    keys: Keys,
    /// For reading tickers' and presence's history and publishing hints.
    redis: ConnectionManager,
    /// Channels whose gap the store could not fill yet (retried every second).
    pending: Mutex<HashSet<Channel>>,
    /// Channels watched for a load that has not said `Loaded` yet: never swept.
    loading: Mutex<HashSet<Channel>>,
    /// `OPEN_TICKER`, hashed once.
    open_ticker: redis::Script,
}

/// `{"head": {"channel", "offset"}}`: a channel's committed head, published
/// when a resend finds a message whose publisher may have died before
/// publishing it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Hint {
    head: Head,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Head {
    channel: String,
    offset: u64,
}

/// `{"awareness": <doc_awareness frame>, "from": instance}`: an editor's
/// awareness, for the other instances' subscribers.
#[derive(serde::Deserialize)]
struct Carried {
    awareness: Box<serde_json::value::RawValue>,
    from: String,
}

/// `{"read": {"channel"}}`: a user marked notifications of their channel
/// read on some instance; the others holding it read its unread snapshot
/// again from the store.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReadHint {
    read: ReadOf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ReadOf {
    channel: String,
}

/// SUBSCRIBEs to `channel` (when connected) unless it is watched already;
/// true if it was not.
async fn subscribe_once(
    sink: Option<&mut PubSubSink>,
    watched: &mut HashMap<Channel, Instant>,
    channel: &Channel,
    keys: &Keys,
) -> bool {
    if watched.contains_key(channel) {
        return false;
    }
    if let Some(sink) = sink {
        if let Err(err) = sink.subscribe(keys.channel(channel)).await {
            tracing::warn!(%err, %channel, "cannot subscribe in Redis");
        }
    }
    watched.insert(channel.clone(), Instant::now());
    true
}

/// An entry of a ticker's history stream: its id and fields (`f`: the frame).
type StreamEntry = (String, HashMap<String, String>);

/// What `OPEN_TICKER` answers: a ticker's epoch, latest offset and kept
/// ticks, newest first.
type Opened = (String, u64, Vec<StreamEntry>);

/// A tick as the relay publishes it.
#[derive(serde::Deserialize)]
struct Published {
    epoch: String,
    frame: Box<serde_json::value::RawValue>,
}

/// What a hub can install as a history ending at offset `latest`, from a
/// Redis history stream read newest first (`XREVRANGE`): the entries that
/// run in a row down from `latest` (newer ones left out), oldest first.
fn in_a_row<T>(
    newest_first: impl IntoIterator<Item = T>,
    latest: u64,
    offset: impl Fn(&T) -> u64,
) -> Vec<T> {
    let mut kept: Vec<T> = newest_first
        .into_iter()
        .filter(|entry| offset(entry) <= latest)
        .enumerate()
        .take_while(|(n, entry)| offset(entry) == latest - *n as u64)
        .map(|(_, entry)| entry)
        .collect();
    kept.reverse();
    kept
}

/// The presence diff in a published frame.
fn diff_of(frame: &str) -> Option<PresenceDiff> {
    match ServerEnvelope::from_json(frame).ok()?.message {
        ServerMessage::PresenceDiff(diff) => Some(diff),
        _ => None,
    }
}

/// The tick in a published frame.
fn tick_of(frame: &str) -> Option<Tick> {
    match ServerEnvelope::from_json(frame).ok()?.message {
        ServerMessage::Tick(tick) => Some(tick),
        _ => None,
    }
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
                subscribe_once(sink, watched, &channel, &self.keys).await;
                if let Channel::Ticker(_) = channel {
                    // A ticker has no store: its epoch, offsets and history
                    // are in Redis, and this hub installs them from there.
                    self.load_ticker(&channel).await;
                }
                lock(&self.loading).insert(channel.clone());
                // Swept no sooner than LINGER from now.
                watched.insert(channel, Instant::now());
                let _ = listening.send(());
            }
            RelayCommand::Loaded(channel) => {
                lock(&self.loading).remove(&channel);
                // Listens again if it was swept while its load was slow.
                subscribe_once(sink, watched, &channel, &self.keys).await;
                self.catch_up(&channel).await;
            }
            RelayCommand::Ensure(channel) => {
                if subscribe_once(sink, watched, &channel, &self.keys).await {
                    self.catch_up(&channel).await;
                }
            }
            RelayCommand::Read(channel) => {
                let read = ReadOf {
                    channel: channel.to_string(),
                };
                self.hint(&channel, &ReadHint { read }).await;
            }
            RelayCommand::Head(channel, offset) => {
                if self
                    .hub
                    .held_latest(&channel)
                    .is_some_and(|latest| latest < offset)
                {
                    self.catch_up(&channel).await;
                }
                let head = Head {
                    channel: channel.to_string(),
                    offset,
                };
                self.hint(&channel, &Hint { head }).await;
            }
        }
    }

    /// Publishes a hint to every instance listening to `channel`.
    async fn hint(&self, channel: &Channel, hint: &impl serde::Serialize) {
        let mut redis = self.redis.clone();
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(self.keys.channel(channel))
            .arg(serde_json::to_string(hint).unwrap_or_default())
            .query_async(&mut redis)
            .await;
        if let Err(err) = published {
            tracing::warn!(%err, %channel, "cannot publish a hint");
        }
    }

    /// Unsubscribes channels this hub has not held for a while.
    async fn sweep(&self, sink: &mut PubSubSink, watched: &mut HashMap<Channel, Instant>) {
        let stale: Vec<Channel> = watched
            .iter()
            .filter(|(channel, since)| {
                since.elapsed() >= LINGER
                    && !self.hub.has(channel)
                    && !lock(&self.loading).contains(*channel)
            })
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in stale {
            watched.remove(&channel);
            if let Err(err) = sink.unsubscribe(self.keys.channel(&channel)).await {
                tracing::warn!(%err, %channel, "cannot unsubscribe in Redis");
            }
        }
        self.renew_unticked(watched).await;
    }

    /// Delivers one published frame (a tick comes as `{"epoch", "frame"}`).
    async fn receive(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        if text.starts_with("{\"head\"") {
            // Another instance found a committed message nobody published
            // (its publisher died): catch up if this hub lacks it.
            if let Ok(Hint { head }) = serde_json::from_str::<Hint>(text) {
                if let Ok(channel) = head.channel.parse::<Channel>() {
                    if self
                        .hub
                        .held_latest(&channel)
                        .is_some_and(|latest| latest < head.offset)
                    {
                        self.catch_up(&channel).await;
                    }
                }
            }
            return;
        }
        if text.starts_with("{\"awareness\"") {
            if let Ok(carried) = serde_json::from_str::<Carried>(text) {
                if carried.from != self.instance {
                    self.receive_awareness(carried.awareness.get());
                }
            }
            return;
        }
        if text.starts_with("{\"read\"") {
            if let Ok(ReadHint { read }) = serde_json::from_str::<ReadHint>(text) {
                self.reread(&read.channel).await;
            }
            return;
        }
        if text.starts_with("{\"epoch\"") {
            match serde_json::from_str::<Published>(text) {
                Ok(published) => match diff_of(published.frame.get()) {
                    Some(diff) => {
                        self.receive_presence(&published.epoch, diff, published.frame.get())
                            .await
                    }
                    None => self.receive_tick(published).await,
                },
                Err(err) => tracing::warn!(%err, "unreadable tick from Redis"),
            }
            return;
        }
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
                    if !self.fill_chat(&channel, latest, message.offset).await {
                        // Nothing is skipped: this message comes again with
                        // the catch-up, once the store answers.
                        lock(&self.pending).insert(channel);
                        return;
                    }
                    if let Delivery::Gap { .. } = self.hub.deliver_chat(&message) {
                        self.hub.deliver_chat_after_gap(&message);
                    }
                }
            }
            ServerMessage::Notification(notification) => {
                if let Delivery::Gap { latest } = self.hub.deliver_notification(&notification) {
                    let Ok(channel) = notification.channel.parse::<Channel>() else {
                        return;
                    };
                    if !self.fill_inbox(&channel, latest).await {
                        lock(&self.pending).insert(channel);
                        return;
                    }
                    if let Delivery::Gap { .. } = self.hub.deliver_notification(&notification) {
                        self.hub.deliver_notification_after_gap(&notification);
                    }
                }
            }
            ServerMessage::DocUpdate(event) => {
                if let Delivery::Gap { latest } = self.hub.deliver_doc(&event) {
                    let channel = Channel::Doc(event.doc.clone());
                    if !self.fill_doc(&channel, latest).await {
                        lock(&self.pending).insert(channel);
                    }
                }
            }
            _ => {}
        }
    }

    async fn receive_tick(&self, published: Published) {
        let frame = published.frame.get();
        let Some(tick) = tick_of(frame) else {
            return;
        };
        let frame = Utf8Bytes::from(frame.to_owned());
        let epoch = published.epoch;
        if let Delivery::Gap { latest } = self.hub.deliver_tick(&epoch, tick.clone(), frame.clone())
        {
            let Ok(channel) = tick.channel.parse::<Channel>() else {
                return;
            };
            self.fill_ticks(&channel, &epoch, latest, Some(tick.offset))
                .await;
            if let Delivery::Gap { .. } = self.hub.deliver_tick(&epoch, tick.clone(), frame.clone())
            {
                self.hub.deliver_tick_after_gap(&epoch, tick, frame);
            }
        }
    }

    /// Installs a ticker channel from Redis: its epoch (made now if it has
    /// none yet, so that every instance answers the epoch its first tick
    /// will carry), latest offset and kept ticks. While Redis cannot be
    /// read the ticker is served with an epoch of this instance's, until
    /// the relay is back (`catch_up` then gives it the cluster's).
    async fn load_ticker(&self, channel: &Channel) {
        if self.hub.has(channel) {
            return;
        }
        match self.open(channel).await {
            Ok((epoch, latest, entries)) => {
                let newest_first = entries
                    .iter()
                    .filter_map(|(_, fields)| fields.get("f").and_then(|frame| tick_of(frame)));
                let recent = in_a_row(newest_first, latest, |tick| tick.offset);
                self.hub.install_ticker(channel, epoch, latest, recent);
            }
            Err(err) => {
                tracing::warn!(%err, %channel, "cannot load a ticker from Redis");
                let epoch = crate::server::hub::new_epoch();
                self.hub.install_ticker(channel, epoch, 0, Vec::new());
            }
        }
    }

    /// Runs `OPEN_TICKER` for `channel`.
    async fn open(&self, channel: &Channel) -> redis::RedisResult<Opened> {
        let mut redis = self.redis.clone();
        self.open_invocation(channel).invoke_async(&mut redis).await
    }

    /// `OPEN_TICKER` with `channel`'s keys and arguments.
    fn open_invocation(&self, channel: &Channel) -> redis::ScriptInvocation<'_> {
        let (offset_key, epoch_key, history_key) = self.keys.sequenced(channel);
        let mut invocation = self.open_ticker.prepare_invoke();
        invocation
            .key(offset_key)
            .key(epoch_key)
            .key(history_key)
            .arg(crate::server::hub::new_epoch())
            .arg(UNTICKED_TTL.as_millis() as u64)
            .arg(TICKER_HISTORY);
        invocation
    }

    /// Opens again every ticker this hub holds with no tick yet (after a
    /// reconnect, and every `LINGER`), `RENEW_BATCH` per round trip: see
    /// `reopened`.
    async fn renew_unticked(&self, watched: &HashMap<Channel, Instant>) {
        let unticked: Vec<&Channel> = watched
            .keys()
            .filter(|channel| {
                matches!(channel, Channel::Ticker(_)) && self.hub.held_latest(channel) == Some(0)
            })
            .collect();
        for batch in unticked.chunks(RENEW_BATCH) {
            let mut pipe = redis::pipe();
            pipe.load_script(&self.open_ticker).ignore();
            for channel in batch {
                pipe.invoke_script(&self.open_invocation(channel));
            }
            let mut redis = self.redis.clone();
            match pipe.query_async::<Vec<Opened>>(&mut redis).await {
                Ok(opened) => {
                    for (channel, opened) in batch.iter().zip(opened) {
                        self.reopened(channel, opened);
                    }
                }
                Err(err) => {
                    // Renewed at the next sweep, well before they expire.
                    tracing::warn!(%err, "cannot renew tickers with no tick yet in Redis");
                    return;
                }
            }
        }
    }

    /// What Redis said when a ticker this hub holds with no tick yet was
    /// opened again: its epoch is renewed there (or made again, if Redis lost
    /// it or this hub served one of its own while Redis was away: the hub's
    /// subscribers then get a fresh `subscribed` in it), and any tick this
    /// hub missed is delivered.
    fn reopened(&self, channel: &Channel, (epoch, latest, entries): Opened) {
        if latest == 0 {
            self.hub.reopen_ticker(channel, epoch);
            return;
        }
        let oldest_first = entries
            .iter()
            .rev()
            .filter_map(|(_, fields)| fields.get("f"));
        self.deliver_ticks(&epoch, oldest_first);
    }

    /// Delivers the ticks of `channel` after `latest` (and before `before`)
    /// from the Redis history.
    /// The epoch Redis holds for a ticker, if it answers and has one.
    async fn epoch_in_redis(&self, channel: &Channel) -> Option<String> {
        let mut redis = self.redis.clone();
        let (_, epoch_key, _) = self.keys.sequenced(channel);
        redis::cmd("GET")
            .arg(epoch_key)
            .query_async::<Option<String>>(&mut redis)
            .await
            .ok()
            .flatten()
    }

    async fn fill_ticks(&self, channel: &Channel, epoch: &str, latest: u64, before: Option<u64>) {
        let mut redis = self.redis.clone();
        let (_, _, history_key) = self.keys.sequenced(channel);
        let end = match before {
            Some(before) if before > latest + 1 => format!("{}-1", before - 1),
            Some(_) => return,
            None => "+".to_owned(),
        };
        let entries: redis::RedisResult<Vec<StreamEntry>> = redis::cmd("XRANGE")
            .arg(&history_key)
            .arg(format!("{}-0", latest + 1))
            .arg(end)
            .query_async(&mut redis)
            .await;
        match entries {
            Ok(entries) => self.deliver_ticks(
                epoch,
                entries.iter().filter_map(|(_, fields)| fields.get("f")),
            ),
            Err(err) => tracing::warn!(%err, %channel, "cannot fill ticks from Redis"),
        }
    }

    /// Delivers ticks read from a Redis history (frames, oldest first) in
    /// `epoch`; one that does not follow starts the history again.
    fn deliver_ticks<'a>(&self, epoch: &str, frames: impl Iterator<Item = &'a String>) {
        for frame in frames {
            let Some(tick) = tick_of(frame) else {
                continue;
            };
            let frame = Utf8Bytes::from(frame.clone());
            if let Delivery::Gap { .. } = self.hub.deliver_tick(epoch, tick.clone(), frame.clone())
            {
                self.hub.deliver_tick_after_gap(epoch, tick, frame);
            }
        }
    }

    /// Delivers a presence diff the leader published; a gap (or a missed
    /// start of an epoch) reloads presence from Redis.
    async fn receive_presence(&self, epoch: &str, diff: PresenceDiff, frame: &str) {
        let frame = Utf8Bytes::from(frame.to_owned());
        let delivery = self.hub.deliver_presence(epoch, &diff, frame);
        tracing::debug!(
            ?delivery,
            offset = diff.offset,
            epoch,
            "presence diff from Redis"
        );
        if let Delivery::Gap { .. } = delivery {
            self.load_presence().await;
        }
    }

    /// Installs the cluster's presence from Redis (atomically read: the
    /// epoch, the latest offset, who is online at it, and the kept diffs);
    /// nothing before the leader's first diff. A read that fails is retried
    /// every second (with the channels whose gap is pending).
    async fn load_presence(&self) {
        let mut redis = self.redis.clone();
        let (offset_key, epoch_key, history_key) = self.keys.sequenced(&Channel::Presence);
        type Loaded = (
            Option<String>,
            Option<u64>,
            HashMap<String, String>,
            Vec<StreamEntry>,
        );
        let loaded: redis::RedisResult<Loaded> = redis::pipe()
            .atomic()
            .get(&epoch_key)
            .get(&offset_key)
            .hgetall(self.keys.presence_users())
            .cmd("XREVRANGE")
            .arg(&history_key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(PRESENCE_HISTORY)
            .query_async(&mut redis)
            .await;
        match loaded {
            Ok((Some(epoch), Some(latest), users, entries)) => {
                let users = users
                    .values()
                    .filter_map(|user| serde_json::from_str(user).ok())
                    .collect();
                let newest_first = entries.iter().filter_map(|(_, fields)| {
                    let frame = fields.get("f")?;
                    Some((diff_of(frame)?, Utf8Bytes::from(frame.clone())))
                });
                let recent = in_a_row(newest_first, latest, |(diff, _)| diff.offset);
                self.hub.install_presence(epoch, latest, users, recent);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(%err, "cannot load presence from Redis; retrying");
                lock(&self.pending).insert(Channel::Presence);
            }
        }
    }

    /// Delivers what this hub lacks of a channel it holds, from the store
    /// (or, for a ticker or presence, from Redis).
    async fn catch_up(&self, channel: &Channel) -> bool {
        if let Channel::Presence = channel {
            self.load_presence().await;
            return true;
        }
        let Some(latest) = self.hub.held_latest(channel) else {
            return true;
        };
        if let Channel::Ticker(_) = channel {
            // One with no tick yet is opened again with the others
            // (`renew_unticked`), a batch per round trip.
            if latest > 0 {
                if let Some(epoch) = self.hub.epoch_of(channel) {
                    // Redis may have started a new epoch meanwhile (it lost
                    // its keys, or came back from an older snapshot): then
                    // the whole new history is delivered, and its first tick
                    // renews the subscribers.
                    match self.epoch_in_redis(channel).await {
                        Some(current) if current != epoch => {
                            self.fill_ticks(channel, &current, 0, None).await
                        }
                        _ => self.fill_ticks(channel, &epoch, latest, None).await,
                    }
                }
            }
            return true;
        }
        let filled = match channel {
            Channel::Chat(_) => self.fill_chat(channel, latest, i64::MAX as u64).await,
            Channel::User(_) => self.fill_inbox(channel, latest).await,
            Channel::Doc(_) => self.fill_doc(channel, latest).await,
            _ => true,
        };
        if !filled {
            // Retried every second until the store answers (`retry`): the
            // message that showed the gap waits with what it follows.
            lock(&self.pending).insert(channel.clone());
        }
        filled
    }

    /// Catches up the channels whose gap could not be filled yet.
    async fn retry(&self) {
        let pending: Vec<Channel> = lock(&self.pending).drain().collect();
        for channel in pending {
            self.catch_up(&channel).await;
        }
    }

    /// Delivers the messages of a room after `latest` and before `before`,
    /// read from the store (at most a room's history: beyond that, the room's
    /// history starts again after the gap).
    async fn fill_chat(&self, channel: &Channel, latest: u64, before: u64) -> bool {
        // Pages from the newest back, until `latest` (usually the first
        // page already reaches it), at most a room's history in all.
        let mut missing = Vec::new();
        let mut end = before;
        while end > latest + 1 && missing.len() < CHAT_HISTORY {
            let wanted = (end - latest - 1).min(FILL_PAGE as u64) as usize;
            let page = match self
                .store
                .chat_before(channel.to_string(), end, wanted)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    tracing::error!(%err, %channel, "cannot fill a gap from the store; retrying");
                    return false;
                }
            };
            let Some(first) = page.first().map(|message| message.offset) else {
                break;
            };
            let reached = first <= latest + 1;
            missing.splice(
                0..0,
                page.into_iter().filter(|message| message.offset > latest),
            );
            if reached {
                break;
            }
            end = first;
        }
        for message in &missing {
            if let Delivery::Gap { .. } = self.hub.deliver_chat(message) {
                self.hub.deliver_chat_after_gap(message);
            }
        }
        true
    }

    /// Delivers the updates of a document after `latest` from the store's
    /// newest ones, or, when more was missed than the store keeps to
    /// replay, reloads the document whole.
    async fn fill_doc(&self, channel: &Channel, latest: u64) -> bool {
        let Channel::Doc(id) = channel else {
            return true;
        };
        match self.store.load_doc(id.clone(), DOC_HISTORY).await {
            Ok(stored) => {
                let reaches = stored
                    .recent
                    .first()
                    .is_none_or(|first| first.offset <= latest + 1);
                if !reaches {
                    self.hub.reinstall_doc(channel, stored);
                    return true;
                }
                for event in stored.recent.iter().filter(|e| e.offset > latest) {
                    self.hub.deliver_doc(event);
                }
                true
            }
            Err(err) => {
                tracing::error!(%err, %channel, "cannot fill a gap from the store; retrying");
                false
            }
        }
    }

    /// Delivers another instance's `doc_awareness` frame here.
    fn receive_awareness(&self, frame: &str) {
        let Ok(envelope) = ServerEnvelope::from_json(frame) else {
            return;
        };
        if let ServerMessage::DocAwareness(event) = envelope.message {
            if let Ok(channel) = event.channel.parse::<Channel>() {
                self.hub
                    .deliver_awareness(&channel, Utf8Bytes::from(frame.to_owned()));
            }
        }
    }

    /// Reads the unread snapshot of a user's channel this hub holds again.
    async fn reread(&self, name: &str) {
        let Ok(channel @ Channel::User(_)) = name.parse::<Channel>() else {
            return;
        };
        let Channel::User(user) = &channel else {
            return;
        };
        if !self.hub.has(&channel) {
            return;
        }
        let stored = self
            .store
            .load_inbox(user.clone(), INBOX_HISTORY, |stored| {
                (stored.latest, stored.unread)
            })
            .await;
        match stored {
            Ok((latest, unread)) => self.hub.inbox_unread(name, latest, unread),
            Err(err) => tracing::warn!(%err, %channel, "cannot read the unread snapshot again"),
        }
    }

    /// Delivers the notifications of a user's channel after `latest`, from
    /// the store's newest ones.
    async fn fill_inbox(&self, channel: &Channel, latest: u64) -> bool {
        let Channel::User(user) = channel else {
            return true;
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
                true
            }
            Err(err) => {
                tracing::error!(%err, %channel, "cannot fill a gap from the store; retrying");
                false
            }
        }
    }
}
