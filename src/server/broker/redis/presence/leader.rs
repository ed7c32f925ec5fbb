//! The lease holder's side of the cluster's presence: while this instance
//! holds `pulse:presence:leader` it reads every instance's connections
//! (level-triggered: an event only names an instance to read again) and
//! decides with the one `Presence` for the cluster; `stream.rs` publishes
//! what it decided.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::ConnectionManager;

use crate::protocol::{relay, Channel, UserStatus};
use crate::server::hub::presence_now as now;
use crate::server::hub::{Presence, PresenceChange, SubscriberId, WeakHub};

use super::super::keys::Keys;
use super::super::lease::Lease;
use super::stream::{of_this_run, DIFF_SCRIPT, RESET_SCRIPT};
use super::{Conn, HEARTBEAT, SEED_STAY};

/// A connection anywhere in the cluster: its instance and its id there.
type Global = (String, SubscriberId);

/// Why a leader stopped leading before its lease ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum Lost {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("the pub/sub connection closed")]
    PubSub,
    #[error("another instance holds the lease")]
    Lease,
}

/// The leader's state while it holds the lease.
pub(super) struct Leader {
    pub(super) redis: ConnectionManager,
    /// This instance (what the lease holds).
    pub(super) instance: String,
    /// This deployment's key names.
    pub(super) keys: Keys,
    pub(super) presence: Presence<Global>,
    /// Each instance's connections as last read.
    known: HashMap<String, BTreeMap<SubscriberId, Conn>>,
    /// The stream must start a new epoch with the whole list (none yet,
    /// Redis lost it, or a diff could not be published).
    pub(super) reset: bool,
    pub(super) diff: redis::Script,
    pub(super) restart: redis::Script,
}

/// Leads the cluster's presence whenever this instance holds the lease.
/// `hub` is this instance's: when Redis lost the stream, the new epoch
/// starts from what its subscribers were shown.
pub(in super::super) async fn lead(
    client: redis::Client,
    redis: ConnectionManager,
    (mut lease, instance, keys): (Lease, String, Keys),
    grace: Duration,
    hub: WeakHub,
) {
    loop {
        // Ends with the server (its hub).
        if hub.upgrade().is_none() {
            return;
        }
        tokio::select! {
            held = lease.held() => if !held { return },
            () = tokio::time::sleep(HEARTBEAT) => continue,
        }
        tracing::info!("this instance leads the cluster's presence");
        let mut leader = Leader {
            redis: redis.clone(),
            instance: instance.clone(),
            keys: keys.clone(),
            presence: Presence::new(grace),
            known: HashMap::new(),
            reset: false,
            diff: redis::Script::new(DIFF_SCRIPT),
            restart: redis::Script::new(RESET_SCRIPT),
        };
        match leader.run(&client, &lease, &hub).await {
            Ok(()) | Err(Lost::Lease) => {}
            Err(err) => tracing::warn!(%err, "lost Redis while leading presence"),
        }
        tracing::info!("this instance no longer leads the cluster's presence");
        tokio::time::sleep(HEARTBEAT).await;
    }
}

impl Leader {
    /// Takes over what was shown, then follows every instance's
    /// connections until the lease is lost (Ok) or Redis is (Err).
    async fn run(
        &mut self,
        client: &redis::Client,
        lease: &Lease,
        hub: &WeakHub,
    ) -> Result<(), Lost> {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(self.keys.presence_events()).await?;
        let (epoch, shown): (Option<String>, HashMap<String, String>) = redis::pipe()
            .atomic()
            .get(self.keys.sequenced(&Channel::Presence).1)
            .hgetall(self.keys.presence_users())
            .query_async(&mut self.redis)
            .await?;
        match epoch {
            Some(_) => {
                let shown = shown
                    .values()
                    .map(String::as_str)
                    .filter_map(relay::decode_shown);
                self.presence.seed(shown, SEED_STAY, now());
            }
            // Redis lost the stream (or none was ever started): the new
            // epoch starts from what this instance's subscribers were shown,
            // each user in their grace until a connection of theirs is read
            // again (instances write their hashes anew within a heartbeat),
            // so nobody still connected drops out of the list.
            None => {
                let shown = hub.upgrade().map(|hub| hub.presence_users());
                self.presence
                    .seed(shown.unwrap_or_default(), SEED_STAY, now());
                self.reset = true;
            }
        }
        self.read_all().await?;
        let mut events = pubsub.on_message();
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            let next = self.presence.next_deadline();
            tokio::select! {
                message = events.next() => {
                    let Some(message) = message else {
                        return Err(Lost::PubSub);
                    };
                    // Every instance named since: one read each.
                    let mut named = BTreeSet::new();
                    named.insert(message.get_payload::<String>().unwrap_or_default());
                    while let Some(Some(message)) = events.next().now_or_never() {
                        named.insert(message.get_payload::<String>().unwrap_or_default());
                    }
                    let named: Vec<String> = named.into_iter().collect();
                    self.read(&named).await?;
                }
                _ = beat.tick() => {
                    if !lease.holds() || hub.upgrade().is_none() {
                        return Ok(());
                    }
                    self.read_all().await?;
                }
                _ = async { tokio::time::sleep_until(next.unwrap_or_else(now).into()).await }, if next.is_some() => {
                    let change = self.presence.due(now());
                    self.publish(change).await?;
                }
            }
        }
    }

    /// Reads every instance's connections (those that reported, and those
    /// known), forgets instances with none, and publishes what changed.
    async fn read_all(&mut self) -> Result<(), Lost> {
        // Who reported, and whether Redis still has the stream, in one trip.
        let (listed, epoch, info): (Vec<String>, Option<String>, String) = redis::pipe()
            .smembers(self.keys.presence_instances())
            .get(self.keys.sequenced(&Channel::Presence).1)
            .cmd("INFO")
            .arg("server")
            .query_async(&mut self.redis)
            .await?;
        let mut instances: BTreeSet<String> = listed.into_iter().collect();
        instances.extend(self.known.keys().cloned());
        let instances: Vec<String> = instances.into_iter().collect();
        let empty = self.read(&instances).await?;
        if !empty.is_empty() {
            // Its next heartbeat lists a live instance again.
            let _: redis::RedisResult<()> = redis::cmd("SREM")
                .arg(self.keys.presence_instances())
                .arg(&empty)
                .query_async(&mut self.redis)
                .await;
        }
        if !epoch.is_some_and(|epoch| of_this_run(&epoch, &info)) {
            self.reset = true;
        }
        if self.reset {
            self.publish(PresenceChange::default()).await?;
        }
        Ok(())
    }

    /// Reads the connections of `instances` and publishes what changed;
    /// answers the instances that have none.
    async fn read(&mut self, instances: &[String]) -> Result<Vec<String>, Lost> {
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for instance in instances {
            pipe.hgetall(self.keys.presence_connections(instance));
        }
        let tables: Vec<HashMap<String, String>> = pipe.query_async(&mut self.redis).await?;
        let at = now();
        let mut change = PresenceChange::default();
        let mut empty = Vec::new();
        for (instance, table) in instances.iter().zip(tables) {
            let fresh: BTreeMap<SubscriberId, Conn> = table
                .iter()
                .filter_map(|(id, conn)| Some((id.parse().ok()?, Conn::from_json(conn)?)))
                .collect();
            if fresh.is_empty() {
                empty.push(instance.clone());
            }
            let old = self.known.remove(instance).unwrap_or_default();
            for (id, conn) in &old {
                if !fresh.contains_key(id) {
                    let global = (instance.clone(), *id);
                    change.merge(self.presence.disconnect(&conn.user.id, &global, at));
                }
            }
            for (id, conn) in &fresh {
                let global = (instance.clone(), *id);
                let was = old.get(id);
                if was.is_none() {
                    change.merge(self.presence.connect(&conn.user, global.clone(), at));
                }
                if was.map_or(UserStatus::Online, |was| was.status) != conn.status {
                    let user = &conn.user.id;
                    change.merge(self.presence.set_status(user, &global, conn.status, at));
                }
            }
            if !fresh.is_empty() {
                self.known.insert(instance.clone(), fresh);
            }
        }
        self.publish(change).await?;
        Ok(empty)
    }
}
