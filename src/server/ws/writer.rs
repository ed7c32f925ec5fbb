//! Owns the write half of one socket: the only task that writes to it. It
//! drains the connection's [`Outbox`], packing several queued messages into
//! one `batch` frame, and stops after the close frame.

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outbox::{Next, Outbox};
use crate::server::frames;
use crate::server::metrics::Metrics;

/// The most message bytes packed into one `batch` frame.
const MAX_BATCH_BYTES: usize = 32 * 1024;

/// Writes until the close frame went out or the peer is gone. With a
/// `write_delay`, a frame of ticks waits that long for more ticks to join it
/// (fewer writes, later ticks); anything else goes at once.
pub async fn run<S>(mut sink: S, outbox: Arc<Outbox>, metrics: Arc<Metrics>, write_delay: Duration)
where
    S: Sink<Message> + Unpin,
{
    loop {
        if !write_delay.is_zero() {
            outbox.hold_ticks(write_delay).await;
        }
        let message = match outbox.next(MAX_BATCH_BYTES).await {
            Next::Ping => Message::Ping(Default::default()),
            Next::Frames(messages, drained) => {
                metrics.messages_out.inc_by(messages.len() as u64);
                metrics.outbox_depth.observe(drained.depth as f64);
                let message = if let [single] = messages.as_slice() {
                    Message::Text(single.clone())
                } else {
                    Message::Text(frames::batch(&messages))
                };
                match send(&mut sink, message, &outbox).await {
                    Sent::Failed => return,
                    Sent::Abandoned => continue,
                    Sent::Written => {}
                }
                // One clock read and one merge per frame, however many
                // messages it carries (histogram count = messages delivered).
                let written = Instant::now();
                metrics.delivery_latency.observe_many(
                    drained.queued_at.iter().map(|queued_at| {
                        written.saturating_duration_since(*queued_at).as_secs_f64()
                    }),
                );
                for first in drained.firsts {
                    let waited = written.saturating_duration_since(first.since);
                    metrics
                        .first_message(first.kind)
                        .observe(waited.as_secs_f64());
                }
                continue;
            }
            Next::Close(code, reason) => {
                let _ = sink.send(frames::close_code(code, reason)).await;
                break;
            }
        };
        if let Sent::Failed = send(&mut sink, message, &outbox).await {
            return;
        }
    }
    let _ = sink.close().await;
}

/// How a write ended.
enum Sent {
    Written,
    /// The connection closed at once meanwhile: go on to the close frame.
    Abandoned,
    /// The peer is gone.
    Failed,
}

/// Writes one frame, unless the connection is closed at once meanwhile
/// ([`Outbox::abandoned`]): a slow consumer's writer must not stay stuck
/// on the write that made it slow.
async fn send<S>(sink: &mut S, message: Message, outbox: &Outbox) -> Sent
where
    S: Sink<Message> + Unpin,
{
    // Biased: the write is polled first, so a write the socket takes at
    // once (the common case) never polls `abandoned` (a lock of the outbox)
    // nor draws a random number to pick a branch.
    tokio::select! {
        biased;
        sent = sink.send(message) => if sent.is_ok() { Sent::Written } else { Sent::Failed },
        () = outbox.abandoned() => Sent::Abandoned,
    }
}
