//! Owns reading what Redis keeps for the channels it numbers, tickers and
//! presence, into the hub: installing a ticker (`OPEN_TICKER`), filling a
//! ticker's gap from its history stream, renewing tickers with no tick yet,
//! and installing presence whole. Run by a channel's task (`fill.rs`),
//! never by the listener.

use std::collections::HashMap;

use axum::extract::ws::Utf8Bytes;

use super::fill::Shared;

/// Tries of one renewal of tickers with no tick yet (a second apart): well
/// within `LINGER`, after which the next sweep renews them anyway.
const RENEW_TRIES: usize = 20;
use super::ticker::{diff_of, in_a_row, tick_of, Opened, StreamEntry, RENEW_BATCH};
use crate::protocol::{Channel, Tick};
use crate::server::hub::{Delivery, PRESENCE_HISTORY};

impl Shared {
    /// Installs a ticker channel from Redis: its epoch (made now if it has
    /// none yet, so that every instance answers the epoch its first tick
    /// will carry), latest offset and kept ticks. While Redis cannot be
    /// read the ticker is served with an epoch of this instance's, until
    /// Redis is back (a catch-up then gives it the cluster's).
    pub(super) async fn load_ticker(&self, channel: &Channel) {
        if self.hub.has(channel) {
            return;
        }
        let mut redis = self.redis.clone();
        let opened: redis::RedisResult<Opened> = self
            .scripts
            .open(&self.keys, channel)
            .invoke_async(&mut redis)
            .await;
        match opened {
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

    /// Delivers the ticks this hub lacks of a ticker it holds at `latest`.
    /// One with no tick yet is opened again with the others
    /// (`renew_unticked`), a batch per round trip. False if Redis could not
    /// be read (tried again).
    pub(super) async fn catch_up_ticker(&self, channel: &Channel, latest: u64) -> bool {
        if latest == 0 {
            return true;
        }
        let Some(epoch) = self.hub.epoch_of(channel) else {
            return true;
        };
        // Redis may have started a new epoch meanwhile (it lost its keys,
        // or came back from an older snapshot): then the whole new history
        // is delivered, and its first tick renews the subscribers.
        match self.epoch_in_redis(channel).await {
            Some(current) if current != epoch => self.fill_ticks(channel, &current, 0, None).await,
            _ => self.fill_ticks(channel, &epoch, latest, None).await,
        }
    }

    /// Delivers a tick that came after a gap, filling the gap from the
    /// ticker's history in Redis first.
    pub(super) async fn deliver_tick_held(
        &self,
        channel: &Channel,
        epoch: &str,
        tick: Tick,
        frame: Utf8Bytes,
    ) {
        let hub = &self.hub;
        if let Delivery::Gap { latest } = hub.deliver_tick(epoch, tick.clone(), frame.clone()) {
            self.fill_ticks(channel, epoch, latest, Some(tick.offset))
                .await;
            if let Delivery::Gap { .. } = hub.deliver_tick(epoch, tick.clone(), frame.clone()) {
                hub.deliver_tick_after_gap(epoch, tick, frame);
            }
        }
    }

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

    /// Delivers the ticks of `channel` after `latest` (and before `before`)
    /// from the Redis history; false if Redis could not be read.
    async fn fill_ticks(
        &self,
        channel: &Channel,
        epoch: &str,
        latest: u64,
        before: Option<u64>,
    ) -> bool {
        let mut redis = self.redis.clone();
        let (_, _, history_key) = self.keys.sequenced(channel);
        let end = match before {
            Some(before) if before > latest + 1 => format!("{}-1", before - 1),
            Some(_) => return true,
            None => "+".to_owned(),
        };
        let entries: redis::RedisResult<Vec<StreamEntry>> = redis::cmd("XRANGE")
            .arg(&history_key)
            .arg(format!("{}-0", latest + 1))
            .arg(end)
            .query_async(&mut redis)
            .await;
        match entries {
            Ok(entries) => {
                let frames = entries.iter().filter_map(|(_, fields)| fields.get("f"));
                self.deliver_ticks(epoch, frames);
                true
            }
            Err(err) => {
                tracing::warn!(%err, %channel, "cannot fill ticks from Redis");
                false
            }
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

    /// Opens again every ticker in `unticked` (held with no tick yet; after
    /// a reconnect, and every `LINGER`), `RENEW_BATCH` per round trip: see
    /// `reopened`.
    pub(super) async fn renew_unticked(&self, unticked: Vec<Channel>) {
        // Redis just came back, and the shared connection may not have
        // yet: tried again every second, until the next sweep would.
        for _ in 0..RENEW_TRIES {
            if self.renew_batches(&unticked).await {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// One try of `renew_unticked`; false if Redis did not answer.
    async fn renew_batches(&self, unticked: &[Channel]) -> bool {
        for batch in unticked.chunks(RENEW_BATCH) {
            let mut pipe = redis::pipe();
            pipe.load_script(&self.scripts.open).ignore();
            for channel in batch {
                pipe.invoke_script(&self.scripts.open(&self.keys, channel));
            }
            let mut redis = self.redis.clone();
            match pipe.query_async::<Vec<Opened>>(&mut redis).await {
                Ok(opened) => {
                    for (channel, opened) in batch.iter().zip(opened) {
                        self.reopened(channel, opened);
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "cannot renew tickers with no tick yet in Redis");
                    return false;
                }
            }
        }
        true
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

    /// Installs the cluster's presence from Redis (atomically read: the
    /// epoch, the latest offset, who is online at it, and the kept diffs);
    /// nothing before the leader's first diff. False if Redis could not be
    /// read (tried again).
    pub(super) async fn load_presence(&self) -> bool {
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
                    .map(String::as_str)
                    .filter_map(crate::protocol::relay::decode_shown)
                    .collect();
                let newest_first = entries.iter().filter_map(|(_, fields)| {
                    let frame = fields.get("f")?;
                    Some((diff_of(frame)?, Utf8Bytes::from(frame.clone())))
                });
                let recent = in_a_row(newest_first, latest, |(diff, _)| diff.offset);
                self.hub.install_presence(epoch, latest, users, recent);
                true
            }
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(%err, "cannot load presence from Redis; retrying");
                false
            }
        }
    }
}
