//! Owns who is online across instances. Each instance writes its own
//! identified connections to Redis (a hash per instance, refreshed by a
//! heartbeat, so an instance that dies takes its connections with it when
//! the hash expires); one instance at a time, the holder of the lease
//! `pulse:presence:leader`, reads them all, decides with the same rules as
//! one instance (tabs collapse, away, the grace, the coalescing window:
//! `hub/presence.rs`) and publishes one stream of diffs with the cluster's
//! offsets. Every instance follows that stream (`listen.rs`).
//!
//! The leader is level-triggered: an event only names the instance whose
//! hash changed, and the leader reads that hash again, so an event lost
//! (Redis away, a new leader) costs nothing but the next heartbeat's read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::{FutureExt, StreamExt};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::protocol::{Channel, PresenceDiff, PresenceUser, ServerMessage, UserRef, UserStatus};
use crate::server::frames;
use crate::server::hub::presence_now as now;
use crate::server::hub::{Presence, PresenceChange};
use crate::server::hub::{PresenceEvent, SubscriberId, WeakHub, PRESENCE_HISTORY};

use super::keys::Keys;
use super::lease::Lease;
use super::ticker::OFFSET_MARK;

/// How often an instance refreshes its hash, and the leader reads them all.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Every how many heartbeats an instance writes its hash whole.
const REWRITE_EVERY: u32 = 10;
/// How long a user a new leader (or a new epoch) takes over stays listed
/// without a connection read: instances that lost Redis too take a few
/// reconnection attempts to write their hashes again.
const SEED_STAY: Duration = Duration::from_secs(6);
/// How long an instance's hash outlives its last heartbeat.
pub(super) const EXPIRY: Duration = Duration::from_secs(3);

/// One identified connection, as its instance reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Conn {
    user: UserRef,
    status: UserStatus,
}

/// Writes the connections a batch of events touched into an instance's
/// hash, refreshes its expiry and names the instance on [`EVENTS`]; answers
/// 0 (and writes nothing) when the hash must exist and does not: the
/// reporter then writes it whole. KEYS: the hash. ARGV: '1' if it must
/// exist, the expiry in ms, the events channel, the instance, then
/// (connection id, entry JSON, or '' for a closed one) pairs.
const CHANGE_SCRIPT: &str = r"
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Keeps this instance's connections in its hash: each change at once
/// (then names this instance on [`EVENTS`]), and a heartbeat that keeps the
/// hash alive and writes it whole again when Redis lost it.
pub(super) async fn report(
    mut redis: ConnectionManager,
    (instance, keys): (String, Keys),
    mut events: mpsc::UnboundedReceiver<PresenceEvent>,
) {
    let hash = keys.presence_connections(&instance);
    let (instances, events_channel) = (keys.presence_instances(), keys.presence_events());
    let write = redis::Script::new(CHANGE_SCRIPT);
    let mut table: BTreeMap<SubscriberId, Conn> = BTreeMap::new();
    // Whether Redis may not hold the table as it is (at start, after an error).
    let mut stale = true;
    let mut beat = tokio::time::interval(HEARTBEAT);
    let mut beats: u32 = 0;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                let mut touched = BTreeSet::new();
                touched.insert(apply(&mut table, event));
                while let Ok(event) = events.try_recv() {
                    touched.insert(apply(&mut table, event));
                }
                if stale {
                    continue;
                }
                // Entries this batch did not touch must still be in Redis:
                // if the hash is gone (Redis restarted, this instance
                // stalled), writing the touched ones alone would hide them.
                let untouched = table.keys().any(|id| !touched.contains(id));
                let mut change = write.prepare_invoke();
                change
                    .key(&hash)
                    .arg(if untouched { "1" } else { "0" })
                    .arg(EXPIRY.as_millis() as u64)
                    .arg(&events_channel)
                    .arg(&instance);
                for id in touched {
                    change.arg(id).arg(table.get(&id).map(json).unwrap_or_default());
                }
                match change.invoke_async::<i64>(&mut redis).await {
                    Ok(1) => {}
                    Ok(_) => stale = true,
                    Err(err) => {
                        tracing::warn!(%err, "cannot report presence to Redis; retrying");
                        stale = true;
                    }
                }
            }
            _ = beat.tick() => {
                // Now and then the hash is written whole anyway: a Redis
                // that came back with an older copy of it (restored from a
                // snapshot, a lagging replica) is put right within seconds.
                beats += 1;
                if beats.is_multiple_of(REWRITE_EVERY) {
                    stale = true;
                }
                if !stale {
                    let alive: redis::RedisResult<(i64, bool)> = redis::pipe()
                        .sadd(&instances, &instance)
                        .pexpire(&hash, EXPIRY.as_millis() as i64)
                        .query_async(&mut redis)
                        .await;
                    match alive {
                        // The hash is gone though connections are open:
                        // Redis lost it (restarted) or this instance stalled.
                        Ok((_, false)) if !table.is_empty() => stale = true,
                        Ok(_) => {}
                        Err(_) => stale = true,
                    }
                }
                if stale {
                    let mut pipe = redis::pipe();
                    pipe.atomic().del(&hash).ignore();
                    for (id, conn) in &table {
                        pipe.hset(&hash, id, json(conn)).ignore();
                    }
                    pipe.pexpire(&hash, EXPIRY.as_millis() as i64)
                        .ignore()
                        .sadd(&instances, &instance)
                        .ignore()
                        .publish(&events_channel, &instance)
                        .ignore();
                    let written: redis::RedisResult<()> = pipe.query_async(&mut redis).await;
                    stale = written.is_err();
                }
            }
        }
    }
}

/// Applies one event to the table; returns the connection it touched.
fn apply(table: &mut BTreeMap<SubscriberId, Conn>, event: PresenceEvent) -> SubscriberId {
    match event {
        PresenceEvent::Connect(id, user) => {
            table.insert(
                id,
                Conn {
                    user,
                    status: UserStatus::Online,
                },
            );
            id
        }
        PresenceEvent::Disconnect(id) => {
            table.remove(&id);
            id
        }
        PresenceEvent::Status(id, status) => {
            if let Some(conn) = table.get_mut(&id) {
                conn.status = status;
            }
            id
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Gives a diff the next offset of the presence stream and publishes it,
/// atomically with the stream's history and the list of who is online, if
/// the caller still holds the leader's lease (else -1: a leader that lost it
/// while paused publishes nothing). Answers nil when the epoch is gone
/// (Redis lost its keys) or was made by another run of Redis (restored from
/// a snapshot: its offsets may be reused; an epoch ends with `.` and the
/// first 12 hex digits of its Redis's `run_id`): the leader then starts a
/// new epoch with its whole list ([`RESET_SCRIPT`]).
/// KEYS: offset, epoch, history, users, the lease. ARGV: the frame with the
/// offset mark, the mark, the history length, the Redis channel, the
/// instance, the number of users to set, then (id, user) pairs to set,
/// then ids to remove.
const DIFF_SCRIPT: &str = r#"
if redis.call('GET', KEYS[5]) ~= ARGV[5] then return -1 end
local run = string.sub(string.match(redis.call('INFO', 'server'), 'run_id:(%x+)'), 1, 12)
local epoch = redis.call('GET', KEYS[2])
if not epoch or string.sub(epoch, -13) ~= '.' .. run then return false end
local offset = redis.call('INCR', KEYS[1])
local frame = string.gsub(ARGV[1], ARGV[2], tostring(offset), 1)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], tostring(offset) .. '-1', 'f', frame)
local sets = tonumber(ARGV[6])
for i = 7, 6 + 2 * sets, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
for i = 7 + 2 * sets, #ARGV do redis.call('HDEL', KEYS[4], ARGV[i]) end
redis.call('PUBLISH', ARGV[4], '{"epoch":"' .. epoch .. '","frame":' .. frame .. '}')
return offset
"#;

/// Starts a new epoch of the presence stream at offset 1, with the
/// leader's whole list as its first diff (every user a join), if the caller
/// still holds the leader's lease (else -1).
/// KEYS: offset, epoch, history, users, the lease. ARGV: the frame, the new
/// epoch, the history length, the Redis channel, the instance, then (id,
/// user) pairs.
const RESET_SCRIPT: &str = r#"
if redis.call('GET', KEYS[5]) ~= ARGV[5] then return -1 end
local run = string.sub(string.match(redis.call('INFO', 'server'), 'run_id:(%x+)'), 1, 12)
local epoch = ARGV[2] .. '.' .. run
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('SET', KEYS[1], 1)
redis.call('SET', KEYS[2], epoch)
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '1-1', 'f', ARGV[1])
redis.call('PUBLISH', ARGV[4], '{"epoch":"' .. epoch .. '","frame":' .. ARGV[1] .. '}')
return 1
"#;

/// Whether `epoch` was made by the Redis whose `INFO server` is `info`:
/// the scripts end every epoch with `.` and the first 12 hex digits of the
/// `run_id` (a new one at every Redis start).
fn of_this_run(epoch: &str, info: &str) -> bool {
    let run = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("run_id:"))
        .unwrap_or_default();
    run.len() >= 12 && epoch.ends_with(&format!(".{}", &run[..12]))
}

/// A `presence_diff` frame telling `change` at `offset`.
fn diff_frame(offset: u64, change: &PresenceChange) -> Utf8Bytes {
    frames::encode(ServerMessage::PresenceDiff(PresenceDiff {
        channel: Channel::Presence.to_string(),
        offset,
        joins: change.joins.clone(),
        leaves: change.leaves.clone(),
        updates: change.updates.clone(),
    }))
}

/// Starts a call of one of the stream's scripts: the keys both take, then
/// the frame, `second` (the offset mark, or a new epoch), the history's
/// length, the Redis channel and the leader's instance.
fn invoke<'a>(
    script: &'a redis::Script,
    frame: &str,
    second: String,
    instance: &str,
    keys: &Keys,
) -> redis::ScriptInvocation<'a> {
    let (offset_key, epoch_key, history_key) = keys.sequenced(&Channel::Presence);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(offset_key)
        .key(epoch_key)
        .key(history_key)
        .key(keys.presence_users())
        .key(keys.presence_leader())
        .arg(frame)
        .arg(second)
        .arg(PRESENCE_HISTORY)
        .arg(keys.channel(&Channel::Presence))
        .arg(instance);
    invocation
}

/// A connection anywhere in the cluster: its instance and its id there.
type Global = (String, SubscriberId);

/// Why a leader stopped leading before its lease ended.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("the pub/sub connection closed")]
    PubSub,
    #[error("another instance holds the lease")]
    Lease,
}

/// The leader's state while it holds the lease.
struct Leader {
    redis: ConnectionManager,
    /// This instance (what the lease holds).
    instance: String,
    /// This deployment's key names.
    keys: Keys,
    presence: Presence<Global>,
    /// Each instance's connections as last read.
    known: HashMap<String, BTreeMap<SubscriberId, Conn>>,
    /// The stream must start a new epoch with the whole list (none yet,
    /// Redis lost it, or a diff could not be published).
    reset: bool,
    diff: redis::Script,
    restart: redis::Script,
}

/// Leads the cluster's presence whenever this instance holds the lease.
/// `hub` is this instance's: when Redis lost the stream, the new epoch
/// starts from what its subscribers were shown.
pub(super) async fn lead(
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
                    .filter_map(|user| serde_json::from_str::<PresenceUser>(user).ok());
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
                .filter_map(|(id, conn)| Some((id.parse().ok()?, serde_json::from_str(conn).ok()?)))
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

    /// Publishes a change as the stream's next diff (or, when the stream
    /// must start again, the whole list as a new epoch's first diff).
    /// `Err(Lost::Lease)` when another instance holds the lease now.
    async fn publish(&mut self, change: PresenceChange) -> Result<(), Lost> {
        if !self.reset {
            if change.is_empty() {
                return Ok(());
            }
            let frame = diff_frame(OFFSET_MARK, &change);
            let mark = OFFSET_MARK.to_string();
            let mut invocation =
                invoke(&self.diff, frame.as_str(), mark, &self.instance, &self.keys);
            invocation.arg(change.joins.len() + change.updates.len());
            for user in change.joins.iter().chain(&change.updates) {
                invocation.arg(&user.id).arg(json(user));
            }
            for user in &change.leaves {
                invocation.arg(&user.id);
            }
            match invocation
                .invoke_async::<Option<i64>>(&mut self.redis)
                .await
            {
                Ok(Some(-1)) => return Err(Lost::Lease),
                Ok(Some(_)) => return Ok(()),
                Ok(None) => tracing::warn!("Redis lost the presence stream; starting a new epoch"),
                Err(err) => {
                    tracing::warn!(%err, "cannot publish presence; starting a new epoch once Redis answers")
                }
            }
            self.reset = true;
        }
        let users = self.presence.users();
        let everyone = PresenceChange {
            joins: users.clone(),
            ..PresenceChange::default()
        };
        let frame = diff_frame(1, &everyone);
        let epoch = crate::server::hub::new_epoch();
        let mut invocation = invoke(
            &self.restart,
            frame.as_str(),
            epoch,
            &self.instance,
            &self.keys,
        );
        for user in &users {
            invocation.arg(&user.id).arg(json(user));
        }
        match invocation.invoke_async::<i64>(&mut self.redis).await {
            Ok(-1) => return Err(Lost::Lease),
            Ok(_) => {
                tracing::info!(users = users.len(), "started a new presence epoch");
                self.reset = false;
            }
            Err(err) => tracing::warn!(%err, "cannot start a new presence epoch; retrying"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::of_this_run;

    #[test]
    fn an_epoch_belongs_to_the_redis_run_that_made_it() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:42134c122057703c14a37d6cea4160d0c7c2e862\r\n";
        assert!(of_this_run("9f3a.42134c122057", info));
        assert!(!of_this_run("9f3a.000000000000", info));
        assert!(!of_this_run("9f3a", info));
        assert!(!of_this_run("9f3a.42134c122057", "# Server\r\n"));
    }
}
