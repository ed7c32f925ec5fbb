//! Owns forwarding fallback POSTs between instances (docs/EXTENSIONS.md, "A
//! POST on another instance"). Each instance listens on its own channel
//! (`Keys::forwarding`). The poster PUBLISHes the POST's envelopes on the
//! owner's channel and waits, at most [`FORWARD_WAIT`], for the answer on
//! its own; a PUBLISH nobody heard (no instance of that name is running)
//! is answered `NotOpen` at once. The owner hands the envelopes to the
//! session ([`PostInbox`]) on a task of their own, at most
//! [`DELIVERIES`] at a time and each for at most [`DELIVER_WAIT`], and
//! PUBLISHes the outcome back. Pub/sub carries each message at most once,
//! so an envelope is delivered at most once per POST; a POST whose answer
//! was lost is answered `Unanswered` and may be sent again (an envelope's
//! `id` makes that idempotent, as on one instance).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use redis::aio::ConnectionManager;
use tokio::sync::{oneshot, Semaphore};

use super::keys::Keys;
use crate::protocol::forward::{ForwardAnswer, ForwardedPost, Forwarding};
use crate::server::broker::{ForwardOutcome, PostInbox};
use crate::server::hub::lock;

/// How long a poster waits for the owner's answer.
pub const FORWARD_WAIT: Duration = Duration::from_secs(3);

/// How long the owner tries to hand one POST's envelopes to its session
/// (shorter than [`FORWARD_WAIT`], so its `Busy` arrives in time).
pub const DELIVER_WAIT: Duration = Duration::from_secs(2);

/// Forwarded POSTs this instance delivers at once; past it, more are
/// answered `Busy` (or, past twice as many, dropped unanswered).
pub const DELIVERIES: usize = 256;

/// POSTs this instance waits on answers for at once; past it, a POST for
/// another instance's session is answered `Busy` without being sent.
pub const PENDING: usize = 1024;

/// This instance's end of forwarding; shared by the broker (sending) and
/// the listener (receiving).
pub(super) struct Forwarder {
    redis: ConnectionManager,
    keys: Keys,
    instance: String,
    inbox: Arc<dyn PostInbox>,
    next: AtomicU64,
    /// Posters waiting for their answer, by request number.
    pending: Mutex<HashMap<u64, oneshot::Sender<ForwardOutcome>>>,
    /// Deliveries (and `Busy` answers) running now.
    running: Arc<Semaphore>,
}

impl Forwarder {
    pub fn new(
        redis: ConnectionManager,
        keys: Keys,
        instance: String,
        inbox: Arc<dyn PostInbox>,
    ) -> Arc<Self> {
        Arc::new(Forwarder {
            redis,
            keys,
            instance,
            inbox,
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            running: Arc::new(Semaphore::new(2 * DELIVERIES)),
        })
    }

    /// The channel this instance listens on.
    pub fn channel(&self) -> String {
        self.keys.forwarding(&self.instance)
    }

    /// Sends a POST's envelopes to `owner` and waits for its answer.
    pub fn send(
        self: &Arc<Self>,
        owner: &str,
        session: &str,
        envelopes: Vec<String>,
    ) -> BoxFuture<'static, ForwardOutcome> {
        let this = self.clone();
        let to = self.keys.forwarding(owner);
        let session = session.to_owned();
        async move {
            let request = this.next.fetch_add(1, Ordering::Relaxed);
            let (answer, answered) = oneshot::channel();
            {
                let mut pending = lock(&this.pending);
                if pending.len() >= PENDING {
                    return ForwardOutcome::Busy;
                }
                pending.insert(request, answer);
            }
            // Forgets the request however this ends (answered, timed out,
            // or the POST's client went away).
            let _waiting = Waiting {
                forwarder: this.clone(),
                request,
            };
            let post = Forwarding::Post(ForwardedPost {
                session,
                envelopes,
                from: this.instance.clone(),
                request,
            });
            let heard: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(to)
                .arg(post.to_json())
                .query_async(&mut this.redis.clone())
                .await;
            match heard {
                Ok(0) => return ForwardOutcome::NotOpen,
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, "cannot forward a fallback POST through Redis");
                    return ForwardOutcome::Unanswered;
                }
            }
            match tokio::time::timeout(FORWARD_WAIT, answered).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) | Err(_) => ForwardOutcome::Unanswered,
            }
        }
        .boxed()
    }

    /// One message on this instance's channel (from the listener, which
    /// must not wait: deliveries and answers run on tasks of their own).
    pub fn receive(self: &Arc<Self>, payload: &[u8]) {
        match Forwarding::from_json(payload) {
            Err(err) => tracing::warn!(%err, "unreadable forwarded POST from Redis"),
            Ok(Forwarding::Answer(ForwardAnswer { request, outcome })) => {
                if let Some(waiting) = lock(&self.pending).remove(&request) {
                    let _ = waiting.send(outcome);
                }
            }
            Ok(Forwarding::Post(post)) => self.deliver(post),
        }
    }

    /// Hands a forwarded POST to its session and answers the poster.
    fn deliver(self: &Arc<Self>, post: ForwardedPost) {
        let Ok(permit) = self.running.clone().try_acquire_owned() else {
            tracing::warn!(
                from = post.from,
                "too many forwarded POSTs at once; one dropped unanswered"
            );
            return;
        };
        let busy = self.running.available_permits() < DELIVERIES;
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = if busy {
                ForwardOutcome::Busy
            } else {
                let delivery = this.inbox.deliver(&post.session, post.envelopes);
                tokio::time::timeout(DELIVER_WAIT, delivery)
                    .await
                    .unwrap_or(ForwardOutcome::Busy)
            };
            let answer = Forwarding::Answer(ForwardAnswer {
                request: post.request,
                outcome,
            });
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(this.keys.forwarding(&post.from))
                .arg(answer.to_json())
                .query_async(&mut this.redis.clone())
                .await;
            if let Err(err) = sent {
                tracing::warn!(%err, "cannot answer a forwarded POST through Redis");
            }
            drop(permit);
        });
    }
}

/// A poster's entry in `pending`, removed on drop.
struct Waiting {
    forwarder: Arc<Forwarder>,
    request: u64,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        lock(&self.forwarder.pending).remove(&self.request);
    }
}
