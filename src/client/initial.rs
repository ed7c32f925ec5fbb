//! Owns [`InitialState`]: what the server rendered the page with, handed to
//! the browser inside the HTML, so the page continues from exactly those
//! offsets; the bounded beginning of the shared note it shows until its
//! socket delivers the note's state ([`NotePreview`]); and the watchlist
//! cookie both sides read.

use serde::{Deserialize, Serialize};

use crate::protocol::{Channel, Subscribed, UserRef};

/// The cookie holding the watchlist, so the server can render it.
pub const WATCHLIST_COOKIE: &str = "pulse_watchlist";
/// The cookie holding the user's token: the socket's `hello` sends it, and
/// the server renders the page for that user.
pub const TOKEN_COOKIE: &str = "pulse_token";
/// The watchlist of a first visit when no server says otherwise (the
/// simulator's default symbols).
pub const DEFAULT_WATCHLIST: [&str; 12] = [
    "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "BRK.B", "JPM", "V", "NFLX", "AMD",
];
/// The most symbols a watchlist holds.
pub const MAX_WATCHLIST: usize = 50;
/// The most bytes (UTF-8) of the shared note's text a page is rendered with.
/// The note itself may hold a mebibyte; the first paint shows its beginning
/// (read-only) and the socket brings the rest, so no page carries the whole
/// note, and a visitor who is not signed in (who may not subscribe to it)
/// reads this much of it.
pub const NOTE_PREVIEW_BYTES: usize = 8 * 1024;
/// What follows the rendered beginning of a note that goes on past it.
pub const NOTE_MORE_MARKER: &str = "…";

/// The page's starting point: the watchlist and, per symbol, what a
/// `subscribed` would have said at render time (epoch, offset, snapshot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InitialState {
    pub watchlist: Vec<String>,
    pub tickers: Vec<Subscribed>,
    /// The signed-in user, when the token cookie held a valid token.
    pub user: Option<UserRef>,
    /// The presence channel at render time (signed-in users only).
    pub presence: Option<Subscribed>,
    /// The chat rooms rendered (signed-in users only).
    pub chat: Vec<Subscribed>,
    /// The user's notifications, when the server had them in memory.
    pub inbox: Option<Subscribed>,
    /// The beginning of the shared note's text (everyone sees it; signed-in
    /// users edit the note once the socket delivered its state).
    pub note: Option<NotePreview>,
}

/// The beginning of the shared note's text, as the server rendered it: at
/// most [`NOTE_PREVIEW_BYTES`], cut between two characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotePreview {
    pub text: String,
    /// Whether the note goes on past `text`.
    pub more: bool,
}

impl NotePreview {
    /// The beginning of `text`: its first `bound` bytes at most.
    pub fn cut(text: &str, bound: usize) -> Self {
        if text.len() <= bound {
            return NotePreview {
                text: text.to_owned(),
                more: false,
            };
        }
        let end = (0..=bound)
            .rev()
            .find(|&at| text.is_char_boundary(at))
            .unwrap_or(0);
        NotePreview {
            text: text[..end].to_owned(),
            more: true,
        }
    }

    /// What the text area shows: the text, and [`NOTE_MORE_MARKER`] when the
    /// note goes on.
    pub fn shown(&self) -> String {
        if self.more {
            format!("{}{NOTE_MORE_MARKER}", self.text)
        } else {
            self.text.clone()
        }
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// The `Set-Cookie`-style string storing (or, with `None`, deleting) the token.
pub fn token_cookie(token: Option<&str>, max_age_secs: u64) -> String {
    match token {
        Some(token) => {
            format!("{TOKEN_COOKIE}={token}; path=/; max-age={max_age_secs}; samesite=lax")
        }
        None => format!("{TOKEN_COOKIE}=; path=/; max-age=0; samesite=lax"),
    }
}

/// The watchlist in a `Cookie` header, if the cookie is there. Invalid
/// symbols are dropped; duplicates are kept once; at most [`MAX_WATCHLIST`].
pub fn watchlist_from_cookies(header: &str) -> Option<Vec<String>> {
    let value = cookie(header, WATCHLIST_COOKIE)?;
    let mut symbols: Vec<String> = Vec::new();
    for symbol in value.split('-').filter(|s| Channel::is_symbol(s)) {
        if !symbols.iter().any(|s| s == symbol) && symbols.len() < MAX_WATCHLIST {
            symbols.push(symbol.to_owned());
        }
    }
    Some(symbols)
}

/// The `Set-Cookie`-style string that stores `watchlist` for a year.
/// Symbols never contain `-`, so it separates them (commas are not allowed
/// in cookie values).
pub fn watchlist_cookie(watchlist: &[String]) -> String {
    format!(
        "{WATCHLIST_COOKIE}={}; path=/; max-age=31536000; samesite=lax",
        watchlist.join("-")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_preview_is_the_whole_text_up_to_its_bound_and_cut_between_characters_past_it() {
        let whole = NotePreview::cut("short", 5);
        assert_eq!((whole.text.as_str(), whole.more), ("short", false));
        assert_eq!(whole.shown(), "short");
        let cut = NotePreview::cut("longer", 5);
        assert_eq!((cut.text.as_str(), cut.more), ("longe", true));
        assert_eq!(cut.shown(), format!("longe{NOTE_MORE_MARKER}"));
        // "é" is two bytes: a bound inside it cuts before it.
        let cut = NotePreview::cut("abcé!", 4);
        assert_eq!((cut.text.as_str(), cut.more), ("abc", true));
        let cut = NotePreview::cut("😀", 3);
        assert_eq!((cut.text.as_str(), cut.more), ("", true));
        let long = "x".repeat(3 * NOTE_PREVIEW_BYTES);
        assert_eq!(
            NotePreview::cut(&long, NOTE_PREVIEW_BYTES).text.len(),
            NOTE_PREVIEW_BYTES
        );
    }

    #[test]
    fn the_cookie_round_trips_a_watchlist() {
        let list = vec!["AAPL".to_owned(), "BRK.B".to_owned()];
        let cookie = watchlist_cookie(&list);
        let header = cookie.split(';').next().unwrap();
        assert_eq!(
            watchlist_from_cookies(&format!("a=1; {header}; b=2")),
            Some(list)
        );
    }

    #[test]
    fn bad_or_missing_cookies_are_handled() {
        assert_eq!(watchlist_from_cookies("other=1"), None);
        assert_eq!(watchlist_from_cookies("pulse_watchlist="), Some(vec![]));
        assert_eq!(
            watchlist_from_cookies("pulse_watchlist=AAPL-<script>-aapl-AAPL-MSFT"),
            Some(vec!["AAPL".to_owned(), "MSFT".to_owned()])
        );
        let many = (0..80)
            .map(|n| format!("S{n}"))
            .collect::<Vec<_>>()
            .join("-");
        assert_eq!(
            watchlist_from_cookies(&format!("pulse_watchlist={many}"))
                .unwrap()
                .len(),
            MAX_WATCHLIST
        );
    }
}
