//! JoinableQueue crash recovery: the per-peer task slots in front of the
//! queue, and the joiner's slow-path check (see [`shmring_core::tasks`] for
//! the protocol and why its windows all err the same way).
//!
//! ```text
//! tasks region (TASKS_BYTES, page aligned, zeroed at creation)
//!   0    256  TaskCounter (unfinished count, joiners' wait word)
//!   256  8×N  TaskSlot per peer row (row r at 256 + 8r), N = SLOT_COUNT
//! ```
//!
//! A zeroed slot table is "no peer holds anything", so segments created
//! before the table existed read the same.

use std::fmt;

use shmring_core::tasks::{TaskCounter, TaskSlot};
use shmring_core::wait::TimedOut;

use crate::segment::Segment;
use crate::sys::FutexWaiter;

/// Offset of the slot table in the tasks region.
pub(super) const SLOTS_OFFSET: usize = 256;

/// Why [`JoinableQueue::join`](super::JoinableQueue::join) returned without
/// every task marked done by a live consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The timeout passed with tasks still unfinished.
    Timeout,
    /// Every task is now accounted for, but `lost` of them were held by
    /// processes that died: got and never marked done, or counted by a
    /// `put` killed before it published. They were taken off the count.
    PeerDied {
        /// Tasks taken off the count because their holder died.
        lost: u64,
    },
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Timeout => f.write_str("timed out waiting for unfinished tasks"),
            JoinError::PeerDied { lost } => {
                write!(f, "{lost} unfinished task(s) were lost with a dead process")
            }
        }
    }
}

impl std::error::Error for JoinError {}

impl From<TimedOut> for JoinError {
    fn from(_: TimedOut) -> Self {
        JoinError::Timeout
    }
}

/// The peer token of `row` at `generation` (the segment's encoding:
/// `generation << 32 | row + 1`).
fn token(row: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | (row as u64 + 1)
}

/// This attachment's `(row, generation)`, from its token.
pub(super) fn own_row(segment: &Segment) -> (usize, u32) {
    let token = segment.peer_token();
    (
        (token as u32).wrapping_sub(1) as usize,
        (token >> 32) as u32,
    )
}

/// State a joiner keeps between slow checks.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// The unfinished count the previous slow check found stalled.
    stalled_at: Option<u64>,
}

impl Recovery {
    /// One slow check: forgive the tasks of dead slot owners, then (when
    /// every peer row has a slot) whatever two checks in a row found stalled:
    /// unfinished, yet nothing queued and no live peer holding a task.
    /// Returns how many tasks were forgiven.
    pub(super) fn check(
        &mut self,
        tasks: &TaskCounter,
        slots: &[TaskSlot],
        segment: &Segment,
        queue_empty: impl FnOnce() -> bool,
    ) -> u64 {
        let rows = slots.len().min(segment.peer_rows() as usize);
        let mut forgiven = 0;
        let mut live_held = 0u64;
        for (row, slot) in slots[..rows].iter().enumerate() {
            forgiven += slot.reclaim_if_dead(tasks, &FutexWaiter, &mut |g| {
                !segment.is_peer_alive(token(row, g))
            });
            live_held += u64::from(slot.get().1);
        }
        let unfinished = tasks.unfinished();
        let every_row_tracked = segment.peer_rows() as usize <= slots.len();
        if unfinished == 0 || live_held != 0 || !every_row_tracked || !queue_empty() {
            self.stalled_at = None;
            return forgiven;
        }
        if self.stalled_at == Some(unfinished) {
            self.stalled_at = None;
            forgiven += tasks.forgive(unfinished, &FutexWaiter);
        } else {
            self.stalled_at = Some(unfinished);
        }
        forgiven
    }
}
