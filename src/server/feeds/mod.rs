//! Owns the price feeds: the built-in simulator task and the outside feed
//! (`POST /api/publish`), which share one [`Market`] so that both move the
//! same prices, and publish through the hub.

mod market;

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{interval, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::broker::redis::Lease;
use super::hub::Hub;
pub use market::Market;

/// The prices of every symbol, shared by the simulator and the publish API.
#[derive(Clone)]
pub struct Feeds {
    market: Arc<Mutex<Market>>,
    hub: Hub,
}

impl Feeds {
    pub fn new(market: Market, hub: Hub) -> Self {
        Feeds {
            market: Arc::new(Mutex::new(market)),
            hub,
        }
    }

    fn market(&self) -> std::sync::MutexGuard<'_, Market> {
        self.market
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes a price from an outside feed; returns the tick's offset
    /// (`None` when instances run as one and Redis could not take it).
    pub async fn publish_external(
        &self,
        symbol: &str,
        price: f64,
        volume: Option<u64>,
    ) -> Option<u64> {
        let quote = self.market().external(symbol, price, volume);
        self.hub.publish_tick_shared(quote).await
    }

    /// Runs the simulator until `shutdown`: `rate` price changes per second per
    /// symbol, spread evenly over time (not all symbols at once). With a
    /// `lease` (instances run as one) it moves prices only while this
    /// instance holds it, starting from the last published quotes.
    pub async fn simulate(self, rate: f64, shutdown: CancellationToken, mut lease: Option<Lease>) {
        let symbols = self.market().simulated();
        if rate <= 0.0 || symbols == 0 {
            return;
        }
        let steps_per_second = rate * symbols as f64;
        // Timers are millisecond-grained: at high rates each wake does several steps.
        let period = Duration::from_secs_f64(1.0 / steps_per_second).max(Duration::from_millis(1));
        let mut timer = interval(period);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut started = Instant::now();
        let mut done: u64 = 0;
        loop {
            if let Some(lease) = lease.as_mut().filter(|lease| !lease.holds()) {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    held = lease.held() => if !held { return },
                }
                // Go on from where the last holder left the prices.
                let prices = lease.last_prices().await;
                let mut market = self.market();
                for (symbol, price) in prices {
                    market.external(&symbol, price, None);
                }
                drop(market);
                (started, done) = (Instant::now(), 0);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = timer.tick() => {}
            }
            let due = (started.elapsed().as_secs_f64() * steps_per_second) as u64;
            // After a long stall, skip ahead rather than publish a burst.
            if due > done + steps_per_second as u64 + 1 {
                done = due - 1;
            }
            while done < due {
                let quote = self.market().step(done as usize);
                self.hub.publish_tick(quote);
                done += 1;
            }
        }
    }
}
