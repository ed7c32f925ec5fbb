//! `subscribe` and `unsubscribe`: who may watch which channel, the per
//! connection cap, loading a persisted channel from the store on first use,
//! and registering with the hub (which answers and replays); the `admin`
//! channel, answered by the admin feed, for sockets opened with the session.

use super::Connection;
use crate::protocol::admin::ADMIN_CHANNEL;
use crate::protocol::{
    Channel, ErrorBody, ErrorCode, ServerMessage, Subscribe, Unsubscribe, Unsubscribed,
};
use crate::server::hub::{Hub, LoadError, SubscribeError, CHAT_HISTORY, INBOX_HISTORY};
use crate::server::metrics::ChannelKind;
use crate::server::store::Store;
use std::collections::HashSet;

/// The most channels one connection may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// How often a subscribe loads a persisted channel that the hub dropped
/// again before the subscription could register (its last subscriber left
/// in between): a race, so a few tries always settle it.
const LOAD_ATTEMPTS: usize = 3;

impl Connection {
    /// Who may subscribe to what: tickers are public; presence, rooms,
    /// documents and inboxes need an identified connection, and an inbox its
    /// own user.
    pub(super) fn may_subscribe(&self, channel: &Channel) -> Result<(), ErrorBody> {
        match channel {
            Channel::Presence | Channel::Chat(_) | Channel::User(_) | Channel::Doc(_)
                if self.user.is_none() =>
            {
                Err(ErrorBody::new(
                    ErrorCode::Unauthorized,
                    format!(
                        "{channel}: only identified users may subscribe; send hello with a token"
                    ),
                ))
            }
            Channel::User(id) if self.user.as_ref().is_some_and(|u| &u.id != id) => {
                Err(ErrorBody::new(
                    ErrorCode::Forbidden,
                    format!("{channel}: only that user may subscribe"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// One `subscribed` or `error` per channel, in order. A channel listed
    /// again in the same frame is answered once, for its first entry: a
    /// repeat costs a set lookup, never another answer (each may carry a
    /// whole snapshot).
    pub(super) async fn subscribe(&mut self, subscribe: Subscribe, id: Option<String>) {
        let mut listed = HashSet::new();
        let channels = subscribe.channels.into_iter();
        for entry in channels.filter(|entry| listed.insert(entry.channel.clone())) {
            // Timed from here to the channel's first frame written
            // (`pulse_subscribe_first_message_seconds`).
            let since = std::time::Instant::now();
            let error = |code, message: String| {
                ErrorBody::new(code, message)
                    .with_id(id.clone())
                    .with_channel(entry.channel.clone())
            };
            if entry.channel == ADMIN_CHANNEL {
                if let Err(body) = self.subscribe_admin(since) {
                    self.send_error(body.with_id(id.clone()).with_channel(entry.channel.clone()));
                }
                continue;
            }
            let channel: Channel = match entry.channel.parse() {
                Ok(channel) => channel,
                Err(err) => {
                    self.send_error(error(ErrorCode::Invalid, format!("channel: {err}")));
                    continue;
                }
            };
            if let Err(body) = self.may_subscribe(&channel) {
                self.send_error(body.with_id(id.clone()).with_channel(entry.channel.clone()));
                continue;
            }
            let subscriptions = &self.registration.subscriptions;
            if !subscriptions.contains(&channel) && subscriptions.len() >= MAX_SUBSCRIPTIONS {
                let message = format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection");
                self.send_error(error(ErrorCode::TooLarge, message));
                continue;
            }
            let mut attempts = 0;
            let subscribed = loop {
                attempts += 1;
                let (hub, store) = (self.context.hub.clone(), self.context.store.clone());
                let loading = channel.clone();
                if let Err(err) = self.wait(install(hub, store, loading)).await {
                    break Err(err);
                }
                self.outbox.time_answer(ChannelKind::of(&channel), since);
                let answered = self.context.hub.subscribe(
                    self.subscriber,
                    &self.outbox,
                    &channel,
                    entry.since.as_ref(),
                );
                self.outbox.untime_answer();
                match answered {
                    Err(SubscribeError::NotLoaded) if attempts < LOAD_ATTEMPTS => continue,
                    done => break Ok(done),
                }
            };
            match subscribed {
                Ok(Ok(())) => {
                    self.registration.subscribed(channel);
                }
                Ok(Err(err @ (SubscribeError::NotAvailable | SubscribeError::NotLoaded))) => {
                    let message = format!("{channel}: {err}");
                    self.send_error(error(ErrorCode::NotFound, message));
                }
                // The outbox was sealed: the select loop is about to close.
                Ok(Err(SubscribeError::Closing)) => return,
                Err(err) => {
                    tracing::error!(%err, %channel, "cannot load a channel");
                    let message = format!("{channel}: its history could not be loaded; try again");
                    self.send_error(error(ErrorCode::Internal, message));
                }
            }
        }
    }

    /// `admin`: only for a socket opened with the admin session cookie
    /// (`forbidden` otherwise); answered with the latest snapshot, then one
    /// a second. Subscribing again is answered again.
    fn subscribe_admin(&mut self, since: std::time::Instant) -> Result<(), ErrorBody> {
        if !self.context.admin_session {
            return Err(ErrorBody::new(
                ErrorCode::Forbidden,
                "admin: only a connection opened with the admin session may subscribe; \
                 sign in at /admin",
            ));
        }
        self.outbox.time_answer(ChannelKind::Admin, since);
        let subscribed = self.context.admin.subscribe(self.subscriber, &self.outbox);
        self.outbox.untime_answer();
        // Gone: the outbox is sealed and the select loop is about to close.
        if subscribed.is_ok() {
            self.registration.watches_admin = true;
        }
        Ok(())
    }

    /// One `unsubscribed` per channel; unsubscribing twice is harmless.
    pub(super) fn unsubscribe(&mut self, unsubscribe: Unsubscribe, id: Option<String>) {
        for name in unsubscribe.channels {
            if name == ADMIN_CHANNEL {
                self.context.admin.unsubscribe(self.subscriber);
                self.registration.watches_admin = false;
                self.send(ServerMessage::Unsubscribed(Unsubscribed { channel: name }));
                continue;
            }
            match name.parse::<Channel>() {
                Ok(channel) => {
                    self.context.hub.unsubscribe(self.subscriber, &channel);
                    self.outbox.forget_channel(&name);
                    self.registration.unsubscribed(&channel);
                    self.send(ServerMessage::Unsubscribed(Unsubscribed { channel: name }));
                }
                Err(err) => {
                    let body = ErrorBody::new(ErrorCode::Invalid, format!("channel: {err}"));
                    self.send_error(body.with_id(id.clone()).with_channel(name));
                }
            }
        }
    }
}

/// Loads a persisted channel into the hub on first use (nothing committed
/// around the load is lost: a room or inbox is installed after its commit
/// point by the store's writer; a document is read beside the writer, and
/// the hub applies what was published while it loaded).
pub(super) async fn install(hub: Hub, store: Store, channel: Channel) -> Result<(), LoadError> {
    if hub.has(&channel) {
        // Held already (perhaps rendered into a page without a subscriber):
        // make sure the relay, if any, listens to it.
        if matches!(
            channel,
            Channel::Chat(_) | Channel::User(_) | Channel::Doc(_)
        ) {
            hub.ensure_watched(&channel);
        }
        return Ok(());
    }
    // When instances run as one the relay listens before the load (and a
    // ticker is loaded from Redis then), and fills in what was committed
    // around it after.
    if let Channel::Presence = channel {
        return Ok(());
    }
    hub.watch(&channel).await;
    let (installer, installed) = (hub.clone(), channel.clone());
    match &channel {
        Channel::Chat(_) => {
            store
                .load_chat(channel.to_string(), CHAT_HISTORY, move |stored| {
                    installer.install_chat(&installed, stored)
                })
                .await?
        }
        Channel::User(id) => {
            store
                .load_inbox(id.clone(), INBOX_HISTORY, move |stored| {
                    installer.install_inbox(&installed, stored)
                })
                .await?
        }
        Channel::Doc(_) => hub.load_doc(&store, &channel).await?,
        Channel::Ticker(_) | Channel::Presence => return Ok(()),
    }
    hub.loaded(&channel);
    Ok(())
}
