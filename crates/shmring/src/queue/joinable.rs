//! [`JoinableQueue`]: a [`Queue`](super::Queue) with a task counter.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use shmring_core::mpmc::QueueLayout;
use shmring_core::tasks::{TaskCounter, TaskSlot};
use shmring_core::wait::WaitPolicy;

use super::recovery::{self, JoinError};
use super::{GetError, Handle, PutError, QueueOptions};
use crate::attach::{deadline, AttachError};
use crate::codec::Message;
use crate::mpmc;
use crate::object::{impl_segment_constructors, SegmentObject};
use crate::segment::{ObjectKind, PeerCounter, Segment};
use crate::sys::FutexWaiter;
use shmring_core::error::Corrupted;

/// Python's `multiprocessing.JoinableQueue`: a [`Queue`](super::Queue) that counts
/// unfinished tasks; `put` adds one, [`task_done`](Self::task_done) marks one
/// done, [`join`](Self::join) waits until none is left.
///
/// # Crash behaviour
///
/// `join` never waits forever because a process died. Each handle counts,
/// in a slot of its own in the segment, the tasks it got and has not marked
/// done; a joiner checks once per liveness slice (100 ms) for slots whose
/// process died and takes their tasks off the count. A process killed in
/// the few instructions between taking an item and counting it (or between
/// counting a put and publishing it) leaves a task nobody holds: a joiner
/// takes it off once two slices in a row find the queue empty and no live
/// process holding a task. Either way `join` then returns
/// [`JoinError::PeerDied`] with the number of tasks lost. Call `task_done`
/// from the process that got the item: a task marked done elsewhere stays
/// counted as held by its getter, and that getter's death would take one
/// task too many off the count.
///
/// # Examples
///
/// ```
/// use shmring::queue::JoinableQueue;
///
/// let q = JoinableQueue::<u32>::create_anonymous(Default::default(), &Default::default())?;
/// q.put(7, None)?;
/// let item = q.get(None)?;
/// q.task_done()?;
/// q.join()?; // returns at once: nothing unfinished
/// assert!(q.task_done().is_err()); // "task_done() called too many times"
/// # let _ = item;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T> {
    handle: Handle,
    segment: Arc<Segment>,
    _items: PhantomData<fn(T) -> T>,
}

/// Bytes in front of a JoinableQueue's queue: the task counter, padded to a
/// page so the queue keeps its alignment.
const TASKS_BYTES: usize = 4096;

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("name", &self.segment.name())
            .finish()
    }
}

impl<T: Message> SegmentObject for JoinableQueue<T> {
    const KIND: ObjectKind = ObjectKind::JoinableQueue;
    type Config = QueueOptions;

    fn layout(options: &QueueOptions) -> Result<(usize, [u64; 8]), AttachError> {
        let config = options.config()?;
        let len = TASKS_BYTES + QueueLayout::new(&config)?.total;
        Ok((len, mpmc::params(&config)))
    }

    unsafe fn init(base: NonNull<u8>, len: usize, options: &QueueOptions) -> Result<(), String> {
        let config = options.config().map_err(|e| e.to_string())?;
        // A zeroed TaskCounter is a valid one with no task: nothing to write.
        // SAFETY: the queue's part starts TASKS_BYTES in (page aligned) and
        // the rest of the caller's zeroed, private region is its own.
        unsafe {
            shmring_core::mpmc::Queue::init_in_place(
                base.add(TASKS_BYTES),
                len - TASKS_BYTES,
                &config,
            )
        }
        .map_err(|e| e.to_string())
    }

    fn attach(segment: Arc<Segment>) -> Result<Self, AttachError> {
        let len = segment.object_len();
        if len < TASKS_BYTES {
            return Err(AttachError::Corrupted(Corrupted {
                what: "joinable queue length",
                value: len as u64,
            }));
        }
        let queue = mpmc::Queue::attach_region(segment.clone(), TASKS_BYTES, len - TASKS_BYTES)?;
        let q = JoinableQueue {
            handle: Handle::new(queue, segment.clone()),
            segment,
            _items: PhantomData,
        };
        if let Some(slot) = q.slot() {
            // A dead previous owner of our row may have left tasks held.
            let (_, generation) = recovery::own_row(&q.segment);
            slot.claim(generation, q.tasks(), &FutexWaiter);
        }
        Ok(q)
    }
}

impl_segment_constructors!([T: Message] JoinableQueue<T>, QueueOptions, "joinable queue");

impl<T> JoinableQueue<T> {
    fn tasks(&self) -> &TaskCounter {
        // SAFETY: the object region starts with TASKS_BYTES (checked in
        // attach) >= size_of::<TaskCounter>(), page aligned; all atomics, so
        // any bytes are valid; it lives as long as `self.segment`.
        unsafe { self.segment.object_ptr().cast::<TaskCounter>().as_ref() }
    }

    /// The task slots, one per peer row (as many as fit in the region).
    fn slots(&self) -> &[TaskSlot] {
        const COUNT: usize = (TASKS_BYTES - recovery::SLOTS_OFFSET) / 8;
        const _: () = assert!(std::mem::size_of::<TaskCounter>() <= recovery::SLOTS_OFFSET);
        // TaskSlot is one AtomicU64, valid for any bytes and concurrent
        // writers; the slots live as long as `self.segment`.
        // SAFETY: bytes SLOTS_OFFSET..TASKS_BYTES lie inside the object region
        // (attach checked len >= TASKS_BYTES), 8-aligned (page base + 256).
        unsafe {
            let base = self.segment.object_ptr().add(recovery::SLOTS_OFFSET);
            std::slice::from_raw_parts(base.cast::<TaskSlot>().as_ptr(), COUNT)
        }
    }

    /// This handle's own task slot (`None` past the table: a peer row
    /// beyond 480, untracked).
    fn slot(&self) -> Option<&TaskSlot> {
        self.slots().get(recovery::own_row(&self.segment).0)
    }

    fn join_until(&self, deadline: Option<shmring_core::wait::Deadline>) -> Result<(), JoinError> {
        let mut state = recovery::Recovery::default();
        let slots = self.slots();
        let forgiven = self.tasks().join_with(
            &FutexWaiter,
            deadline,
            &WaitPolicy::default(),
            &mut |tasks| state.check(tasks, slots, &self.segment, || self.handle.queue.is_empty()),
        )?;
        match forgiven {
            0 => Ok(()),
            lost => {
                self.segment.add_to_counter(PeerCounter::Recovered, lost);
                Err(JoinError::PeerDied { lost })
            }
        }
    }

    /// Marks one task done (one per item got).
    ///
    /// # Errors
    ///
    /// Called more often than items were put: Python's
    /// `ValueError("task_done() called too many times")`.
    pub fn task_done(&self) -> Result<(), shmring_core::tasks::TooManyDone> {
        // Un-hold first: a death in between leaves the task held by nobody,
        // which a joiner detects (see the type's crash notes).
        if let Some(slot) = self.slot() {
            slot.unhold();
        }
        self.tasks().done(&FutexWaiter)
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Blocking
    ///
    /// Sleeps until the unfinished count reaches zero. Tasks held by dead
    /// processes are taken off the count within one or two liveness slices
    /// (see the crash notes on the type).
    ///
    /// # Errors
    ///
    /// [`JoinError::PeerDied`] when tasks had to be taken off the count
    /// because their holder died (the wait is over all the same).
    pub fn join(&self) -> Result<(), JoinError> {
        self.join_until(None)
    }

    /// Waits at most `timeout` until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// [`JoinError::Timeout`] with tasks still unfinished, or
    /// [`JoinError::PeerDied`] as for [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        self.join_until(deadline(Some(timeout)))
    }

    /// Tasks put and not yet marked done (a snapshot).
    pub fn unfinished_tasks(&self) -> u64 {
        self.tasks().unfinished()
    }
}

super::handle_methods!(JoinableQueue);

impl<T: Message> JoinableQueue<T> {
    /// Puts `item` and counts it as an unfinished task. See [`Queue::put`](super::Queue::put).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`](super::Queue::put); a failed put counts nothing.
    pub fn put(&self, item: T, timeout: Option<Duration>) -> Result<(), PutError<T>> {
        let tasks = self.tasks();
        self.handle.put(item, timeout, Some(tasks))
    }

    /// See [`Queue::try_put`](super::Queue::try_put).
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`](super::Queue::try_put).
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        self.put(item, Some(Duration::ZERO))
    }

    /// See [`Queue::get`](super::Queue::get).
    ///
    /// # Errors
    ///
    /// As [`Queue::get`](super::Queue::get).
    pub fn get(&self, timeout: Option<Duration>) -> Result<T, GetError> {
        let got = self.handle.get(timeout);
        // Taken off the queue (decoded or not): ours until `task_done`.
        if matches!(got, Ok(_) | Err(GetError::Decode(_))) {
            if let Some(slot) = self.slot() {
                slot.hold(1);
            }
        }
        got
    }

    /// See [`Queue::try_get`](super::Queue::try_get).
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`](super::Queue::try_get).
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, GetError> {
        self.get(Some(Duration::ZERO))
    }
}
