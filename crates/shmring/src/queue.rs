//! Python's multiprocessing queues: [`Queue`], [`JoinableQueue`] and
//! [`SimpleQueue`].
//!
//! All three are thin over the MPMC queue of [`crate::mpmc`]: one byte ring
//! per producer in one segment, messages encoded with [`Message`]. A `put`
//! or `get` that neither blocks nor wakes a sleeper makes no system call.
//!
//! | Python | shmring |
//! |---|---|
//! | `q = Queue(maxsize)` | `Queue::<T>::new(maxsize)` (or `Queue::<T>::builder().maxsize(m).producers(p).create(name)`) |
//! | `q.put(x)` / `q.put(x, timeout=t)` | `q.put(x)` / `q.put_timeout(x, t)` (or `q.put_deadline(x, instant)`) |
//! | `q.put(x, block=False)`, `q.put_nowait(x)` | `q.try_put(x)` |
//! | `q.get()`, `q.get(timeout=t)` | `q.get()`, `q.get_timeout(t)` (or `q.get_deadline(instant)`) |
//! | `q.get_nowait()` | `q.try_get()` |
//! | `queue.Full` / `queue.Empty` | `TryPutError::Full(x)`, `PutTimeoutError::Timeout(x)` / `TryGetError::Empty`, `GetTimeoutError::Timeout` |
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
//! * A zero timeout (or a deadline already past) means "try once", like
//!   Python's negative timeouts.
//! * Each form has its own error type (crossbeam's shape): `put` and `get`
//!   cannot fail with full, empty or timed out, only for good (see
//!   [`PutError`] and [`GetError`]).
//! * Producers are counted: a queue has `producers` rings (16 by default),
//!   and a handle takes one for itself at its **first put**, not when it is
//!   made, and keeps it until it is dropped (or its process dies). A handle
//!   that only gets (most consumers) never takes a ring, so any number of
//!   processes may consume. When more handles put than there are rings, the
//!   first put of the extra one fails with [`PutError::NoFreeRing`]; a
//!   process that must know early calls
//!   [`claim_producer`](Queue::claim_producer) right after it opens the
//!   queue.
//!
//! # Order
//!
//! Items of one handle come out in the order it put them. Items of
//! different handles interleave, as Python allows for concurrent producers,
//! with one rule: the items of a handle that **handed its ring back**
//! (dropped, closed, or [`hand_back_producer`](Queue::hand_back_producer)
//! called) come out before any item put after that hand-back was seen (a
//! join of the producing process or thread, say). So Python's "join the
//! producers, then put one sentinel per consumer" works: each consumer
//! gets every item before its sentinel. (The rule is coarse: a handed-back
//! handle's items may also come out before items that a handle still
//! putting had put earlier, which Python's "across producers, order may
//! interleave" allows.) A process that ends without
//! dropping its handle (killed, or `std::process::exit` past it) hands
//! nothing back, and its items keep only their own order. (Python's
//! `shmring` package hands every queue's ring back at process exit.)

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring_core::error::{Corrupted, PopError, PushError};
use shmring_core::wait::Until;

use crate::codec::Message;
use crate::descriptor::Descriptor;
use crate::mpmc::{self, descriptor::QueueDescriptor};
use crate::object::{
    impl_segment_constructors, named, CreateError, OpenError, QueueSettings, RoleError,
    SegmentObject,
};
use crate::segment::Segment;

#[cfg(feature = "tokio")]
mod aio;
pub(crate) mod descriptor;
mod error;
mod handle;
mod handles;
mod joinable;
mod recovery;
mod simple;

use handle::{Handle, PutFailure};

#[cfg(feature = "tokio")]
pub use aio::{AsyncQueue, QueueSink, QueueStream};
pub use error::{GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError};
pub use handles::{Receiver, Sender};
#[cfg(feature = "tokio")]
pub use joinable::AsyncJoinableQueue;
pub use joinable::JoinableQueue;
pub use recovery::{JoinError, JoinTimeoutError, TryJoinError};
pub use simple::SimpleQueue;

/// The setters of a queue's shape on its [`Builder`](crate::Builder), the
/// same for every queue kind (the engine's `mpmc::ByteQueue` included).
/// `SimpleQueue`, unbounded as Python's, leaves `maxsize` out.
macro_rules! queue_setters {
    (maxsize [$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> $crate::Builder<$ty> {
            /// Python's `maxsize`: most messages queued at once (default 0:
            /// no limit but the rings' bytes). Exact with one producer; with
            /// several, concurrent puts may overshoot it by one per producer.
            pub fn maxsize(mut self, maxsize: u64) -> Self {
                self.config.maxsize = maxsize;
                self
            }
        }
        $crate::queue::queue_setters!([$($generics)*] $ty);
    };
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> $crate::Builder<$ty> {
            /// Most handles putting at once: one producer ring each
            /// (default 16).
            pub fn producers(mut self, producers: u64) -> Self {
                self.config.producers = producers;
                self
            }

            /// Bytes of each producer's ring: a power of two (default
            /// 256 KiB).
            pub fn ring_bytes(mut self, bytes: u64) -> Self {
                self.config.ring_bytes = bytes;
                self
            }

            /// Largest encoded message in bytes (default 64 KiB); it must
            /// fit in `ring_bytes` with its record header.
            pub fn max_message(mut self, bytes: u64) -> Self {
                self.config.max_message = bytes;
                self
            }
        }
    };
}
pub(crate) use queue_setters;

/// The facade's error for a put that failed for good, with the item.
#[cold]
#[inline(never)]
fn put_error<T>(item: T, e: PutFailure) -> PutError<T> {
    match e {
        PutFailure::Push(PushError::TooLarge { len, .. }) => PutError::TooLarge(item, len),
        PutFailure::Push(PushError::Corrupted(c)) => PutError::Corrupted(item, c),
        PutFailure::Push(PushError::Closed | PushError::Full | PushError::Timeout) => {
            PutError::ShutDown(item)
        }
        PutFailure::HandleClosed => PutError::Closed(item),
        PutFailure::Encode(e) => PutError::Encode(item, e),
        PutFailure::Claim(RoleError::NoFreeRing { rings }) => PutError::NoFreeRing(item, rings),
        PutFailure::Claim(RoleError::Corrupted(c)) => PutError::Corrupted(item, c),
        // `producer()` reports nothing else; anything else would be a
        // claim gone wrong in shared memory.
        PutFailure::Claim(_) => PutError::Corrupted(
            item,
            Corrupted {
                what: "producer ring claim",
                value: 0,
            },
        ),
    }
}

/// The facade's error for a get that failed for good.
#[cold]
#[inline(never)]
fn get_error(e: PopError) -> GetError {
    match e {
        PopError::Corrupted(c) => GetError::Corrupted(c),
        PopError::Closed | PopError::Empty | PopError::Timeout => GetError::ShutDown,
    }
}

/// The four forms of put (block, try, timeout, deadline) over the type's
/// private `put_until`, with the documentation of [`Queue`]'s.
macro_rules! put_methods {
    ($($m:tt)?) => {
        /// Puts `item`, waiting while the queue is full (Python's `put(x)`).
        ///
        /// # Blocking
        ///
        /// Tries once, spins a few microseconds, then sleeps on a futex
        /// until a consumer takes a message. Like Python, it waits for
        /// consumers that may never come: use
        /// [`put_timeout`](Self::put_timeout) where that matters.
        ///
        /// # Errors
        ///
        /// [`PutError`]: closed, too large, not encodable, no producer
        /// ring free, corrupted; each gives the item back.
        pub fn put(&$($m)? self, item: T) -> Result<(), PutError<T>> {
            error::put_forever(item, |item| self.put_until(item, Until::Never))
        }

        /// Puts `item` only if there is room now (Python's `put_nowait`
        /// and `put(x, block=False)`); never sleeps, never reads the clock.
        ///
        /// # Errors
        ///
        /// [`TryPutError::Full`] (Python's `queue.Full`), or why the put
        /// failed for good.
        #[doc(alias = "put_nowait")]
        pub fn try_put(&$($m)? self, item: T) -> Result<(), TryPutError<T>> {
            self.put_until(item, Until::Now)
        }

        /// Puts `item`, waiting at most `timeout` for room (Python's
        /// `put(x, timeout=t)`; a zero timeout tries once).
        ///
        /// # Errors
        ///
        /// [`PutTimeoutError::Timeout`] (Python's `queue.Full`), or why the
        /// put failed for good.
        pub fn put_timeout(&$($m)? self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
            self.put_until(item, Until::after(timeout)).map_err(TryPutError::timed_out)
        }

        /// Puts `item`, waiting for room until `deadline` (one already past
        /// tries once).
        ///
        /// # Errors
        ///
        /// As [`put_timeout`](Self::put_timeout).
        pub fn put_deadline(&$($m)? self, item: T, deadline: Instant) -> Result<(), PutTimeoutError<T>> {
            self.put_until(item, crate::sys::until_instant(deadline)).map_err(TryPutError::timed_out)
        }
    };
}
pub(crate) use put_methods;

/// The four forms of get over the type's private `get_until`, as
/// [`put_methods`].
macro_rules! get_methods {
    ($($m:tt)?) => {
        /// Takes the next item, waiting while the queue is empty (Python's
        /// `get()`).
        ///
        /// # Blocking
        ///
        /// Tries once, spins briefly, then sleeps until a producer puts,
        /// this handle is closed or the queue shut down.
        ///
        /// # Errors
        ///
        /// [`GetError`]: closed (this handle, or the queue shut down and
        /// drained), not decodable, corrupted.
        pub fn get(&$($m)? self) -> Result<T, GetError> {
            error::get_forever(|| self.get_until(Until::Never))
        }

        /// Takes the next item only if there is one now (Python's
        /// `get_nowait` and `get(block=False)`).
        ///
        /// # Errors
        ///
        /// [`TryGetError::Empty`] (Python's `queue.Empty`), or why the get
        /// failed for good.
        #[doc(alias = "get_nowait")]
        pub fn try_get(&$($m)? self) -> Result<T, TryGetError> {
            self.get_until(Until::Now)
        }

        /// Takes the next item, waiting at most `timeout` (Python's
        /// `get(timeout=t)`; a zero timeout tries once).
        ///
        /// # Errors
        ///
        /// [`GetTimeoutError::Timeout`] (Python's `queue.Empty`), or why
        /// the get failed for good.
        pub fn get_timeout(&$($m)? self, timeout: Duration) -> Result<T, GetTimeoutError> {
            self.get_until(Until::after(timeout)).map_err(TryGetError::timed_out)
        }

        /// Takes the next item, waiting until `deadline` (one already past
        /// tries once).
        ///
        /// # Errors
        ///
        /// As [`get_timeout`](Self::get_timeout).
        pub fn get_deadline(&$($m)? self, deadline: Instant) -> Result<T, GetTimeoutError> {
            self.get_until(crate::sys::until_instant(deadline)).map_err(TryGetError::timed_out)
        }
    };
}
pub(crate) use get_methods;

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
/// use shmring::queue::{Queue, TryGetError};
///
/// let q = Queue::<u64>::new(2)?;
/// q.put(1)?;
/// q.put(2)?;
/// assert!(q.is_full());
/// assert!(q.try_put(3).is_err()); // queue.Full, and the 3 comes back
/// assert_eq!(q.get_timeout(Duration::from_secs(1))?, 1);
/// assert_eq!(q.try_get()?, 2);
/// assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
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
    type Descriptor = QueueDescriptor;
    type Config = QueueSettings;

    fn descriptor(settings: &QueueSettings) -> Result<QueueDescriptor, CreateError> {
        QueueDescriptor::new(settings.core()?).map_err(|e| named(e, "max_message"))
    }

    fn attach(segment: Arc<Segment>) -> Result<Self, OpenError> {
        let descriptor = QueueDescriptor::decode(&segment.params())?;
        let queue = mpmc::ByteQueue::attach_at(segment.clone(), &descriptor, 0)?;
        Ok(Queue {
            handle: Handle::new(queue, segment.clone()),
            segment,
            _items: PhantomData,
        })
    }
}

impl_segment_constructors!([T: Message] Queue<T>, "queue");
queue_setters!(maxsize [T: Message] Queue<T>);

impl<T: Message> Queue<T> {
    /// Python's `Queue(maxsize)`: a new anonymous queue holding at most
    /// `maxsize` messages (0: no limit but the rings' bytes), to hand to
    /// children. [`Queue::builder`] sets the rest of the shape, a name,
    /// or opens one.
    ///
    /// # Errors
    ///
    /// The segment could not be created (`/dev/shm` full, descriptor
    /// limit).
    pub fn new(maxsize: u64) -> Result<Queue<T>, CreateError> {
        Queue::builder().maxsize(maxsize).anonymous()
    }

    put_methods!();
    get_methods!();

    #[inline]
    fn put_until(&self, item: T, until: Until) -> Result<(), TryPutError<T>> {
        self.handle.put_until(item, until)
    }

    #[inline]
    fn get_until(&self, until: Until) -> Result<T, TryGetError> {
        self.handle.get_until(until, None)
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

            /// Closes the queue for every process: puts fail with `ShutDown`,
            /// gets drain what is left and then fail with `ShutDown`, and every
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

            /// Takes this handle's producer ring now, if it has none yet.
            /// The first put does it otherwise (see "Differences from
            /// Python" in [the module docs](crate::queue)): call this right
            /// after opening a queue to learn at once that every ring is
            /// owned by a live handle, not at the first put. A closed
            /// handle takes none (its puts fail with `Closed`).
            ///
            /// # Errors
            ///
            /// [`RoleError::NoFreeRing`](crate::RoleError::NoFreeRing) when
            /// every ring is owned by a live handle; `Corrupted` when the
            /// ring's owner words are inconsistent.
            pub fn claim_producer(&self) -> Result<(), $crate::RoleError> {
                self.handle.claim_producer()
            }

            /// Hands this handle's producer ring back now, as dropping the
            /// handle does: items put so far then come out before any item
            /// put after this call was seen to return (by a join, say), in
            /// every process (see [Order](crate::queue#order)).
            /// The next put claims a ring again. For a handle that lives
            /// on while its process stops putting: a Python object at
            /// process exit, a worker between jobs. `close` does it too.
            pub fn hand_back_producer(&self) {
                self.handle.hand_back_producer();
            }

            /// Sets the spin budget and liveness period of this handle's
            /// blocking calls.
            pub fn set_wait_policy(&self, policy: $crate::WaitPolicy) {
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
