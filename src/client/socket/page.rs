//! The driver's side of the page's features: it follows the watchlist and
//! the rooms (subscribing what is added; unsubscribing, and forgetting the
//! resume point of, a symbol removed; the watchlist cookie), and carries out
//! what the features ask ([`ToDriver`]): frames, the outbox in
//! `localStorage`, sign-in and sign-out, "retry now", and the note's caret
//! at most every [`CURSOR_EVERY_MS`].

use leptos::prelude::*;

use super::{browser, now_ms, subscribe, ticker, Driver, Input, Wake};
use crate::client::reconnect::Event;
use crate::client::{Live, ToDriver};
use crate::protocol::{Channel, ClientEnvelope, ClientMessage, Unsubscribe};

/// The least time between two awareness updates of this page (the server
/// relays at most 10 a second).
pub(super) const CURSOR_EVERY_MS: f64 = 120.0;

/// Watchlist edits and new rooms become subscribe/unsubscribe messages; the
/// watchlist is kept in its cookie.
pub(super) fn follow(live: Live, send: impl Fn(ClientMessage) + Clone + 'static) {
    let to_socket = send.clone();
    Effect::watch(
        move || live.watchlist.symbols.get(),
        move |now: &Vec<String>, before: Option<&Vec<String>>, _| {
            let before = before.cloned().unwrap_or_default();
            let added: Vec<String> = now
                .iter()
                .filter(|s| !before.contains(s))
                .map(|s| ticker(s))
                .collect();
            let removed: Vec<String> = before
                .iter()
                .filter(|s| !now.contains(s))
                .map(|s| ticker(s))
                .collect();
            if !added.is_empty() {
                to_socket(subscribe(live, added));
            }
            if !removed.is_empty() {
                for channel in &removed {
                    live.connection.forget(channel);
                }
                to_socket(ClientMessage::Unsubscribe(Unsubscribe {
                    channels: removed,
                }));
            }
        },
        false,
    );
    let to_socket = send;
    Effect::watch(
        move || live.chat.rooms.get(),
        move |now: &Vec<String>, before: Option<&Vec<String>>, _| {
            let before = before.cloned().unwrap_or_default();
            let added: Vec<String> = now
                .iter()
                .filter(|r| !before.contains(r))
                .map(|r| Channel::Chat(r.clone()).to_string())
                .collect();
            if !added.is_empty() && live.identity.user.get_untracked().is_some() {
                to_socket(subscribe(live, added));
            }
        },
        false,
    );
    Effect::new(move |_| browser::store_watchlist(&live.watchlist.symbols.get()));
}

/// Takes over what closed pages of the signed-in user left unsent on this
/// browser.
pub(super) fn take_over_outbox(live: Live) {
    if let Some(user) = live.identity.user.get_untracked() {
        browser::take_over_outboxes(&user.id, move |outbox| live.adopt(outbox));
    }
}

impl Driver {
    /// Carries out one request of the page's features.
    pub(super) fn on_request(&mut self, request: ToDriver) {
        match request {
            ToDriver::Send(envelope) => {
                if self.ready {
                    self.send(&envelope);
                }
            }
            ToDriver::Pump => self.pump(),
            ToDriver::StoreOutbox => {
                self.live.connection.store_with(browser::store_outbox);
                let pending = self.live.connection.outbox_pending();
                self.told.outbox(&pending);
            }
            ToDriver::DiscardOutboxes(user) => browser::discard_outboxes(&user),
            ToDriver::Join(name) => self.join(name),
            ToDriver::Leave => {
                browser::store_token(None);
                self.live.signed_out();
                self.handle(Event::Restart);
            }
            ToDriver::RetryNow => self.handle(Event::RetryNow),
            ToDriver::ShareCursor { renew } => {
                if renew {
                    // The server forgot this page's cursor with its last
                    // connection: share it at once.
                    self.cursor_shared = f64::MIN;
                    self.cursor_waiting = false;
                }
                self.share_cursor();
            }
        }
    }

    /// Signs in as a guest named `name`, then reconnects with the new token.
    fn join(&mut self, name: String) {
        let live = self.live;
        let inputs = self.inputs.clone();
        leptos::task::spawn_local(async move {
            match browser::login(&name).await {
                Ok(answer) => {
                    browser::store_token(Some(&answer.token));
                    live.identity.joined(answer.user);
                    let _ = inputs.unbounded_send(Input::Event(Event::Restart));
                }
                Err(problem) => live.identity.join_problem.set(Some(problem)),
            }
        });
    }

    /// Shares where this page's caret is (at most every
    /// [`CURSOR_EVERY_MS`]; the latest always goes).
    pub(super) fn share_cursor(&mut self) {
        if self.cursor_waiting {
            return;
        }
        let now = now_ms();
        if now - self.cursor_shared < CURSOR_EVERY_MS {
            self.cursor_waiting = true;
            self.wake_at(self.cursor_shared + CURSOR_EVERY_MS, Wake::Cursor);
            return;
        }
        self.cursor_shared = now;
        if let Some(message) = self.live.note.cursor_message() {
            if self.ready {
                self.send(&ClientEnvelope::new(message));
            }
        }
    }
}
