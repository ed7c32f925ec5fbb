//! Owns the closed sets of the protocol: `error.code` values and WebSocket
//! close codes, with the reconnect rule of each close code.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every `error.code` of PROTOCOL.md ("Errors and close codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    BadFrame,
    UnknownType,
    Invalid,
    HelloRequired,
    Unauthorized,
    Forbidden,
    NotFound,
    RateLimited,
    TooLarge,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Invalid => "invalid",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The WebSocket close codes Pulse uses, with their meaning on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: normal closure; the client does not reconnect.
    Normal,
    /// 1001: the server is going away (shutdown, restart).
    GoingAway,
    /// 1006: abnormal closure, never sent, only observed (network loss).
    Abnormal,
    /// 1008: policy violation, e.g. a forbidden `Origin`.
    PolicyViolation,
    /// 1009: a message larger than `max_message_bytes`.
    TooBig,
    /// 1011: internal error.
    Internal,
    /// 1013: try again later (overloaded).
    TryAgainLater,
    /// 4001: missing, invalid or expired token (or no `hello` in time).
    Unauthorized,
    /// 4008: slow consumer; resume from offsets.
    SlowConsumer,
    /// Any other code a peer may send.
    Other(u16),
}

impl CloseCode {
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::Abnormal => 1006,
            CloseCode::PolicyViolation => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::TryAgainLater => 1013,
            CloseCode::Unauthorized => 4001,
            CloseCode::SlowConsumer => 4008,
            CloseCode::Other(code) => code,
        }
    }

    /// Whether a client should reconnect after this close (PROTOCOL.md's table;
    /// unknown codes reconnect, since giving up is the worse failure).
    pub fn reconnects(self) -> bool {
        !matches!(
            self,
            CloseCode::Normal | CloseCode::PolicyViolation | CloseCode::Unauthorized
        )
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        match code {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1006 => CloseCode::Abnormal,
            1008 => CloseCode::PolicyViolation,
            1009 => CloseCode::TooBig,
            1011 => CloseCode::Internal,
            1013 => CloseCode::TryAgainLater,
            4001 => CloseCode::Unauthorized,
            4008 => CloseCode::SlowConsumer,
            other => CloseCode::Other(other),
        }
    }
}
