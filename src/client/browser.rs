//! The page's own IO (browser builds only): the watchlist and token cookies,
//! the guest login request, whether the page is hidden, and the outboxes in
//! `localStorage`, one per user and tab, each tab's guarded by a Web Lock.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::initial::{
    cookie, token_cookie, watchlist_cookie, watchlist_from_cookies, InitialState,
    DEFAULT_WATCHLIST, TOKEN_COOKIE,
};
use super::outbox::Outbox;
use crate::protocol::StoredOutbox;
use crate::protocol::{ApiErrorResponse, LoginRequest, LoginResponse};

/// Where outboxes wait across reloads: `pulse_outbox:{user id}:{tab id}`.
const OUTBOX_PREFIX: &str = "pulse_outbox:";
/// The first version's one key for every tab and user.
const LEGACY_OUTBOX_KEY: &str = "pulse_outbox";

/// How long the browser keeps the token cookie (the server's tokens last a
/// week by default; an expired one is answered 4001 and dropped).
const TOKEN_COOKIE_SECS: u64 = 7 * 24 * 3600;

fn document() -> Option<web_sys::HtmlDocument> {
    web_sys::window()?
        .document()?
        .dyn_into::<web_sys::HtmlDocument>()
        .ok()
}

fn cookies() -> String {
    document().and_then(|d| d.cookie().ok()).unwrap_or_default()
}

/// The starting state of a page no server rendered: the cookie's watchlist
/// (or the default one) with no quotes yet; the socket brings them.
pub fn initial_state() -> InitialState {
    let watchlist = watchlist_from_cookies(&cookies())
        .unwrap_or_else(|| DEFAULT_WATCHLIST.iter().map(|s| s.to_string()).collect());
    InitialState {
        watchlist,
        ..InitialState::default()
    }
}

/// Remembers the watchlist across reloads, where the server can read it.
pub fn store_watchlist(watchlist: &[String]) {
    if let Some(document) = document() {
        let _ = document.set_cookie(&watchlist_cookie(watchlist));
    }
}

/// The stored token, if any.
pub fn token() -> Option<String> {
    cookie(&cookies(), TOKEN_COOKIE)
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

/// Stores the token (or, with `None`, forgets it).
pub fn store_token(token: Option<&str>) {
    if let Some(document) = document() {
        let _ = document.set_cookie(&token_cookie(token, TOKEN_COOKIE_SECS));
    }
}

/// Milliseconds since the epoch (the browser's clock).
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Whether the page is hidden (another tab, minimised): the user is `away`.
pub fn page_hidden() -> bool {
    document().is_some_and(|d| d.hidden())
}

/// `POST /api/login`; the error is the server's message, ready to show.
pub async fn login(name: &str) -> Result<LoginResponse, String> {
    let request = gloo_net::http::Request::post("/api/login")
        .json(&LoginRequest {
            name: name.to_owned(),
        })
        .map_err(|err| err.to_string())?;
    let response = request
        .send()
        .await
        .map_err(|_| "the server cannot be reached".to_owned())?;
    if response.ok() {
        return response
            .json::<LoginResponse>()
            .await
            .map_err(|err| err.to_string());
    }
    match response.json::<ApiErrorResponse>().await {
        Ok(error) => Err(error.error.message),
        Err(_) => Err(format!("the server answered {}", response.status())),
    }
}

/// A random number in [0, 1).
pub fn random() -> f64 {
    js_sys::Math::random()
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// This page's tab id: random per page load, so a reload or a closed tab
/// leaves an outbox another page of the same user can take over.
fn tab_id() -> &'static str {
    thread_local! {
        static TAB: &'static str = Box::leak(
            format!("{:x}", (random() * 1e15) as u64).into_boxed_str()
        );
    }
    TAB.with(|tab| *tab)
}

fn outbox_key(user: &str, tab: &str) -> String {
    format!("{OUTBOX_PREFIX}{user}:{tab}")
}

fn tab_lock(tab: &str) -> String {
    format!("pulse-tab:{tab}")
}

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks.request(name, options, callback)` (Web Locks; web-sys
    /// has it only behind its unstable APIs). Throws where there is no
    /// `navigator.locks` (an insecure origin).
    #[wasm_bindgen(js_namespace = ["navigator", "locks"], js_name = request, catch)]
    fn request_lock(
        name: &str,
        options: &JsValue,
        callback: &js_sys::Function,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// Holds this tab's lock for as long as the page lives: while it is held, no
/// other page takes over this tab's outbox.
pub fn hold_tab_lock() {
    // The key of the first version, shared by every tab and user: its
    // messages belong to nobody known, so they are never replayed.
    if let Some(storage) = local_storage() {
        let _ = storage.remove_item(LEGACY_OUTBOX_KEY);
    }
    let forever = Closure::once_into_js(|_lock: JsValue| js_sys::Promise::new(&mut |_, _| {}));
    let _ = request_lock(
        &tab_lock(tab_id()),
        &js_sys::Object::new(),
        forever.unchecked_ref(),
    );
}

thread_local! {
    /// Tabs whose lock this page waits for (to take over their outbox once
    /// they are gone), so that each is waited for once.
    static AWAITED: std::cell::RefCell<std::collections::HashSet<String>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Calls `found` with every outbox of `user` left by a page that is gone (a
/// closed tab, an earlier load of this one), removing it from storage. Each
/// is taken by one page only: its tab's lock is held while it is taken. A
/// tab whose lock is still held (alive, or closing right now: the browser
/// frees a closed tab's lock a moment later) is waited for, and its outbox
/// taken over when it is gone.
pub fn take_over_outboxes(user: &str, found: impl Fn(Outbox) + Clone + 'static) {
    claim_outboxes(user, found, true);
}

/// [`take_over_outboxes`], waiting for tabs still alive when `wait`, else
/// only taking those of pages already gone.
fn claim_outboxes(user: &str, found: impl Fn(Outbox) + Clone + 'static, wait: bool) {
    let Some(storage) = local_storage() else {
        return;
    };
    let prefix = outbox_key(user, "");
    let length = storage.length().unwrap_or(0);
    let keys: Vec<String> = (0..length)
        .filter_map(|n| storage.key(n).ok().flatten())
        .filter(|key| {
            key.strip_prefix(&prefix)
                .is_some_and(|tab| tab != tab_id() && !tab.contains(':'))
        })
        .collect();
    for key in keys {
        if wait && !AWAITED.with(|awaited| awaited.borrow_mut().insert(key.clone())) {
            continue;
        }
        let tab = key[prefix.len()..].to_owned();
        let found = found.clone();
        let options = js_sys::Object::new();
        if !wait {
            let _ = js_sys::Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE);
        }
        // Granted once the tab's own page no longer holds it (at once for a
        // page that is gone; `null` at once for a live tab when not
        // waiting); released as soon as this returns.
        let take = Closure::once_into_js(move |lock: JsValue| {
            if wait {
                AWAITED.with(|awaited| awaited.borrow_mut().remove(&key));
            }
            if lock.is_null() {
                return JsValue::UNDEFINED;
            }
            if let Some(storage) = local_storage() {
                let json = storage.get_item(&key).ok().flatten();
                let _ = storage.remove_item(&key);
                if let Some(stored) = json.and_then(|j| StoredOutbox::from_json(&j).ok()) {
                    found(Outbox::from(stored));
                }
            }
            JsValue::UNDEFINED
        });
        let _ = request_lock(&tab_lock(&tab), &options, take.unchecked_ref());
    }
}

/// Forgets what `user` left unsent on this browser (sign-out): this tab's
/// outbox and those of pages that are gone.
pub fn discard_outboxes(user: &str) {
    if let Some(storage) = local_storage() {
        let _ = storage.remove_item(&outbox_key(user, tab_id()));
    }
    claim_outboxes(user, |_| {}, false);
}

/// Keeps this tab's outbox across reloads, under its user's key (an empty
/// one is removed).
pub fn store_outbox(outbox: &Outbox) {
    let (Some(storage), Some(user)) = (local_storage(), outbox.owner()) else {
        return;
    };
    let key = outbox_key(user, tab_id());
    if outbox.is_empty() {
        let _ = storage.remove_item(&key);
    } else if let Ok(json) = outbox.stored().to_json() {
        let _ = storage.set_item(&key, &json);
    }
}

/// Whether the browser says it is online.
pub fn online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}
