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
//! | `Process(target=f, args=(q,))` | `Process::spawn(&F, (&q,))`, child: `fn f((q,): (Queue<T>,))` |
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
use std::sync::Arc;
use std::time::Duration;

use shmring_core::error::{Corrupted, PopError, PushError};
use shmring_core::mpmc::QueueLayout;
use shmring_core::{ConfigError, RingConfig};

use crate::attach::AttachError;
use crate::codec::{CodecError, Message};
use crate::mpmc::{self, QueueConfig};
use crate::object::{impl_segment_constructors, SegmentObject};
use crate::segment::{ObjectKind, PeerCounter, Segment};

mod handle;
mod handles;
mod joinable;
mod recovery;
mod simple;

use handle::Handle;

pub use handles::{Receiver, Sender};
pub use joinable::JoinableQueue;
pub(crate) use recovery::unfinished_in_region;
pub use recovery::JoinError;
pub use simple::{SimpleQueue, SimpleQueueError};

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
    /// A JoinableQueue handle holds so many tasks not yet marked done
    /// ([`MAX_HELD`](shmring_core::tasks::MAX_HELD)), or so many of its
    /// threads are taking at once
    /// ([`MAX_IN_FLIGHT`](shmring_core::tasks::MAX_IN_FLIGHT)), that it
    /// cannot count one more: call `task_done`, or use more handles.
    TooManyTasks,
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("queue is empty"),
            GetError::Timeout => f.write_str("queue is empty (timed out)"),
            GetError::Closed => f.write_str("queue is closed"),
            GetError::Decode(e) => e.fmt(f),
            GetError::Corrupted(e) => e.fmt(f),
            GetError::TooManyTasks => {
                f.write_str("too many tasks held or being taken by this handle")
            }
        }
    }
}

impl std::error::Error for GetError {}

/// One push of encoded bytes: a single try for a zero timeout, the
/// blocking push otherwise.
#[inline]
fn push(
    producer: &mut mpmc::Producer,
    bytes: &[u8],
    timeout: Option<Duration>,
) -> Result<(), PushError> {
    match timeout {
        Some(t) if t.is_zero() => producer.try_push(bytes),
        _ => producer.push(bytes, timeout),
    }
}

/// One pop into `buf`, as [`push`] decides between try and wait.
#[inline]
fn pop(
    consumer: &mut mpmc::Consumer,
    buf: &mut Vec<u8>,
    timeout: Option<Duration>,
) -> Result<usize, PopError> {
    match timeout {
        Some(t) if t.is_zero() => consumer.try_pop(buf),
        _ => consumer.pop(buf, timeout),
    }
}

/// The facade's error for a failed push, with the item given back; a
/// timeout is counted in the peer row.
#[cold]
#[inline(never)]
fn put_error<T>(segment: &Segment, item: T, e: PushError) -> PutError<T> {
    match e {
        PushError::Full => PutError::Full(item),
        PushError::Timeout => {
            segment.add_to_counter(PeerCounter::Timeouts, 1);
            PutError::Timeout(item)
        }
        PushError::Closed => PutError::Closed(item),
        PushError::TooLarge { len, .. } => PutError::TooLarge(item, len),
        PushError::Corrupted(c) => PutError::Attach(item, c.into()),
    }
}

/// The facade's error for a failed pop; a timeout is counted.
#[cold]
#[inline(never)]
fn get_error(segment: &Segment, e: PopError) -> GetError {
    match e {
        PopError::Empty => GetError::Empty,
        PopError::Timeout => {
            segment.add_to_counter(PeerCounter::Timeouts, 1);
            GetError::Timeout
        }
        PopError::Closed => GetError::Closed,
        PopError::Corrupted(c) => GetError::Corrupted(c),
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
            handle: Handle::new(queue, segment.clone()),
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
        self.handle.put(item, timeout)
    }

    /// Puts `item` only if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`], with `Full` instead of `Timeout`.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        self.handle.put(item, Some(Duration::ZERO))
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
        self.handle.get(timeout, None)
    }

    /// Takes the next item only if there is one now (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// As [`Queue::get`], with `Empty` instead of `Timeout`.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, GetError> {
        self.handle.get(Some(Duration::ZERO), None)
    }
}

/// The methods every queue handle with a [`Handle`] and a segment has, with
/// the documentation of [`Queue`]'s (the other types link to it).
macro_rules! handle_methods {
    ($ty:ident) => {
        impl<T> $ty<T> {
            /// Approximate number of queued messages (Python's `qsize`): a
            /// snapshot, stale when it returns.
            #[doc(alias = "qsize")]
            pub fn len(&self) -> u64 {
                self.handle.queue.len()
            }

            /// Whether the queue looks empty (Python's `empty`): a snapshot.
            #[doc(alias = "empty")]
            pub fn is_empty(&self) -> bool {
                self.handle.queue.is_empty()
            }

            /// Whether a put would find the queue full (Python's `full`):
            /// `maxsize` reached, or this handle's producer ring out of room.
            /// A snapshot.
            #[doc(alias = "full")]
            pub fn is_full(&self) -> bool {
                self.handle.is_full()
            }

            /// Python's `close`: this handle will not be used any more; its
            /// `put` and `get` fail with `Closed` from now on, also in
            /// threads that are asleep in them (they wake). Other handles,
            /// in this or other processes, are not affected; see
            /// `shutdown`.
            pub fn close(&self) {
                self.handle.close();
            }

            /// Closes the queue for every process: puts fail with `Closed`,
            /// gets drain what is left and then fail with `Closed`, and every
            /// sleeper wakes at once. (Python 3.13's `queue.Queue.shutdown`,
            /// which `multiprocessing` lacks.)
            pub fn shutdown(&self) {
                self.handle.queue.close();
            }

            /// Whether `close` was called on this handle or the queue was
            /// shut down.
            pub fn is_closed(&self) -> bool {
                self.handle.is_closed() || self.handle.queue.is_closed()
            }

            /// Python's `maxsize` (0 = unbounded).
            pub fn maxsize(&self) -> u64 {
                self.handle.queue.max_len()
            }

            /// Sets the spin budget and liveness period of this handle's
            /// blocking calls.
            pub fn set_wait_policy(&self, policy: shmring_core::wait::WaitPolicy) {
                self.handle.set_wait_policy(policy);
            }

            /// The segment underneath (name, peers).
            pub fn segment(&self) -> &$crate::segment::Segment {
                &self.segment
            }
        }
    };
}
use handle_methods;

handle_methods!(Queue);
