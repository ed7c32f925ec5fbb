//! Owns the market simulator's prices: a geometric random walk per symbol,
//! each with its own volatility, in whole cents, with cumulative volume and
//! the change against the day's open. Pure: no clock, no IO, seeded.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::collections::HashMap;

use crate::server::hub::Quote;

/// Opening prices (in cents) of the default symbols, so the demo looks familiar.
const KNOWN: [(&str, i64); 12] = [
    ("AAPL", 18_950),
    ("MSFT", 41_520),
    ("GOOGL", 17_230),
    ("AMZN", 18_610),
    ("NVDA", 12_480),
    ("META", 50_210),
    ("TSLA", 24_860),
    ("BRK.B", 45_130),
    ("JPM", 20_440),
    ("V", 27_890),
    ("NFLX", 68_320),
    ("AMD", 15_770),
];

#[derive(Debug, Clone)]
struct Instrument {
    symbol: String,
    open_cents: i64,
    price_cents: i64,
    volume: u64,
    /// Standard deviation of one step's log return.
    volatility: f64,
}

impl Instrument {
    fn quote(&self) -> Quote {
        let change_cents = self.price_cents - self.open_cents;
        let change_pct = change_cents as f64 * 100.0 / self.open_cents as f64;
        Quote {
            symbol: self.symbol.clone(),
            price: self.price_cents as f64 / 100.0,
            change: change_cents as f64 / 100.0,
            change_pct: (change_pct * 100.0).round() / 100.0,
            volume: self.volume,
        }
    }
}

/// Every symbol's price; simulated symbols are stepped in turn, others are
/// moved only by the outside feed.
#[derive(Debug)]
pub struct Market {
    instruments: Vec<Instrument>,
    by_symbol: HashMap<String, usize>,
    /// The first `simulated` instruments are the simulator's.
    simulated: usize,
    rng: StdRng,
}

impl Market {
    /// A market simulating `symbols`, repeatable for one `seed`.
    pub fn new(symbols: &[String], seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut market = Market {
            instruments: Vec::with_capacity(symbols.len()),
            by_symbol: HashMap::with_capacity(symbols.len()),
            simulated: 0,
            rng: StdRng::seed_from_u64(0),
        };
        for symbol in symbols {
            let open_cents = KNOWN
                .iter()
                .find(|(known, _)| known == symbol)
                .map(|(_, cents)| *cents)
                .unwrap_or_else(|| rng.random_range(1_000..50_000));
            let volatility = rng.random_range(0.0004..0.0025);
            market.add(symbol, open_cents, 0, volatility);
        }
        market.simulated = market.instruments.len();
        market.rng = rng;
        market
    }

    fn add(&mut self, symbol: &str, open_cents: i64, volume: u64, volatility: f64) -> usize {
        let index = self.instruments.len();
        self.instruments.push(Instrument {
            symbol: symbol.to_owned(),
            open_cents,
            price_cents: open_cents,
            volume,
            volatility,
        });
        self.by_symbol.insert(symbol.to_owned(), index);
        index
    }

    /// How many symbols the simulator steps.
    pub fn simulated(&self) -> usize {
        self.simulated
    }

    /// Moves simulated symbol number `index` one step and returns its quote.
    pub fn step(&mut self, index: usize) -> Quote {
        let rng = &mut self.rng;
        let instrument = &mut self.instruments[index % self.simulated];
        let z: f64 = rng.sample(StandardNormal);
        let sigma = instrument.volatility;
        let factor = (sigma * z - sigma * sigma / 2.0).exp();
        let next = (instrument.price_cents as f64 * factor).round() as i64;
        // Never below a cent, and always a visible move when the walk rounds to zero.
        instrument.price_cents = if next == instrument.price_cents {
            instrument.price_cents + if z >= 0.0 { 1 } else { -1 }
        } else {
            next
        }
        .max(1);
        instrument.volume += rng.random_range(1..=50) * 100;
        instrument.quote()
    }

    /// Applies a price from an outside feed. A symbol seen for the first time
    /// opens at this price. `volume`, when given, is the new cumulative volume.
    pub fn external(&mut self, symbol: &str, price: f64, volume: Option<u64>) -> Quote {
        let cents = (price * 100.0).round().max(1.0) as i64;
        let index = match self.by_symbol.get(symbol) {
            Some(&index) => index,
            None => self.add(symbol, cents, 0, 0.0),
        };
        let instrument = &mut self.instruments[index];
        instrument.price_cents = cents;
        if let Some(volume) = volume {
            instrument.volume = volume;
        }
        instrument.quote()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_walk() {
        let walk = |seed| {
            let mut market = Market::new(&symbols(&["AAPL", "SYM1"]), seed);
            (0..200).map(|n| market.step(n).price).collect::<Vec<_>>()
        };
        assert_eq!(walk(7), walk(7));
        assert_ne!(walk(7), walk(8));
    }

    #[test]
    fn prices_are_whole_cents_and_change_is_against_the_open() {
        let mut market = Market::new(&symbols(&["AAPL"]), 1);
        for _ in 0..1_000 {
            let quote = market.step(0);
            assert_eq!((quote.price * 100.0).round() / 100.0, quote.price);
            assert!(quote.price >= 0.01);
            let expected = ((quote.price - 189.50) * 100.0).round() / 100.0;
            assert!((quote.change - expected).abs() < 1e-9, "{quote:?}");
            let pct = (quote.change / 189.50 * 100.0 * 100.0).round() / 100.0;
            assert!((quote.change_pct - pct).abs() < 0.011, "{quote:?}");
        }
    }

    #[test]
    fn every_step_moves_the_price_and_volume_only_grows() {
        let mut market = Market::new(&symbols(&["SYM0"]), 3);
        let mut last = market.step(0);
        for _ in 0..500 {
            let quote = market.step(0);
            assert_ne!(quote.price, last.price);
            assert!(quote.volume > last.volume);
            last = quote;
        }
    }

    #[test]
    fn symbols_have_their_own_volatility() {
        let market = Market::new(&symbols(&["A", "B", "C", "D"]), 5);
        let vols: Vec<f64> = market.instruments.iter().map(|i| i.volatility).collect();
        assert!(vols.windows(2).any(|w| w[0] != w[1]), "{vols:?}");
    }

    #[test]
    fn the_outside_feed_opens_new_symbols_at_their_first_price() {
        let mut market = Market::new(&symbols(&["AAPL"]), 1);
        let first = market.external("XYZ", 12.5, Some(100));
        assert_eq!((first.price, first.change, first.volume), (12.5, 0.0, 100));
        let next = market.external("XYZ", 13.75, None);
        assert_eq!(
            (next.change, next.change_pct, next.volume),
            (1.25, 10.0, 100)
        );
        assert_eq!(market.simulated(), 1, "outside symbols are not simulated");
    }
}
