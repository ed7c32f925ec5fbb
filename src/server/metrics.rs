//! Owns the server's metrics and their exposition at `/metrics`, through the
//! `prometheus-client` library: one [`Registry`] per server (tests run
//! several servers in one process, so nothing is global). Hot paths hold
//! pre-resolved handles (a counter, a gauge, a histogram: a few atomic adds,
//! no lock; the delivery path's histograms are [`SharedHistogram`]s, see
//! `metrics/histogram.rs` for why); label lookups happen only on rare events
//! (an error, a close).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use crate::protocol::{Channel, ErrorCode};

mod histogram;
pub use histogram::SharedHistogram;

/// A metric labelled by a protocol code (an error code, a close code).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

/// A gauge of connections labelled by how they arrived.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
    tls: &'static str,
}

/// A gauge of subscriptions labelled by channel kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// A gauge labelled by lease (its Redis key).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabel {
    lease: String,
}

/// The channel kinds, in the order of [`Metrics::subscriptions`] and of
/// [`ChannelKind`] (`admin` last: it has no subscriptions gauge).
const KINDS: [&str; 6] = ["ticker", "presence", "chat", "user", "doc", "admin"];

/// A channel's kind, as `/metrics` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Ticker,
    Presence,
    Chat,
    User,
    Doc,
    /// The operators' `admin` channel (not a [`Channel`]: the hub never holds it).
    Admin,
}

impl ChannelKind {
    pub fn of(channel: &Channel) -> Self {
        match channel {
            Channel::Ticker(_) => ChannelKind::Ticker,
            Channel::Presence => ChannelKind::Presence,
            Channel::Chat(_) => ChannelKind::Chat,
            Channel::User(_) => ChannelKind::User,
            Channel::Doc(_) => ChannelKind::Doc,
        }
    }

    /// Its place in [`KINDS`].
    fn index(self) -> usize {
        self as usize
    }
}

/// A subscribe-to-first-message histogram: 100 µs to ~13 s (a subscribe may
/// wait for a channel's load from the store).
fn first_message_histogram() -> SharedHistogram {
    SharedHistogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// The relay's queue towards Redis, by kind of message (`broker/queue.rs`):
/// how many wait now, the most that ever waited, how long the oldest has
/// waited, and how many went past the bound (their channel caught up from
/// the store instead). Handles share their values with `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct RelayGauges {
    depth: [Gauge; 3],
    peak: [Gauge; 3],
    pub lag: Gauge<f64, AtomicU64>,
    pub behind: Counter,
    /// Reads of the store by the broker's channel tasks (gap fills, catch-ups).
    pub store_reads: Counter,
}

impl RelayGauges {
    /// Sets the depths (and raises the peaks): never-dropped messages,
    /// ticker channels with a tick, awareness frames.
    pub fn set_depth(&self, ordered: i64, ticks: i64, awareness: i64) {
        for (n, depth) in [ordered, ticks, awareness].into_iter().enumerate() {
            self.depth[n].set(depth);
            if depth > self.peak[n].get() {
                self.peak[n].set(depth);
            }
        }
    }
}

/// The kinds of [`RelayGauges`], in order.
const RELAY_KINDS: [&str; 3] = ["ordered", "ticks", "awareness"];

/// The metrics updated by connections, the hub and the store; read by
/// `/metrics`. Handles are cheap clones sharing one value.
#[derive(Debug)]
pub struct Metrics {
    pub connections_open: Gauge,
    /// The connections open now, by transport (`websocket`, or the HTTP
    /// fallback's `sse`) and whether TLS ended in this server (`tls="true"`;
    /// `"false"`: plain, or TLS ended in a proxy in front of Pulse).
    websocket_plain: Gauge,
    websocket_tls: Gauge,
    sse_plain: Gauge,
    sse_tls: Gauge,
    pub connections_total: Counter,
    pub messages_in: Counter,
    pub messages_out: Counter,
    /// Error messages sent, by code.
    pub errors_by_code: Family<CodeLabel, Counter>,
    /// Connections ended, by the close code the server sent (`peer` when
    /// the peer closed or vanished first).
    pub closes_by_code: Family<CodeLabel, Counter>,
    pub ticks_published: Counter,
    /// Ticks replaced by a newer one before a slow reader got them.
    pub ticks_conflated: Counter,
    /// Connections closed with 4008 (slow consumer).
    pub slow_consumers: Counter,
    /// Upgrades answered 1013 (the cap or an upgrade rate).
    pub upgrades_refused: Counter,
    /// Client messages answered `rate_limited`.
    pub rate_limited: Counter,
    /// Channels the hub holds in memory now (kept by the hub).
    pub hub_channels: Gauge,
    /// Subscriptions held now, one gauge per channel kind ([`KINDS`] but `admin`).
    subscriptions: [Gauge; 5],
    /// From a `subscribe` being handled to the channel's first frame (its
    /// `subscribed`) written to the socket, one histogram per [`KINDS`].
    first_message: [SharedHistogram; 6],
    first_message_by_kind: Family<KindLabel, SharedHistogram, fn() -> SharedHistogram>,
    /// The families the two gauges above belong to.
    by_transport: Family<TransportLabel, Gauge>,
    by_kind: Family<KindLabel, Gauge>,
    /// 1 while this instance holds a lease (only with `--redis`).
    leases: Family<LeaseLabel, Gauge>,
    /// From a frame's entry into an outbox to its writer having written it.
    pub delivery_latency: SharedHistogram,
    /// Bytes queued in an outbox when its writer takes frames from it.
    pub outbox_depth: SharedHistogram,
    /// The adaptive upgrade pace (`ws/pace.rs`), set when scraped.
    upgrade_rate: Gauge<f64, AtomicU64>,
    scheduling_lag: Gauge<f64, AtomicU64>,
    registry: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        // 50 µs to ~6.5 s.
        let latency = SharedHistogram::new(exponential_buckets(0.000_05, 2.0, 18));
        let by_transport = Family::<TransportLabel, Gauge>::default();
        // A family's member and the handle cloned from it share one value.
        let gauge = |transport, tls| {
            by_transport
                .get_or_create(&TransportLabel { transport, tls })
                .clone()
        };
        let (websocket_plain, websocket_tls) =
            (gauge("websocket", "false"), gauge("websocket", "true"));
        let (sse_plain, sse_tls) = (gauge("sse", "false"), gauge("sse", "true"));
        let by_kind = Family::<KindLabel, Gauge>::default();
        let subscriptions = [0, 1, 2, 3, 4].map(|index| {
            by_kind
                .get_or_create(&KindLabel { kind: KINDS[index] })
                .clone()
        });
        let first_message_by_kind =
            Family::new_with_constructor(first_message_histogram as fn() -> SharedHistogram);
        let first_message = KINDS.map(|kind| {
            first_message_by_kind
                .get_or_create(&KindLabel { kind })
                .clone()
        });
        let metrics = Metrics {
            connections_open: Gauge::default(),
            websocket_plain,
            websocket_tls,
            sse_plain,
            sse_tls,
            connections_total: Counter::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            errors_by_code: Family::default(),
            closes_by_code: Family::default(),
            ticks_published: Counter::default(),
            ticks_conflated: Counter::default(),
            slow_consumers: Counter::default(),
            upgrades_refused: Counter::default(),
            rate_limited: Counter::default(),
            hub_channels: Gauge::default(),
            subscriptions,
            first_message,
            first_message_by_kind,
            by_transport,
            by_kind,
            leases: Family::default(),
            delivery_latency: latency,
            outbox_depth: SharedHistogram::new(exponential_buckets(64.0, 4.0, 10)),
            upgrade_rate: Gauge::default(),
            scheduling_lag: Gauge::default(),
            registry: Mutex::new(Registry::default()),
        };
        metrics.register_own();
        metrics
    }
}

impl Metrics {
    /// The gauge of open WebSocket connections that came with (`tls`) or
    /// without TLS ended in this server.
    pub fn websocket_connections(&self, tls: bool) -> &Gauge {
        if tls {
            &self.websocket_tls
        } else {
            &self.websocket_plain
        }
    }

    /// The gauge of open HTTP-fallback sessions that came with (`tls`) or
    /// without TLS ended in this server.
    pub fn sse_connections(&self, tls: bool) -> &Gauge {
        if tls {
            &self.sse_tls
        } else {
            &self.sse_plain
        }
    }

    fn register_own(&self) {
        let mut registry = self.registry();
        let r = &mut *registry;
        let m = self;
        r.register(
            "pulse_connections_open",
            "WebSocket connections open now",
            m.connections_open.clone(),
        );
        r.register(
            "pulse_connections_by_transport",
            "connections open now, by transport and whether TLS reached Pulse",
            m.by_transport.clone(),
        );
        r.register(
            "pulse_connections",
            "WebSocket connections accepted",
            m.connections_total.clone(),
        );
        r.register(
            "pulse_messages_in",
            "client messages received",
            m.messages_in.clone(),
        );
        r.register(
            "pulse_messages_out",
            "server messages sent",
            m.messages_out.clone(),
        );
        r.register(
            "pulse_protocol_errors",
            "error messages sent to clients, by code",
            m.errors_by_code.clone(),
        );
        r.register(
            "pulse_closes",
            "connections ended, by the close code the server sent (peer: the peer closed first)",
            m.closes_by_code.clone(),
        );
        r.register(
            "pulse_ticks_published",
            "ticks published on ticker channels",
            m.ticks_published.clone(),
        );
        r.register(
            "pulse_ticks_conflated",
            "ticks dropped for a slow reader because a newer one replaced them",
            m.ticks_conflated.clone(),
        );
        r.register(
            "pulse_slow_consumers",
            "connections closed with 4008 (slow consumer)",
            m.slow_consumers.clone(),
        );
        r.register(
            "pulse_upgrades_refused",
            "WebSocket upgrades closed with 1013 (connection cap, upgrade rate or busy)",
            m.upgrades_refused.clone(),
        );
        r.register(
            "pulse_rate_limited",
            "client messages answered rate_limited",
            m.rate_limited.clone(),
        );
        r.register(
            "pulse_hub_channels",
            "channels held in memory by the hub",
            m.hub_channels.clone(),
        );
        r.register(
            "pulse_subscriptions",
            "subscriptions held now, by channel kind",
            m.by_kind.clone(),
        );
        r.register(
            "pulse_lease_held",
            "1 while this instance holds the lease (with --redis)",
            m.leases.clone(),
        );
        r.register_with_unit(
            "pulse_delivery_latency",
            "from a frame queued for a connection to its writer having written it",
            Unit::Seconds,
            m.delivery_latency.clone(),
        );
        r.register_with_unit(
            "pulse_outbox_depth",
            "bytes queued for a connection when its writer takes frames",
            Unit::Bytes,
            m.outbox_depth.clone(),
        );
        r.register_with_unit(
            "pulse_subscribe_first_message",
            "from a subscribe being handled to the channel's first frame written, by channel kind",
            Unit::Seconds,
            m.first_message_by_kind.clone(),
        );
        r.register(
            "pulse_upgrade_rate",
            "WebSocket upgrades per second the adaptive pace allows now",
            m.upgrade_rate.clone(),
        );
        r.register_with_unit(
            "pulse_scheduling_lag",
            "how late the runtime runs a task that is ready (smoothed)",
            Unit::Seconds,
            m.scheduling_lag.clone(),
        );
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Registering and encoding leave the registry whole even if a
        // panic interrupted them, so a poisoned lock is used as is.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers the store's own metrics (its writer keeps them): commits,
    /// their duration, and documents loaded whole.
    pub fn register_store(
        &self,
        commits: Counter,
        commit_seconds: prometheus_client::metrics::histogram::Histogram,
        doc_loads: Counter,
    ) {
        let mut registry = self.registry();
        registry.register(
            "pulse_store_commits",
            "transactions the store's writer committed (one fsync each)",
            commits,
        );
        registry.register_with_unit(
            "pulse_store_commit",
            "time the store's writer took to run and commit one group of writes",
            Unit::Seconds,
            commit_seconds,
        );
        registry.register(
            "pulse_doc_loads",
            "documents loaded whole from the store (each one rebuilt from its state and log)",
            doc_loads,
        );
    }

    /// Counts an error message sent with `code`.
    pub fn error_sent(&self, code: ErrorCode) {
        self.errors_by_code
            .get_or_create(&CodeLabel {
                code: code.as_str().to_owned(),
            })
            .inc();
    }

    /// Counts a connection ended with `code` (`peer` when the peer left).
    pub fn closed(&self, code: &str) {
        self.closes_by_code
            .get_or_create(&CodeLabel {
                code: code.to_owned(),
            })
            .inc();
    }

    /// The gauge saying whether this instance holds `lease` (its key).
    pub fn lease(&self, lease: &str) -> Gauge {
        let label = LeaseLabel {
            lease: lease.to_owned(),
        };
        self.leases.get_or_create(&label).clone()
    }

    /// Registers the relay's queue gauges (with `--redis`) and hands them out.
    pub fn relay(&self) -> RelayGauges {
        let depth = Family::<KindLabel, Gauge>::default();
        let peak = Family::<KindLabel, Gauge>::default();
        let gauges = RelayGauges {
            depth: RELAY_KINDS.map(|kind| depth.get_or_create(&KindLabel { kind }).clone()),
            peak: RELAY_KINDS.map(|kind| peak.get_or_create(&KindLabel { kind }).clone()),
            lag: Gauge::default(),
            behind: Counter::default(),
            store_reads: Counter::default(),
        };
        let mut registry = self.registry();
        registry.register(
            "pulse_relay_queue_depth",
            "messages waiting for Redis now, by kind (ordered: never dropped; ticks: ticker channels, the latest each; awareness)",
            depth,
        );
        registry.register(
            "pulse_relay_queue_peak",
            "the most messages that waited for Redis at once since start, by kind",
            peak,
        );
        registry.register_with_unit(
            "pulse_relay_lag",
            "how long the oldest never-dropped message waiting for Redis has waited",
            Unit::Seconds,
            gauges.lag.clone(),
        );
        registry.register(
            "pulse_relay_behind",
            "messages past the queue's bound: their channel is caught up from the store instead",
            gauges.behind.clone(),
        );
        registry.register(
            "pulse_relay_store_reads",
            "reads of the store to fill a gap or catch a channel up (with --redis)",
            gauges.store_reads.clone(),
        );
        gauges
    }

    /// The gauge of subscriptions to channels of `channel`'s kind.
    pub fn subscriptions(&self, channel: &Channel) -> &Gauge {
        &self.subscriptions[ChannelKind::of(channel).index()]
    }

    /// The subscribe-to-first-message histogram of channels of `kind`.
    pub fn first_message(&self, kind: ChannelKind) -> &SharedHistogram {
        &self.first_message[kind.index()]
    }

    /// The OpenMetrics text of every metric, with the adaptive pace's
    /// `rate` and scheduling `lag` as they are now.
    pub fn render(&self, rate: f64, lag: Duration) -> String {
        self.upgrade_rate.set(rate);
        self.scheduling_lag.set(lag.as_secs_f64());
        let mut out = String::new();
        let registry = self.registry();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
