//! Every instance's side of the cluster's presence: keeps this instance's
//! identified connections in a Redis hash of its own (each change at once,
//! a heartbeat keeping it alive and writing it whole when Redis lost it) and
//! names this instance on the events channel so the leader reads it again.

use std::collections::{BTreeMap, BTreeSet};

use redis::aio::ConnectionManager;

use crate::protocol::UserStatus;
use crate::server::hub::{PresenceEvent, Reported, SubscriberId};

use super::super::keys::Keys;
use super::{Conn, EXPIRY, HEARTBEAT, REWRITE_EVERY};

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

/// Keeps this instance's connections in its hash: each change at once (or,
/// while a write is under way, every connection's latest state after it)
/// (then names this instance on [`EVENTS`]), and a heartbeat that keeps the
/// hash alive and writes it whole again when Redis lost it.
pub(in super::super) async fn report(
    mut redis: ConnectionManager,
    (instance, keys): (String, Keys),
    mut events: Reported,
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
            batch = events.recv() => {
                // Every connection's latest state at once (the queue keeps
                // one per connection, so it stays bounded while Redis is slow).
                let Some(batch) = batch else { return };
                let mut touched = BTreeSet::new();
                for event in batch {
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
                    change.arg(id).arg(table.get(&id).map(Conn::to_json).unwrap_or_default());
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
                        pipe.hset(&hash, id, conn.to_json()).ignore();
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
