//! Owns Unicode case mapping for what the page shows: the browser's own
//! (`toUpperCase`, `toLowerCase`) in the bundle, Rust's everywhere else. Both
//! follow Unicode's default full mapping (`ß` becomes `SS`); Rust's needs two
//! tables of about 12 KB each in the bundle, which the browser already has.

/// `text` in capitals.
#[cfg(not(feature = "browser"))]
pub fn upper(text: &str) -> String {
    text.to_uppercase()
}

/// `text` in small letters.
#[cfg(not(feature = "browser"))]
pub fn lower(text: &str) -> String {
    text.to_lowercase()
}

/// `text` in capitals, by the browser's `toUpperCase` (the same Unicode
/// mapping as Rust's), so Rust's table stays out of the bundle.
#[cfg(feature = "browser")]
pub fn upper(text: &str) -> String {
    js_sys::JsString::from(text).to_upper_case().into()
}

/// `text` in small letters, by the browser's `toLowerCase`.
#[cfg(feature = "browser")]
pub fn lower(text: &str) -> String {
    js_sys::JsString::from(text).to_lower_case().into()
}

#[cfg(test)]
mod tests {
    use super::{lower, upper};

    #[test]
    fn maps_whole_strings_by_unicode() {
        assert_eq!(upper("émile straße"), "ÉMILE STRASSE");
        assert_eq!(lower("ÉMILE Zola"), "émile zola");
    }
}
