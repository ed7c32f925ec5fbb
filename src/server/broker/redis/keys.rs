//! Owns every Redis key and pub/sub channel name the cluster uses, all under
//! one per-deployment prefix (`--redis-prefix`, default `pulse`), so two
//! deployments can share one Redis without seeing each other.

use std::fmt::Display;
use std::sync::Arc;

use crate::protocol::Channel;

/// The names of one deployment's keys; cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The pub/sub channel carrying `channel`'s messages.
    pub fn channel(&self, channel: impl Display) -> String {
        format!("{}:{channel}", self.prefix)
    }

    /// A channel Redis gives offsets to (a ticker, presence): its offset,
    /// epoch and history keys.
    pub fn sequenced(&self, channel: &Channel) -> (String, String, String) {
        let p = &self.prefix;
        (
            format!("{p}:offset:{channel}"),
            format!("{p}:epoch:{channel}"),
            format!("{p}:history:{channel}"),
        )
    }

    /// Each symbol's last quote (a hash: symbol → price).
    pub fn quotes(&self) -> String {
        format!("{}:quotes", self.prefix)
    }

    /// The simulator's lease.
    pub fn simulator(&self) -> String {
        format!("{}:simulator", self.prefix)
    }

    /// Every instance that reported connections (a set of instance ids).
    pub fn presence_instances(&self) -> String {
        format!("{}:presence:instances", self.prefix)
    }

    /// The pub/sub channel where an instance names itself after changing its
    /// hash of connections.
    pub fn presence_events(&self) -> String {
        format!("{}:presence:events", self.prefix)
    }

    /// Who is online as the published diffs tell it (a hash: id → user JSON).
    pub fn presence_users(&self) -> String {
        format!("{}:presence:users", self.prefix)
    }

    /// The presence leader's lease.
    pub fn presence_leader(&self) -> String {
        format!("{}:presence:leader", self.prefix)
    }

    /// The hash of `instance`'s connections (connection id → its JSON).
    pub fn presence_connections(&self, instance: &str) -> String {
        format!("{}:presence:conns:{instance}", self.prefix)
    }

    /// Every instance that wrote an admin snapshot (a set of instance ids).
    pub fn admin_instances(&self) -> String {
        format!("{}:admin:instances", self.prefix)
    }

    /// The pub/sub channel where `instance` hears the fallback POSTs other
    /// instances forward to it, and the answers to those it forwarded.
    pub fn forwarding(&self, instance: &str) -> String {
        format!("{}:sse:{instance}", self.prefix)
    }

    /// `instance`'s latest admin numbers (JSON, with a TTL of a few seconds).
    pub fn admin_stats(&self, instance: &str) -> String {
        format!("{}:admin:stats:{instance}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_starts_with_the_deployments_prefix() {
        let keys = Keys::new("staging");
        let ticker = Channel::Ticker("AAPL".into());
        let (offset, epoch, history) = keys.sequenced(&ticker);
        let names = [
            keys.channel(&ticker),
            offset,
            epoch,
            history,
            keys.quotes(),
            keys.simulator(),
            keys.presence_instances(),
            keys.presence_events(),
            keys.presence_users(),
            keys.presence_leader(),
            keys.presence_connections("i1"),
            keys.admin_instances(),
            keys.admin_stats("i1"),
            keys.forwarding("i1"),
        ];
        assert!(
            names.iter().all(|name| name.starts_with("staging:")),
            "{names:?}"
        );
        assert_eq!(keys.channel(&ticker), "staging:ticker:AAPL");
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }
}
