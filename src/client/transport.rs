//! Owns the choice of transport (docs/EXTENSIONS.md, "HTTP fallback
//! transport"): WebSocket first; the fallback (Server-Sent Events down,
//! POSTs up) after [`SWITCH_AFTER`] consecutive attempts whose upgrade failed
//! while plain HTTP to the same server worked, or from the start when the
//! page asks for it (`?transport=sse`); on the fallback, when to try a
//! WebSocket again in the background (after [`PROBE_FIRST_MS`], doubling up
//! to [`PROBE_MAX_MS`]), and the move back once one opens. A move is a
//! reconnect: offsets and the outbox's resends make it lose and double
//! nothing. Pure, like the reconnection machine: the driver says what
//! happened and carries out the [`Move`].

/// How the page talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    WebSocket,
    /// `GET /sse` + `POST /sse/{session}`.
    Sse,
}

impl Transport {
    /// The name the inspector shows.
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
        }
    }
}

/// Failed upgrades in a row (with HTTP working) that make the page fall back.
pub const SWITCH_AFTER: u32 = 2;
/// The first background WebSocket try on the fallback, after the switch.
pub const PROBE_FIRST_MS: f64 = 5_000.0;
/// The longest wait between two background tries.
pub const PROBE_MAX_MS: f64 = 30_000.0;

/// What the driver must do about the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Stay,
    /// Reconnect over this transport now.
    To(Transport),
}

/// The choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Chooser {
    current: Transport,
    /// Asked for by the page (`?transport=sse`): no move back.
    forced: bool,
    failed_upgrades: u32,
    probe_wait_ms: f64,
}

impl Default for Chooser {
    fn default() -> Self {
        Chooser::new(false)
    }
}

impl Chooser {
    /// WebSocket first, unless `forced_fallback`.
    pub fn new(forced_fallback: bool) -> Self {
        Chooser {
            current: match forced_fallback {
                true => Transport::Sse,
                false => Transport::WebSocket,
            },
            forced: forced_fallback,
            failed_upgrades: 0,
            probe_wait_ms: PROBE_FIRST_MS,
        }
    }

    /// Whether a page's query string (`location.search`) asks for the
    /// fallback: `transport=sse`.
    pub fn asks_for_fallback(search: &str) -> bool {
        search
            .trim_start_matches('?')
            .split('&')
            .any(|pair| pair == "transport=sse")
    }

    /// The transport the next attempt uses.
    pub fn current(&self) -> Transport {
        self.current
    }

    /// A WebSocket attempt closed without ever opening; `http_works` says
    /// whether a plain HTTP request to the same server was answered right
    /// after. Only failures with HTTP working count, and only in a row.
    pub fn upgrade_failed(&mut self, http_works: bool) -> Move {
        if self.current != Transport::WebSocket {
            return Move::Stay;
        }
        if !http_works {
            // The server or the network is down: nothing says the upgrade
            // is what fails.
            self.failed_upgrades = 0;
            return Move::Stay;
        }
        self.failed_upgrades += 1;
        if self.failed_upgrades < SWITCH_AFTER {
            return Move::Stay;
        }
        self.failed_upgrades = 0;
        self.current = Transport::Sse;
        self.probe_wait_ms = PROBE_FIRST_MS;
        Move::To(Transport::Sse)
    }

    /// A WebSocket opened: a regular attempt, or a background try on the
    /// fallback (which then moves back).
    pub fn upgrade_worked(&mut self) -> Move {
        self.failed_upgrades = 0;
        if self.current == Transport::Sse && !self.forced {
            self.current = Transport::WebSocket;
            return Move::To(Transport::WebSocket);
        }
        Move::Stay
    }

    /// How long from now to try a WebSocket in the background, on the
    /// fallback only (and not when the page asked for it); each call doubles
    /// the next wait, up to [`PROBE_MAX_MS`].
    pub fn next_probe_in_ms(&mut self) -> Option<f64> {
        if self.current != Transport::Sse || self.forced {
            return None;
        }
        let wait = self.probe_wait_ms;
        self.probe_wait_ms = (wait * 2.0).min(PROBE_MAX_MS);
        Some(wait)
    }
}

#[cfg(test)]
mod tests;
