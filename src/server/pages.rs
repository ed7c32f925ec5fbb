//! Owns what the server-rendered page starts from: the visitor (token
//! cookie), their watchlist (cookie, or the simulator's symbols) with each
//! symbol's current quote and offset, who is online, and the beginning of
//! the shared note's text, provided to the views as [`InitialState`].

use axum::http::request::Parts;
use leptos::prelude::{provide_context, use_context};

use super::auth::Auth;
use super::hub::{Hub, LoadError, INBOX_HISTORY};
use super::store::Store;
use crate::client::{
    cookie, watchlist_from_cookies, InitialState, NotePreview, NOTE_PREVIEW_BYTES, TOKEN_COOKIE,
};
use crate::protocol::Channel;

/// Provides the [`InitialState`] of the page being rendered.
pub fn provide_initial_state(hub: &Hub, auth: &Auth, store: &Store, default_watchlist: &[String]) {
    let cookies = use_context::<Parts>()
        .and_then(|parts| {
            parts
                .headers
                .get(axum::http::header::COOKIE)?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let watchlist = watchlist_from_cookies(&cookies).unwrap_or_else(|| default_watchlist.to_vec());
    let tickers = watchlist
        .iter()
        .map(|symbol| hub.peek(&Channel::Ticker(symbol.clone())))
        .collect();
    // An invalid or expired token renders the page signed out; the socket's
    // hello then gets 4001 and the page drops the token.
    let user = cookie(&cookies, TOKEN_COOKIE)
        .filter(|token| !token.is_empty())
        .and_then(|token| auth.verify(token).ok());
    let presence = user.as_ref().map(|_| hub.peek(&Channel::Presence));
    // Rooms and inboxes are on disk; what the hub has in memory renders now
    // (the default room always is), the rest arrives with the socket.
    let general = Channel::Chat(crate::client::DEFAULT_ROOM.to_owned());
    let chat = match &user {
        Some(_) if hub.has(&general) => vec![hub.peek(&general)],
        _ => Vec::new(),
    };
    let inbox = user
        .as_ref()
        .map(|user| Channel::User(user.id.clone()))
        .and_then(|channel| {
            if !hub.has(&channel) {
                load_now(hub, store, &channel);
            }
            let peeked = hub.has(&channel).then(|| hub.peek(&channel));
            // Loaded only to render: unless a socket of this user holds it,
            // it leaves memory again (the page's socket reloads it).
            hub.release(&channel);
            peeked
        });
    // The note's text renders for everyone (only signed-in users edit it);
    // the note stays in memory once loaded, as every page shows it. Only its
    // beginning goes into the page: its state (up to a mebibyte, more as
    // base64) comes over the socket to those who edit it, and who is editing
    // is for those in the note, not in every page's HTML.
    let note = Channel::Doc(crate::client::note::NOTE_DOC.to_owned());
    if !hub.has(&note) {
        load_now(hub, store, &note);
    }
    let note = hub
        .doc_text(&note)
        .map(|text| NotePreview::cut(&text, NOTE_PREVIEW_BYTES));
    provide_context(InitialState {
        watchlist,
        tickers,
        user,
        presence,
        chat,
        inbox,
        note,
    });
}

/// Loads a user's notifications or a document into the hub while the page
/// renders (the render is synchronous; this is one small indexed read). Only
/// on the multi-threaded runtime, where blocking one worker is allowed.
fn load_now(hub: &Hub, store: &Store, channel: &Channel) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return;
    }
    let (hub_for_relay, hub, installed) = (hub, hub.clone(), channel.clone());
    let loaded = match channel {
        Channel::User(id) => {
            let load = store.load_inbox(id.clone(), INBOX_HISTORY, move |stored| {
                hub.install_inbox(&installed, stored)
            });
            tokio::task::block_in_place(|| runtime.block_on(load)).map_err(LoadError::from)
        }
        Channel::Doc(_) => {
            let load = hub.load_doc(store, channel);
            tokio::task::block_in_place(|| runtime.block_on(load))
        }
        _ => Ok(()),
    };
    match loaded {
        // When instances run as one, the relay listens from now on and
        // catches up what was committed around the load.
        Ok(()) => hub_for_relay.ensure_watched(channel),
        Err(err) => tracing::error!(%err, %channel, "cannot load a channel for a page"),
    }
}
