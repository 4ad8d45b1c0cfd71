//! Multi-producer multi-consumer queues in shared memory.
//!
//! A [`Queue`] is a segment holding one byte ring per producer (see
//! [`shmring_core::mpmc`] for why): each [`Producer`] owns a ring, any number
//! of [`Consumer`]s in any processes take from all of them. FIFO holds per
//! producer. A producer or consumer killed at any instruction leaves nothing
//! stuck: a dead producer's published messages are still delivered and its
//! ring is taken over by the next producer that needs one; a consumer killed
//! while taking a message loses at most that message.
//!
//! ```
//! use shmring::mpmc::{Queue, QueueConfig};
//! use shmring::core::{wait::Until, RingConfig};
//!
//! let config = QueueConfig { rings: 4, ring: RingConfig { capacity: 4096, max_record: 256 }, max_len: 0 };
//! let queue = Queue::create_anonymous(config, &Default::default())?;
//! let mut tx = queue.producer()?;
//! let mut rx = queue.consumer();
//! tx.push(b"job 1", Until::Never)?;
//! let mut buf = Vec::new();
//! rx.pop(&mut buf, Until::Never)?;
//! assert_eq!(buf, b"job 1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use shmring_core::error::{PopError, PushError};
pub use shmring_core::mpmc::QueueConfig;
use shmring_core::mpmc::{self, ClaimError};
use shmring_core::wait::{Until, WaitPolicy};

use crate::attach::AttachError;
use crate::descriptor::{Descriptor, Region};
use crate::object::{impl_segment_constructors, SegmentObject};
use crate::segment::Segment;
use crate::sys::FutexWaiter;
use descriptor::QueueDescriptor;

pub(crate) mod descriptor;

/// A named or anonymous segment holding an MPMC queue.
#[derive(Clone, Debug)]
pub struct Queue {
    queue: mpmc::Queue,
    segment: Arc<Segment>,
}

impl SegmentObject for Queue {
    type Descriptor = QueueDescriptor;
    type Config = QueueConfig;

    fn descriptor(config: &QueueConfig) -> Result<QueueDescriptor, AttachError> {
        Ok(QueueDescriptor::new(*config)?)
    }

    fn attach(segment: Arc<Segment>) -> Result<Queue, AttachError> {
        let descriptor = QueueDescriptor::decode(&segment.params())?;
        Queue::attach_at(segment, &descriptor, 0)
    }
}

impl Queue {
    /// Attaches to the queue `descriptor` describes, `at` bytes into the
    /// segment's object region (0 for a plain queue; after the task table
    /// for a JoinableQueue).
    pub(crate) fn attach_at(
        segment: Arc<Segment>,
        descriptor: &QueueDescriptor,
        at: usize,
    ) -> Result<Queue, AttachError> {
        let queue = descriptor.attach_at(&Region::of_segment(&segment), at)?;
        Ok(Queue { queue, segment })
    }
}

impl_segment_constructors!(Queue, QueueConfig, "queue");

impl Queue {
    /// A producer: claims a free ring, or one whose owner died (its
    /// published messages are delivered before ours).
    ///
    /// # Errors
    ///
    /// [`AttachError::NoFreeRing`] when every ring has a live owner.
    pub fn producer(&self) -> Result<Producer, AttachError> {
        let segment = &self.segment;
        let claimed = self
            .queue
            .claim_producer(segment.peer_token(), segment.waiter(), &mut |t| {
                !segment.is_peer_alive(t)
            });
        match claimed {
            Ok(inner) => Ok(Producer {
                inner,
                _queue: self.clone(),
                policy: WaitPolicy::default(),
            }),
            Err(ClaimError::NoFreeRing { rings }) => Err(AttachError::NoFreeRing { rings }),
            Err(ClaimError::Corrupted(c)) => Err(c.into()),
            Err(ClaimError::InvalidToken) => Err(AttachError::Corrupted(shmring_core::Corrupted {
                what: "peer token",
                value: 0,
            })),
        }
    }

    /// A consumer. Any number, in any processes.
    pub fn consumer(&self) -> Consumer {
        Consumer {
            inner: self.queue.consumer(self.segment.waiter()),
            _queue: self.clone(),
            policy: WaitPolicy::default(),
        }
    }

    /// Approximate number of queued messages (Python's `qsize`): a snapshot.
    pub fn len(&self) -> u64 {
        self.queue.len()
    }

    /// Whether every producer ring is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Python's `maxsize`: most messages queued at once (0 = no limit).
    pub fn max_len(&self) -> u64 {
        self.queue.max_len()
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Closes the queue for everyone: pushes fail with `Closed`, pops drain
    /// what is left and then fail with `Closed`; sleepers wake at once.
    pub fn close(&self) {
        self.queue.close(&self.segment.waiter());
    }

    /// The segment underneath.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The core queue (its wait words, for the facades' blocking loops).
    pub(crate) fn core(&self) -> &mpmc::Queue {
        &self.queue
    }
}

/// A producer of a [`Queue`]: the owner of one producer ring. Dropping it
/// hands the ring back; its queued messages stay and are delivered.
#[derive(Debug)]
pub struct Producer {
    inner: mpmc::Producer<FutexWaiter>,
    /// Keeps the queue's handle (and its segment attachment) alive.
    _queue: Queue,
    policy: WaitPolicy,
}

impl Producer {
    /// Copies `msg` in if there is room in this producer's ring now.
    ///
    /// # Errors
    ///
    /// `Full`, `Closed`, `TooLarge`, `Corrupted`.
    #[inline]
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        self.inner.try_push(msg)
    }

    /// Copies `msg` in, waiting for room until `until` ([`Until::Now`]:
    /// one try, then `Timeout`).
    ///
    /// # Blocking
    ///
    /// Tries, spins a few microseconds, then sleeps until a consumer makes
    /// room, `until` passes or the queue is closed. Like Python's
    /// `Queue.put`, it waits for consumers that may never come; bound it
    /// where that matters.
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed`, `TooLarge`, `Corrupted`.
    pub fn push(&mut self, msg: &[u8], until: Until) -> Result<(), PushError> {
        self.inner.push(msg, until, &self.policy, &mut || false)
    }

    /// Copies in as many of `msgs` as fit now, with one wake (and one
    /// publish, unless the queue has a `max_len`: then each record is
    /// checked against it and published in turn; see
    /// [`shmring_core::mpmc::Producer::try_push_many`]).
    ///
    /// # Errors
    ///
    /// Only when none went in: why the first did not.
    pub fn try_push_many<'m, I: IntoIterator<Item = &'m [u8]>>(
        &mut self,
        msgs: I,
    ) -> Result<usize, PushError> {
        self.inner.try_push_many(msgs)
    }

    /// Which producer ring this producer owns.
    pub fn ring_index(&self) -> usize {
        self.inner.ring_index()
    }

    /// Whether this producer's ring has no room for even an empty message
    /// (a snapshot). FIFO and capacity are per producer, so "full" is too.
    pub fn is_full(&mut self) -> bool {
        self.inner.is_full()
    }

    /// Sets the spin budget and wake-up period used by blocking calls.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }
}

/// A consumer of a [`Queue`]. Cloning gives an independent consumer.
#[derive(Debug, Clone)]
pub struct Consumer {
    inner: mpmc::Consumer<FutexWaiter>,
    _queue: Queue,
    policy: WaitPolicy,
}

impl Consumer {
    /// Copies the next message of some producer into `buf` if there is one.
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed` (closed and drained), `Corrupted`.
    #[inline]
    pub fn try_pop(&mut self, buf: &mut Vec<u8>) -> Result<usize, PopError> {
        self.inner.try_pop(buf)
    }

    /// [`try_pop`](Self::try_pop), telling `hook` about each attempt to
    /// take a data record (the JoinableQueue's task slots).
    #[inline]
    pub(crate) fn try_pop_with<H: mpmc::TakeHook>(
        &mut self,
        buf: &mut Vec<u8>,
        hook: &mut H,
    ) -> Result<usize, PopError> {
        self.inner.try_pop_with(buf, hook)
    }

    /// Copies the next message into `buf`, waiting until `until`
    /// ([`Until::Now`]: one try, then `Timeout`).
    ///
    /// # Blocking
    ///
    /// Tries, spins briefly, then sleeps until a message arrives, `until`
    /// passes or the queue is closed.
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed`, `Corrupted`.
    pub fn pop(&mut self, buf: &mut Vec<u8>, until: Until) -> Result<usize, PopError> {
        self.inner.pop(buf, until, &self.policy)
    }

    /// Sets the spin budget and wake-up period used by blocking calls.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }
}
