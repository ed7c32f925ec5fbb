//! Owns channel names: parsing `ticker:AAPL`, `chat:general`, ... into a
//! [`Channel`] and refusing names PROTOCOL.md does not allow. On the wire a
//! channel is its name as a JSON string; a server message holding a name
//! outside the grammar does not decode.

use std::fmt;
use std::str::FromStr;

/// A channel everything the server streams lives on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `ticker:{SYMBOL}`, SYMBOL matching `[A-Z0-9.]{1,12}`.
    Ticker(String),
    /// `presence`.
    Presence,
    /// `chat:{room}`, room matching `[a-z0-9-]{1,32}`.
    Chat(String),
    /// `user:{user_id}`, a user id of 1 to 64 characters.
    User(String),
    /// `doc:{doc_id}`, doc id matching `[a-z0-9-]{1,32}`.
    Doc(String),
}

/// Why a channel name was refused; the text is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("unknown channel `{0}`: expected ticker:, presence, chat:, user: or doc:")]
    Unknown(String),
    #[error("bad ticker symbol `{0}`: 1 to 12 of A-Z, 0-9 and '.'")]
    Symbol(String),
    #[error("bad room name `{0}`: 1 to 32 of a-z, 0-9 and '-'")]
    Room(String),
    #[error("bad user id `{0}`: 1 to 64 characters")]
    UserId(String),
    #[error("bad document id `{0}`: 1 to 32 of a-z, 0-9 and '-'")]
    DocId(String),
}

impl Channel {
    /// Validates a ticker symbol (`[A-Z0-9.]{1,12}`).
    pub fn is_symbol(symbol: &str) -> bool {
        (1..=12).contains(&symbol.len())
            && symbol
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.')
    }

    /// Validates a room or document id (`[a-z0-9-]{1,32}`).
    pub fn is_slug(name: &str) -> bool {
        (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    /// Validates a user id (1 to 64 characters, no control characters).
    pub fn is_user_id(id: &str) -> bool {
        (1..=64).contains(&id.chars().count()) && !id.chars().any(char::is_control)
    }

    /// `ticker:{symbol}` after validating the symbol.
    pub fn ticker(symbol: &str) -> Result<Self, ChannelError> {
        if Self::is_symbol(symbol) {
            Ok(Channel::Ticker(symbol.to_owned()))
        } else {
            Err(ChannelError::Symbol(symbol.to_owned()))
        }
    }

    /// `chat:{room}` after validating the room name.
    pub fn chat(room: &str) -> Result<Self, ChannelError> {
        if Self::is_slug(room) {
            Ok(Channel::Chat(room.to_owned()))
        } else {
            Err(ChannelError::Room(room.to_owned()))
        }
    }

    /// `doc:{id}`, if `id` is a valid document id.
    pub fn doc(id: &str) -> Result<Self, ChannelError> {
        if Self::is_slug(id) {
            Ok(Channel::Doc(id.to_owned()))
        } else {
            Err(ChannelError::DocId(id.to_owned()))
        }
    }
}

impl FromStr for Channel {
    type Err = ChannelError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name == "presence" {
            return Ok(Channel::Presence);
        }
        let Some((kind, rest)) = name.split_once(':') else {
            return Err(ChannelError::Unknown(name.to_owned()));
        };
        match kind {
            "ticker" => Channel::ticker(rest),
            "chat" => Channel::chat(rest),
            "user" if Self::is_user_id(rest) => Ok(Channel::User(rest.to_owned())),
            "user" => Err(ChannelError::UserId(rest.to_owned())),
            "doc" if Self::is_slug(rest) => Ok(Channel::Doc(rest.to_owned())),
            "doc" => Err(ChannelError::DocId(rest.to_owned())),
            _ => Err(ChannelError::Unknown(name.to_owned())),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Ticker(symbol) => write!(f, "ticker:{symbol}"),
            Channel::Presence => f.write_str("presence"),
            Channel::Chat(room) => write!(f, "chat:{room}"),
            Channel::User(id) => write!(f, "user:{id}"),
            Channel::Doc(id) => write!(f, "doc:{id}"),
        }
    }
}

impl serde::Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A `Cow` borrows the name when the JSON has no escapes in it.
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Lets a test (or a log line) compare a channel with its name.
impl PartialEq<str> for Channel {
    fn eq(&self, name: &str) -> bool {
        match (self, name.split_once(':')) {
            (Channel::Presence, _) => name == "presence",
            (Channel::Ticker(symbol), Some(("ticker", rest)))
            | (Channel::Chat(symbol), Some(("chat", rest)))
            | (Channel::User(symbol), Some(("user", rest)))
            | (Channel::Doc(symbol), Some(("doc", rest))) => symbol == rest,
            _ => false,
        }
    }
}

impl PartialEq<&str> for Channel {
    fn eq(&self, name: &&str) -> bool {
        *self == **name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_prints_it_back() {
        for name in [
            "ticker:AAPL",
            "ticker:BRK.B",
            "presence",
            "chat:general",
            "user:alice",
            "doc:notes",
        ] {
            let channel: Channel = name.parse().unwrap();
            assert_eq!(channel.to_string(), name);
        }
    }

    #[test]
    fn travels_as_its_name_and_refuses_a_bad_one_when_read() {
        let channel: Channel = "chat:general".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&channel).unwrap(),
            r#""chat:general""#
        );
        let back: Channel = serde_json::from_str(r#""chat:general""#).unwrap();
        assert_eq!(back, channel);
        assert_eq!(back, "chat:general");
        assert_ne!(back, "chat:other");
        assert_ne!(back, "doc:general");
        let escaped: Channel = serde_json::from_str(r#""chat:gen\u0065ral""#).unwrap();
        assert_eq!(escaped, channel);
        assert!(serde_json::from_str::<Channel>(r#""chat:General""#).is_err());
    }

    #[test]
    fn refuses_names_outside_the_grammar() {
        for name in [
            "ticker:aapl",
            "ticker:",
            "ticker:ABCDEFGHIJKLM",
            "chat:General",
            "chat:a b",
            &format!("chat:{}", "a".repeat(33)),
            "doc:",
            "user:",
            "prices",
            "presence:x",
        ] {
            assert!(name.parse::<Channel>().is_err(), "{name} should be refused");
        }
    }
}
