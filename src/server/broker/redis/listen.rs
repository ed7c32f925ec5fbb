//! Owns listening: one task holds the pub/sub connection, keeps the
//! channels this instance's hub holds subscribed (and unsubscribes those it
//! no longer holds, after a while), and delivers what arrives. It does no
//! store or Redis I/O of its own beyond its connection: a gap, a load or a
//! catch-up goes to the channel's task (`fill.rs`), so one slow fill never
//! holds another channel back.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::fill::Worker;
use super::forward::Forwarder;
use super::wire::{self, Incoming};
use crate::protocol::Channel;
use crate::server::broker::Held;
use crate::server::hub::{lock, Delivery};

/// How long a channel this hub no longer holds stays subscribed in Redis (a
/// load in progress holds nothing yet).
const LINGER: Duration = Duration::from_secs(30);

/// How long to wait before connecting to Redis again.
const RECONNECT: Duration = Duration::from_secs(1);

/// Watches waiting for the listener, at most (a subscribe waits for room).
pub(super) const WATCHES: usize = 1024;

/// A request to listen to a channel, answered once listening.
pub(super) type Watch = (Channel, oneshot::Sender<()>);

/// What the hub asks of the listener without waiting: one entry per
/// channel, so bounded by the channels the hub holds.
#[derive(Default)]
pub(super) struct Asks {
    pending: Mutex<HashMap<Channel, Ask>>,
    ready: Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ask {
    /// Listen to a channel already held, unless listening, and catch up.
    Ensure,
    /// The channel is now in memory: listen and catch up.
    Loaded,
}

impl Asks {
    pub fn loaded(&self, channel: &Channel) {
        self.ask(channel, Ask::Loaded);
    }

    pub fn ensure(&self, channel: &Channel) {
        self.ask(channel, Ask::Ensure);
    }

    fn ask(&self, channel: &Channel, ask: Ask) {
        let mut pending = lock(&self.pending);
        let entry = pending.entry(channel.clone()).or_insert(ask);
        *entry = (*entry).max(ask);
        drop(pending);
        self.ready.notify_one();
    }

    fn take(&self) -> HashMap<Channel, Ask> {
        std::mem::take(&mut *lock(&self.pending))
    }
}

/// The listening task's state.
pub(super) struct Listener {
    pub client: redis::Client,
    pub worker: Worker,
    pub asks: std::sync::Arc<Asks>,
    /// This instance's name (it skips the awareness it published itself).
    pub instance: String,
    /// Takes what arrives on this instance's forwarding channel.
    forwarder: std::sync::Arc<Forwarder>,
    /// Channels subscribed (or to subscribe once connected), and since when:
    /// presence always.
    watched: HashMap<Channel, Instant>,
    /// Channels watched for a load that has not said `Loaded` yet: never swept.
    loading: HashSet<Channel>,
}

impl Listener {
    pub fn new(
        client: redis::Client,
        worker: Worker,
        asks: std::sync::Arc<Asks>,
        (instance, forwarder): (String, std::sync::Arc<Forwarder>),
    ) -> Self {
        let mut watched = HashMap::new();
        watched.insert(Channel::Presence, Instant::now());
        Listener {
            client,
            worker,
            asks,
            instance,
            forwarder,
            watched,
            loading: HashSet::new(),
        }
    }

    /// (Re)connects, keeps the watched channels subscribed, delivers what
    /// arrives, answers the hub; ends with the hub (its watches close).
    pub async fn run(mut self, mut watches: mpsc::Receiver<Watch>) {
        let asks = self.asks.clone();
        loop {
            let pubsub = match self.client.get_async_pubsub().await {
                Ok(pubsub) => pubsub,
                Err(err) => {
                    tracing::warn!(%err, "cannot reach Redis; retrying");
                    let retry = tokio::time::sleep(RECONNECT);
                    tokio::pin!(retry);
                    loop {
                        tokio::select! {
                            () = &mut retry => break,
                            watch = watches.recv() => match watch {
                                None => return,
                                Some(watch) => self.watch(None, watch).await,
                            },
                            () = asks.ready.notified() => self.asked(None).await,
                        }
                    }
                    continue;
                }
            };
            let (mut sink, mut stream) = pubsub.split();
            for channel in self.watched.keys() {
                let key = self.worker.shared.keys.channel(channel);
                if let Err(err) = sink.subscribe(key).await {
                    tracing::warn!(%err, %channel, "cannot subscribe in Redis");
                }
            }
            let forwarding = self.forwarder.channel();
            if let Err(err) = sink.subscribe(&forwarding).await {
                tracing::warn!(%err, "cannot subscribe to this instance's forwarding channel");
            }
            // Whatever was committed while this instance did not listen.
            for channel in self.watched.keys() {
                self.worker.run(channel, |jobs| jobs.catch_up = true);
            }
            self.renew_unticked();
            let mut sweep = tokio::time::interval(LINGER);
            loop {
                tokio::select! {
                    watch = watches.recv() => match watch {
                        None => return,
                        Some(watch) => self.watch(Some(&mut sink), watch).await,
                    },
                    () = asks.ready.notified() => self.asked(Some(&mut sink)).await,
                    message = stream.next() => match message {
                        Some(message) if message.get_channel_name() == forwarding => {
                            self.forwarder.receive(message.get_payload_bytes());
                        }
                        Some(message) => self.receive(message.get_payload_bytes()),
                        None => break,
                    },
                    _ = sweep.tick() => self.sweep(&mut sink).await,
                }
            }
            tracing::warn!("lost the Redis pub/sub connection; reconnecting");
        }
    }

    /// SUBSCRIBEs to `channel` (when connected) unless it is watched
    /// already; true if it was not.
    async fn subscribe_once(&mut self, sink: Option<&mut PubSubSink>, channel: &Channel) -> bool {
        if self.watched.contains_key(channel) {
            return false;
        }
        if let Some(sink) = sink {
            let key = self.worker.shared.keys.channel(channel);
            if let Err(err) = sink.subscribe(key).await {
                tracing::warn!(%err, %channel, "cannot subscribe in Redis");
            }
        }
        self.watched.insert(channel.clone(), Instant::now());
        true
    }

    /// Listens to a channel about to be loaded; answers once listening (a
    /// ticker once installed from Redis, by its task).
    async fn watch(&mut self, sink: Option<&mut PubSubSink>, (channel, listening): Watch) {
        self.subscribe_once(sink, &channel).await;
        self.loading.insert(channel.clone());
        // Swept no sooner than LINGER from now.
        self.watched.insert(channel.clone(), Instant::now());
        if let Channel::Ticker(_) = channel {
            // A ticker has no store: its epoch, offsets and history are in
            // Redis, and this hub installs them from there.
            self.worker.run(&channel, |jobs| {
                jobs.load_ticker
                    .get_or_insert_with(Vec::new)
                    .push(listening)
            });
        } else {
            let _ = listening.send(());
        }
    }

    /// Answers what the hub asked without waiting.
    async fn asked(&mut self, mut sink: Option<&mut PubSubSink>) {
        for (channel, ask) in self.asks.take() {
            let new = self.subscribe_once(sink.as_deref_mut(), &channel).await;
            if ask == Ask::Loaded {
                self.loading.remove(&channel);
            }
            if new || ask == Ask::Loaded {
                self.worker.run(&channel, |jobs| jobs.catch_up = true);
            }
        }
    }

    /// Unsubscribes channels this hub has not held for a while.
    async fn sweep(&mut self, sink: &mut PubSubSink) {
        let hub = &self.worker.shared.hub;
        let stale: Vec<Channel> = self
            .watched
            .iter()
            .filter(|(channel, since)| {
                since.elapsed() >= LINGER && !hub.has(channel) && !self.loading.contains(*channel)
            })
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in stale {
            self.watched.remove(&channel);
            let key = self.worker.shared.keys.channel(&channel);
            if let Err(err) = sink.unsubscribe(key).await {
                tracing::warn!(%err, %channel, "cannot unsubscribe in Redis");
            }
        }
        self.renew_unticked();
    }

    /// Opens again, on a task of its own, the tickers held with no tick yet.
    fn renew_unticked(&self) {
        let hub = &self.worker.shared.hub;
        let unticked: Vec<Channel> = self
            .watched
            .keys()
            .filter(|channel| {
                matches!(channel, Channel::Ticker(_)) && hub.held_latest(channel) == Some(0)
            })
            .cloned()
            .collect();
        if unticked.is_empty() {
            return;
        }
        let shared = self.worker.shared.clone();
        tokio::spawn(async move { shared.renew_unticked(unticked).await });
    }

    /// Delivers one published message; a gap goes to its channel's task.
    fn receive(&self, payload: &[u8]) {
        let incoming = match wire::decode(payload) {
            Ok(incoming) => incoming,
            Err(err) => {
                tracing::warn!(%err, "unreadable message from Redis");
                return;
            }
        };
        let hub = &self.worker.shared.hub;
        match incoming {
            Incoming::Chat(message) => {
                if let Delivery::Gap { .. } = hub.deliver_chat(&message) {
                    self.hold(Held::Chat(message));
                }
            }
            Incoming::Notification(note) => {
                if let Delivery::Gap { .. } = hub.deliver_notification(&note) {
                    self.hold(Held::Notification(note));
                }
            }
            Incoming::Doc(event) => {
                if let Delivery::Gap { .. } = hub.deliver_doc(&event) {
                    let channel = Channel::Doc(event.doc.clone());
                    self.worker.run(&channel, |jobs| jobs.catch_up = true);
                }
            }
            Incoming::Tick { epoch, tick, frame } => {
                let delivered = hub.deliver_tick(&epoch, tick.clone(), frame.clone());
                if let Delivery::Gap { .. } = delivered {
                    let channel = tick.channel.clone();
                    self.worker
                        .run(&channel, |jobs| jobs.hold_tick(epoch, tick, frame));
                }
            }
            Incoming::Presence { epoch, diff, frame } => {
                let delivery = hub.deliver_presence(&epoch, &diff, frame);
                tracing::debug!(
                    ?delivery,
                    offset = diff.offset,
                    epoch,
                    "presence diff from Redis"
                );
                if let Delivery::Gap { .. } = delivery {
                    self.worker
                        .run(&Channel::Presence, |jobs| jobs.catch_up = true);
                }
            }
            // Another instance found a committed message nobody published
            // (its publisher died), or went past its queue's bound.
            Incoming::Head(channel, offset) => self.worker.catch_up_to(&channel, offset),
            Incoming::Awareness {
                from,
                channel,
                frame,
            } => {
                if from != self.instance {
                    hub.deliver_awareness(&channel, frame);
                }
            }
            Incoming::Read(channel) => self.worker.run(&channel, |jobs| jobs.reread = true),
        }
    }

    /// Hands a message that came after a gap to its channel's task.
    fn hold(&self, held: Held) {
        let channel = held.channel();
        self.worker.run(&channel, |jobs| jobs.hold(held));
    }
}
