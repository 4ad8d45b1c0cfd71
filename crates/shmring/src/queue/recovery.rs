//! JoinableQueue crash recovery: the task slots in front of the queue, and
//! what a joiner does on its slow path (see [`shmring_core::joinable`] for
//! the accounting and why every death leaves each task counted exactly
//! where it was).
//!
//! ```text
//! tasks region (TASKS_BYTES, page aligned, zeroed at creation)
//!   0    256  TaskCounter (joiners' wait word, tasks lost so far)
//!   256  16×N TaskSlot per peer row (row r at 256 + 16r), N = MAX_PEER_ROWS
//! ```

use std::fmt;

use shmring_core::joinable::{TaskCounter, TaskSlot};

use crate::segment::{Segment, MAX_PEER_ROWS};

/// Offset of the slot table in the tasks region.
pub(super) const SLOTS_OFFSET: usize = 256;

/// Bytes in front of a JoinableQueue's queue: the task counter and a slot
/// for every peer row any segment can have, padded to a page so the queue
/// keeps its alignment.
pub(super) const TASKS_BYTES: usize =
    (SLOTS_OFFSET + SLOT_LEN * MAX_PEER_ROWS as usize).next_multiple_of(4096);

/// Bytes of one task slot.
const SLOT_LEN: usize = std::mem::size_of::<TaskSlot>();

const _: () = assert!(std::mem::size_of::<TaskCounter>() <= SLOTS_OFFSET);

/// Why [`JoinableQueue::join`](super::JoinableQueue::join) returned without
/// every task marked done by a live consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// Every task is now accounted for, but `lost` of them were held (or
    /// being taken) by processes that died, or by handles dropped before
    /// marking them done, since the last `join` that reported losses. They
    /// were taken off the count. (See the crash notes of
    /// [`JoinableQueue`](super::JoinableQueue) for a take cut short.)
    PeerDied {
        /// Tasks taken off the count because their holder is gone.
        lost: u64,
    },
}

impl JoinError {
    /// Never closed: a join has no closed state (for the shared error
    /// macro's `is_closed`).
    fn is_closed(&self) -> bool {
        false
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::PeerDied { lost } => {
                write!(f, "{lost} unfinished task(s) were lost with a dead process")
            }
        }
    }
}

impl std::error::Error for JoinError {}

/// Why [`try_join`](super::JoinableQueue::try_join) did not find every task
/// done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryJoinError {
    /// Tasks are still unfinished.
    Unfinished,
    /// Every task is accounted for, but some were lost (see [`JoinError`]).
    Join(JoinError),
}

/// Why [`join_timeout`](super::JoinableQueue::join_timeout) or
/// [`join_deadline`](super::JoinableQueue::join_deadline) returned early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinTimeoutError {
    /// The time was up with tasks still unfinished.
    Timeout,
    /// Every task is accounted for, but some were lost (see [`JoinError`]).
    Join(JoinError),
}

super::error::wrapper_error!(TryJoinError { Unfinished => "tasks are unfinished", Join(JoinError) }, is_unfinished);
super::error::wrapper_error!(JoinTimeoutError { Timeout => "timed out waiting for unfinished tasks", Join(JoinError) }, is_timeout);

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

/// Whether the owner of `slot`, in peer row `row`, is still attached (the
/// generation the slot names, at the row's liveness lock).
pub(super) fn holder_alive(segment: &Segment, row: usize, slot: &TaskSlot) -> bool {
    segment.is_peer_alive(token(row, slot.get().0))
}

/// The slow check of a joiner: empties the slot of every peer row whose
/// owner is gone (dead, or detached without marking its tasks done).
/// Returns how many tasks were lost with them (a take in flight whose head
/// never moved took nothing: see [`shmring_core::joinable`]).
pub(super) fn reclaim_dead(
    tasks: &TaskCounter,
    slots: &[TaskSlot],
    segment: &Segment,
    queue: &shmring_core::mpmc::Queue,
) -> u64 {
    slots
        .iter()
        .enumerate()
        .map(|(row, slot)| {
            slot.reclaim_if_dead(
                tasks,
                &segment.waiter(),
                &mut |g| !segment.is_peer_alive(token(row, g)),
                &mut |intent| queue.intent_taken(intent),
            )
        })
        .sum()
}

/// Unfinished tasks of the JoinableQueue whose tasks region starts at
/// `base` and is `region_len` bytes long (the queue follows it), given the
/// queue's length read just before (for inspection tools). `None` when the
/// region is too short for the slots of `peer_rows` rows.
pub(super) fn unfinished_in_region(
    base: std::ptr::NonNull<u8>,
    region_len: usize,
    peer_rows: u32,
    queue_len: u64,
) -> Option<u64> {
    let rows = peer_rows as usize;
    if SLOTS_OFFSET + SLOT_LEN * rows > region_len || !(base.as_ptr() as usize).is_multiple_of(8) {
        return None;
    }
    // TaskSlot is two AtomicU64s, valid for any bytes and concurrent writers.
    // SAFETY: `rows` slots at SLOTS_OFFSET lie inside the region (checked
    // above), 8-aligned; the caller keeps the mapping alive while we read.
    let slots = unsafe {
        std::slice::from_raw_parts(base.add(SLOTS_OFFSET).cast::<TaskSlot>().as_ptr(), rows)
    };
    Some(shmring_core::joinable::unfinished(queue_len, slots))
}
