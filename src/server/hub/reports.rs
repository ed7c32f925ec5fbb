//! Owns the queue on which a hub reports its connections to the cluster's
//! presence (the other end is `broker/redis/presence/report.rs`).
//!
//! Presence is state, not events, so the queue keeps each connection's
//! latest state only: a connection not reported yet waits as "joined, with
//! this status", one reported before as "now this status" or "left". A
//! connection that joins and leaves between two reads is never reported at
//! all. So the queue holds at most one entry per connection the reporter
//! may know of (open now, or reported and closed since its last read), and
//! a burst of changes while Redis is slow (status flips, a reconnect storm)
//! costs no memory beyond that and loses no final state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::online::PresenceEvent;
use super::SubscriberId;
use crate::protocol::{UserRef, UserStatus};

/// A connection's latest state, as it waits to be reported.
#[derive(Debug, Clone, PartialEq)]
enum Latest {
    /// Joined since the last read (the reporter does not know it yet).
    Joined(UserRef, UserStatus),
    /// Known to the reporter; its status is now this.
    Status(UserStatus),
    /// Known to the reporter; closed.
    Left,
}

struct Shared {
    pending: Mutex<BTreeMap<SubscriberId, Latest>>,
    /// Woken by every report and when the hub's side is dropped.
    ready: Notify,
    closed: AtomicBool,
}

/// The hub's side: reports never wait and never fail.
pub struct Reports(Arc<Shared>);

/// The reporter's side: reads every connection's latest state at once.
pub struct Reported(Arc<Shared>);

/// A queue of connection states, coalesced per connection.
pub fn reports() -> (Reports, Reported) {
    let shared = Arc::new(Shared {
        pending: Mutex::default(),
        ready: Notify::new(),
        closed: AtomicBool::new(false),
    });
    (Reports(shared.clone()), Reported(shared))
}

impl Reports {
    /// Folds `event` into its connection's latest state.
    pub fn send(&self, event: PresenceEvent) {
        let mut pending = lock(&self.0.pending);
        match event {
            PresenceEvent::Connect(id, user) => {
                pending.insert(id, Latest::Joined(user, UserStatus::Online));
            }
            PresenceEvent::Status(id, status) => match pending.get_mut(&id) {
                Some(Latest::Joined(_, old)) => *old = status,
                Some(Latest::Left) => {}
                Some(latest) => *latest = Latest::Status(status),
                None => {
                    pending.insert(id, Latest::Status(status));
                }
            },
            PresenceEvent::Disconnect(id) => {
                // A connection the reporter never heard of leaves no trace.
                if !matches!(pending.remove(&id), Some(Latest::Joined(..))) {
                    pending.insert(id, Latest::Left);
                }
            }
        }
        drop(pending);
        self.0.ready.notify_one();
    }

    /// How many connections wait to be reported.
    pub fn len(&self) -> usize {
        lock(&self.0.pending).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Reports {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }
}

impl Reported {
    /// Every connection's latest state as events, in connection order, once
    /// there is any; `None` once the hub's side is gone and nothing waits.
    /// Cancel-safe: nothing is taken before it returns.
    pub async fn recv(&mut self) -> Option<Vec<PresenceEvent>> {
        loop {
            let taken = std::mem::take(&mut *lock(&self.0.pending));
            if !taken.is_empty() {
                return Some(events(taken));
            }
            if self.0.closed.load(Ordering::Acquire) {
                return None;
            }
            self.0.ready.notified().await;
        }
    }

    /// What waits now, without waiting (tests).
    pub fn try_recv(&mut self) -> Vec<PresenceEvent> {
        events(std::mem::take(&mut *lock(&self.0.pending)))
    }
}

fn events(taken: BTreeMap<SubscriberId, Latest>) -> Vec<PresenceEvent> {
    let mut events = Vec::with_capacity(taken.len());
    for (id, latest) in taken {
        match latest {
            Latest::Joined(user, status) => {
                events.push(PresenceEvent::Connect(id, user));
                if status != UserStatus::Online {
                    events.push(PresenceEvent::Status(id, status));
                }
            }
            Latest::Status(status) => events.push(PresenceEvent::Status(id, status)),
            Latest::Left => events.push(PresenceEvent::Disconnect(id)),
        }
    }
    events
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each change is one map operation: a poisoned lock is whole.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRef {
        UserRef {
            id: id.into(),
            name: id.to_uppercase(),
        }
    }

    /// The reporter's table: connection → (user, status), as events build it.
    fn apply(
        table: &mut BTreeMap<SubscriberId, (UserRef, UserStatus)>,
        events: Vec<PresenceEvent>,
    ) {
        for event in events {
            match event {
                PresenceEvent::Connect(id, user) => {
                    table.insert(id, (user, UserStatus::Online));
                }
                PresenceEvent::Status(id, status) => {
                    if let Some(entry) = table.get_mut(&id) {
                        entry.1 = status;
                    }
                }
                PresenceEvent::Disconnect(id) => {
                    table.remove(&id);
                }
            }
        }
    }

    #[test]
    fn a_burst_holds_one_entry_per_connection_and_loses_no_final_state() {
        let (reports, mut reported) = reports();
        let mut table = BTreeMap::new();
        // 50 connections the reporter knows of.
        for id in 0..50 {
            reports.send(PresenceEvent::Connect(id, user(&format!("u{id}"))));
        }
        apply(&mut table, reported.try_recv());
        // A burst while the reporter waits on Redis: 100,000 changes.
        let mut expected = table.clone();
        for round in 0..1000u64 {
            for id in 0..50 {
                let status = if (round + id) % 2 == 0 {
                    UserStatus::Away
                } else {
                    UserStatus::Online
                };
                reports.send(PresenceEvent::Status(id, status));
                expected.get_mut(&id).unwrap().1 = status;
            }
            // New connections that come and go, and some that stay.
            let id = 1000 + round;
            reports.send(PresenceEvent::Connect(id, user("churn")));
            if round % 100 != 0 {
                reports.send(PresenceEvent::Disconnect(id));
            } else {
                expected.insert(id, (user("churn"), UserStatus::Online));
            }
            assert!(reports.len() <= 50 + 10, "{} waiting", reports.len());
        }
        reports.send(PresenceEvent::Disconnect(3));
        expected.remove(&3);
        apply(&mut table, reported.try_recv());
        assert_eq!(table, expected);
        assert!(reports.is_empty());
    }

    #[test]
    fn a_status_of_a_connection_not_reported_yet_joins_with_it() {
        let (reports, mut reported) = reports();
        reports.send(PresenceEvent::Connect(7, user("ann")));
        reports.send(PresenceEvent::Status(7, UserStatus::Away));
        assert_eq!(
            reported.try_recv(),
            [
                PresenceEvent::Connect(7, user("ann")),
                PresenceEvent::Status(7, UserStatus::Away),
            ]
        );
        reports.send(PresenceEvent::Status(7, UserStatus::Online));
        reports.send(PresenceEvent::Disconnect(7));
        reports.send(PresenceEvent::Status(7, UserStatus::Away));
        assert_eq!(reported.try_recv(), [PresenceEvent::Disconnect(7)]);
    }

    #[tokio::test]
    async fn the_reporter_wakes_for_a_report_and_ends_with_the_hub() {
        let (reports, mut reported) = reports();
        let reader = tokio::spawn(async move {
            let first = reported.recv().await;
            let end = reported.recv().await;
            (first, end)
        });
        reports.send(PresenceEvent::Connect(1, user("ann")));
        drop(reports);
        let (first, end) = reader.await.unwrap();
        // What waited is read before the end is seen.
        assert_eq!(first, Some(vec![PresenceEvent::Connect(1, user("ann"))]));
        assert_eq!(end, None);
    }
}
