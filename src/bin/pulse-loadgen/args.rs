//! Owns the command line: every flag with its default and help text, the
//! modes, and the checks a mode's flags need before a run starts.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use pulse::protocol::Channel;
use serde::Serialize;

use crate::doc::{DocPlan, EditAt};

/// Opens N WebSocket clients against a Pulse server and reports connections,
/// closes by the server, delivered ticks per second and tick latency.
#[derive(Debug, Parser)]
#[command(name = "pulse-loadgen", version)]
pub struct Args {
    /// WebSocket URL of the server's endpoint (ws:// or, with --tls-ca,
    /// wss://; its host must resolve to an IPv4 address).
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws")]
    pub url: String,

    /// For a wss:// URL: a PEM file of the certificates to trust (the
    /// server's own, or the CA that signed it). The URL's host is the name
    /// checked against the certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// How clients reach the server: WebSockets, or the HTTP fallback
    /// (`GET /sse` + POSTs, on the --url's host and port; stream and idle
    /// modes, plain HTTP only).
    #[arg(long, value_enum, default_value_t = Transport::Websocket)]
    pub transport: Transport,

    /// Number of WebSocket clients to open, one socket and one task each.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,

    /// Ticker subscriptions per client (stream mode). Client i takes K
    /// consecutive symbols of the universe starting at index (i*K) mod M,
    /// wrapping, so every symbol gets about the same number of subscribers.
    /// Capped at the universe's size.
    #[arg(long, value_name = "K", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub symbols: u64,

    /// The symbols to subscribe to: a comma-separated list (AAPL,MSFT) or a
    /// number M meaning SYM0..SYM{M-1}, like the server's own --symbols.
    #[arg(long, value_name = "LIST|M", default_value = "50")]
    pub universe: String,

    /// Seconds to measure once every client has connected (or failed to).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,

    /// What each client does after connecting.
    #[arg(long, value_enum, default_value_t = Mode::Stream)]
    pub mode: Mode,

    /// Spread the connections over the source addresses 127.0.0.1 ..
    /// 127.0.0.N (loopback targets only): each address allows about 28,000
    /// connections to one server port.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,

    /// New connections per second while ramping up, so that the server's
    /// accept queue is not flooded.
    #[arg(long, value_name = "R", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_rate: u32,

    /// Storm mode: seconds ticks flow after every client subscribed, before
    /// the drop.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub settle: u64,

    /// Storm mode: seconds offsets are checked after the last client is back.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub verify: u64,

    /// Abuse mode: chat messages per second the chatting abuser posts (the
    /// server's --chat-rate is 5 by default).
    #[arg(long, value_name = "R", default_value_t = 5.0)]
    pub chat_rate: f64,

    /// Doc mode: clients that edit the document (each also reads it).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub editors: u64,

    /// Doc mode: clients that only subscribe to the document and apply its updates.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub readers: u64,

    /// Doc mode: updates per second each editor sends (the server allows 30).
    #[arg(long, value_name = "R", default_value_t = 2.0)]
    pub edit_rate: f64,

    /// Doc mode: stop editing after this many updates in all (and at the
    /// latest after --duration seconds).
    #[arg(long, value_name = "N")]
    pub total_updates: Option<u64>,

    /// Doc mode: an editor whose update was answered `rate_limited` keeps
    /// sending new ones while it waits to resend it (by default it holds
    /// them until the resend is acknowledged, so the server receives each
    /// editor's updates in order).
    #[arg(long)]
    pub send_past_retries: bool,

    /// Doc mode: updates one editor may have sent without an ack yet; it
    /// holds its next edits meanwhile.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,

    /// Doc mode: where editors type each letter.
    #[arg(long, value_enum, default_value_t = EditAt::Random)]
    pub edit_at: EditAt,

    /// Doc mode: the document id (the channel is `doc:{ID}`).
    #[arg(long, value_name = "ID", default_value = "notes")]
    pub doc: String,

    /// Print the final report as one JSON object on one line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// One WebSocket per client (`--url`).
    Websocket,
    /// The HTTP fallback: one `GET /sse` stream per client, envelopes POSTed.
    Sse,
}

/// What a client does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Send `hello {}` and one `subscribe` to K `ticker:` channels, read
    /// everything and time every `tick`.
    Stream,
    /// Send `hello {}` only, then just answer the server's Pings; the report
    /// says how many sockets are still open at the end and how many got a
    /// Ping (`pinged`, `min_pings`).
    Idle,
    /// Drop every connection at once and reconnect with backoff and resume.
    Storm,
    /// Stream mode's subscribers next to a `status` flooder and a chatter.
    Abuse,
    /// Editors and readers of one shared document (`doc:` channel).
    Doc,
}

impl Mode {
    /// The flag value naming this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Stream => "stream",
            Mode::Idle => "idle",
            Mode::Storm => "storm",
            Mode::Abuse => "abuse",
            Mode::Doc => "doc",
        }
    }

    /// Whether its clients subscribe to `ticker:` channels.
    pub fn subscribes(self) -> bool {
        self != Mode::Idle
    }
}

impl Args {
    /// Checks the doc-mode flags and turns them into the run's shape.
    pub fn doc_plan(&self) -> Result<DocPlan, String> {
        Channel::doc(&self.doc).map_err(|err| format!("--doc: {err}"))?;
        if !(self.edit_rate.is_finite() && self.edit_rate > 0.0) {
            return Err(format!(
                "--edit-rate {}: give a positive rate",
                self.edit_rate
            ));
        }
        if self.editors + self.readers == 0 {
            return Err("--editors and --readers: give at least one client".into());
        }
        Ok(DocPlan {
            doc: self.doc.clone(),
            editors: self.editors,
            readers: self.readers,
            edit_rate: self.edit_rate,
            total_updates: self.total_updates,
            duration: Duration::from_secs(self.duration),
            send_past_retries: self.send_past_retries,
            max_in_flight: usize::try_from(self.max_in_flight).unwrap_or(usize::MAX),
            edit_at: self.edit_at,
            connect_rate: self.connect_rate,
        })
    }
}
