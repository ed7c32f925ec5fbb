//! Owns this page's own lines in the log: pending while being sent (again,
//! for a retry, in the same place under the same key), acknowledged with
//! their offset until the server's copy takes their place, or failed with a
//! reason.

use std::sync::Arc;

use super::{ChatLine, ChatLog, LineState};
use crate::protocol::UserRef;

impl ChatLog {
    /// Takes this page's acked line waiting for the copy at `offset`.
    pub(super) fn take_acked(&mut self, offset: u64) -> Option<Arc<ChatLine>> {
        let at = self
            .unsent
            .iter()
            .position(|line| line.offset == Some(offset))?;
        Some(self.unsent.remove(at))
    }
}

/// This page starts sending `text` under envelope id `id` (again, for a
/// retry: the line keeps its place and key).
pub fn pending(log: &mut ChatLog, id: &str, user: &UserRef, text: &str) {
    if let Some(line) = log.unsent.iter_mut().find(|line| line.key == id) {
        let line = Arc::make_mut(line);
        line.state = LineState::Pending;
        text.clone_into(&mut line.text);
        return;
    }
    log.unsent.push(Arc::new(ChatLine {
        key: id.to_owned(),
        offset: None,
        user: user.clone(),
        text: text.to_owned(),
        sent_at: None,
        state: LineState::Pending,
    }));
}

/// The server acknowledged `id` at `offset`. If the copy was delivered
/// already (shown, or older than what is shown) the pending line goes;
/// otherwise it waits for the copy, which will take its place.
pub fn acked(log: &mut ChatLog, id: &str, offset: u64) {
    let Some(at) = log.unsent.iter().position(|line| line.key == id) else {
        return;
    };
    if offset <= log.covered {
        log.unsent.remove(at);
    } else {
        Arc::make_mut(&mut log.unsent[at]).offset = Some(offset);
    }
}

/// Sending `id` failed for `reason`; whether a line was ours to fail.
pub fn failed(log: &mut ChatLog, id: &str, reason: &str) -> bool {
    match log.unsent.iter_mut().find(|line| line.key == id) {
        Some(line) => {
            Arc::make_mut(line).state = LineState::Failed(reason.to_owned());
            true
        }
        None => false,
    }
}
