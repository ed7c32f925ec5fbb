//! Owns the `admin` channel: its subscribers (connections opened with the
//! admin session), the snapshot taken once a second and sent to each of
//! them, and the last one (for a new subscriber and the rendered page).

use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

use super::census::Census;
use super::peers::Peers;
use super::sample::Sampler;
use super::session::Sessions;
use crate::protocol::admin::{AdminSnapshot, Totals, ADMIN_CHANNEL};
use crate::protocol::{ServerMessage, Subscribed};
use crate::server::frames;
use crate::server::hub::{Gone, Hub, SubscriberId};
use crate::server::store::Store;
use crate::server::ws::outbox::Outbox;

/// How often a snapshot is taken and sent.
pub const PERIOD: Duration = Duration::from_secs(1);

/// The admin side of the server; cheap to clone.
#[derive(Clone)]
pub struct Admin(Arc<Inner>);

struct Inner {
    /// Kept by every connection's registration.
    census: Census,
    /// `None` when the admin view is off (no `--admin-key`).
    sessions: Option<Sessions>,
    /// The admin channel's subscribers (the outbox is the connection's).
    subscribers: Mutex<HashMap<SubscriberId, Arc<Outbox>>>,
    /// The last snapshot, and its frame.
    latest: Mutex<Option<(AdminSnapshot, Utf8Bytes)>>,
    /// The admin channel's offsets: one per snapshot.
    sent: AtomicU64,
    /// Snapshots are not kept, so every process start is a new epoch.
    epoch: String,
}

impl Admin {
    /// The admin side; the view is on when `admin_key` is set.
    pub fn new(admin_key: Option<&str>) -> Self {
        Admin(Arc::new(Inner {
            census: Census::default(),
            sessions: admin_key.map(Sessions::new),
            subscribers: Mutex::default(),
            latest: Mutex::default(),
            sent: AtomicU64::new(0),
            epoch: crate::server::hub::new_epoch(),
        }))
    }

    pub fn census(&self) -> &Census {
        &self.0.census
    }

    /// The session keeper, when the admin view is on.
    pub fn sessions(&self) -> Option<&Sessions> {
        self.0.sessions.as_ref()
    }

    /// The last snapshot taken, if any.
    pub fn latest(&self) -> Option<AdminSnapshot> {
        lock(&self.0.latest)
            .as_ref()
            .map(|(snapshot, _)| snapshot.clone())
    }

    /// Subscribes a connection: its answer is a `subscribed` and the last
    /// snapshot; one follows every [`PERIOD`].
    pub fn subscribe(&self, subscriber: SubscriberId, outbox: &Arc<Outbox>) -> Result<(), Gone> {
        let subscribed = ServerMessage::Subscribed(Subscribed {
            channel: ADMIN_CHANNEL.to_owned(),
            epoch: self.0.epoch.clone(),
            offset: self.0.sent.load(Relaxed),
            recovered: false,
            snapshot: None,
        });
        let mut answer = vec![frames::encode(subscribed)];
        // Under the subscribers' lock, so no snapshot is sent between the
        // last one taken and the registration (none is missed or doubled).
        let mut subscribers = lock(&self.0.subscribers);
        if let Some((_, frame)) = lock(&self.0.latest).as_ref() {
            answer.push(frame.clone());
        }
        outbox.push_answer(answer).map_err(|_| Gone)?;
        subscribers.insert(subscriber, outbox.clone());
        Ok(())
    }

    pub fn unsubscribe(&self, subscriber: SubscriberId) {
        lock(&self.0.subscribers).remove(&subscriber);
    }

    /// Keeps `snapshot` as the latest and sends it to every subscriber; a
    /// subscriber whose connection is closing is dropped.
    fn publish(&self, snapshot: AdminSnapshot) {
        let frame = frames::encode(ServerMessage::Admin(Box::new(snapshot.clone())));
        let mut subscribers = lock(&self.0.subscribers);
        *lock(&self.0.latest) = Some((snapshot, frame.clone()));
        self.0.sent.fetch_add(1, Relaxed);
        subscribers.retain(|_, outbox| outbox.push(frame.clone()).is_ok());
    }

    /// Takes a snapshot every [`PERIOD`] until `shutdown`: `render` gives
    /// this instance's metrics text; with `redis` (its URL and key prefix)
    /// the other instances' numbers join it; `store` and Redis are pinged
    /// for their round-trip times.
    pub async fn run(
        self,
        render: impl Fn() -> String + Send,
        hub: Hub,
        store: Store,
        instance: Arc<str>,
        redis: Option<(String, String)>,
        shutdown: CancellationToken,
    ) {
        let prefix = redis
            .as_ref()
            .map_or("pulse", |(_, prefix)| prefix.as_str());
        let mut sampler = Sampler::new(&instance, prefix);
        let mut peers = match &redis {
            Some((url, prefix)) => match Peers::connect(url, prefix, &instance).await {
                Ok(peers) => Some(peers),
                Err(err) => {
                    tracing::warn!(%err, "the admin view shows this instance only: no Redis");
                    None
                }
            },
            None => None,
        };
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Round trips are measured here, once a tick, never per request.
            let postgres = store.round_trip().await;
            let redis = match peers.as_mut() {
                Some(peers) => peers.round_trip().await,
                None => None,
            };
            let at_ms = now_ms();
            let text = render();
            let mut mine = sampler.sample(&text, Instant::now(), at_ms, self.census(), |channel| {
                hub.latest(channel)
            });
            mine.redis_rtt_ms = redis.map(|rtt| rtt.as_secs_f64() * 1000.0);
            mine.postgres_rtt_ms = postgres.map(|rtt| rtt.as_secs_f64() * 1000.0);
            let instances = match peers.as_mut() {
                Some(peers) => peers.exchange(&mine).await,
                None => vec![mine],
            };
            self.publish(AdminSnapshot {
                channel: ADMIN_CHANNEL.to_owned(),
                at_ms,
                instance: instance.to_string(),
                total: Totals::of(&instances),
                instances,
            });
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update is one assignment or map change: a poisoned lock is whole.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
