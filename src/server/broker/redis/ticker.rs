//! Owns the tickers' Redis side: the Lua scripts that give a tick the
//! cluster's next offset (`TICK_SCRIPT`) and open a ticker for an instance
//! about to serve it (`OPEN_TICKER`), and reading what they keep (a
//! ticker's history stream) back into ticks.

use std::collections::HashMap;
use std::time::Duration;

use crate::protocol::{relay, Channel, PresenceDiff, ServerMessage, Tick};
use crate::server::frames;
use crate::server::hub::{Quote, TICKER_HISTORY};

use super::keys::Keys;
use super::wire;

/// How long Redis keeps the epoch of a ticker that has had no tick yet once
/// no instance holds it (each holder renews it every `LINGER`); its first
/// tick keeps it for good. So a subscribe to a made-up symbol costs Redis
/// nothing for long.
pub(super) const UNTICKED_TTL: Duration = Duration::from_secs(90);

/// Tickers with no tick yet renewed per round trip to Redis.
pub(super) const RENEW_BATCH: usize = 256;

/// Gives a tick the cluster's next offset of its channel and publishes it,
/// atomically: the offset (`INCR`), the epoch (kept while the offsets are:
/// a Redis that lost them, never had them, or started again from an older
/// snapshot starts a new one: every epoch ends with `.` and the first 12
/// hex digits of the `run_id` of the Redis that made it, which changes at
/// every Redis start, so offsets are never reused under one epoch; the epoch
/// that `OPEN_TICKER` gave subscribers before the first tick, with offset 0,
/// is kept, and from this tick on kept for good), the bounded history (a stream
/// whose ids are the offsets), the symbol's last quote (where a new
/// simulator resumes) and the `PUBLISH` of the message `protocol::relay`
/// built (`encode_sequenced`), the script writing the offset and the epoch
/// in place of their marks: it writes no JSON of its own.
/// A simulator's tick is fenced: published only while Redis says this
/// instance holds the simulator's lease (else -1, and nothing changes), so
/// a holder paused past its lease never publishes beside the new one.
/// KEYS: offset, epoch, history, quotes, the simulator's lease. ARGV: the
/// frame with `OFFSET_MARK` for its offset, an epoch should none exist, the
/// symbol, the price, the Redis channel, the mark, the history's length,
/// the instance for a simulator's tick ('' for one from `/api/publish`),
/// the message to publish (with the offset mark and `relay::EPOCH_MARK`).
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
local published = string.gsub(string.gsub(ARGV[9], ARGV[6], tostring(offset), 1), 'PULSE_EPOCH_MARK', epoch, 1)
redis.call('PUBLISH', ARGV[5], published)
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

/// The scripts, hashed once.
pub(super) struct Scripts {
    pub tick: redis::Script,
    pub open: redis::Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            tick: redis::Script::new(TICK_SCRIPT),
            open: redis::Script::new(OPEN_TICKER),
        }
    }

    /// `TICK_SCRIPT` for `quote`; `fence` is this instance's name for a
    /// simulator's tick ('' for one from an outside feed).
    pub fn tick(&self, keys: &Keys, quote: &Quote, fence: &str) -> redis::ScriptInvocation<'_> {
        let channel = Channel::Ticker(quote.symbol.clone());
        let tick = Tick {
            channel: channel.clone(),
            offset: OFFSET_MARK,
            symbol: quote.symbol.clone(),
            price: quote.price,
            change: quote.change,
            change_pct: quote.change_pct,
            volume: quote.volume,
        };
        let (offset_key, epoch_key, history_key) = keys.sequenced(&channel);
        let frame = frames::encode(ServerMessage::Tick(tick));
        let mut invocation = self.tick.prepare_invoke();
        invocation
            .key(offset_key)
            .key(epoch_key)
            .key(history_key)
            .key(keys.quotes())
            .key(keys.simulator())
            .arg(frame.as_str())
            .arg(crate::server::hub::new_epoch())
            .arg(&quote.symbol)
            .arg(quote.price)
            .arg(keys.channel(&channel))
            .arg(OFFSET_MARK.to_string())
            .arg(TICKER_HISTORY)
            .arg(fence)
            .arg(relay::encode_sequenced(relay::EPOCH_MARK, frame.as_str()));
        invocation
    }

    /// `OPEN_TICKER` with `channel`'s keys and arguments.
    pub fn open(&self, keys: &Keys, channel: &Channel) -> redis::ScriptInvocation<'_> {
        let (offset_key, epoch_key, history_key) = keys.sequenced(channel);
        let mut invocation = self.open.prepare_invoke();
        invocation
            .key(offset_key)
            .key(epoch_key)
            .key(history_key)
            .arg(crate::server::hub::new_epoch())
            .arg(UNTICKED_TTL.as_millis() as u64)
            .arg(TICKER_HISTORY);
        invocation
    }
}

/// An entry of a ticker's history stream: its id and fields (`f`: the frame).
pub(super) type StreamEntry = (String, HashMap<String, String>);

/// What `OPEN_TICKER` answers: a ticker's epoch, latest offset and kept
/// ticks, newest first.
pub(super) type Opened = (String, u64, Vec<StreamEntry>);

/// What a hub can install as a history ending at offset `latest`, from a
/// Redis history stream read newest first (`XREVRANGE`): the entries that
/// run in a row down from `latest` (newer ones left out), oldest first.
pub(super) fn in_a_row<T>(
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
pub(super) fn diff_of(frame: &str) -> Option<PresenceDiff> {
    match wire::envelope(frame).ok()?.message {
        ServerMessage::PresenceDiff(diff) => Some(diff),
        _ => None,
    }
}

/// The tick in a published frame.
pub(super) fn tick_of(frame: &str) -> Option<Tick> {
    match wire::envelope(frame).ok()?.message {
        ServerMessage::Tick(tick) => Some(tick),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_fill_in_the_mark_relay_builds_with() {
        let mark = format!("'{}'", relay::EPOCH_MARK);
        assert!(TICK_SCRIPT.contains(&mark));
        assert!(!TICK_SCRIPT.contains("\"epoch\""), "no JSON in Lua");
    }
}
