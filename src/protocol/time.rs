//! Owns [`Timestamp`]: RFC 3339 in UTC with exactly six fractional digits.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A moment on the wire. It is truncated to whole microseconds when made, so
/// what is sent is exactly what a receiver parses back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Wraps a moment, dropping anything finer than a microsecond.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Timestamp(at.trunc_subsecs(6))
    }

    /// Milliseconds since the Unix epoch (for latency arithmetic).
    pub fn unix_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// The moment `micros` microseconds after the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Option<Self> {
        DateTime::from_timestamp_micros(micros).map(Timestamp)
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// Parses any RFC 3339 moment (any offset, any precision): what chrono's
    /// `DateTime::parse_from_rfc3339` accepts, to the same moment (a test
    /// holds the two side by side), read by hand because chrono's reader is
    /// about 3 KB of the page's wasm. `T`, `t` or a space between date and
    /// time, `Z` or `z`, a leap second (`:60`), fractions past nine digits
    /// ignored, offsets up to ±23:59 (with `-` or U+2212 for minus).
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() < 19
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let number = |digits: &[u8]| {
            digits.iter().try_fold(0u32, |n, &c| {
                c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
            })
        };
        let date = NaiveDate::from_ymd_opt(
            number(&b[..4])? as i32,
            number(&b[5..7])?,
            number(&b[8..10])?,
        )?;
        let (second, mut nano) = match number(&b[17..19])? {
            60 => (59, 1_000_000_000),
            second => (second, 0),
        };
        let mut rest = &b[19..];
        if let [b'.', fraction @ ..] = rest {
            let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            let read = digits.min(9);
            nano += number(&fraction[..read])? * 10u32.pow(9 - read as u32);
            rest = &fraction[digits..];
        }
        let time =
            NaiveTime::from_hms_nano_opt(number(&b[11..13])?, number(&b[14..16])?, second, nano)?;
        let (negative, hhmm) = match rest {
            [b'Z' | b'z'] => (false, &b"00:00"[..]),
            [b'+', hhmm @ ..] => (false, hhmm),
            [b'-', hhmm @ ..] => (true, hhmm),
            // U+2212 MINUS SIGN
            [0xE2, 0x88, 0x92, hhmm @ ..] => (true, hhmm),
            _ => return None,
        };
        let [h1, h2, b':', m1 @ b'0'..=b'5', m2] = *hhmm else {
            return None;
        };
        let seconds = (number(&[h1, h2])? * 60 + number(&[m1, m2])?) as i32 * 60;
        let offset = FixedOffset::east_opt(if negative { -seconds } else { seconds })?;
        let utc = date.and_time(time).checked_sub_offset(offset)?;
        Some(Self::from_datetime(utc.and_utc()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not an RFC 3339 timestamp"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written reader accepts what chrono's RFC 3339 reader accepts,
    /// as the same moment, and refuses what it refuses.
    #[test]
    fn parse_agrees_with_chrono() {
        let cases = [
            "2026-11-25T17:30:00.123456Z",
            "2026-11-25T17:30:00Z",
            "2026-11-25t17:30:00z",
            "2026-11-25 17:30:00Z",
            "2026-11-25T18:30:00.1+01:00",
            "2026-11-25T17:30:00.123456789Z",
            "2026-11-25T17:30:00.1234567891234Z",
            "2026-11-25T12:00:00-05:30",
            "2026-11-25T12:00:00\u{2212}05:30",
            "2026-11-25T12:00:00+23:59",
            "2026-11-25T12:00:00+24:00",
            "2026-11-25T12:00:00+05:60",
            "2026-11-25T12:00:00+0530",
            "2026-11-25T12:00:00+05",
            "2026-11-25T12:00:00+05:3",
            "2026-11-25T12:00:00+05:30:00",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "2016-12-31T23:58:60Z",
            "2016-12-31T23:59:61Z",
            "2024-02-29T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T23:60:00Z",
            "0000-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-23:59",
            "2026-11-25T17:30:00.Z",
            "2026-11-25T17:30:00",
            "2026-11-25T17:30:00ZZ",
            "2026-11-25T17:30:00 Z",
            "2026-11-25X17:30:00Z",
            "2026-11-2517:30:00Z",
            "+2026-11-25T17:30:00Z",
            "2026-1-25T17:30:00Z",
            "2026-11-25T17:30:00.١Z",
            "2026-11-25T17:30:00.5é",
            "",
            "not a time",
        ];
        for case in cases {
            let chrono = DateTime::parse_from_rfc3339(case)
                .ok()
                .map(|at| Timestamp::from_datetime(at.with_timezone(&Utc)));
            assert_eq!(Timestamp::parse(case), chrono, "{case:?}");
        }
    }
}
