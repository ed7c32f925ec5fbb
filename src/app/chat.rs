//! The chat panel: room tabs and a box to join or create a room, the `Chat`
//! log (text rendered as text, never as HTML; older history loads when
//! scrolled to the top), and the `Message` box with `Send` (Enter sends).
//! Lines still being sent look pending; failed ones say why and offer retry.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;

use crate::client::chat::{ChatLine, LineState};
use crate::client::LiveConnection;

#[component]
pub fn ChatPanel() -> impl IntoView {
    let live = expect_context::<LiveConnection>();
    view! {
        <section class="panel chat" aria-labelledby="chat-heading">
            <h2 id="chat-heading">"Chat"</h2>
            <Show
                when=move || live.user.with(Option::is_some)
                fallback=|| view! { <p class="empty">"Join to chat."</p> }
            >
                <Rooms/>
                <Log/>
                <p class="form-problem" role="alert">{move || live.outbox_warning.get()}</p>
                <Composer/>
            </Show>
        </section>
    }
    .into_any()
}

/// The room tabs and the join-a-room form.
#[component]
fn Rooms() -> impl IntoView {
    let live = expect_context::<LiveConnection>();
    let draft = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        match live.join_room(&draft.get_untracked()) {
            Ok(()) => {
                draft.set(String::new());
                problem.set(None);
            }
            Err(err) => problem.set(Some(err)),
        }
    };
    view! {
        <div class="rooms">
            <div role="tablist" aria-label="Rooms" class="room-tabs">
                <For each=move || live.rooms.get() key=|room| room.clone() let:room>
                    {
                        let name = room.clone();
                        let selected = Memo::new(move |_| live.room.get() == name);
                        let pick = room.clone();
                        view! {
                            <button
                                type="button"
                                role="tab"
                                aria-selected=move || selected.get().to_string()
                                class:active=move || selected.get()
                                on:click=move |_| live.room.set(pick.clone())
                            >
                                {format!("#{room}")}
                            </button>
                        }
                    }
                </For>
            </div>
            <form class="join-room" on:submit=on_submit>
                <label class="visually-hidden" for="room-input">"Room"</label>
                <input
                    id="room-input"
                    type="text"
                    placeholder="Join or create a room"
                    maxlength="33"
                    autocomplete="off"
                    prop:value=move || draft.get()
                    on:input=move |event| draft.set(event_target_value(&event))
                />
                <button type="submit">"Go"</button>
            </form>
            <p class="form-problem" role="alert">{move || problem.get()}</p>
        </div>
    }
}

/// The `Chat` log of the shown room.
#[component]
fn Log() -> impl IntoView {
    let live = expect_context::<LiveConnection>();
    let log = NodeRef::<leptos::html::Ol>::new();
    let lines = move || live.lines(&live.room.get()).get();
    // Keep the newest line in view as lines arrive.
    Effect::new(move |_| {
        lines();
        if let Some(log) = log.get() {
            log.set_scroll_top(log.scroll_height());
        }
    });
    let on_scroll = move |_| {
        if log.get().is_some_and(|log| log.scroll_top() == 0) {
            live.load_older(&live.room.get_untracked());
        }
    };
    view! {
        <ol class="log" role="log" aria-label="Chat" aria-live="polite" node_ref=log on:scroll=on_scroll>
            <For each=lines key=|line| (line.key.clone(), line.offset, line.state.clone()) let:line>
                <Line line/>
            </For>
        </ol>
        <Show when=move || live.lines(&live.room.get()).with(Vec::is_empty)>
            <p class="empty">"No messages yet — say hello."</p>
        </Show>
    }
}

#[component]
fn Line(line: ChatLine) -> impl IntoView {
    let live = expect_context::<LiveConnection>();
    let class = match &line.state {
        LineState::Sent => "line",
        LineState::Pending => "line pending",
        LineState::Failed(_) => "line failed",
    };
    let state = match &line.state {
        LineState::Sent => None,
        LineState::Pending => {
            // A clock drawn inline, not an emoji (no emoji font: a box).
            Some(
                view! {
                    <span class="line-state">
                        <svg class="clock-icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
                            <circle cx="12" cy="12" r="9"/>
                            <path d="M12 7v5l3 2"/>
                        </svg>
                        " sending…"
                    </span>
                }
                .into_any(),
            )
        }
        LineState::Failed(reason) => {
            let retry = line.clone();
            Some(
                view! {
                    <span class="line-state">{format!("Not sent: {reason}")}</span>
                    <button type="button" class="link" on:click=move |_| live.retry(&live.room.get_untracked(), &retry)>"Retry"</button>
                }
                .into_any(),
            )
        }
    };
    view! {
        <li class=class>
            <span class="author">{line.user.name.clone()}</span>
            <time datetime=line.sent_at.map(|t| t.to_string()).unwrap_or_default()>{line.time()}</time>
            <span class="text">{line.text.clone()}</span>
            {state}
        </li>
    }
}

/// The `Message` box and `Send`.
#[component]
fn Composer() -> impl IntoView {
    let live = expect_context::<LiveConnection>();
    let draft = RwSignal::new(String::new());
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let text = draft.get_untracked();
        if text.trim().is_empty() {
            return;
        }
        live.say(&text, crate::client::new_message_id());
        draft.set(String::new());
    };
    view! {
        <form class="composer" on:submit=on_submit>
            <label class="visually-hidden" for="message-input">"Message"</label>
            <input
                id="message-input"
                type="text"
                placeholder=move || format!("Message #{}", live.room.get())
                maxlength="2000"
                autocomplete="off"
                prop:value=move || draft.get()
                on:input=move |event| draft.set(event_target_value(&event))
            />
            <button type="submit">"Send"</button>
        </form>
    }
}
