//! How the presence leader publishes what it decided: the Lua scripts that
//! give each diff the stream's next offset and record it atomically with the
//! shown list (or start a new epoch with the whole list), the epoch's tie to
//! the Redis run that made it, and `Leader::publish`.

use axum::extract::ws::Utf8Bytes;

use crate::protocol::{relay, Channel, PresenceDiff, ServerMessage};
use crate::server::frames;
use crate::server::hub::{PresenceChange, PRESENCE_HISTORY};

use super::super::keys::Keys;
use super::super::ticker::OFFSET_MARK;
use super::leader::{Leader, Lost};

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
/// instance, the message to publish (`relay::encode_sequenced`, with the
/// offset mark and `relay::EPOCH_MARK`, which the script fills in: it
/// writes no JSON of its own), the number of users to set, then (id, user)
/// pairs to set, then ids to remove.
pub(super) const DIFF_SCRIPT: &str = r#"
if redis.call('GET', KEYS[5]) ~= ARGV[5] then return -1 end
local run = string.sub(string.match(redis.call('INFO', 'server'), 'run_id:(%x+)'), 1, 12)
local epoch = redis.call('GET', KEYS[2])
if not epoch or string.sub(epoch, -13) ~= '.' .. run then return false end
local offset = redis.call('INCR', KEYS[1])
local frame = string.gsub(ARGV[1], ARGV[2], tostring(offset), 1)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], tostring(offset) .. '-1', 'f', frame)
local sets = tonumber(ARGV[7])
for i = 8, 7 + 2 * sets, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
for i = 8 + 2 * sets, #ARGV do redis.call('HDEL', KEYS[4], ARGV[i]) end
local published = string.gsub(string.gsub(ARGV[6], ARGV[2], tostring(offset), 1), 'PULSE_EPOCH_MARK', epoch, 1)
redis.call('PUBLISH', ARGV[4], published)
return offset
"#;

/// Starts a new epoch of the presence stream at offset 1, with the
/// leader's whole list as its first diff (every user a join), if the caller
/// still holds the leader's lease (else -1).
/// KEYS: offset, epoch, history, users, the lease. ARGV: the frame, the new
/// epoch, the history length, the Redis channel, the instance, the message
/// to publish (with `relay::EPOCH_MARK`), then (id, user) pairs.
pub(super) const RESET_SCRIPT: &str = r#"
if redis.call('GET', KEYS[5]) ~= ARGV[5] then return -1 end
local run = string.sub(string.match(redis.call('INFO', 'server'), 'run_id:(%x+)'), 1, 12)
local epoch = ARGV[2] .. '.' .. run
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('SET', KEYS[1], 1)
redis.call('SET', KEYS[2], epoch)
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '1-1', 'f', ARGV[1])
local published = string.gsub(ARGV[6], 'PULSE_EPOCH_MARK', epoch, 1)
redis.call('PUBLISH', ARGV[4], published)
return 1
"#;

/// Whether `epoch` was made by the Redis whose `INFO server` is `info`:
/// the scripts end every epoch with `.` and the first 12 hex digits of the
/// `run_id` (a new one at every Redis start).
pub(super) fn of_this_run(epoch: &str, info: &str) -> bool {
    let run = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("run_id:"))
        .unwrap_or_default();
    run.len() >= 12 && epoch.ends_with(&format!(".{}", &run[..12]))
}

/// A `presence_diff` frame telling `change` at `offset`.
fn diff_frame(offset: u64, change: &PresenceChange) -> Utf8Bytes {
    frames::encode(ServerMessage::PresenceDiff(PresenceDiff {
        channel: Channel::Presence,
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
        .arg(instance)
        .arg(relay::encode_sequenced(relay::EPOCH_MARK, frame));
    invocation
}

impl Leader {
    /// Publishes a change as the stream's next diff (or, when the stream
    /// must start again, the whole list as a new epoch's first diff).
    /// `Err(Lost::Lease)` when another instance holds the lease now.
    pub(super) async fn publish(&mut self, change: PresenceChange) -> Result<(), Lost> {
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
                invocation.arg(&user.id).arg(relay::encode_shown(user));
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
            invocation.arg(&user.id).arg(relay::encode_shown(user));
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

    #[test]
    fn the_scripts_fill_in_the_mark_relay_builds_with() {
        let mark = format!("'{}'", crate::protocol::relay::EPOCH_MARK);
        for script in [super::DIFF_SCRIPT, super::RESET_SCRIPT] {
            assert!(script.contains(&mark));
            assert!(!script.contains("\"epoch\""), "no JSON in Lua");
        }
    }
}
