//! Owns the adaptive pace of new WebSockets: how many upgrades the server
//! starts per second, decided from measured load instead of a fixed number.
//!
//! A probe task sleeps [`PROBE_EVERY`] in a loop and measures how late the
//! runtime wakes it (the scheduling lag every task on the server feels). While
//! the connections already open are being served frames and the lag is over
//! [`LAG_TARGET`], the rate is cut (multiplicatively, down to [`MIN_RATE`]);
//! otherwise it grows back fast (up to [`MAX_RATE`], or the operator's
//! `--max-upgrades-per-sec`). Each probe adds that rate's worth of permits to
//! a FIFO semaphore; an upgrade waits its turn for one (at most
//! [`MAX_WAIT`], then it is refused with 1013). So a burst on an idle server is
//! admitted as fast as its handshakes can be done, and a reconnect storm over
//! a busy one queues instead of starving the open connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the probe measures the lag and hands out permits.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);

/// Scheduling lag (smoothed) above which open connections are taken to
/// suffer: a tick reaches its readers that much later.
pub const LAG_TARGET: Duration = Duration::from_millis(5);

/// The lowest pace under pressure: a storm is slowed, never stopped.
pub const MIN_RATE: f64 = 100.0;

/// The pace of an unloaded server: in practice, no limit.
pub const MAX_RATE: f64 = 100_000.0;

/// Permits kept while nobody waits: a tenth of a second's worth.
const BURST_SECONDS: f64 = 0.1;

/// The longest an upgrade waits for its turn before it is refused (1013):
/// well under the 10 s a client gives a handshake.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// How fast the smoothed lag follows a new sample (exponential average).
const SMOOTHING: f64 = 0.3;

/// The rate decision alone, free of time and tasks: one step per probe.
#[derive(Debug, Clone)]
pub struct Controller {
    rate: f64,
    ceiling: f64,
    lag_ms: f64,
}

impl Controller {
    /// Starts open: at the ceiling.
    pub fn new(ceiling: Option<f64>) -> Self {
        let ceiling = ceiling.unwrap_or(MAX_RATE).min(MAX_RATE);
        Controller {
            rate: ceiling,
            ceiling,
            lag_ms: 0.0,
        }
    }

    /// Takes one probe's lag and whether frames went out to open
    /// connections since the last probe; returns the new rate.
    pub fn observe(&mut self, lag: Duration, delivering: bool) -> f64 {
        let sample = lag.as_secs_f64() * 1000.0;
        self.lag_ms += SMOOTHING * (sample - self.lag_ms);
        let target = LAG_TARGET.as_secs_f64() * 1000.0;
        // Lag only hurts someone when open connections have frames to get:
        // an idle server's only work is the handshakes themselves.
        if delivering && self.lag_ms > target {
            self.rate = (self.rate * 0.7).max(MIN_RATE.min(self.ceiling));
        } else if self.lag_ms <= target {
            self.rate = (self.rate * 1.5 + MIN_RATE).min(self.ceiling);
        }
        self.rate
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The smoothed lag, in milliseconds.
    pub fn lag_ms(&self) -> f64 {
        self.lag_ms
    }
}

/// Why an upgrade got no turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is busy: try again later")]
pub struct Busy;

/// The shared pace: permits handed out by the probe, waited for by upgrades.
pub struct Pace {
    permits: Arc<Semaphore>,
    controller: Mutex<Controller>,
    /// The rate now (upgrades per second, as f64 bits), for `/metrics`.
    rate_bits: AtomicU64,
    /// The smoothed lag now (milliseconds, as f64 bits), for `/metrics`.
    lag_bits: AtomicU64,
}

impl Pace {
    pub fn new(ceiling: Option<f64>) -> Self {
        let controller = Controller::new(ceiling);
        let pace = Pace {
            permits: Arc::new(Semaphore::new(0)),
            rate_bits: AtomicU64::new(controller.rate().to_bits()),
            lag_bits: AtomicU64::new(0f64.to_bits()),
            controller: Mutex::new(controller),
        };
        pace.refill(Duration::from_secs_f64(BURST_SECONDS));
        pace
    }

    /// Waits for this upgrade's turn, first come first served.
    pub async fn turn(&self) -> Result<(), Busy> {
        match tokio::time::timeout(MAX_WAIT, self.permits.acquire()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(())
            }
            _ => Err(Busy),
        }
    }

    /// Upgrades per second allowed now.
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate_bits.load(Ordering::Relaxed))
    }

    /// The smoothed scheduling lag now.
    pub fn lag(&self) -> Duration {
        Duration::from_secs_f64(f64::from_bits(self.lag_bits.load(Ordering::Relaxed)) / 1000.0)
    }

    /// One probe: the lag measured and whether frames flowed.
    fn step(&self, lag: Duration, delivering: bool, elapsed: Duration) {
        let (rate, lag_ms) = {
            let mut controller = self.controller.lock().unwrap_or_else(|p| p.into_inner());
            let rate = controller.observe(lag, delivering);
            (rate, controller.lag_ms())
        };
        self.rate_bits.store(rate.to_bits(), Ordering::Relaxed);
        self.lag_bits.store(lag_ms.to_bits(), Ordering::Relaxed);
        self.refill(elapsed);
    }

    /// Adds `elapsed`'s worth of permits at the current rate, keeping at most
    /// a burst's worth while nobody takes them. After a cut, permits kept at
    /// the old rate are taken back: else the 10,000 kept while the server was
    /// idle would admit a whole storm at once, whatever the rate says.
    fn refill(&self, elapsed: Duration) {
        let rate = self.rate();
        let burst = (rate * BURST_SECONDS).max(1.0) as usize;
        let kept = self.permits.available_permits();
        if kept > burst {
            self.permits.forget_permits(kept - burst);
        }
        let due = (rate * elapsed.as_secs_f64()).ceil() as usize;
        let room = burst.saturating_sub(self.permits.available_permits());
        let add = due.min(room);
        if add > 0 {
            self.permits.add_permits(add);
        }
    }

    /// The probe: runs until `stop`; `delivered` reads a counter that grows
    /// with every frame written to an open connection.
    pub async fn probe(
        self: Arc<Self>,
        delivered: impl Fn() -> u64 + Send + 'static,
        stop: CancellationToken,
    ) {
        let mut last = Instant::now();
        let mut seen = delivered();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(PROBE_EVERY) => {}
            }
            let now = Instant::now();
            let elapsed = now - last;
            last = now;
            let count = delivered();
            let delivering = count != seen;
            seen = count;
            // The timer wheel's own granularity (1 ms) is no lag.
            let lag = elapsed.saturating_sub(PROBE_EVERY + Duration::from_millis(1));
            self.step(lag, delivering, elapsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALM: Duration = Duration::ZERO;
    const LATE: Duration = Duration::from_millis(40);

    #[test]
    fn an_unloaded_server_is_not_paced() {
        let mut controller = Controller::new(None);
        assert_eq!(controller.rate(), MAX_RATE);
        for _ in 0..100 {
            assert_eq!(controller.observe(CALM, true), MAX_RATE);
        }
    }

    #[test]
    fn lag_while_frames_flow_cuts_the_rate_down_to_its_floor_and_calm_restores_it() {
        let mut controller = Controller::new(None);
        let mut rates = Vec::new();
        for _ in 0..60 {
            rates.push(controller.observe(LATE, true));
        }
        assert!(rates.windows(2).all(|w| w[1] <= w[0]), "{rates:?}");
        assert!(rates[5] < MAX_RATE / 2.0, "{rates:?}");
        assert_eq!(*rates.last().unwrap(), MIN_RATE);
        // Calm again: the smoothed lag falls under the target, then the rate
        // climbs back to the top within a second of probes.
        let back: Vec<f64> = (0..100).map(|_| controller.observe(CALM, true)).collect();
        assert_eq!(*back.last().unwrap(), MAX_RATE);
    }

    #[test]
    fn lag_on_an_idle_server_is_the_handshakes_own_and_does_not_pace_them() {
        let mut controller = Controller::new(None);
        for _ in 0..60 {
            assert_eq!(controller.observe(LATE, false), MAX_RATE);
        }
    }

    #[test]
    fn the_operators_ceiling_caps_the_rate_and_the_floor_never_exceeds_it() {
        let mut controller = Controller::new(Some(50.0));
        assert_eq!(controller.observe(CALM, true), 50.0);
        for _ in 0..60 {
            controller.observe(LATE, true);
        }
        assert_eq!(controller.rate(), 50.0);
    }

    #[tokio::test(start_paused = true)]
    async fn permits_follow_the_rate_and_waiters_past_the_wait_are_busy() {
        let pace = Pace::new(Some(100.0));
        // A tenth of a second's worth is there at once ...
        for _ in 0..10 {
            pace.turn().await.unwrap();
        }
        // ... and nobody refills it without the probe: the next one waits
        // out MAX_WAIT (time is paused and auto-advances).
        assert_eq!(pace.turn().await, Err(Busy));
        pace.step(CALM, false, Duration::from_millis(100));
        for _ in 0..10 {
            pace.turn().await.unwrap();
        }
    }

    /// Turns ready right now, without waiting (outside tokio's cooperative
    /// budget, which would end the count at 128).
    fn ready_turns(pace: &Pace) -> usize {
        use futures_util::FutureExt;
        let now = || tokio::task::unconstrained(pace.turn()).now_or_never();
        std::iter::from_fn(|| now().and_then(Result::ok)).count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_takes_back_the_permits_kept_at_the_old_rate() {
        // Idle: a tenth of a second at the top rate is ready at once (a burst
        // on an idle server is admitted whole) ...
        let idle = Pace::new(None);
        assert_eq!(ready_turns(&idle), (MAX_RATE * BURST_SECONDS) as usize);
        // ... but once load has cut the rate, a storm finds only the new
        // rate's burst ready, not the 10,000 kept while the server was idle.
        let loaded = Pace::new(None);
        for _ in 0..30 {
            loaded.step(LATE, true, PROBE_EVERY);
        }
        let burst = (loaded.rate() * BURST_SECONDS).ceil() as usize;
        let ready = ready_turns(&loaded);
        assert!(
            ready <= burst,
            "{ready} turns ready at {} per second",
            loaded.rate()
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_runtime_held_busy_while_frames_flow_slows_the_pace() {
        let pace = Arc::new(Pace::new(None));
        let stop = CancellationToken::new();
        let frames = Arc::new(AtomicU64::new(0));
        let counter = frames.clone();
        let probe = tokio::spawn(pace.clone().probe(
            move || counter.fetch_add(1, Ordering::Relaxed),
            stop.clone(),
        ));
        // A task that holds the only worker thread 30 ms at a time: every
        // other task on it, the probe included, runs that much late.
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(30));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let loaded = pace.rate();
        assert!(loaded < MAX_RATE / 10.0, "rate under load: {loaded}");
        assert!(pace.lag() > LAG_TARGET, "lag: {:?}", pace.lag());
        stop.cancel();
        probe.await.unwrap();
    }
}
