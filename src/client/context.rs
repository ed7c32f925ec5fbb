//! Owns the live connection's signals, provided as context to every view.

use leptos::prelude::*;

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

    pub fn css_class(&self) -> &'static str {
        match self {
            ConnectionStatus::Offline { .. } => "offline",
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::Reconnecting { .. } => "reconnecting",
        }
    }
}

/// The signals of the one live connection. Written only by the socket driver.
#[derive(Debug, Clone, Copy)]
pub struct LiveConnection {
    pub status: RwSignal<ConnectionStatus>,
}

/// Creates the signals, provides them as context and, once the page is
/// running in a browser, starts the socket driver.
pub fn provide_live_connection() -> LiveConnection {
    let live = LiveConnection {
        status: RwSignal::new(ConnectionStatus::Offline { connecting: true }),
    };
    provide_context(live);
    // Effects run only in the browser, after hydration: the server renders
    // the initial state and opens no socket.
    Effect::new(move |started: Option<()>| {
        if started.is_none() {
            super::socket::start(live);
        }
    });
    live
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
}
