//! Owns leases: of all instances on one Redis, the one holding a lease's key
//! (`SET NX PX`, renewed every second by its holder, expiring 3 s after the
//! holder stops renewing) does that lease's job once for the cluster. The
//! holder of `pulse:simulator` runs the market simulator, so prices move
//! once per cluster; when it dies another instance takes the lease within a
//! few seconds and goes on from the last published quotes (`pulse:quotes`).
//! The holder of `pulse:presence:leader` decides who is online
//! (`presence/`). What a holder publishes is fenced in Redis itself (the
//! scripts check the lease's key), so a holder paused past its lease never
//! publishes beside the new one.

use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::watch;

/// How long the lease lasts unless renewed.
const TTL: Duration = Duration::from_secs(3);
/// How often the holder renews it, and others try to take it.
const EVERY: Duration = Duration::from_secs(1);

/// Renews the lease only if this instance still holds it.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Gives the lease up only if this instance holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// This instance's view of the lease.
#[derive(Clone)]
pub struct Lease {
    holding: watch::Receiver<bool>,
    redis: ConnectionManager,
    /// Where the last price of every symbol is kept (`Keys::quotes`).
    quotes: String,
}

impl Lease {
    /// Starts trying to take (and then renewing) the lease `key` as
    /// `instance`; it is let go once every copy of this `Lease` is dropped.
    /// `gauge` is 1 while this instance holds the lease, else 0
    /// (`pulse_lease_held{lease}`).
    pub(super) fn spawn(
        redis: ConnectionManager,
        key: String,
        instance: String,
        quotes: String,
        gauge: Gauge,
    ) -> Lease {
        let (held, holding) = watch::channel(false);
        tokio::spawn(hold(redis.clone(), key, instance, held, gauge));
        Lease {
            holding,
            redis,
            quotes,
        }
    }

    /// Waits until this instance holds the lease (or the lease task ended).
    pub async fn held(&mut self) -> bool {
        self.holding.wait_for(|held| *held).await.is_ok()
    }

    /// Whether this instance holds the lease now.
    pub fn holds(&self) -> bool {
        *self.holding.borrow()
    }

    /// The last published price of every symbol (empty if Redis cannot say).
    pub async fn last_prices(&self) -> HashMap<String, f64> {
        let mut redis = self.redis.clone();
        redis::cmd("HGETALL")
            .arg(&self.quotes)
            .query_async(&mut redis)
            .await
            .unwrap_or_default()
    }
}

async fn hold(
    mut redis: ConnectionManager,
    key: String,
    instance: String,
    held: watch::Sender<bool>,
    gauge: Gauge,
) {
    let renew = redis::Script::new(RENEW);
    let release = redis::Script::new(RELEASE);
    let ttl_ms = TTL.as_millis() as u64;
    let mut timer = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            // The simulator ended (the server is shutting down): let the
            // lease go now rather than when it expires.
            () = held.closed() => {
                gauge.set(0);
                let _: redis::RedisResult<i64> = release.key(&key).arg(&instance).invoke_async(&mut redis).await;
                return;
            }
        }
        let holding = if *held.borrow() {
            let renewed: redis::RedisResult<i64> = renew
                .key(&key)
                .arg(&instance)
                .arg(ttl_ms)
                .invoke_async(&mut redis)
                .await;
            matches!(renewed, Ok(1))
        } else {
            let taken: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(&key)
                .arg(&instance)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut redis)
                .await;
            matches!(taken, Ok(Some(_)))
        };
        if holding != *held.borrow() {
            if holding {
                tracing::info!(lease = key, "this instance holds the lease");
            } else {
                tracing::warn!(lease = key, "this instance no longer holds the lease");
            }
            gauge.set(i64::from(holding));
            if held.send(holding).is_err() {
                return;
            }
        }
    }
}
