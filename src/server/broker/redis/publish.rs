//! Owns publishing to Redis: one task takes everything waiting in the
//! queue (`broker/queue.rs`) and sends it in one pipeline, one round trip
//! however much waited: messages in commit order, then ticks (each given
//! the cluster's offset by `TICK_SCRIPT`), then awareness.
//!
//! Nothing waits for it here: this instance delivered its messages before
//! queueing them. When Redis cannot take a batch its never-dropped messages
//! go back to the front of the queue and are sent again once it answers
//! (the other instances catch up from the store on their reconnect anyway,
//! and take what they hold already as known); its ticks are answered
//! `None` (prices go on from the last quote) and its awareness dropped.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::keys::Keys;
use super::ticker::Scripts;
use super::wire;
use crate::server::broker::queue::{Batch, Outgoing};
use crate::server::metrics::RelayGauges;

/// How long to wait before sending a batch Redis did not take again.
const RETRY: Duration = Duration::from_secs(1);

/// Publishes what `queue` holds until it is closed. `instance` fences the
/// simulator's ticks (and names this instance's awareness).
pub(super) async fn publish(
    mut redis: ConnectionManager,
    queue: Arc<Outgoing>,
    instance: String,
    keys: Keys,
    gauges: RelayGauges,
) {
    let scripts = Scripts::new();
    while let Some(batch) = queue.next().await {
        let waited = batch
            .since
            .map_or(0.0, |since| since.elapsed().as_secs_f64());
        gauges.lag.set(waited);
        let failed = send(&mut redis, &scripts, &keys, &instance, batch).await;
        if let Some(Batch { ordered, since, .. }) = failed {
            if let Some(since) = since {
                queue.requeue(ordered, since);
            }
            tokio::time::sleep(RETRY).await;
        }
        gauges.lag.set(queue.lag());
    }
}

/// Sends one batch in one pipeline; answers the batch back when Redis
/// could not be reached (its ticks answered already).
async fn send(
    redis: &mut ConnectionManager,
    scripts: &Scripts,
    keys: &Keys,
    instance: &str,
    batch: Batch,
) -> Option<Batch> {
    let mut pipe = redis::pipe();
    if !batch.ticks.is_empty() {
        pipe.load_script(&scripts.tick).ignore();
    }
    for publication in &batch.ordered {
        pipe.cmd("PUBLISH")
            .arg(keys.channel(publication.channel()))
            .arg(wire::encode(publication))
            .ignore();
    }
    for job in &batch.ticks {
        let fence = if job.fenced { instance } else { "" };
        pipe.invoke_script(&scripts.tick(keys, &job.quote, fence));
    }
    for (channel, frame) in &batch.awareness {
        pipe.cmd("PUBLISH")
            .arg(keys.channel(channel))
            .arg(wire::encode_awareness(frame.as_str(), instance))
            .ignore();
    }
    let answered: redis::RedisResult<Vec<i64>> = pipe.query_async(redis).await;
    let Batch {
        ordered,
        ticks,
        since,
        ..
    } = batch;
    let offsets = match answered {
        Ok(offsets) => offsets,
        Err(err) => {
            let unreachable = err.is_io_error()
                || err.is_connection_dropped()
                || err.is_connection_refusal()
                || err.is_timeout();
            tracing::warn!(%err, messages = ordered.len(), ticks = ticks.len(), "cannot publish through Redis");
            for job in ticks {
                for answer in job.answers {
                    let _ = answer.send(None);
                }
            }
            // A batch Redis refused (not one it never got) is not sent again.
            return unreachable.then_some(Batch {
                ordered,
                since,
                ..Batch::default()
            });
        }
    };
    for (job, offset) in ticks.into_iter().zip(offsets) {
        let offset = if offset > 0 {
            Some(offset as u64)
        } else {
            tracing::debug!(symbol = %job.quote.symbol, "a tick of a simulator that lost its lease; not published");
            None
        };
        for answer in job.answers {
            let _ = answer.send(offset);
        }
    }
    None
}
