//! The header: product name and the `Connection` status.

use leptos::prelude::*;

use super::identity::Identity;
use super::notifications::NotificationsButton;
use crate::client::{ConnectionStatus, LiveConnection};

#[component]
pub fn Header() -> impl IntoView {
    view! {
       <header class="topbar">
           <h1 class="brand"><span class="brand-mark" aria-hidden="true">"◆"</span>" Pulse"</h1>
           <ConnectionBadge/>
       <NotificationsButton/>
       <Identity/>
       </header>
    }
    .into_any()
}

/// `role="status"` named `Connection`: a coloured dot and a text that starts
/// with `Connected`, `Reconnecting` or `Offline` (the dot is never the only
/// signal), counting down to the next attempt, with "Retry now" while waiting.
#[component]
fn ConnectionBadge() -> impl IntoView {
    let live = expect_context::<LiveConnection>();
    let status = live.status;
    let class = move || {
        format!(
            "connection connection-{}",
            status.with(ConnectionStatus::css_class)
        )
    };
    let text = move || status.with(ConnectionStatus::label);
    let waiting = move || {
        status.with(|s| {
            matches!(
                s,
                ConnectionStatus::Reconnecting { in_secs: 1.. }
                    | ConnectionStatus::Offline { connecting: false }
            )
        })
    };
    view! {
        <div class="connection-area">
            <div role="status" aria-label="Connection" class=class>
                <span class="dot" aria-hidden="true"></span>
                <span class="connection-text">{text}</span>
            </div>
            <Show when=waiting>
                <button type="button" class="link" on:click=move |_| live.retry.update(|n| *n += 1)>"Retry now"</button>
            </Show>
        </div>
    }
    .into_any()
}
