//! Owns the admin view across instances (`--redis`): each instance writes
//! its numbers once a second to a key of its own with a short TTL and names
//! itself in a set; each reads every instance's numbers back. An instance
//! that stopped writing disappears from the view when its key expires.

use redis::aio::ConnectionManager;

use crate::protocol::admin::InstanceStats;
use crate::server::broker::redis::Keys;

/// How long an instance's numbers stay without being rewritten.
const TTL_SECS: u64 = 5;

/// This instance's link to the others' admin numbers.
pub struct Peers {
    redis: ConnectionManager,
    keys: Keys,
    instance: String,
}

impl Peers {
    pub async fn connect(url: &str, prefix: &str, instance: &str) -> redis::RedisResult<Peers> {
        let redis = redis::Client::open(url)?.get_connection_manager().await?;
        Ok(Peers {
            redis,
            keys: Keys::new(prefix),
            instance: instance.to_owned(),
        })
    }

    /// One `PING`, timed from sending it to its answer; `None` when Redis
    /// did not answer (the connection's own timeouts bound it).
    pub async fn round_trip(&mut self) -> Option<std::time::Duration> {
        let started = std::time::Instant::now();
        let pong: redis::RedisResult<String> =
            redis::cmd("PING").query_async(&mut self.redis).await;
        pong.ok().map(|_| started.elapsed())
    }

    /// Writes `mine` and returns every instance's numbers, `mine` first and
    /// the others by name. With Redis away, only `mine`.
    pub async fn exchange(&mut self, mine: &InstanceStats) -> Vec<InstanceStats> {
        match self.try_exchange(mine).await {
            Ok(all) => all,
            Err(err) => {
                tracing::debug!(%err, "admin numbers not shared through Redis this second");
                vec![mine.clone()]
            }
        }
    }

    async fn try_exchange(
        &mut self,
        mine: &InstanceStats,
    ) -> redis::RedisResult<Vec<InstanceStats>> {
        let json = serde_json::to_string(mine).unwrap_or_default();
        let set = self.keys.admin_instances();
        let (instances,): (Vec<String>,) = redis::pipe()
            .cmd("SET")
            .arg(self.keys.admin_stats(&self.instance))
            .arg(json)
            .arg("EX")
            .arg(TTL_SECS)
            .ignore()
            .cmd("SADD")
            .arg(&set)
            .arg(&self.instance)
            .ignore()
            .cmd("SMEMBERS")
            .arg(&set)
            .query_async(&mut self.redis)
            .await?;
        let mut others: Vec<String> = instances
            .into_iter()
            .filter(|instance| *instance != self.instance)
            .collect();
        others.sort();
        let mut all = vec![mine.clone()];
        if others.is_empty() {
            return Ok(all);
        }
        let keys: Vec<String> = others.iter().map(|i| self.keys.admin_stats(i)).collect();
        let found: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.redis)
            .await?;
        let mut gone = Vec::new();
        for (instance, json) in others.into_iter().zip(found) {
            match json.and_then(|json| serde_json::from_str::<InstanceStats>(&json).ok()) {
                Some(stats) => all.push(stats),
                None => gone.push(instance),
            }
        }
        if !gone.is_empty() {
            // Expired: that instance stopped (or cannot reach Redis).
            let _: redis::RedisResult<()> = redis::cmd("SREM")
                .arg(&set)
                .arg(&gone)
                .query_async(&mut self.redis)
                .await;
        }
        Ok(all)
    }
}
