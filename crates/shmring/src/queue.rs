//! Python's multiprocessing queues: [`Queue`], [`JoinableQueue`] and
//! [`SimpleQueue`].
//!
//! All three are thin over the MPMC queue of [`crate::mpmc`]: one byte ring
//! per producer in one segment, messages encoded with [`Message`]. A `put`
//! or `get` that neither blocks nor wakes a sleeper makes no system call.
//!
//! | Python | shmring |
//! |---|---|
//! | `q = Queue(maxsize)` | `Queue::<T>::create_anonymous(QueueOptions { maxsize, ..Default::default() }, &opts)` |
//! | `q.put(x)` / `q.put(x, timeout=t)` | `q.put(x, None)` / `q.put(x, Some(t))` |
//! | `q.put(x, block=False)`, `q.put_nowait(x)` | `q.try_put(x)` |
//! | `q.get()`, `q.get(timeout=t)` | `q.get(None)`, `q.get(Some(t))` |
//! | `q.get_nowait()` | `q.try_get()` |
//! | `queue.Full` / `queue.Empty` | `PutError::Full(x)` / `GetError::Empty` |
//! | `q.qsize()`, `q.empty()`, `q.full()` | `q.len()`, `q.is_empty()`, `q.is_full()` |
//! | `q.close()` | `q.close()` (this handle); `q.shutdown()` closes it for every process |
//! | `Process(target=f, args=(q,))` | `Process::new("f").share(&q, "Q")`, child: `Queue::open_inherited("Q", ..)` |
//!
//! # Differences from Python
//!
//! * A message that cannot be encoded is an error of `put` itself
//!   ([`PutError::Encode`]), not a traceback printed by a feeder thread.
//! * There is no feeder thread: `put` writes into shared memory directly, so
//!   `join_thread` and `cancel_join_thread` have nothing to do and do not
//!   exist, and a process that exits right after `put` loses nothing.
//! * `maxsize` is exact with one producer; with several, concurrent puts may
//!   overshoot it by up to one per producer.
//! * `timeout: Some(Duration::ZERO)` means "try once", like Python's
//!   negative timeouts.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shmring_core::error::{Corrupted, PopError, PushError};
use shmring_core::mpmc::QueueLayout;
use shmring_core::tasks::{TaskCounter, TaskSlot};
use shmring_core::wait::WaitPolicy;
use shmring_core::{ConfigError, RingConfig};

use crate::attach::{deadline, AttachError};
use crate::codec::{CodecError, Message};
use crate::mpmc::{self, QueueConfig};
use crate::object::{impl_segment_constructors, SegmentObject};
use crate::segment::{ObjectKind, Segment};
use crate::sys::FutexWaiter;

mod recovery;

pub use recovery::JoinError;

/// The shape of a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOptions {
    /// Python's `maxsize`: most messages queued at once; 0 = no limit but
    /// the rings' bytes.
    pub maxsize: u64,
    /// Largest encoded message in bytes (default 64 KiB).
    pub max_message: u64,
    /// Bytes of each producer's ring, a power of two (default 256 KiB).
    pub ring_bytes: u64,
    /// Most processes (or handles) putting at once (default 16).
    pub producers: u64,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            maxsize: 0,
            max_message: 64 * 1024,
            ring_bytes: 256 * 1024,
            producers: 16,
        }
    }
}

impl QueueOptions {
    fn config(&self) -> Result<QueueConfig, ConfigError> {
        let config = QueueConfig {
            rings: self.producers,
            ring: RingConfig {
                capacity: self.ring_bytes,
                max_record: self.max_message,
            },
            max_len: self.maxsize,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Why `put` did not put; the item comes back in every case.
#[derive(Debug)]
pub enum PutError<T> {
    /// Full right now (`try_put`): Python's `queue.Full`.
    Full(T),
    /// Still full when the timeout passed: Python's `queue.Full`.
    Timeout(T),
    /// This handle was closed, or the queue shut down: Python's
    /// `ValueError("Queue is closed")`.
    Closed(T),
    /// The encoded message exceeds `max_message`.
    TooLarge(T, usize),
    /// The item could not be encoded.
    Encode(T, CodecError),
    /// No producer ring could be had (all owned by live producers), or the
    /// shared state is corrupted.
    Attach(T, AttachError),
}

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(t)
            | PutError::Timeout(t)
            | PutError::Closed(t)
            | PutError::TooLarge(t, _)
            | PutError::Encode(t, _)
            | PutError::Attach(t, _) => t,
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("queue is full"),
            PutError::Timeout(_) => f.write_str("queue is full (timed out)"),
            PutError::Closed(_) => f.write_str("queue is closed"),
            PutError::TooLarge(_, len) => write!(f, "message of {len} bytes exceeds max_message"),
            PutError::Encode(_, e) => e.fmt(f),
            PutError::Attach(_, e) => e.fmt(f),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for PutError<T> {}

/// Why `get` returned no item.
#[derive(Debug)]
pub enum GetError {
    /// Nothing there right now (`try_get`): Python's `queue.Empty`.
    Empty,
    /// Nothing arrived before the timeout: Python's `queue.Empty`.
    Timeout,
    /// This handle was closed, or the queue shut down and is drained.
    Closed,
    /// A message could not be decoded (it was taken off the queue).
    Decode(CodecError),
    /// The shared state is inconsistent.
    Corrupted(Corrupted),
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("queue is empty"),
            GetError::Timeout => f.write_str("queue is empty (timed out)"),
            GetError::Closed => f.write_str("queue is closed"),
            GetError::Decode(e) => e.fmt(f),
            GetError::Corrupted(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for GetError {}

/// The untyped machinery of every queue facade: the queue, this handle's
/// producer (claimed at the first put), its consumer, and scratch buffers.
struct Handle {
    queue: mpmc::Queue,
    producer: Mutex<Option<(mpmc::Producer, Vec<u8>)>>,
    consumer: Mutex<(mpmc::Consumer, Vec<u8>)>,
    closed: AtomicBool,
}

impl Handle {
    fn new(queue: mpmc::Queue) -> Handle {
        let consumer = queue.consumer();
        Handle {
            queue,
            producer: Mutex::new(None),
            consumer: Mutex::new((consumer, Vec::new())),
            closed: AtomicBool::new(false),
        }
    }

    fn is_closed(&self) -> bool {
        // ORDERING: Relaxed — a process-local flag; no data hangs on it.
        self.closed.load(Ordering::Relaxed)
    }

    /// Encodes and pushes; `counted` runs just before the push is tried and
    /// `uncount` if it failed (the JoinableQueue's task count).
    fn put<T: Message>(
        &self,
        item: T,
        timeout: Option<Duration>,
        tasks: Option<&TaskCounter>,
    ) -> Result<(), PutError<T>> {
        if self.is_closed() {
            return Err(PutError::Closed(item));
        }
        let mut guard = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            match self.queue.producer() {
                Ok(p) => *guard = Some((p, Vec::new())),
                Err(e) => return Err(PutError::Attach(item, e)),
            }
        }
        let (producer, scratch) = guard.as_mut().expect("claimed above");
        scratch.clear();
        if let Err(e) = item.encode(scratch) {
            return Err(PutError::Encode(item, e));
        }
        if let Some(t) = tasks {
            t.add(1);
        }
        let result = match timeout {
            Some(t) if t.is_zero() => producer.try_push(scratch),
            _ => producer.push(scratch, timeout),
        };
        if result.is_err() {
            if let Some(t) = tasks {
                t.cancel(1);
            }
        }
        match result {
            Ok(()) => Ok(()),
            Err(PushError::Full) => Err(PutError::Full(item)),
            Err(PushError::Timeout) => Err(PutError::Timeout(item)),
            Err(PushError::Closed) => Err(PutError::Closed(item)),
            Err(PushError::TooLarge { len, .. }) => Err(PutError::TooLarge(item, len)),
            Err(PushError::Corrupted(c)) => Err(PutError::Attach(item, c.into())),
        }
    }

    fn get<T: Message>(&self, timeout: Option<Duration>) -> Result<T, GetError> {
        if self.is_closed() {
            return Err(GetError::Closed);
        }
        let mut guard = self.consumer.lock().unwrap_or_else(|e| e.into_inner());
        let (consumer, buf) = &mut *guard;
        let result = match timeout {
            Some(t) if t.is_zero() => consumer.try_pop(buf),
            _ => consumer.pop(buf, timeout),
        };
        match result {
            Ok(_) => T::decode(buf).map_err(GetError::Decode),
            Err(PopError::Empty) => Err(GetError::Empty),
            Err(PopError::Timeout) => Err(GetError::Timeout),
            Err(PopError::Closed) => Err(GetError::Closed),
            Err(PopError::Corrupted(c)) => Err(GetError::Corrupted(c)),
        }
    }

    fn is_full(&self) -> bool {
        let max = self.queue.max_len();
        if max != 0 && self.queue.len() >= max {
            return true;
        }
        let mut guard = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().is_some_and(|(p, _)| p.is_full())
    }

    fn set_wait_policy(&self, policy: WaitPolicy) {
        let mut guard = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, _)) = guard.as_mut() {
            p.set_wait_policy(policy);
        }
        drop(guard);
        self.consumer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .set_wait_policy(policy);
    }
}

/// Python's `multiprocessing.Queue`: many producers, many consumers, FIFO
/// per producer, in any processes.
///
/// A `Queue` value is one process's handle; `Send + Sync`, so threads may
/// share it (their puts are serialised on this handle's producer ring).
///
/// # Crash behaviour
///
/// A producer killed at any instruction loses at most the message it was
/// putting (delivered once or never); its ring is taken over by the next
/// producer that needs one. A consumer killed loses at most the message it
/// was getting. Nobody is left blocked.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmring::queue::{GetError, Queue, QueueOptions};
///
/// let q = Queue::<u64>::create_anonymous(QueueOptions { maxsize: 2, ..Default::default() }, &Default::default())?;
/// q.put(1, None)?;
/// q.put(2, None)?;
/// assert!(q.is_full());
/// assert!(q.try_put(3).is_err()); // queue.Full, and the 3 comes back
/// assert_eq!(q.get(Some(Duration::from_secs(1)))?, 1);
/// assert_eq!(q.try_get()?, 2);
/// assert!(matches!(q.try_get(), Err(GetError::Empty)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T> {
    handle: Handle,
    segment: Arc<Segment>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.segment.name())
            .finish()
    }
}

impl<T: Message> SegmentObject for Queue<T> {
    const KIND: ObjectKind = ObjectKind::MpmcQueue;
    type Config = QueueOptions;

    fn layout(options: &QueueOptions) -> Result<(usize, [u64; 8]), AttachError> {
        let config = options.config()?;
        Ok((QueueLayout::new(&config)?.total, mpmc::params(&config)))
    }

    unsafe fn init(base: NonNull<u8>, len: usize, options: &QueueOptions) -> Result<(), String> {
        let config = options.config().map_err(|e| e.to_string())?;
        // SAFETY: forwarded from the caller (zeroed, aligned, private).
        unsafe { shmring_core::mpmc::Queue::init_in_place(base, len, &config) }
            .map_err(|e| e.to_string())
    }

    fn attach(segment: Arc<Segment>) -> Result<Self, AttachError> {
        let len = segment.object_len();
        let queue = mpmc::Queue::attach_region(segment.clone(), 0, len)?;
        Ok(Queue {
            handle: Handle::new(queue),
            segment,
            _items: PhantomData,
        })
    }
}

impl_segment_constructors!([T: Message] Queue<T>, QueueOptions, "queue");

impl<T: Message> Queue<T> {
    /// Puts `item`, waiting while the queue is full.
    ///
    /// # Blocking
    ///
    /// `timeout`: `None` waits as long as it takes; `Some(Duration::ZERO)`
    /// tries once (Python's `block=False`); otherwise up to that long. Spins
    /// a few microseconds, then sleeps on a futex until a consumer takes a
    /// message. Like Python, it waits for consumers that may never come:
    /// give a timeout where that matters.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`]/[`PutError::Timeout`] (Python's `queue.Full`),
    /// [`PutError::Closed`], [`PutError::TooLarge`], [`PutError::Encode`],
    /// [`PutError::Attach`]; each gives the item back.
    pub fn put(&self, item: T, timeout: Option<Duration>) -> Result<(), PutError<T>> {
        self.handle.put(item, timeout, None)
    }

    /// Puts `item` only if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`], with `Full` instead of `Timeout`.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        self.handle.put(item, Some(Duration::ZERO), None)
    }

    /// Takes the next item, waiting while the queue is empty.
    ///
    /// # Blocking
    ///
    /// `timeout` as for [`Queue::put`]; sleeps until a producer puts.
    ///
    /// # Errors
    ///
    /// [`GetError::Empty`]/[`GetError::Timeout`] (Python's `queue.Empty`),
    /// [`GetError::Closed`] (this handle closed, or the queue shut down and
    /// drained), [`GetError::Decode`], [`GetError::Corrupted`].
    pub fn get(&self, timeout: Option<Duration>) -> Result<T, GetError> {
        self.handle.get(timeout)
    }

    /// Takes the next item only if there is one now (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// As [`Queue::get`], with `Empty` instead of `Timeout`.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, GetError> {
        self.handle.get(Some(Duration::ZERO))
    }
}

impl<T> Queue<T> {
    /// Approximate number of queued messages (Python's `qsize`): a snapshot,
    /// stale when it returns.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> u64 {
        self.handle.queue.len()
    }

    /// Whether the queue looks empty (Python's `empty`): a snapshot.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.handle.queue.is_empty()
    }

    /// Whether a put would find the queue full (Python's `full`): `maxsize`
    /// reached, or this handle's producer ring out of room. A snapshot.
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.handle.is_full()
    }

    /// Python's `close`: this handle will not be used any more; its `put`
    /// and `get` fail with `Closed` from now on. Other handles, in this or
    /// other processes, are not affected; see [`Queue::shutdown`].
    pub fn close(&self) {
        // ORDERING: Relaxed — a process-local flag.
        self.handle.closed.store(true, Ordering::Relaxed);
    }

    /// Closes the queue for every process: puts fail with `Closed`, gets
    /// drain what is left and then fail with `Closed`, and every sleeper
    /// wakes at once. (Python 3.13's `queue.Queue.shutdown`, which
    /// `multiprocessing` lacks.)
    pub fn shutdown(&self) {
        self.handle.queue.close();
    }

    /// Whether [`Queue::close`] was called on this handle or the queue was
    /// shut down.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed() || self.handle.queue.is_closed()
    }

    /// Python's `maxsize` (0 = unbounded).
    pub fn maxsize(&self) -> u64 {
        self.handle.queue.max_len()
    }

    /// Sets the spin budget and liveness period of this handle's blocking
    /// calls.
    pub fn set_wait_policy(&self, policy: WaitPolicy) {
        self.handle.set_wait_policy(policy);
    }

    /// The segment underneath (name, peers).
    pub fn segment(&self) -> &Segment {
        &self.segment
    }
}

/// Python's `multiprocessing.JoinableQueue`: a [`Queue`] that counts
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
            handle: Handle::new(queue),
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
            lost => Err(JoinError::PeerDied { lost }),
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

    /// See [`Queue::len`].
    #[doc(alias = "qsize")]
    pub fn len(&self) -> u64 {
        self.handle.queue.len()
    }

    /// See [`Queue::is_empty`].
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.handle.queue.is_empty()
    }

    /// See [`Queue::is_full`].
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.handle.is_full()
    }

    /// See [`Queue::close`].
    pub fn close(&self) {
        // ORDERING: Relaxed — a process-local flag.
        self.handle.closed.store(true, Ordering::Relaxed);
    }

    /// See [`Queue::shutdown`].
    pub fn shutdown(&self) {
        self.handle.queue.close();
    }
}

impl<T: Message> JoinableQueue<T> {
    /// Puts `item` and counts it as an unfinished task. See [`Queue::put`].
    ///
    /// # Errors
    ///
    /// As [`Queue::put`]; a failed put counts nothing.
    pub fn put(&self, item: T, timeout: Option<Duration>) -> Result<(), PutError<T>> {
        let tasks = self.tasks();
        self.handle.put(item, timeout, Some(tasks))
    }

    /// See [`Queue::try_put`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`].
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        self.put(item, Some(Duration::ZERO))
    }

    /// See [`Queue::get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
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

    /// See [`Queue::try_get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, GetError> {
        self.get(Some(Duration::ZERO))
    }
}

/// Python's `multiprocessing.SimpleQueue`: `put`, `get`, `is_empty`,
/// `close`; unbounded, blocking `get`, no timeouts.
///
/// After [`close`](Self::close), `put` and `get` fail with
/// [`SimpleQueueError::Closed`] (Python: `OSError("handle is closed")`).
pub struct SimpleQueue<T> {
    queue: Queue<T>,
    segment: Arc<Segment>,
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("name", &self.segment.name())
            .finish()
    }
}

/// Errors of a [`SimpleQueue`].
#[derive(Debug)]
pub enum SimpleQueueError<T> {
    /// Python's `OSError("handle is closed")`; a put gives the item back.
    Closed(Option<T>),
    /// Any other failure of the underlying queue.
    Put(PutError<T>),
    /// A get failed for another reason (decode, corruption).
    Get(GetError),
}

impl<T> fmt::Display for SimpleQueueError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimpleQueueError::Closed(_) => f.write_str("handle is closed"),
            SimpleQueueError::Put(e) => e.fmt(f),
            SimpleQueueError::Get(e) => e.fmt(f),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for SimpleQueueError<T> {}

impl<T: Message> SegmentObject for SimpleQueue<T> {
    const KIND: ObjectKind = ObjectKind::MpmcQueue;
    type Config = QueueOptions;

    fn layout(options: &QueueOptions) -> Result<(usize, [u64; 8]), AttachError> {
        <Queue<T> as SegmentObject>::layout(&QueueOptions {
            maxsize: 0,
            ..*options
        })
    }

    unsafe fn init(base: NonNull<u8>, len: usize, options: &QueueOptions) -> Result<(), String> {
        let options = QueueOptions {
            maxsize: 0,
            ..*options
        };
        // SAFETY: forwarded from the caller.
        unsafe { <Queue<T> as SegmentObject>::init(base, len, &options) }
    }

    fn attach(segment: Arc<Segment>) -> Result<Self, AttachError> {
        let queue = <Queue<T> as SegmentObject>::attach(segment.clone())?;
        Ok(SimpleQueue { queue, segment })
    }
}

impl_segment_constructors!([T: Message] SimpleQueue<T>, QueueOptions, "simple queue");

impl<T: Message> SimpleQueue<T> {
    /// Puts `item` (waits only if the producer's ring is out of bytes).
    ///
    /// # Errors
    ///
    /// `Closed` after [`close`](Self::close); encode and size errors.
    pub fn put(&self, item: T) -> Result<(), SimpleQueueError<T>> {
        self.queue.put(item, None).map_err(|e| match e {
            PutError::Closed(t) => SimpleQueueError::Closed(Some(t)),
            other => SimpleQueueError::Put(other),
        })
    }

    /// Takes the next item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// `Closed` after [`close`](Self::close) or a shutdown; decode errors.
    pub fn get(&self) -> Result<T, SimpleQueueError<T>> {
        self.queue.get(None).map_err(|e| match e {
            GetError::Closed => SimpleQueueError::Closed(None),
            other => SimpleQueueError::Get(other),
        })
    }

    /// Whether the queue looks empty (Python's `empty`): a snapshot.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Closes this handle: its `put` and `get` fail from now on.
    pub fn close(&self) {
        self.queue.close();
    }
}
