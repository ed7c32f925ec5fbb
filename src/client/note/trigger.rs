//! Owns when the page asks for the note's engine (browser builds only):
//! when the note panel comes within [`NEAR_PX`] of the viewport, or once
//! the note is live and the page has had [`IDLE_MS`] to settle — for
//! signed-in people only (an anonymous visitor never edits, so never
//! fetches it). A failed fetch is retried by the context with a backoff
//! while the page is connected, at once when the panel comes near again,
//! and when the connection comes back after one failed while offline.

use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::client::{Identity, SharedNote};

/// How near the viewport the panel must come (CSS pixels).
const NEAR_PX: u32 = 800;
/// How long after the note went live the page fetches the engine anyway.
const IDLE_MS: u64 = 1_500;

/// Starts watching `panel` and the note; for the page's lifetime (the
/// panel is never unmounted).
pub fn load_editor_when_wanted(note: SharedNote, identity: Identity, panel: &web_sys::Element) {
    let near = RwSignal::new(false);
    let on_entries = Closure::<dyn FnMut(js_sys::Array)>::new(move |entries: js_sys::Array| {
        let intersecting = entries.iter().any(|entry| {
            entry
                .unchecked_into::<web_sys::IntersectionObserverEntry>()
                .is_intersecting()
        });
        near.set(intersecting);
    });
    let options = web_sys::IntersectionObserverInit::new();
    options.set_root_margin(&format!("{NEAR_PX}px"));
    match web_sys::IntersectionObserver::new_with_options(
        on_entries.as_ref().unchecked_ref(),
        &options,
    ) {
        Ok(observer) => observer.observe(panel),
        // No observer (a very old browser): the idle trigger still comes.
        Err(_) => near.set(true),
    }
    on_entries.forget();

    let idle = RwSignal::new(false);
    Effect::new(move |_| {
        if note.live.get() && !idle.get_untracked() {
            set_timeout(
                move || idle.set(true),
                std::time::Duration::from_millis(IDLE_MS),
            );
        }
    });
    Effect::new(move |_| {
        let wanted = near.get() || idle.get();
        // Tracks the connection: a load that failed while the page was
        // offline goes again when it is connected.
        let waits = note.waits_for_connection();
        if wanted && identity.user.with(Option::is_some) && !waits {
            note.load_editor();
        }
    });
}
