//! The chat panel: room tabs (the ARIA tabs pattern: one tab stop, arrow
//! keys, Home and End) over the tab panel holding the shown room's `Chat` log
//! (text rendered as text, never as HTML), a box to join or create a room,
//! and the `Message` box with `Send` (Enter sends). The log follows the
//! newest line only while the reader is at the bottom and keeps the reader's
//! place when lines arrive or older ones are put above; older history loads
//! when scrolled to the top or with "Load older messages". Lines still being
//! sent look pending, failed ones say why and offer retry, and a line keeps
//! its element (and is not read out again) when its state changes.

use std::sync::Arc;

use leptos::either::Either;
use leptos::ev::{KeyboardEvent, SubmitEvent};
use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;
use leptos::web_sys::{Element, HtmlElement};

use super::shown::Shown;
use crate::client::chat::{ChatLine, ChatLog, LineState};
use crate::client::{Chat, Identity};

/// The one tab panel every room tab controls (it shows the selected room).
const PANEL_ID: &str = "chat-panel";

/// How close to the bottom (in CSS pixels) still counts as "at the bottom".
const NEAR_BOTTOM_PX: i32 = 24;

fn tab_id(room: &str) -> String {
    format!("room-tab-{room}")
}

#[component]
pub fn ChatPanel() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let identity = expect_context::<Identity>();
    view! {
        <section class="panel chat" aria-labelledby="chat-heading">
            <h2 id="chat-heading">"Chat"</h2>
            <Shown
                when=move || identity.user.with(Option::is_some)
                fallback=|| view! { <p class="empty">"Join to chat."</p> }
            >
                <Rooms/>
                <div
                    role="tabpanel"
                    id=PANEL_ID
                    class="room-panel"
                    aria-labelledby=move || tab_id(&chat.room.get())
                >
                    <Log/>
                </div>
                <p class="form-problem" role="alert">{move || chat.outbox_warning.get()}</p>
                <Composer/>
            </Shown>
        </section>
    }
}

/// Moves the focus to the tab of `room` (the arrow keys' target).
fn focus_tab(room: &str) {
    let tab = document()
        .get_element_by_id(&tab_id(room))
        .and_then(|tab| tab.dyn_into::<HtmlElement>().ok());
    if let Some(tab) = tab {
        // Focusing a button cannot fail in a way the page could act on.
        let _ = tab.focus();
    }
}

/// The room tabs and the join-a-room form.
#[component]
fn Rooms() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let draft = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        match chat.join_room(&draft.get_untracked()) {
            Ok(()) => {
                draft.set(String::new());
                problem.set(None);
            }
            Err(err) => problem.set(Some(err)),
        }
    };
    // Selection follows focus: showing another room's log is cheap.
    let on_keydown = move |event: KeyboardEvent| {
        let rooms = chat.rooms.get_untracked();
        let shown = chat.room.get_untracked();
        let Some(at) = rooms.iter().position(|room| *room == shown) else {
            return;
        };
        let next = match event.key().as_str() {
            "ArrowRight" => (at + 1) % rooms.len(),
            "ArrowLeft" => (at + rooms.len() - 1) % rooms.len(),
            "Home" => 0,
            "End" => rooms.len() - 1,
            _ => return,
        };
        event.prevent_default();
        chat.room.set(rooms[next].clone());
        focus_tab(&rooms[next]);
    };
    view! {
        <div class="rooms">
            <div role="tablist" aria-label="Rooms" class="room-tabs" on:keydown=on_keydown>
                <For each=move || chat.rooms.get() key=|room| room.clone() let:room>
                    {
                        let name = room.clone();
                        let selected = Memo::new(move |_| chat.room.get() == name);
                        let pick = room.clone();
                        view! {
                            <button
                                type="button"
                                role="tab"
                                id=tab_id(&room)
                                aria-controls=PANEL_ID
                                aria-selected=move || selected.get().to_string()
                                tabindex=move || if selected.get() { "0" } else { "-1" }
                                class:active=move || selected.get()
                                on:click=move |_| chat.room.set(pick.clone())
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

/// Where the log stood after its last render or scroll: what the next render
/// needs to keep the reader's place.
/// Plain data (no DOM handles), so it can live in a `StoredValue` that the
/// server's render creates too: that render may end on another thread.
struct Seen {
    room: String,
    /// The first line's key (its `data-key`) and its offset from the top of
    /// the log (the log is positioned: the lines' offset parent).
    first: Option<String>,
    first_top: i32,
    scroll_top: i32,
    at_bottom: bool,
}

impl Seen {
    fn measure(list: &HtmlElement, room: String) -> Self {
        let first_line = lines_of(list).and_then(|lines| lines.first_element_child());
        let first = first_line
            .as_ref()
            .and_then(|first| first.get_attribute("data-key"));
        let first_top = first_line
            .as_ref()
            .and_then(|first| first.dyn_ref::<HtmlElement>())
            .map_or(0, HtmlElement::offset_top);
        let scroll_top = list.scroll_top();
        Seen {
            room,
            first,
            first_top,
            scroll_top,
            at_bottom: list.scroll_height() - scroll_top - list.client_height() <= NEAR_BOTTOM_PX,
        }
    }

    /// How far the line that was first moved down (lines put above it).
    fn shift(&self, list: &HtmlElement) -> i32 {
        let Some(key) = &self.first else {
            return 0;
        };
        let Some(lines) = lines_of(list) else {
            return 0;
        };
        let children = lines.children();
        (0..children.length())
            .filter_map(|n| children.item(n))
            .find(|child| child.get_attribute("data-key").as_ref() == Some(key))
            .and_then(|first| first.dyn_into::<HtmlElement>().ok())
            .map_or(0, |first| first.offset_top() - self.first_top)
    }
}

/// The list of lines inside the log (its only child).
fn lines_of(log: &HtmlElement) -> Option<Element> {
    log.first_element_child()
}

/// The `Chat` log of the shown room, with "Load older messages" above it.
#[component]
fn Log() -> impl IntoView {
    let chat = expect_context::<Chat>();
    // The scrolling log (it holds the list of lines).
    let list = NodeRef::<leptos::html::Div>::new();
    let older_button = NodeRef::<leptos::html::Button>::new();
    let shown = move || chat.lines(&chat.room.get());
    let seen = StoredValue::new(None::<Seen>);
    // After each render: follow the newest line if the reader was at the
    // bottom (or the room is new to this view); otherwise keep what the
    // reader sees where it was, moved by what was put above it.
    Effect::new(move |_| {
        let room = chat.room.get();
        chat.lines(&room).track();
        let Some(list) = list.get() else {
            return;
        };
        let previous = seen.try_update_value(Option::take).flatten();
        match previous {
            Some(previous) if previous.room == room && !previous.at_bottom => {
                list.set_scroll_top(previous.scroll_top + previous.shift(&list));
            }
            _ => list.set_scroll_top(list.scroll_height()),
        }
        seen.set_value(Some(Seen::measure(&list, room)));
    });
    let on_scroll = move |_| {
        let Some(list) = list.get_untracked() else {
            return;
        };
        let room = chat.room.get_untracked();
        let now = Seen::measure(&list, room.clone());
        // A log that does not scroll (any more) is not scrolled to its top:
        // its scroll events come from shrinking, not from the reader.
        let at_top = now.scroll_top <= 0 && list.scroll_height() > list.client_height();
        let following = now.at_bottom;
        seen.set_value(Some(now));
        // Scrolled up: keep more lines, so what is read is not trimmed away.
        let lines = chat.lines(&room);
        if lines.try_update_untracked(|log| log.follow(following)) == Some(true) {
            lines.notify();
        }
        if at_top {
            chat.load_older(&room);
        }
    };
    let each = move || {
        let lines = shown();
        lines.with(|log| {
            log.iter()
                .map(|line| (lines, Arc::clone(line)))
                .collect::<Vec<_>>()
        })
    };
    view! {
        <Shown when=move || shown().with(ChatLog::may_have_older) fallback=|| ()>
            <button
                type="button"
                class="link load-older"
                node_ref=older_button
                on:click=move |_| chat.load_older(&chat.room.get_untracked())
            >
                "Load older messages"
            </button>
            {
                // The last page loaded removes the button: if it had the
                // focus, the log takes it rather than the page's body.
                on_cleanup(move || {
                    let (Some(button), Some(list)) = (older_button.get_untracked(), list.get_untracked()) else {
                        return;
                    };
                    // Cleanups run before the old view leaves the page, so
                    // the button still has the focus if it had it.
                    let button: &Element = button.as_ref();
                    if document().active_element().as_ref() == Some(button) {
                        let _ = list.focus();
                    }
                });
            }
        </Shown>
        // The log (a live region that scrolls) holds a plain list of lines:
        // `role="log"` on the list itself would take its list semantics away,
        // leaving every `<li>` outside a list.
        <div
            class="log"
            role="log"
            aria-label="Chat"
            aria-live="polite"
            tabindex="0"
            node_ref=list
            on:scroll=on_scroll
        >
            <ol class="lines">
                <For
                    each=each
                    key=|(_, line)| line.key.clone()
                    children=|(lines, line)| view! { <Line line lines/> }
                />
            </ol>
        </div>
        <Shown when=move || shown().with(ChatLog::is_empty) fallback=|| ()>
            <p class="empty">"No messages yet — say hello."</p>
        </Shown>
    }
}

/// One line; a line this page is sending follows its state in place.
#[component]
fn Line(line: Arc<ChatLine>, lines: RwSignal<ChatLog>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    // A confirmed line never changes; one of ours becomes pending, failed or
    // confirmed (gaining its time) under the same key, so only its state and
    // time re-render.
    let current: Signal<Arc<ChatLine>> = if line.state == LineState::Sent {
        Signal::stored(Arc::clone(&line))
    } else {
        let key = line.key.clone();
        let first = Arc::clone(&line);
        Memo::new(move |previous: Option<&Arc<ChatLine>>| {
            if let Some(done) = previous.filter(|line| line.state == LineState::Sent) {
                return Arc::clone(done);
            }
            lines
                .with(|log| log.line(&key).cloned())
                .or_else(|| previous.cloned())
                .unwrap_or_else(|| Arc::clone(&first))
        })
        .into()
    };
    let class = move || {
        current.with(|line| match line.state {
            LineState::Sent => "line",
            LineState::Pending => "line pending",
            LineState::Failed(_) => "line failed",
        })
    };
    let state = move || {
        match current.get().state.clone() {
            LineState::Sent => None,
            LineState::Pending => {
                // A clock drawn inline, not an emoji (no emoji font: a box).
                Some(Either::Left(view! {
                    <span class="line-state">
                        <svg class="clock-icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
                            <circle cx="12" cy="12" r="9"/>
                            <path d="M12 7v5l3 2"/>
                        </svg>
                        " sending…"
                    </span>
                }))
            }
            LineState::Failed(reason) => Some(Either::Right(view! {
                <span class="line-state">{format!("Not sent: {reason}")}</span>
                <button
                    type="button"
                    class="link"
                    on:click=move |_| chat.retry(&chat.room.get_untracked(), &current.get_untracked())
                >
                    "Retry"
                </button>
            })),
        }
    };
    view! {
        <li class=class data-key=line.key.clone()>
            <span class="author">{line.user.name.clone()}</span>
            <time datetime=move || {
                current.with(|line| line.sent_at.map(|t| t.to_string()).unwrap_or_default())
            }>{move || current.with(|line| line.time())}</time>
            <span class="text">{line.text.clone()}</span>
            {state}
        </li>
    }
}

/// The `Message` box and `Send`.
#[component]
fn Composer() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let draft = RwSignal::new(String::new());
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let text = draft.get_untracked();
        if text.trim().is_empty() {
            return;
        }
        chat.say(&text, crate::client::new_message_id());
        draft.set(String::new());
    };
    view! {
        <form class="composer" on:submit=on_submit>
            <label class="visually-hidden" for="message-input">"Message"</label>
            <input
                id="message-input"
                type="text"
                placeholder=move || format!("Message #{}", chat.room.get())
                maxlength="2000"
                autocomplete="off"
                prop:value=move || draft.get()
                on:input=move |event| draft.set(event_target_value(&event))
            />
            <button type="submit">"Send"</button>
        </form>
    }
}
