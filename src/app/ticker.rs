//! The watchlist: the `Live prices` table (one row per symbol, each row
//! reading only its own quote signal), a sparkline per row, and the controls
//! to add and remove symbols.

use std::fmt::Write as _;

use leptos::ev::SubmitEvent;
use leptos::prelude::*;

use super::shown::Shown;
use crate::client;
use crate::client::store::{Direction, QuoteView};

#[component]
pub fn Watchlist() -> impl IntoView {
    let watchlist = expect_context::<client::Watchlist>();
    let draft = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        match watchlist.add_symbol(&draft.get_untracked()) {
            Ok(_) => {
                draft.set(String::new());
                problem.set(None);
            }
            Err(err) => problem.set(Some(err.to_string())),
        }
    };
    let empty = move || watchlist.symbols.with(Vec::is_empty);

    view! {
       <section class="panel main-column" aria-labelledby="prices-heading">
           <div class="panel-head">
               <h2 id="prices-heading">"Watchlist"</h2>
               <form class="add-symbol" on:submit=on_submit>
                   <label class="visually-hidden" for="symbol-input">"Symbol"</label>
                   <input
                       id="symbol-input"
                       type="text"
                       placeholder="Add a symbol, e.g. NVDA"
                       autocomplete="off"
                       spellcheck="false"
                       maxlength="12"
                       aria-describedby="symbol-problem"
                       prop:value=move || draft.get()
                       on:input=move |event| draft.set(event_target_value(&event))
                   />
                   <button type="submit">"Add"</button>
               </form>
           </div>
           <p id="symbol-problem" class="form-problem" role="alert">{move || problem.get()}</p>
           <Shown when=move || !empty() fallback=|| view! { <p class="empty">"Add a symbol to watch."</p> }>
               <table class="prices" aria-label="Live prices">
                   <colgroup>
                       <col class="col-symbol"/>
                       <col class="col-price"/>
                       <col class="col-change abs"/>
                       <col class="col-pct"/>
                       <col class="col-spark"/>
                       <col class="col-remove"/>
                   </colgroup>
                   <thead>
                       <tr>
                           <th scope="col">"Symbol"</th>
                           <th scope="col" class="num">"Last"</th>
                           <th scope="col" class="num abs">"Change"</th>
                           <th scope="col" class="num">"Change %"</th>
                           <th scope="col">"Trend"</th>
                           <th scope="col"><span class="visually-hidden">"Remove"</span></th>
                       </tr>
                   </thead>
                   <tbody>
                       <For each=move || watchlist.symbols.get() key=|symbol| symbol.clone() let:symbol>
                           <QuoteRow symbol/>
                       </For>
                   </tbody>
               </table>
           </Shown>
       </section>
    }
}

/// One symbol. Every cell reads the row's own signal, so a tick touches
/// this row's text and one SVG path, nothing else.
#[component]
fn QuoteRow(symbol: String) -> impl IntoView {
    let watchlist = expect_context::<client::Watchlist>();
    let quote = watchlist.quote(&symbol);
    let cell = move |format: fn(&QuoteView) -> String| {
        move || quote.with(|q| q.as_ref().map(format).unwrap_or_else(|| "—".to_owned()))
    };
    // The arrow repeats the sign for the eye (colour is never the only
    // signal); a screen reader reads the sign instead of "black up-pointing
    // triangle".
    let arrow = move || quote.with(|q| q.as_ref().map(|q| arrow(q.change)).unwrap_or(""));
    let row_class = move || {
        quote.with(|q| {
            q.as_ref()
                .map(|q| row_class(q.change))
                .unwrap_or("quote flat")
        })
    };
    // Two animation names, alternated, so each tick restarts the flash.
    // Fixed strings: a tick allocates no class name.
    let flash = move || {
        quote.with(|q| match q {
            Some(q) if q.direction != Direction::Flat => {
                let up = q.direction == Direction::Up;
                match (up, q.ticks_seen % 2 == 0) {
                    (true, true) => "num price flash-up-0",
                    (true, false) => "num price flash-up-1",
                    (false, true) => "num price flash-down-0",
                    (false, false) => "num price flash-down-1",
                }
            }
            _ => "num price",
        })
    };
    let path = move || quote.with(|q| q.as_ref().map(|q| sparkline(&q.recent)).unwrap_or_default());
    let remove_label = format!("Remove {symbol}");
    let remove = {
        let symbol = symbol.clone();
        move |_| watchlist.remove_symbol(&symbol)
    };
    view! {
       <tr class=row_class>
           <th scope="row" class="symbol">{symbol}</th>
           <td class=flash>{cell(|q| decimals(q.price, 2))}</td>
           <td class="num change abs"><span aria-hidden="true">{arrow}</span>{cell(|q| signed(q.change, ""))}</td>
           <td class="num change"><span aria-hidden="true">{arrow}</span>{cell(|q| signed(q.change_pct, "%"))}</td>
           <td class="spark">
               <svg viewBox="0 0 100 24" preserveAspectRatio="none" aria-hidden="true">
                   <path d=path/>
               </svg>
           </td>
           <td class="remove">
               <button type="button" class="icon" aria-label=remove_label on:click=remove>"×"</button>
           </td>
       </tr>
    }
}

fn row_class(change: f64) -> &'static str {
    if change > 0.0 {
        "quote up"
    } else if change < 0.0 {
        "quote down"
    } else {
        "quote flat"
    }
}

/// `▲ `, `▼ ` or nothing: the arrow shown before a change.
fn arrow(change: f64) -> &'static str {
    if change > 0.0 {
        "▲ "
    } else if change < 0.0 {
        "▼ "
    } else {
        ""
    }
}

/// `+1.25`, `−0.50`, `0.00`: the sign is written, not only coloured.
fn signed(value: f64, unit: &str) -> String {
    let sign = if value > 0.0 {
        "+"
    } else if value < 0.0 {
        "−"
    } else {
        ""
    };
    let mut text = String::from(sign);
    write_decimals(&mut text, value.abs(), 2);
    text.push_str(unit);
    text
}

/// `value` with `places` digits after the point, like `format!("{value:.places$}")`
/// (see [`write_decimals`] for where they differ).
fn decimals(value: f64, places: u32) -> String {
    let mut text = String::new();
    write_decimals(&mut text, value, places);
    text
}

/// Writes `value` rounded to `places` digits after the point with integer
/// arithmetic only: Rust's float formatting (`{:.2}`) alone was 14 KB of the
/// wasm bundle. Prices and changes are whole cents, written exactly. A value
/// within float error of a half (a percentage, a coordinate) may round the
/// other way than `{:.2}` would, in the last digit; the server and the page
/// both write it with this function, so hydration agrees. A negative value
/// that rounds to zero is written `0.00`, not `-0.00`. A value too large
/// saturates instead of panicking.
fn write_decimals(out: &mut String, value: f64, places: u32) {
    let scale = 10u64.pow(places);
    let scaled = (value.abs() * scale as f64).round() as u64;
    if value < 0.0 && scaled != 0 {
        out.push('-');
    }
    let _ = write!(out, "{}", scaled / scale);
    if places > 0 {
        let _ = write!(out, ".{:0width$}", scaled % scale, width = places as usize);
    }
}

/// An SVG path through `prices`, scaled to a 100 × 24 box.
fn sparkline(prices: &[f64]) -> String {
    let (low, high) = prices
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &p| {
            (lo.min(p), hi.max(p))
        });
    let span = (high - low).max(f64::EPSILON);
    let step = 100.0 / (prices.len().max(2) - 1) as f64;
    let mut path = String::with_capacity(prices.len() * 12);
    for (n, price) in prices.iter().enumerate() {
        let x = n as f64 * step;
        let y = 22.0 - (price - low) / span * 20.0;
        // Written in place: no String per point.
        path.push(if n == 0 { 'M' } else { 'L' });
        write_decimals(&mut path, x, 1);
        path.push(',');
        write_decimals(&mut path, y, 1);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_carry_a_sign_and_an_arrow() {
        assert_eq!((arrow(1.25), signed(1.25, "").as_str()), ("▲ ", "+1.25"));
        assert_eq!((arrow(-0.5), signed(-0.5, "%").as_str()), ("▼ ", "−0.50%"));
        assert_eq!((arrow(0.0), signed(0.0, "").as_str()), ("", "0.00"));
    }

    #[test]
    fn decimals_are_written_as_rusts_float_formatting_writes_them() {
        // Prices and changes in cents, percentages, coordinates in the box.
        for cents in (-100_000i64..100_000)
            .step_by(7)
            .chain([5, -5, 0, 1, 99, 100])
        {
            let value = cents as f64 / 100.0;
            assert_eq!(decimals(value, 2), format!("{value:.2}"), "{value}");
        }
        // Anything else: at most one in the last digit (float error at a half).
        for n in 0..5_000 {
            let value = n as f64 * 0.0137 - 7.0;
            for places in [1, 2] {
                let ours: f64 = decimals(value, places).parse().unwrap();
                let rusts: f64 = format!("{value:.places$}", places = places as usize)
                    .parse()
                    .unwrap();
                let unit = 10f64.powi(-(places as i32));
                assert!(
                    (ours - rusts).abs() <= unit * 1.001,
                    "{value} to {places}: {ours} vs {rusts}"
                );
            }
        }
        assert_eq!(decimals(1234.5, 0), "1235");
        assert_eq!(decimals(-0.001, 2), "0.00");
    }

    #[test]
    fn the_sparkline_spans_the_box() {
        assert_eq!(sparkline(&[1.0, 2.0, 3.0]), "M0.0,22.0L50.0,12.0L100.0,2.0");
        assert_eq!(sparkline(&[5.0]), "M0.0,22.0");
        assert_eq!(sparkline(&[]), "");
    }
}
