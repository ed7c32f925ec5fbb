//! Whether a client's update can integrate fully into a document, decided
//! from the update's pre-scanned [`Shape`] and the document's state vector
//! alone (taken under the channel's lock, checked after it is released), so
//! nothing is mutated and no heavy work runs while others wait.
//!
//! yrs keeps whatever it cannot integrate as "pending" until the missing
//! content arrives: invisible, undeletable, yet part of the encoded state
//! (so of the 1 MiB bound) and of every compaction. One guest's 23 such
//! updates once filled the shared note. An update is therefore admitted only
//! if, for every client in it, its blocks start at or below the document's
//! clock for that client (they are contiguous inside it: the pre-scan
//! refuses skips); every id a block refers to (origin, right origin, parent)
//! is in the document or in the update, with no circle among the update's
//! own blocks; and every deleted range lies in what the document and the
//! update hold together.

use std::collections::HashMap;
use std::collections::VecDeque;

use yrs::{ClientID, StateVector};

use super::scan::{Id, ScanError, Shape};

/// Why an update was refused (answered `invalid`; nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("update: not a Yjs v1 update this server accepts ({0})")]
    Malformed(#[from] ScanError),
    #[error(
        "update: it follows an update of Yjs client {0} this document has not received; send that one first (updates of one client in order)"
    )]
    Gap(u64),
    #[error("update: it refers to content (Yjs client {}, clock {}) the document does not hold", .0.client, .0.clock)]
    Unknown(Id),
    #[error("update: it deletes content of Yjs client {0} the document does not hold")]
    UnknownDeletion(u64),
    #[error("update: its blocks depend on each other in a circle")]
    Circular,
}

impl Shape {
    /// Whether this update integrates fully into a document whose state
    /// vector is `known` (see the module's documentation).
    pub fn admit(&self, known: &StateVector) -> Result<(), Refusal> {
        let held = |client: u64| known.get(&ClientID::new(client));
        let runs: HashMap<u64, usize> = self
            .runs
            .iter()
            .enumerate()
            .map(|(index, run)| (run.client, index))
            .collect();
        for run in &self.runs {
            if run.start > held(run.client) {
                return Err(Refusal::Gap(run.client));
            }
        }
        // What the document holds once the update is in.
        let reach = |client: u64| {
            let end = runs.get(&client).map_or(0, |&run| self.runs[run].end);
            held(client).max(end)
        };
        for &(_, id) in &self.refs {
            if id.clock >= reach(id.client) {
                return Err(Refusal::Unknown(id));
            }
        }
        for &(client, _, end) in &self.deletes {
            if end > reach(client) {
                return Err(Refusal::UnknownDeletion(client));
            }
        }
        self.acyclic(&runs, held)
    }

    /// Refuses a circle among the blocks the document does not hold yet: a
    /// block depends on the one before it of its client and on every block
    /// of the update it refers to; yrs could integrate none of a circle.
    fn acyclic(
        &self,
        runs: &HashMap<u64, usize>,
        held: impl Fn(u64) -> u32,
    ) -> Result<(), Refusal> {
        // Edges from what is needed to what needs it.
        let mut edges: Vec<(usize, usize)> = Vec::new();
        for run in &self.runs {
            for index in run.first + 1..run.first + run.count {
                edges.push((index - 1, index));
            }
        }
        for &(index, id) in &self.refs {
            if id.clock < held(id.client) {
                continue;
            }
            // `admit` checked it is in the update.
            let run = &self.runs[runs[&id.client]];
            let blocks = &self.blocks[run.first..run.first + run.count];
            let within = blocks.partition_point(|block| block.end <= id.clock);
            edges.push((run.first + within, index));
        }
        edges.sort_unstable();
        let mut needs = vec![0usize; self.blocks.len()];
        for &(_, to) in &edges {
            needs[to] += 1;
        }
        let mut ready: VecDeque<usize> = (0..self.blocks.len())
            .filter(|&index| needs[index] == 0)
            .collect();
        let mut done = 0;
        while let Some(index) = ready.pop_front() {
            done += 1;
            let from = edges.partition_point(|&(from, _)| from < index);
            for &(_, to) in edges[from..].iter().take_while(|(from, _)| *from == index) {
                needs[to] -= 1;
                if needs[to] == 0 {
                    ready.push_back(to);
                }
            }
        }
        if done == self.blocks.len() {
            Ok(())
        } else {
            Err(Refusal::Circular)
        }
    }
}

#[cfg(test)]
mod generated;
#[cfg(test)]
mod tests;
