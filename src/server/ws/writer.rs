//! Owns the write half of one socket: the only task that writes to it. It
//! drains the connection's [`Outbox`], packing several queued messages into
//! one `batch` frame, and stops after the close frame.

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::outbox::{Drained, FirstFrame, Next, Outbox};
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
            // Boxed: its timer is the largest state this task would hold,
            // and `--write-delay-ms` is off by default.
            Box::pin(outbox.hold_ticks(write_delay)).await;
        }
        // Everything but the frame and its small record is dropped before
        // the write: this task's state is touched on every frame written,
        // and what it holds across the `.await` makes it larger.
        let (message, record) = match outbox.next_job(MAX_BATCH_BYTES).await {
            Next::Ping => (Message::Ping(Default::default()), Record::None),
            Next::Frame(frame, taken) => {
                metrics.messages_out.inc();
                metrics.outbox_depth.observe(taken.depth as f64);
                (
                    Message::Text(frame),
                    Record::One(taken.queued_at, taken.first),
                )
            }
            Next::Frames(messages, drained) => {
                metrics.messages_out.inc_by(messages.len() as u64);
                metrics.outbox_depth.observe(drained.depth as f64);
                let message = Message::Text(frames::batch(&messages));
                (message, Record::Many(Box::new(drained)))
            }
            Next::Close(code, reason) => {
                let _ = sink.send(frames::close_code(code, reason)).await;
                break;
            }
        };
        match send(&mut sink, message, &outbox).await {
            Sent::Failed => return,
            Sent::Abandoned => continue,
            Sent::Written => record.written(&metrics),
        }
    }
    let _ = sink.close().await;
}

/// What the `/metrics` histograms learn once a frame is written.
enum Record {
    /// A Ping: nothing.
    None,
    /// One message, queued at that instant, maybe a subscribe's first.
    One(Instant, Option<FirstFrame>),
    /// A `batch` (rare: boxed, so this record stays small).
    Many(Box<Drained>),
}

impl Record {
    /// Observes the delivery latency of each message written (histogram
    /// count = messages delivered) and the subscribes they answered, with
    /// one clock read per frame.
    fn written(self, metrics: &Metrics) {
        let (queued_at, firsts) = match self {
            Record::None => return,
            Record::One(queued_at, first) => {
                let written = Instant::now();
                let latency = written.saturating_duration_since(queued_at);
                metrics.delivery_latency.observe(latency.as_secs_f64());
                if let Some(first) = first {
                    observe_first(metrics, first, written);
                }
                return;
            }
            Record::Many(drained) => (drained.queued_at, drained.firsts),
        };
        let written = Instant::now();
        metrics.delivery_latency.observe_many(
            queued_at
                .iter()
                .map(|at| written.saturating_duration_since(*at).as_secs_f64()),
        );
        for first in firsts {
            observe_first(metrics, first, written);
        }
    }
}

fn observe_first(metrics: &Metrics, first: FirstFrame, written: Instant) {
    let waited = written.saturating_duration_since(first.since);
    metrics
        .first_message(first.kind)
        .observe(waited.as_secs_f64());
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
    let sent = |result: Result<(), S::Error>| match result {
        Ok(()) => Sent::Written,
        Err(_) => Sent::Failed,
    };
    let mut write = sink.send(message);
    // The common case: the socket takes the frame at once. Only a write
    // that waits races `abandoned` (a lock of the outbox and a waiter), in
    // a boxed future, so that race is not part of this task's state.
    if let Poll::Ready(result) = poll_fn(|cx| Poll::Ready(pin!(&mut write).poll(cx))).await {
        return sent(result);
    }
    Box::pin(async move {
        tokio::select! {
            biased;
            result = write => sent(result),
            () = outbox.abandoned() => Sent::Abandoned,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's future is one connection's task, held for as long as the
    /// socket lives and touched on every frame written: what it keeps across
    /// the write (the taken frames' record, the race with `abandoned`) costs
    /// RSS per socket and cache misses per message.
    #[test]
    fn the_writer_future_stays_small() {
        let outbox = Outbox::new(1024);
        let metrics = Arc::new(Metrics::default());
        let writer = run(futures_util::sink::drain(), outbox, metrics, Duration::ZERO);
        let size = std::mem::size_of_val(&writer);
        println!("writer::run future: {size} bytes");
        assert!(
            size <= WRITER_FUTURE_BOUND,
            "{size} > {WRITER_FUTURE_BOUND}"
        );
    }

    /// Debug builds lay futures out larger than release ones; this bound is
    /// for the test profile, where the writer's future was 464 bytes while
    /// it held the taken frames' record, the `abandoned` race and the
    /// `--write-delay-ms` timer in its own state (344 now).
    const WRITER_FUTURE_BOUND: usize = 384;
}
