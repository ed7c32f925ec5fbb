//! Owns the write half of one socket: the only task that writes to it, fed by
//! the connection's bounded queue.

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};
use tokio::sync::mpsc;

/// How many frames the writer drains from its queue before one flush: a burst
/// goes out in as few system calls as possible.
const FLUSH_EVERY: usize = 64;

/// Writes every queued frame in order until the queue closes or a close frame
/// was written, then closes the sink. A write error (peer gone) ends it.
/// The sender side is the connection task, which owns the only `Sender`.
pub async fn run<S>(mut sink: S, mut queue: mpsc::Receiver<Message>)
where
    S: Sink<Message> + Unpin,
{
    'outer: while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        let mut fed = 0;
        while let Some(frame) = next.take() {
            let closing = matches!(frame, Message::Close(_));
            if sink.feed(frame).await.is_err() {
                return;
            }
            fed += 1;
            if closing {
                break 'outer;
            }
            if fed < FLUSH_EVERY {
                next = queue.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}
