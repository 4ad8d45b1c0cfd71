//! The JoinableQueue's descriptor: the queue's shape in the header, and the
//! region's two parts, the task table (see the `recovery` module) then the
//! queue.

use std::ptr::NonNull;

use shmring_core::error::Corrupted;

use super::recovery::{unfinished_in_region, TASKS_BYTES};
use crate::descriptor::{Describe, Descriptor, Region, Words};
use crate::mpmc::descriptor::QueueDescriptor;
use crate::segment::{HeaderInfo, ObjectKind, ObjectState, PeerStatus};

/// Header words: as a queue's ([`QueueDescriptor`]). The region is the task
/// table (`TASKS_BYTES`, zeroed at creation) followed by the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinableDescriptor {
    /// The queue part.
    pub(crate) queue: QueueDescriptor,
}

impl JoinableDescriptor {
    /// Offset of the queue in the region.
    pub(crate) const QUEUE_AT: usize = TASKS_BYTES;
}

impl Describe for JoinableDescriptor {
    fn describe(&self, state: &mut ObjectState) {
        self.queue.describe(state);
    }

    fn examine(
        &self,
        region: &Region,
        header: &HeaderInfo,
        _: &[PeerStatus],
        state: &mut ObjectState,
    ) -> Result<(), Corrupted> {
        let depth = self.queue.examine_at(region, Self::QUEUE_AT, state)?;
        let tasks = region.part("joinable queue task region", 0, TASKS_BYTES)?;
        let unfinished =
            unfinished_in_region(tasks, TASKS_BYTES, header.peer_rows, depth).ok_or(Corrupted {
                what: "joinable queue task region",
                value: TASKS_BYTES as u64,
            })?;
        state.details.push(("unfinished_tasks", unfinished));
        Ok(())
    }
}

impl Descriptor for JoinableDescriptor {
    const KIND: ObjectKind = ObjectKind::JoinableQueue;

    fn encode(&self) -> Words {
        self.queue.encode()
    }

    fn decode(words: &Words) -> Result<Self, Corrupted> {
        Ok(JoinableDescriptor {
            queue: QueueDescriptor::decode(words)?,
        })
    }

    fn object_len(&self) -> usize {
        TASKS_BYTES + self.queue.object_len()
    }

    unsafe fn init(&self, base: NonNull<u8>, len: usize) -> Result<(), String> {
        // A zeroed TaskCounter is a valid one with no task: nothing to write.
        let queue_len = len
            .checked_sub(Self::QUEUE_AT)
            .ok_or("joinable queue region too short")?;
        // SAFETY: the queue's part starts QUEUE_AT in (page aligned, inside
        // the region: checked above); the rest of the caller's zeroed,
        // private region is its own.
        unsafe { self.queue.init(base.add(Self::QUEUE_AT), queue_len) }
    }
}
