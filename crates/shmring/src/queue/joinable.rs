//! [`JoinableQueue`]: a [`Queue`](super::Queue) with a task counter.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmring_core::joinable::{self, TaskCounter, TaskSlot, TooManyDone};
use shmring_core::wait::{Until, WaitPolicy};

#[cfg(feature = "tokio")]
mod aio;

#[cfg(feature = "tokio")]
pub use aio::AsyncJoinableQueue;

use super::descriptor::JoinableDescriptor;
use super::error::{self, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
use super::handle::Tasks;
use super::recovery::{self, JoinError, JoinTimeoutError, TryJoinError, TASKS_BYTES};
use super::{get_methods, put_methods, queue_setters, GetError, Handle, PutError};
use crate::codec::Message;
use crate::descriptor::Descriptor;
use crate::mpmc::{self, descriptor::QueueDescriptor};
use crate::object::{
    impl_segment_constructors, named, CreateError, OpenError, QueueSettings, SegmentObject,
};
use crate::segment::{PeerCounter, Segment};

/// Python's `multiprocessing.JoinableQueue`: a [`Queue`](super::Queue) that counts
/// unfinished tasks; `put` adds one, [`task_done`](Self::task_done) marks one
/// done, [`join`](Self::join) waits until none is left.
///
/// A task is unfinished while its item is queued, or while the handle that
/// got it has not marked it done. Each handle counts the tasks it got and
/// has not marked done in a slot of its own in the segment (see
/// [`shmring_core::joinable`]); `join` waits until the queue is empty and no
/// slot counts anything.
///
/// # Differences from Python
///
/// `task_done` marks done a task that was *got*: first one of this handle's
/// own, else one held by another handle (of any process; a live one's
/// before a gone one's, see [`task_done`](Self::task_done)). Python counts
/// every `put` instead, so there `task_done` may run ahead of the `get`s;
/// here that is "called too many times".
///
/// # Crash behaviour
///
/// `join` never waits forever because a process died or a handle was
/// dropped with tasks unfinished, and it never writes off the tasks of a
/// live process, however long it is stopped. A process killed at any
/// instruction leaves each task counted exactly where it was: in the queue,
/// or in its own slot (while it was taking the item or holding it). A
/// joiner checks once per liveness slice (100 ms) for slots whose owner is
/// gone, drops them, and returns [`JoinError::PeerDied`] with the number of
/// tasks lost once the rest are done. Losses are reported by the first
/// `join` that returns after them (also when a newcomer taking over the dead
/// process's peer row found them before anyone joined), and by every `join`
/// waiting when they were counted. (A slot is emptied a few instructions
/// before its loss is counted: a `join` returning in between returns `Ok`
/// and the next one reports the loss; a process killed in between leaves it
/// unreported. The count of unfinished tasks is exact either way.)
///
/// A take is announced in the slot right before the compare-and-swap that
/// takes the record, with the ring position it expects. A process killed
/// between the two took nothing; it is not counted as a loss if the record
/// is still there when its slot is dropped, and is counted as one if the
/// record was taken since (by anyone: that cannot be told from shared
/// state). A process killed holding tasks, or right after its take, always
/// counts.
///
/// # Examples
///
/// ```
/// use shmring::queue::JoinableQueue;
///
/// let q = JoinableQueue::<u32>::new(0)?;
/// q.put(7)?;
/// let item = q.get()?;
/// q.task_done()?;
/// q.join()?; // returns at once: nothing unfinished
/// assert!(q.task_done().is_err()); // "task_done() called too many times"
/// # let _ = item;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T> {
    handle: Handle,
    segment: Arc<Segment>,
    /// One take of this handle at a time (see `handle::Tasks`).
    takes: Mutex<()>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("name", &self.segment.name())
            .finish()
    }
}

impl<T: Message> SegmentObject for JoinableQueue<T> {
    type Descriptor = JoinableDescriptor;
    type Config = QueueSettings;

    fn descriptor(settings: &QueueSettings) -> Result<JoinableDescriptor, CreateError> {
        Ok(JoinableDescriptor {
            queue: QueueDescriptor::new(settings.core()?).map_err(|e| named(e, "max_message"))?,
        })
    }

    fn attach(segment: Arc<Segment>) -> Result<Self, OpenError> {
        let descriptor = JoinableDescriptor::decode(&segment.params())?;
        let at = JoinableDescriptor::QUEUE_AT;
        let queue = mpmc::ByteQueue::attach_at(segment.clone(), &descriptor.queue, at)?;
        let q = JoinableQueue {
            handle: Handle::new(queue, segment.clone()),
            segment,
            takes: Mutex::new(()),
            _items: PhantomData,
        };
        // A previous owner of our row (dead, or dropped with tasks not
        // done) may have left tasks in the slot: they are lost.
        let (_, generation) = recovery::own_row(&q.segment);
        let core = q.handle.queue.core();
        let lost = q
            .slot()
            .claim(generation, q.tasks(), &q.handle.waiter, &mut |intent| {
                core.intent_taken(intent)
            });
        if lost != 0 {
            q.segment.add_to_counter(PeerCounter::Recovered, lost);
        }
        Ok(q)
    }
}

impl_segment_constructors!([T: Message] JoinableQueue<T>, "joinable queue");
queue_setters!(maxsize [T: Message] JoinableQueue<T>);

impl<T: Message> JoinableQueue<T> {
    /// Python's `JoinableQueue(maxsize)`: a new anonymous queue holding at
    /// most `maxsize` messages (0: no limit but the rings' bytes), to hand
    /// to children. [`JoinableQueue::builder`] sets the rest of the shape,
    /// a name, or opens one.
    ///
    /// # Errors
    ///
    /// The segment could not be created (`/dev/shm` full, descriptor
    /// limit).
    pub fn new(maxsize: u64) -> Result<JoinableQueue<T>, CreateError> {
        JoinableQueue::builder().maxsize(maxsize).anonymous()
    }
}

impl<T> JoinableQueue<T> {
    fn tasks(&self) -> &TaskCounter {
        // SAFETY: the object region starts with TASKS_BYTES (checked in
        // attach) >= size_of::<TaskCounter>(), page aligned; all atomics, so
        // any bytes are valid; it lives as long as `self.segment`.
        unsafe { self.segment.object_ptr().cast::<TaskCounter>().as_ref() }
    }

    /// The task slots of the segment's peer rows.
    fn slots(&self) -> &[TaskSlot] {
        const COUNT: usize =
            (TASKS_BYTES - recovery::SLOTS_OFFSET) / std::mem::size_of::<TaskSlot>();
        const _: () = assert!(COUNT >= crate::segment::MAX_PEER_ROWS as usize);
        let rows = (self.segment.peer_rows() as usize).min(COUNT);
        // TaskSlot is two AtomicU64s, valid for any bytes and concurrent
        // writers; the slots live as long as `self.segment`.
        // SAFETY: bytes SLOTS_OFFSET..TASKS_BYTES lie inside the object region
        // (attach checked len >= TASKS_BYTES), 8-aligned (page base + 256),
        // and `rows <= COUNT` slots fit there.
        unsafe {
            let base = self.segment.object_ptr().add(recovery::SLOTS_OFFSET);
            std::slice::from_raw_parts(base.cast::<TaskSlot>().as_ptr(), rows)
        }
    }

    /// What a get announces its takes in (see [`Tasks`]).
    fn task_hooks(&self) -> Tasks<'_> {
        Tasks {
            slot: self.slot(),
            counter: self.tasks(),
            waiter: &self.handle.waiter,
            takes: &self.takes,
        }
    }

    /// This handle's own task slot.
    fn slot(&self) -> &TaskSlot {
        &self.slots()[recovery::own_row(&self.segment).0]
    }

    /// Tasks put and not yet marked done: the queue (read first), then
    /// every slot (see [`shmring_core::joinable`]).
    fn unfinished(&self) -> u64 {
        joinable::unfinished(self.handle.queue.len(), self.slots())
    }

    /// The one operation behind every form of join: `Unfinished` means
    /// tasks were still unfinished when `until` came.
    fn join_until(&self, until: Until) -> Result<(), TryJoinError> {
        let mark = self.tasks().loss_mark();
        let policy = WaitPolicy::default();
        let mut dropped = 0;
        let joined = self
            .tasks()
            .join(&self.handle.waiter, until, &policy, &mut |slow| {
                self.unfinished_reclaiming(slow, &mut dropped)
            });
        let mut joined = joined.is_ok();
        if !joined {
            // `block_on` gives up without a slow check when the deadline
            // had passed on entry (always, for `Until::Now`): reclaim once,
            // so that a try sees tasks lost with a gone holder instead of
            // `Unfinished` for ever (as a Lock's try takes a dead holder's
            // lock over).
            joined = self.unfinished_reclaiming(true, &mut dropped) == 0;
        }
        self.join_outcome(joined, mark, dropped)
    }

    /// A join's check: the unfinished count, after emptying the slots of
    /// dead holders when `slow` (counted into `dropped`).
    fn unfinished_reclaiming(&self, slow: bool, dropped: &mut u64) -> u64 {
        if slow {
            let core = self.handle.queue.core();
            *dropped += recovery::reclaim_dead(self.tasks(), self.slots(), &self.segment, core);
        }
        self.unfinished()
    }

    /// A join's answer: `joined` (the count reached zero) or not, the
    /// losses counted since `mark` reported, `dropped` counted.
    fn join_outcome(&self, joined: bool, mark: u64, dropped: u64) -> Result<(), TryJoinError> {
        if dropped != 0 {
            self.segment.add_to_counter(PeerCounter::Recovered, dropped);
        }
        if !joined {
            return Err(TryJoinError::Unfinished);
        }
        match self.tasks().report_losses(mark) {
            0 => Ok(()),
            lost => Err(TryJoinError::Join(JoinError::PeerDied { lost })),
        }
    }

    /// Marks one task done: one this handle got, or else one got by another
    /// handle (see the type's notes on Python), a live one's first.
    ///
    /// A task finished here that another handle got was handed over by
    /// its holder, which will not mark it done itself. Taking the count
    /// off a gone holder's slot instead (its tasks are lost anyway, and
    /// `join` drops them) would leave it on the live holder's slot for as
    /// long as that holder lives, and `join` waiting with it. Which handle
    /// is alive is checked just before (one system call per holder
    /// looked at); a holder that dies in between is taken from like a
    /// live one.
    ///
    /// # Errors
    ///
    /// No handle holds a task: Python's
    /// `ValueError("task_done() called too many times")`.
    pub fn task_done(&self) -> Result<(), TooManyDone> {
        let counter = self.tasks();
        if self.slot().done(counter, &self.handle.waiter) {
            return Ok(());
        }
        let own = recovery::own_row(&self.segment).0;
        let slots = self.slots();
        for live in [true, false] {
            let others = slots.iter().enumerate().filter(|&(row, slot)| {
                row != own
                    && slot.get().1 .1 != 0
                    && recovery::holder_alive(&self.segment, row, slot) == live
            });
            for (_, slot) in others {
                if slot.done(counter, &self.handle.waiter) {
                    return Ok(());
                }
            }
        }
        Err(TooManyDone)
    }

    /// Waits until every item put has been marked done (Python's `join`).
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
        loop {
            match self.join_until(Until::Never) {
                Ok(()) => return Ok(()),
                Err(TryJoinError::Join(e)) => return Err(e),
                Err(TryJoinError::Unfinished) => {}
            }
        }
    }

    /// Whether every item put has been marked done, without waiting. While
    /// tasks are unfinished, the holders of tasks are probed once (a system
    /// call each), so tasks lost with a gone holder are reported here too.
    ///
    /// # Errors
    ///
    /// [`TryJoinError::Unfinished`] while tasks are unfinished, or
    /// [`JoinError::PeerDied`] as for [`join`](Self::join).
    pub fn try_join(&self) -> Result<(), TryJoinError> {
        self.join_until(Until::Now)
    }

    /// Waits at most `timeout` until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError::Timeout`] with tasks still unfinished, or
    /// [`JoinError::PeerDied`] as for [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        self.join_until(Until::after(timeout)).map_err(timed_out)
    }

    /// Waits until `deadline` for every item put to be marked done.
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](Self::join_timeout).
    pub fn join_deadline(&self, deadline: Instant) -> Result<(), JoinTimeoutError> {
        self.join_until(crate::sys::until_instant(deadline))
            .map_err(timed_out)
    }

    /// Tasks put and not yet marked done (a snapshot; a take in progress
    /// counts its item twice until it ends).
    pub fn unfinished_tasks(&self) -> u64 {
        self.unfinished()
    }
}

super::handle_methods!(JoinableQueue);

/// A try's outcome, reported by a `_timeout` or `_deadline` join.
fn timed_out(e: TryJoinError) -> JoinTimeoutError {
    match e {
        TryJoinError::Unfinished => JoinTimeoutError::Timeout,
        TryJoinError::Join(e) => JoinTimeoutError::Join(e),
    }
}

/// Put and get are [`Queue`](super::Queue)'s; a put is an unfinished task
/// from the moment it is in the queue (a failed put counts nothing), and a
/// got task is held by this handle from the moment its item leaves the
/// queue (also when it then fails to decode) until `task_done`.
impl<T: Message> JoinableQueue<T> {
    put_methods!();
    get_methods!();

    fn put_until(&self, item: T, until: Until) -> Result<(), TryPutError<T>> {
        self.handle.put_until(item, until)
    }

    fn get_until(&self, until: Until) -> Result<T, TryGetError> {
        self.handle.get_until(until, Some(self.task_hooks()))
    }
}
