//! Owns the values of flags clap cannot check alone: the symbol list, rates,
//! the Redis key prefix (each parser's error is what the operator reads).

/// The simulator's default symbols: a dozen well-known tickers.
pub const DEFAULT_SYMBOLS: &str = "AAPL,MSFT,GOOGL,AMZN,NVDA,META,TSLA,BRK.B,JPM,V,NFLX,AMD";

/// The symbols of `--symbols`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolList(pub Vec<String>);

impl std::str::FromStr for SymbolList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(count) = text.trim().parse::<usize>() {
            if count > 100_000 {
                return Err("at most 100000 generated symbols".into());
            }
            return Ok(SymbolList((0..count).map(|n| format!("SYM{n}")).collect()));
        }
        let mut symbols = Vec::new();
        for symbol in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let symbol = symbol.to_ascii_uppercase();
            if !crate::protocol::Channel::is_symbol(&symbol) {
                return Err(format!(
                    "`{symbol}` is not a symbol (1 to 12 of A-Z, 0-9 and '.')"
                ));
            }
            if !symbols.contains(&symbol) {
                symbols.push(symbol);
            }
        }
        Ok(SymbolList(symbols))
    }
}

pub(super) fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=1000.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a rate between 0 and 1000 per second"
        )),
    }
}

pub(super) fn parse_positive_rate(text: &str) -> Result<f64, String> {
    match parse_rate(text) {
        Ok(rate) if rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a rate above 0 and at most 1000 per second"
        )),
    }
}

/// A Redis key prefix: 1 to 64 letters, digits, `_`, `-` or `.`.
pub(super) fn parse_prefix(text: &str) -> Result<String, String> {
    let fine = (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if fine {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a key prefix: 1 to 64 letters, digits, `_`, `-` or `.`"
        ))
    }
}

/// A rate above 0 with no upper bound but [`crate::server::ws::pace::MAX_RATE`].
pub(super) fn parse_ceiling(text: &str) -> Result<f64, String> {
    use crate::server::ws::pace::MAX_RATE;
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a rate above 0 and at most {MAX_RATE} per second"
        )),
    }
}
