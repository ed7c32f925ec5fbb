//! Notifications: the header button (its name starts with `Notifications`
//! and says how many are unread), the list to read them, and a toast when
//! one arrives (announced politely).

use leptos::prelude::*;

use super::shown::Shown;
use crate::client::{Identity, Notifications};

#[component]
pub fn NotificationsButton() -> impl IntoView {
    let identity = expect_context::<Identity>();
    let notifications = expect_context::<Notifications>();
    let open = RwSignal::new(false);
    // The total, not the list: the list holds only the newest hundred.
    let count = move || notifications.total_unread.get();
    let label = move || match count() {
        0 => "Notifications, none unread".to_owned(),
        1 => "Notifications, 1 unread".to_owned(),
        n => format!("Notifications, {n} unread"),
    };
    view! {
        <Shown when=move || identity.user.with(Option::is_some) fallback=|| ()>
            <div class="notifications">
                <button
                    type="button"
                    class="bell"
                    aria-label=label
                    aria-expanded=move || open.get().to_string()
                    aria-controls="notification-list"
                    on:click=move |_| open.update(|o| *o = !*o)
                >
                    // An inline SVG, not an emoji: a machine without an
                    // emoji font would show a box (the label names it).
                    <svg class="bell-icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
                        <path d="M6 16V11a6 6 0 0 1 12 0v5l2 2H4z M10 20a2 2 0 0 0 4 0"/>
                    </svg>
                    <Shown when=move || { count() > 0 } fallback=|| ()>
                        <span class="badge" aria-hidden="true">{count}</span>
                    </Shown>
                </button>
                // Always in the page (hidden while closed), so the button's
                // `aria-controls` names an element that exists.
                <NotificationList open/>
            </div>
        </Shown>
    }
}

/// The unread notifications, each with "Mark read"; `hidden` unless `open`.
#[component]
fn NotificationList(open: RwSignal<bool>) -> impl IntoView {
    let notifications = expect_context::<Notifications>();
    let count = move || notifications.unread.with(Vec::len);
    let all_read = move |_| {
        notifications.mark_read(
            notifications
                .unread
                .with_untracked(|u| u.iter().map(|n| n.notification_id.clone()).collect()),
        )
    };
    view! {
        <div
            id="notification-list"
            class="notification-list"
            role="region"
            aria-label="Notifications"
            hidden=move || !open.get()
        >
            <Shown when=move || { count() > 0 } fallback=|| view! { <p class="empty">"Nothing new."</p> }>
                <ul>
                    <For each=move || notifications.unread.get() key=|n| n.notification_id.clone() let:note>
                        <Unread note/>
                    </For>
                </ul>
                <button type="button" on:click=all_read>"Mark all read"</button>
            </Shown>
        </div>
    }
}

#[component]
fn Unread(note: crate::protocol::Notification) -> impl IntoView {
    let notifications = expect_context::<Notifications>();
    let id = note.notification_id.clone();
    view! {
        <li>
            <strong>{note.title.clone()}</strong>
            <p>{note.body.clone()}</p>
            <button type="button" class="link" on:click=move |_| notifications.mark_read(vec![id.clone()])>"Mark read"</button>
        </li>
    }
}

/// The toast of the newest notification, dismissed by a click.
#[component]
pub fn Toast() -> impl IntoView {
    let notifications = expect_context::<Notifications>();
    view! {
        <div class="toast-area" role="status" aria-live="polite" aria-label="New notification">
            {move || notifications.toast.get().map(|note| view! {
                <div class="toast">
                    <strong>{note.title.clone()}</strong>
                    <p>{note.body.clone()}</p>
                    <button type="button" class="link" on:click=move |_| notifications.toast.set(None)>"Dismiss"</button>
                </div>
            })}
        </div>
    }
}
