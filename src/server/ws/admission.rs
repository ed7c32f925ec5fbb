//! Owns admission to `/ws`, decided before the upgrade: the exact
//! `--max-connections` cap (a slot is reserved atomically, so a burst of
//! simultaneous upgrades cannot overshoot it), the upgrade rate per client
//! address (`--max-upgrades-per-ip`), then the server's adaptive pace
//! ([`super::pace`]: each upgrade waits its turn, so no reconnect storm can
//! starve the connections already open).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::pace::{Busy, Pace};
use super::rate::TokenBucket;
use crate::server::config::Config;

/// Client addresses remembered by the per-address limit before the idle
/// ones (whose bucket has refilled) are forgotten.
pub const PRUNE_ADDRESSES_AT: usize = 10_000;

/// How much burst a rate allows: two seconds' worth.
const BURST_SECONDS: f64 = 2.0;

/// Why an upgrade was refused; all are answered with close 1013.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("server full: try again later")]
    Full,
    #[error("too many new connections: try again later")]
    TooFast,
    #[error("server busy: try again later")]
    Busy,
}

impl From<Busy> for Refusal {
    fn from(_: Busy) -> Self {
        Refusal::Busy
    }
}

/// Decides which upgrades are served; one per server, shared by handlers.
pub struct Admission {
    cap: Option<usize>,
    /// Slots held now: one per admitted socket, released by its [`Slot`].
    open: Arc<AtomicUsize>,
    per_address: Option<PerAddress>,
    pace: Arc<Pace>,
}

struct PerAddress {
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

/// One admitted connection's place under the cap; dropping it (however the
/// connection's task ends, a panic included) frees the place.
#[derive(Debug)]
pub struct Slot {
    open: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A bucket is always consistent between two statements: a poisoned lock
    // is still safe to use.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Admission {
    pub fn new(config: &Config) -> Self {
        Admission {
            cap: config.max_connections,
            open: Arc::new(AtomicUsize::new(0)),
            pace: Arc::new(Pace::new(config.max_upgrades_per_sec)),
            per_address: config.max_upgrades_per_ip.map(|rate| PerAddress {
                rate,
                buckets: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Admits one upgrade from `address` at `now` under the cap and the
    /// per-address rate, or says why not; the upgrade then waits its
    /// [`Admission::turn`].
    pub fn admit(&self, address: Option<IpAddr>, now: Instant) -> Result<Slot, Refusal> {
        if let (Some(limit), Some(address)) = (&self.per_address, address) {
            let mut buckets = lock(&limit.buckets);
            if buckets.len() >= PRUNE_ADDRESSES_AT {
                buckets.retain(|_, bucket| !bucket.is_full(now));
            }
            let bucket = buckets
                .entry(address)
                .or_insert_with(|| TokenBucket::new(limit.rate, limit.rate * BURST_SECONDS, now));
            if !bucket.try_take(now) {
                return Err(Refusal::TooFast);
            }
        }
        self.reserve()
    }

    /// Waits until the server's pace lets this upgrade start (at most
    /// [`super::pace::MAX_WAIT`]); `Busy` past that.
    pub async fn turn(&self) -> Result<(), Refusal> {
        Ok(self.pace.turn().await?)
    }

    /// Admits a connection from `address` now: a slot under the cap and the
    /// per-address rate ([`Admission::admit`]), then its turn under the pace
    /// ([`Admission::turn`]). What `/ws` and the fallback's `/sse` both ask.
    pub async fn admit_now(&self, address: Option<IpAddr>) -> Result<Slot, Refusal> {
        let slot = self.admit(address, Instant::now())?;
        self.turn().await?;
        Ok(slot)
    }

    /// The pace, for its probe task and `/metrics`.
    pub fn pace(&self) -> &Arc<Pace> {
        &self.pace
    }

    /// Takes a slot under the cap with one atomic step, so two upgrades can
    /// never both take the last one.
    fn reserve(&self) -> Result<Slot, Refusal> {
        let cap = self.cap.unwrap_or(usize::MAX);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < cap).then_some(open + 1)
            })
            .map_err(|_| Refusal::Full)?;
        Ok(Slot {
            open: self.open.clone(),
        })
    }

    /// Slots held now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    fn admission(flags: &[&str]) -> Admission {
        let mut args = vec!["pulse"];
        args.extend_from_slice(flags);
        Admission::new(&Config::parse_from(args))
    }

    #[test]
    fn the_cap_is_exact_and_a_dropped_slot_frees_its_place() {
        let admission = admission(&["--max-connections", "2"]);
        let now = Instant::now();
        let a = admission.admit(None, now).unwrap();
        let _b = admission.admit(None, now).unwrap();
        assert_eq!(admission.admit(None, now).unwrap_err(), Refusal::Full);
        drop(a);
        assert!(admission.admit(None, now).is_ok());
    }

    #[test]
    fn threads_racing_for_the_last_slots_never_overshoot_the_cap() {
        let admission = Arc::new(admission(&["--max-connections", "20"]));
        let now = Instant::now();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let admission = admission.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter_map(|_| admission.admit(None, now).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let slots: Vec<Slot> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(slots.len(), 20);
        assert_eq!(admission.open(), 20);
    }

    #[test]
    fn one_address_past_its_rate_is_refused_while_others_still_get_in() {
        let admission = admission(&["--max-upgrades-per-ip", "5"]);
        let now = Instant::now();
        let script: IpAddr = "10.0.0.1".parse().unwrap();
        let person: IpAddr = "10.0.0.2".parse().unwrap();
        // A burst of two seconds' worth passes, the next is refused.
        let admitted: Vec<_> = (0..10)
            .map(|_| admission.admit(Some(script), now).unwrap())
            .collect();
        assert_eq!(
            admission.admit(Some(script), now).unwrap_err(),
            Refusal::TooFast
        );
        assert!(admission.admit(Some(person), now).is_ok());
        // A second later, five more.
        let later = now + Duration::from_secs(1);
        assert!(admission.admit(Some(script), later).is_ok());
        drop(admitted);
    }

    #[test]
    fn the_per_address_table_forgets_idle_addresses() {
        let admission = admission(&[
            "--max-upgrades-per-ip",
            "1",
            "--max-upgrades-per-sec",
            "1000",
        ]);
        let now = Instant::now();
        let limit = admission.per_address.as_ref().unwrap();
        for n in 0..PRUNE_ADDRESSES_AT as u32 {
            lock(&limit.buckets).insert(
                IpAddr::from(n.to_be_bytes()),
                TokenBucket::new(1.0, 2.0, now),
            );
        }
        let later = now + Duration::from_secs(60);
        let _slot = admission.admit(Some("192.0.2.1".parse().unwrap()), later);
        assert_eq!(lock(&limit.buckets).len(), 1);
    }
}
