//! The shared note below the dashboard: a text area named `Note` that edits
//! the document's text, co-editors' carets and selections drawn over it in
//! their colour with their name on a small flag, and a line saying who is in
//! the note. Everyone reads it; signed-in people edit it.
//!
//! The server renders only the note's beginning (`NotePreview`), read-only;
//! the note's state comes with the socket's subscription, and from then on
//! the text area shows all of it and signed-in people edit it. The rendered
//! text is what hydration renders too, so the two always match.
//!
//! The text area is the person's: after hydration its value is set only
//! when a co-editor's edit arrives, and then the selection is put back
//! where it was between the same characters (the context maps it through
//! sticky indices). Undo and redo take back this page's own edits only.
//! The overlay repeats the text invisibly with the same wrapping, so a caret
//! drawn at an offset of it lands on that offset of the text area.

use leptos::either::EitherOf3;
use leptos::ev::{CompositionEvent, Event, KeyboardEvent};
use leptos::html::Textarea;
use leptos::prelude::*;

use crate::client::note::{color_index, Peer};
use crate::client::{Identity, NoteEditor, SharedNote};

/// How often this page renews its cursor for co-editors (Yjs clients drop a
/// state not renewed within 30 seconds).
const RENEW_CURSOR_MS: u64 = 15_000;

#[component]
pub fn NotePanel() -> impl IntoView {
    let note = expect_context::<SharedNote>();
    let identity = expect_context::<Identity>();
    let area = NodeRef::<Textarea>::new();
    let overlay = NodeRef::<leptos::html::Div>::new();
    let panel = NodeRef::<leptos::html::Section>::new();
    // False on the server and while hydrating, so the hint renders the same
    // on both; then it says how the note's editor is coming.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    // The note's engine is fetched when the panel comes near or the page
    // is idle (on a split build; otherwise it is here already).
    #[cfg(feature = "browser")]
    Effect::new(move |_| {
        if let Some(panel) = panel.get() {
            crate::client::note::trigger::load_editor_when_wanted(note, identity, &panel);
        }
    });
    // The rendered text; after hydration the text area's value is managed
    // here, never re-rendered (that would move the person's caret).
    let initial = note.text.get_untracked();

    // A co-editor's edit changed the text: show it, then put the person's
    // selection back where it belongs.
    Effect::new(move |_| {
        let text = note.text.get();
        let Some(area) = area.get() else { return };
        if area.value() != text {
            area.set_value(&text);
            if let Some((start, end)) = note.caret() {
                let _ = area.set_selection_range(start, end);
            }
        }
    });
    Effect::new(move |_| {
        let Some((start, end)) = note.selection_moved.get() else {
            return;
        };
        if let Some(area) = area.get() {
            if area.value() == note.text.get_untracked() {
                let _ = area.set_selection_range(start, end);
            }
        }
    });
    // Co-editors drop a cursor that is not renewed.
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || note.share_cursor(),
            std::time::Duration::from_millis(RENEW_CURSOR_MS),
        ) {
            on_cleanup(move || handle.clear());
        }
    });

    let selection = move || {
        let area = area.get_untracked()?;
        let start = area.selection_start().ok().flatten()?;
        let end = area.selection_end().ok().flatten()?;
        Some((start, end))
    };
    let on_input = move |_: Event| {
        let (Some(area), Some(selection)) = (area.get_untracked(), selection()) else {
            return;
        };
        note.input(&area.value(), selection);
    };
    let on_composition = move |event: CompositionEvent| {
        let (Some(area), Some(selection)) = (area.get_untracked(), selection()) else {
            return;
        };
        let composing = event.type_() == "compositionstart";
        note.composing(composing, &area.value(), selection);
    };
    let on_keydown = move |event: KeyboardEvent| {
        let key = event.key().to_ascii_lowercase();
        let command = event.ctrl_key() || event.meta_key();
        let redo = (command && key == "z" && event.shift_key()) || (command && key == "y");
        let undo = command && key == "z" && !event.shift_key();
        if undo || redo {
            // The browser's own undo would undo co-editors' edits too.
            event.prevent_default();
            note.undo(redo);
        }
    };
    let on_select = move || note.select(selection());
    let on_scroll = move |_: Event| {
        if let (Some(area), Some(overlay)) = (area.get_untracked(), overlay.get_untracked()) {
            overlay.set_scroll_top(area.scroll_top());
        }
    };
    // Signed-in people edit once the note's state is here, and then offline
    // too: their edits wait in the outbox.
    let editable = move || identity.user.with(Option::is_some) && note.loaded.get();

    view! {
        <section class="panel note" aria-labelledby="note-heading" node_ref=panel>
            <h2 id="note-heading">"Note"</h2>
            <p class="note-people">{move || people_line(note, identity)}</p>
            <div class="note-frame">
                <textarea
                    node_ref=area
                    aria-label="Note"
                    aria-describedby="note-hint"
                    spellcheck="false"
                    readonly=move || !editable()
                    on:input=on_input
                    on:compositionstart=on_composition
                    on:compositionend=on_composition
                    on:keydown=on_keydown
                    on:keyup=move |_| on_select()
                    on:mouseup=move |_| on_select()
                    on:select=move |_| on_select()
                    on:focus=move |_| on_select()
                    on:blur=move |_| note.select(None)
                    on:scroll=on_scroll
                >{initial}</textarea>
                <div class="note-overlay" aria-hidden="true" node_ref=overlay>
                    {move || overlay_view(&note.text.get(), &note.peers.get())}
                </div>
            </div>
            <p id="note-hint" class="note-hint">
                {move || {
                    let loaded = note.loaded.get();
                    if identity.user.with(Option::is_none) {
                        if !loaded && note.cut.get() {
                            "This is the beginning of the note: join to read all of it and edit it."
                        } else {
                            "Join to edit the note."
                        }
                    } else if !loaded && hydrated.get() && note.editor.get() == NoteEditor::Retrying {
                        "The note's editor could not load; retrying…"
                    } else if !loaded && hydrated.get() && note.editor.get() != NoteEditor::Ready {
                        "Loading the note's editor…"
                    } else if !loaded {
                        "Loading the note: it can be edited once it is here."
                    } else if !note.live.get() {
                        "Offline: your edits are kept and sent when the connection is back."
                    } else {
                        "Everyone here edits this note together."
                    }
                }}
            </p>
            <p class="form-problem" role="alert">{move || note.warning.get()}</p>
        </section>
    }
}

/// "In the note: you, Ada, Bob" (co-editors in name order).
fn people_line(note: SharedNote, identity: Identity) -> String {
    let mut names: Vec<String> = Vec::new();
    if identity.user.with(Option::is_some) && note.live.get() {
        names.push("you".into());
    }
    for peer in note.peers.get() {
        if !peer.user.name.is_empty() && !names.contains(&peer.user.name) {
            names.push(peer.user.name);
        }
    }
    if names.is_empty() {
        "Nobody is editing the note right now.".into()
    } else {
        format!("In the note: {}", names.join(", "))
    }
}

/// A piece of the overlay: text (invisible), maybe inside a co-editor's
/// selection, or a co-editor's caret with their name.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text {
        text: String,
        selected_by: Option<String>,
    },
    Caret {
        name: String,
        color: String,
    },
}

/// The text cut at every co-editor's caret and selection boundary.
fn pieces(text: &str, peers: &[Peer]) -> Vec<Piece> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let len = units.len() as u32;
    let mut cuts: Vec<u32> = vec![0, len];
    for peer in peers {
        cuts.extend(peer.anchor.iter().chain(&peer.head).map(|&at| at.min(len)));
    }
    cuts.sort_unstable();
    cuts.dedup();
    let selected_by = |at: u32| {
        peers.iter().find_map(|peer| {
            let (a, h) = (peer.anchor?, peer.head?);
            (a.min(h) <= at && at < a.max(h)).then(|| color_class(peer))
        })
    };
    let carets_at = |at: u32| {
        peers
            .iter()
            .filter(move |peer| peer.head.map(|head| head.min(len)) == Some(at))
            .map(|peer| Piece::Caret {
                name: peer.user.name.clone(),
                color: color_class(peer),
            })
    };
    let mut pieces = Vec::new();
    for window in cuts.windows(2) {
        let (from, to) = (window[0], window[1]);
        pieces.extend(carets_at(from));
        pieces.push(Piece::Text {
            text: String::from_utf16_lossy(&units[from as usize..to as usize]),
            selected_by: selected_by(from),
        });
    }
    pieces.extend(carets_at(len));
    pieces
}

/// The class of a co-editor's colour: fixed per user id (the page's
/// Content-Security-Policy allows no inline styles, so not their own colour).
fn color_class(peer: &Peer) -> String {
    let key = if peer.user.id.is_empty() {
        peer.client.to_string()
    } else {
        peer.user.id.clone()
    };
    format!("peer-{}", color_index(&key))
}

fn overlay_view(text: &str, peers: &[Peer]) -> impl IntoView {
    pieces(text, peers)
        .into_iter()
        .map(|piece| match piece {
            Piece::Text {
                text,
                selected_by: None,
            } => EitherOf3::A(view! { <span>{text}</span> }),
            Piece::Text {
                text,
                selected_by: Some(color),
            } => {
                EitherOf3::B(view! { <mark class=format!("peer-selection {color}")>{text}</mark> })
            }
            Piece::Caret { name, color } => EitherOf3::C(view! {
                <span class=format!("peer-caret {color}")>
                    <span class="peer-flag">{name}</span>
                </span>
            }),
        })
        .collect_view()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::note::EditorUser;

    fn peer(name: &str, anchor: u32, head: u32) -> Peer {
        Peer {
            client: 1,
            user: EditorUser {
                id: name.into(),
                name: name.into(),
                color: "#ffffff".into(),
            },
            anchor: Some(anchor),
            head: Some(head),
        }
    }

    #[test]
    fn carets_and_selections_cut_the_text_where_they_are() {
        let pieces = pieces("hello world", &[peer("ada", 6, 11), peer("bob", 2, 2)]);
        let text = |t: &str, by: Option<&str>| Piece::Text {
            text: t.into(),
            selected_by: by.map(str::to_owned),
        };
        let class = |n: &str| format!("peer-{}", color_index(n));
        let caret = |n: &str| Piece::Caret {
            name: n.into(),
            color: class(n),
        };
        assert_eq!(
            pieces,
            [
                text("he", None),
                caret("bob"),
                text("llo ", None),
                text("world", Some(&class("ada"))),
                caret("ada"),
            ]
        );
    }

    #[test]
    fn a_caret_not_known_yet_or_past_the_end_never_breaks_the_text() {
        let mut unknown = peer("ada", 0, 0);
        unknown.head = None;
        unknown.anchor = None;
        let pieces = pieces("a😀b", &[unknown, peer("bob", 99, 99)]);
        let shown: String = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(shown, "a😀b");
        assert!(matches!(pieces.last(), Some(Piece::Caret { .. })));
    }
}
