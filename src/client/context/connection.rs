//! The connection feature: what the `Connection` badge says (written by the
//! socket driver only), the way to the driver ([`ToDriver`]: every frame and
//! every piece of IO goes through it), the resume point of every channel
//! (written only while the driver applies the server's messages), and the
//! signed-in user's outbox, which chat, notifications and the note queue
//! into and the driver sends from.

use leptos::prelude::*;

use crate::client::outbox::{Due, Merge, Outbox};
use crate::client::store::{Cursors, Renewal};
use crate::client::transport::Transport;
use crate::protocol::{Channel, ClientEnvelope, ClientMessage, Since, Subscribed, UserRef};

/// What the features ask of the socket driver, which alone sends frames
/// and does the page's IO (the login request, cookies, `localStorage`,
/// timers).
pub enum ToDriver {
    /// Send this now if welcomed (dropped otherwise: subscriptions are
    /// renewed and the status is sent after every `welcome`).
    Send(ClientEnvelope),
    /// The outbox has something new to send.
    Pump,
    /// The outbox changed: keep it in `localStorage` (it survives a reload).
    StoreOutbox,
    /// Forget what this user left unsent on this browser (signed out, or
    /// welcomed as someone else).
    DiscardOutboxes(String),
    /// Sign in as a guest with this name (already checked), then reconnect.
    Join(String),
    /// Sign out: forget the token and reconnect anonymously.
    Leave,
    /// "Retry now".
    RetryNow,
    /// Share where this page's caret is in the note, at the driver's pace;
    /// `renew` when the server forgot it (a new subscription): at once.
    ShareCursor { renew: bool },
}

/// Hands a request to the socket driver; `false` when it could not.
pub type Sender = std::sync::Arc<dyn Fn(ToDriver) -> bool + Send + Sync>;

/// What the `Connection` badge says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// Not connected; `connecting` while the first attempt is under way.
    Offline { connecting: bool },
    /// The server answered `hello` with `welcome`.
    Connected,
    /// The socket closed; the next attempt is in `in_secs` seconds.
    Reconnecting { in_secs: u32 },
}

impl ConnectionStatus {
    pub fn label(&self) -> String {
        match self {
            ConnectionStatus::Offline { connecting: true } => "Offline · connecting…".into(),
            ConnectionStatus::Offline { connecting: false } => "Offline".into(),
            ConnectionStatus::Connected => "Connected".into(),
            ConnectionStatus::Reconnecting { in_secs: 0 } => "Reconnecting…".into(),
            ConnectionStatus::Reconnecting { in_secs } => format!("Reconnecting in {in_secs} s"),
        }
    }

    /// The label when the page talks over `transport`: "Connected
    /// (fallback)" on the HTTP fallback.
    pub fn label_over(&self, transport: Transport) -> String {
        match (self, transport) {
            (ConnectionStatus::Connected, Transport::Sse) => "Connected (fallback)".into(),
            _ => self.label(),
        }
    }

    pub fn css_class(&self) -> &'static str {
        match self {
            ConnectionStatus::Offline { .. } => "offline",
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::Reconnecting { .. } => "reconnecting",
        }
    }
}

/// The connection's state; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// Written by the socket driver only (the reconnection machine's
    /// `Status` command).
    pub status: RwSignal<ConnectionStatus>,
    /// The transport of the current (or coming) connection; written by the
    /// socket driver only.
    pub transport: RwSignal<Transport>,
    /// Whether the server is another build than this page's (its
    /// `welcome.build`): a new version is out, and a reload gets it.
    pub new_version: RwSignal<bool>,
    /// Hands a request to the socket driver (installed by it; `None` on the
    /// server and in native tests).
    sender: StoredValue<Option<Sender>>,
    /// The signed-in user's messages not acknowledged yet, sent again after
    /// every reconnect.
    outbox: StoredValue<Outbox>,
    /// Where each channel resumes from.
    cursors: StoredValue<Cursors>,
    /// The owner the per-symbol and per-room signals belong to (the app's),
    /// so signals made while the driver applies a message are disposed with
    /// the app.
    owner: StoredValue<Owner>,
}

impl Connection {
    /// Offline, with an outbox for `user` if the page was rendered signed in.
    pub fn new(user: Option<&UserRef>) -> Self {
        let outbox = match user {
            Some(user) => Outbox::for_user(&user.id),
            None => Outbox::default(),
        };
        Connection {
            status: RwSignal::new(ConnectionStatus::Offline { connecting: true }),
            transport: RwSignal::new(Transport::WebSocket),
            new_version: RwSignal::new(false),
            sender: StoredValue::new(None),
            outbox: StoredValue::new(outbox),
            cursors: StoredValue::new(Cursors::default()),
            owner: StoredValue::new(Owner::current().unwrap_or_default()),
        }
    }

    /// Runs `make` under the app's owner (for signals made on demand).
    pub(super) fn in_app<T>(&self, make: impl FnOnce() -> T) -> T {
        self.owner.with_value(|owner| owner.with(make))
    }

    /// The server said `welcome` as build `server_build`.
    pub fn welcomed_by(&self, server_build: &str) {
        let other = crate::build_id::is_other_build(server_build);
        if other != self.new_version.get_untracked() {
            self.new_version.set(other);
        }
    }

    /// Lets the socket driver take requests from the features.
    pub fn install_sender(&self, sender: Sender) {
        self.sender.set_value(Some(sender));
    }

    /// Hands `request` to the driver; `false` when there is none.
    pub(super) fn ask(&self, request: ToDriver) -> bool {
        self.sender
            .with_value(|sender| sender.as_ref().is_some_and(|send| send(request)))
    }

    /// Sends `message` with envelope `id` if the socket is up.
    pub(super) fn send(&self, message: ClientMessage, id: Option<String>) -> bool {
        if self.status.get_untracked() != ConnectionStatus::Connected {
            return false;
        }
        let envelope = ClientEnvelope {
            message,
            timestamp: None,
            id,
        };
        self.ask(ToDriver::Send(envelope))
    }

    /// "Retry now": the driver abandons the wait and connects.
    pub fn retry_now(&self) {
        self.ask(ToDriver::RetryNow);
    }

    /// Where to resume `channel` from, if it was ever subscribed.
    pub fn since(&self, channel: &str) -> Option<Since> {
        self.cursors.with_value(|cursors| cursors.since(channel))
    }

    /// Records a `subscribed`; `None` once the page is gone.
    pub(super) fn subscribed(&self, answer: &Subscribed) -> Option<Renewal> {
        self.cursors.try_update_value(|c| c.subscribed(answer))
    }

    /// Whether a message at `offset` on `channel` is new (and records it).
    pub(super) fn accept(&self, channel: &Channel, offset: u64) -> bool {
        // The resume points are kept by name, as `subscribed` gives it.
        let channel = channel.to_string();
        self.cursors
            .try_update_value(|c| c.accept(&channel, offset))
            .unwrap_or(false)
    }

    /// Forgets where `channel` resumes from (its next subscription asks for
    /// a snapshot).
    pub fn forget(&self, channel: &str) {
        self.cursors.update_value(|cursors| cursors.forget(channel));
    }

    /// Puts `envelope` (with an id) into `user`'s outbox and asks the driver
    /// to store and send it. When the outbox was full, its oldest message was
    /// dropped: its id is returned (the feature that queued says so).
    pub(super) fn enqueue(&self, user: &UserRef, envelope: ClientEnvelope) -> Option<String> {
        let dropped = self
            .outbox
            .try_update_value(|outbox| {
                if outbox.owner() != Some(user.id.as_str()) {
                    *outbox = Outbox::for_user(&user.id);
                }
                outbox.push(envelope)
            })
            .flatten();
        self.store_outbox();
        self.ask(ToDriver::Pump);
        dropped.and_then(|dropped| dropped.id)
    }

    /// Puts an edit of the note into `user`'s outbox (merged into the one
    /// waiting, never dropped) and asks the driver to store and send it.
    pub(super) fn enqueue_note(&self, user: &UserRef, update: &[u8], merge: Merge) {
        self.outbox.update_value(|outbox| {
            if outbox.owner() != Some(user.id.as_str()) {
                *outbox = Outbox::for_user(&user.id);
            }
            outbox.push_note(update, || crate::client::new_envelope_id("d"), merge);
        });
        self.store_outbox();
        self.ask(ToDriver::Pump);
    }

    /// What the outbox may send now (the driver calls this when welcomed).
    pub fn outbox_due(&self, now_ms: f64) -> Due {
        self.outbox
            .try_update_value(|outbox| outbox.due(now_ms))
            .unwrap_or_default()
    }

    /// Hands the outbox to `store` (the driver keeps it in `localStorage`).
    pub fn store_with(&self, store: fn(&Outbox)) {
        self.outbox.with_value(store);
    }

    /// What the outbox waits answers for: ids and types.
    pub fn outbox_pending(&self) -> Vec<(String, &'static str)> {
        self.outbox.with_value(Outbox::pending)
    }

    pub(super) fn store_outbox(&self) {
        self.ask(ToDriver::StoreOutbox);
    }

    /// Runs `work` on the outbox.
    pub(super) fn with_outbox<R>(&self, work: impl FnOnce(&mut Outbox) -> R) -> Option<R> {
        self.outbox.try_update_value(work)
    }

    /// Whether the outbox belongs to `user`.
    pub(super) fn outbox_is(&self, user: &UserRef) -> bool {
        self.outbox
            .with_value(|outbox| outbox.owner() == Some(user.id.as_str()))
    }

    /// The message `id` is answered: out of the outbox.
    pub(super) fn settle(&self, id: &str) {
        self.outbox.update_value(|outbox| {
            outbox.settle(id);
        });
        self.store_outbox();
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionStatus::*;

    #[test]
    fn labels_start_with_the_words_tests_and_people_look_for() {
        assert!(Connected.label().starts_with("Connected"));
        assert!(Offline { connecting: true }.label().starts_with("Offline"));
        assert!(Offline { connecting: false }.label().starts_with("Offline"));
        assert_eq!(Reconnecting { in_secs: 4 }.label(), "Reconnecting in 4 s");
        assert!(Reconnecting { in_secs: 0 }
            .label()
            .starts_with("Reconnecting"));
    }

    #[test]
    fn on_the_fallback_connected_says_so() {
        use crate::client::transport::Transport::*;
        assert_eq!(Connected.label_over(Sse), "Connected (fallback)");
        assert_eq!(Connected.label_over(WebSocket), "Connected");
        assert_eq!(
            Reconnecting { in_secs: 4 }.label_over(Sse),
            "Reconnecting in 4 s"
        );
    }
}
