//! The header: product name and the `Connection` status.

use leptos::html;
use leptos::prelude::*;
use leptos::web_sys;

use super::identity::Identity;
use super::notifications::NotificationsButton;
use super::shown::Shown;
use crate::client::{Connection, ConnectionStatus};

#[component]
pub fn Header() -> impl IntoView {
    view! {
       <header class="topbar">
           // The diamond is decoration (the name follows it); it is in
           // DejaVu Sans, which Debian's Chromium always has.
           <h1 class="brand"><span class="brand-mark" aria-hidden="true">"◆"</span>" Pulse"</h1>
           <ConnectionBadge/>
       <NotificationsButton/>
       <Identity/>
       </header>
    }
}

/// Splits a status label into the state a screen reader hears (its first
/// word: `Connected`, `Reconnecting` or `Offline`) and the detail that is only
/// shown (` in 4 s`, `…`, ` · connecting…`).
fn split_label(label: &str) -> (&str, &str) {
    let end = label
        .find(|c: char| !c.is_alphabetic())
        .unwrap_or(label.len());
    label.split_at(end)
}

/// The `Connection` badge: a coloured dot and a text that starts with
/// `Connected`, `Reconnecting` or `Offline` (the dot is never the only
/// signal), counting down to the next attempt, with "Retry now" whenever the
/// page is not connected.
///
/// Only the state word is inside the live region (`role="status"`, named
/// `Connection`), so a screen reader announces a change of state and not
/// every second of the countdown; the countdown beside it is plain text a
/// reader can still browse to. The "Retry now" button stays while an attempt
/// is under way, so it never vanishes under the keyboard focus; when the page
/// connects and the button goes, the badge takes the focus it had.
#[component]
fn ConnectionBadge() -> impl IntoView {
    let connection = expect_context::<Connection>();
    let status = connection.status;
    let class = move || {
        format!(
            "connection connection-{}",
            status.with(ConnectionStatus::css_class)
        )
    };
    let transport = connection.transport;
    let label = Memo::new(move |_| {
        let transport = transport.get();
        status.with(|status| status.label_over(transport))
    });
    // Memos: the live region's text node is written only when the state
    // itself changes, never on a tick of the countdown.
    let state = Memo::new(move |_| label.with(|l| split_label(l).0.to_owned()));
    let detail = move || label.with(|l| split_label(l).1.to_owned());
    let connected = Memo::new(move |_| status.with(|s| *s == ConnectionStatus::Connected));

    let badge = NodeRef::<html::Div>::new();
    let retry = NodeRef::<html::Button>::new();
    // Whether "Retry now" is in the page. Set after the status, by the effect
    // below, so that when the page connects a focused button first hands the
    // focus to the badge and only then goes: the focus never falls to <body>.
    let show_retry = RwSignal::new(!connected.get_untracked());
    Effect::new(move |_| {
        let connected = connected.get();
        if connected {
            if let (Some(button), Some(badge)) = (retry.get_untracked(), badge.get_untracked()) {
                let button: &web_sys::Element = button.as_ref();
                if document().active_element().as_ref() == Some(button) {
                    let _ = badge.focus();
                }
            }
        }
        show_retry.set(!connected);
    });

    view! {
        <div class="connection-area">
            <div class=class node_ref=badge tabindex="-1">
                <span class="dot" aria-hidden="true"></span>
                <span class="connection-text">
                    <span role="status" aria-label="Connection">{state}</span>
                    <span class="connection-detail">{detail}</span>
                </span>
            </div>
            <Shown when=move || show_retry.get() fallback=|| ()>
                <button
                    type="button"
                    class="link"
                    node_ref=retry
                    on:click=move |_| connection.retry_now()
                >
                    "Retry now"
                </button>
            </Shown>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::split_label;
    use crate::client::ConnectionStatus::{self, *};

    #[test]
    fn only_the_state_word_is_announced() {
        let cases: [(ConnectionStatus, &str, &str); 5] = [
            (Connected, "Connected", ""),
            (Reconnecting { in_secs: 4 }, "Reconnecting", " in 4 s"),
            (Reconnecting { in_secs: 0 }, "Reconnecting", "…"),
            (Offline { connecting: true }, "Offline", " · connecting…"),
            (Offline { connecting: false }, "Offline", ""),
        ];
        for (status, state, detail) in cases {
            assert_eq!(split_label(&status.label()), (state, detail), "{status:?}");
        }
    }

    #[test]
    fn on_the_fallback_only_connected_is_announced() {
        let label = Connected.label_over(crate::client::transport::Transport::Sse);
        assert_eq!(split_label(&label), ("Connected", " (fallback)"));
    }
}
