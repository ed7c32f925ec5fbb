//! The watchlist feature: the watched symbols and one quote signal per
//! symbol, so a tick re-renders its own row only. The socket driver follows
//! the list: it subscribes what is added, unsubscribes (and forgets the
//! resume point of) what is removed, and keeps the list in a cookie.

use leptos::prelude::*;
use std::collections::HashMap;

use super::connection::Connection;
use crate::client::initial::MAX_WATCHLIST;
use crate::client::store::QuoteView;
use crate::protocol::{Channel, Tick};

/// Why a symbol could not be added to the watchlist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchlistError {
    #[error("“{0}” is not a symbol: use 1 to 12 letters, digits or dots")]
    NotASymbol(String),
    #[error("{0} is already on the watchlist")]
    AlreadyWatched(String),
    #[error("the watchlist holds at most {MAX_WATCHLIST} symbols")]
    Full,
}

/// The watched symbols and their quotes; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Watchlist {
    /// The symbols, in the order they were added.
    pub symbols: RwSignal<Vec<String>>,
    /// One signal per symbol ever watched on this page.
    quotes: StoredValue<HashMap<String, RwSignal<Option<QuoteView>>>>,
    connection: Connection,
}

impl Watchlist {
    pub fn new(symbols: Vec<String>, connection: Connection) -> Self {
        Watchlist {
            symbols: RwSignal::new(symbols),
            quotes: StoredValue::new(HashMap::new()),
            connection,
        }
    }

    /// The signal of `symbol`'s quote (`None` until its first tick).
    pub fn quote(&self, symbol: &str) -> RwSignal<Option<QuoteView>> {
        if let Some(signal) = self.quotes.with_value(|quotes| quotes.get(symbol).copied()) {
            return signal;
        }
        let signal = self.connection.in_app(|| RwSignal::new(None));
        self.quotes.update_value(|quotes| {
            quotes.insert(symbol.to_owned(), signal);
        });
        signal
    }

    /// Adds a symbol (any case; trimmed) to the end of the watchlist.
    pub fn add_symbol(&self, input: &str) -> Result<String, WatchlistError> {
        let symbol = input.trim().to_ascii_uppercase();
        if !Channel::is_symbol(&symbol) {
            return Err(WatchlistError::NotASymbol(input.trim().to_owned()));
        }
        let list = self.symbols.get_untracked();
        if list.contains(&symbol) {
            return Err(WatchlistError::AlreadyWatched(symbol));
        }
        if list.len() >= MAX_WATCHLIST {
            return Err(WatchlistError::Full);
        }
        self.symbols.update(|list| list.push(symbol.clone()));
        Ok(symbol)
    }

    pub fn remove_symbol(&self, symbol: &str) {
        self.symbols.update(|list| list.retain(|s| s != symbol));
    }

    /// A new tick of a watched symbol.
    pub(super) fn tick(&self, tick: &Tick) {
        self.quote(&tick.symbol).update(|view| match view {
            Some(view) => view.apply(tick),
            None => *view = Some(QuoteView::from_tick(tick)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::Live;
    use super::*;
    use crate::client::InitialState;
    use crate::protocol::{ServerMessage, Snapshot, Subscribed, TickerSnapshot};

    fn tick(offset: u64, price: f64) -> Tick {
        Tick {
            channel: "ticker:AAPL".parse().unwrap(),
            offset,
            symbol: "AAPL".into(),
            price,
            change: 0.0,
            change_pct: 0.0,
            volume: 1,
        }
    }

    #[test]
    fn the_rendered_state_seeds_the_signals_and_ticks_continue_from_its_offset() {
        let owner = Owner::new();
        owner.set();
        let snapshot = Snapshot::Ticker(TickerSnapshot {
            quote: tick(5, 10.0),
            recent: vec![10.0],
        });
        let live = Live::new(InitialState {
            watchlist: vec!["AAPL".into()],
            tickers: vec![Subscribed {
                channel: "ticker:AAPL".into(),
                epoch: "e".into(),
                offset: 5,
                recovered: false,
                snapshot: Some(snapshot),
            }],
            ..InitialState::default()
        });
        let watchlist = live.watchlist;
        assert_eq!(watchlist.quote("AAPL").get_untracked().unwrap().price, 10.0);
        assert_eq!(live.connection.since("ticker:AAPL").unwrap().offset, 5);
        live.apply(ServerMessage::Tick(tick(5, 99.0)));
        assert_eq!(
            watchlist.quote("AAPL").get_untracked().unwrap().price,
            10.0,
            "offset 5 was rendered"
        );
        live.apply(ServerMessage::Tick(tick(6, 11.0)));
        assert_eq!(watchlist.quote("AAPL").get_untracked().unwrap().price, 11.0);
    }

    #[test]
    fn the_watchlist_refuses_bad_duplicate_and_excess_symbols() {
        let owner = Owner::new();
        owner.set();
        let live = Live::new(InitialState::default()).watchlist;
        assert_eq!(live.add_symbol(" nvda "), Ok("NVDA".into()));
        assert_eq!(
            live.add_symbol("NVDA"),
            Err(WatchlistError::AlreadyWatched("NVDA".into()))
        );
        assert!(matches!(
            live.add_symbol("not a symbol"),
            Err(WatchlistError::NotASymbol(_))
        ));
        for n in 1..MAX_WATCHLIST {
            live.add_symbol(&format!("S{n}")).unwrap();
        }
        assert_eq!(live.add_symbol("ONEMORE"), Err(WatchlistError::Full));
        live.remove_symbol("NVDA");
        assert!(!live.symbols.get_untracked().contains(&"NVDA".to_owned()));
    }
}
