//! Multi-producer multi-consumer queues in shared memory.
//!
//! A [`ByteQueue`] is a segment holding one byte ring per producer (see
//! [`shmring_core::mpmc`] for why): each [`Producer`] owns a ring, any number
//! of [`Consumer`]s in any processes take from all of them. FIFO holds per
//! producer. A producer or consumer killed at any instruction leaves nothing
//! stuck: a dead producer's published messages are still delivered and its
//! ring is taken over by the next producer that needs one; a consumer killed
//! while taking a message loses at most that message.
//!
//! ```
//! use shmring::mpmc::ByteQueue;
//! use shmring::core::wait::Until;
//!
//! let queue = ByteQueue::builder().producers(4).ring_bytes(4096).max_message(256).anonymous()?;
//! let mut tx = queue.producer()?;
//! let mut rx = queue.consumer();
//! tx.push(b"job 1", Until::Never)?;
//! let mut buf = Vec::new();
//! rx.pop(&mut buf, Until::Never)?;
//! assert_eq!(buf, b"job 1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use shmring_core::mpmc::{self, ClaimError};

use crate::descriptor::{Descriptor, Region};
use crate::object::{
    impl_segment_constructors, named, CreateError, OpenError, QueueSettings, RoleError,
    SegmentObject,
};
use crate::segment::Segment;
use crate::sys::FutexWaiter;
use descriptor::QueueDescriptor;

pub(crate) mod descriptor;

/// A named or anonymous segment holding an MPMC queue.
///
/// # Examples
///
/// ```
/// use shmring::core::wait::Until;
/// use shmring::mpmc::ByteQueue;
///
/// let q = ByteQueue::builder().producers(2).max_message(64).anonymous()?;
/// let mut tx = q.producer()?;
/// let mut rx = q.consumer();
/// tx.try_push(b"raw bytes")?;
/// let mut buf = Vec::new();
/// rx.pop(&mut buf, Until::Never)?;
/// assert_eq!(buf, b"raw bytes");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ByteQueue {
    queue: mpmc::Queue,
    segment: Arc<Segment>,
}

impl SegmentObject for ByteQueue {
    type Descriptor = QueueDescriptor;
    type Config = QueueSettings;

    fn descriptor(settings: &QueueSettings) -> Result<QueueDescriptor, CreateError> {
        QueueDescriptor::new(settings.core()?).map_err(|e| named(e, "max_message"))
    }

    fn attach(segment: Arc<Segment>) -> Result<ByteQueue, OpenError> {
        let descriptor = QueueDescriptor::decode(&segment.params())?;
        ByteQueue::attach_at(segment, &descriptor, 0)
    }
}

impl ByteQueue {
    /// Attaches to the queue `descriptor` describes, `at` bytes into the
    /// segment's object region (0 for a plain queue; after the task table
    /// for a JoinableQueue).
    pub(crate) fn attach_at(
        segment: Arc<Segment>,
        descriptor: &QueueDescriptor,
        at: usize,
    ) -> Result<ByteQueue, OpenError> {
        let queue = descriptor.attach_at(&Region::of_segment(&segment), at)?;
        Ok(ByteQueue { queue, segment })
    }
}

impl_segment_constructors!(ByteQueue, "queue");
crate::queue::queue_setters!(maxsize [] ByteQueue);

impl ByteQueue {
    /// A new anonymous queue of the default shape (16 producer rings of
    /// 256 KiB, messages up to 64 KiB, no `maxsize`); [`ByteQueue::builder`]
    /// sets the shape or a name.
    ///
    /// # Errors
    ///
    /// The segment could not be created (`/dev/shm` full, descriptor
    /// limit).
    pub fn new() -> Result<ByteQueue, CreateError> {
        ByteQueue::builder().anonymous()
    }

    /// A producer: claims a free ring, or one whose owner died (its
    /// published messages are delivered before ours).
    ///
    /// # Errors
    ///
    /// [`RoleError::NoFreeRing`] when every ring has a live owner.
    pub fn producer(&self) -> Result<Producer, RoleError> {
        let segment = &self.segment;
        let claimed = self
            .queue
            .claim_producer(segment.peer_token(), segment.waiter(), &mut |t| {
                !segment.is_peer_alive(t)
            });
        match claimed {
            Ok(producer) => Ok(producer),
            Err(ClaimError::NoFreeRing { rings }) => Err(RoleError::NoFreeRing { rings }),
            Err(ClaimError::Corrupted(c)) => Err(c.into()),
            Err(ClaimError::InvalidToken) => Err(RoleError::Corrupted(shmring_core::Corrupted {
                what: "peer token",
                value: 0,
            })),
        }
    }

    /// A consumer. Any number, in any processes.
    pub fn consumer(&self) -> Consumer {
        self.queue.consumer(self.segment.waiter())
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

/// A producer of a [`ByteQueue`]: the core's handle
/// ([`shmring_core::mpmc::Producer`]) with the futex waiter, made by
/// [`ByteQueue::producer`]. It owns one producer ring and keeps the segment
/// alive; dropping it hands the ring back (its queued messages stay and are
/// delivered).
///
/// `try_push` copies a message in if this producer's ring has room now;
/// `push(msg, until)` waits for room (see
/// [`Producer::push`](shmring_core::mpmc::Producer::push)).
pub type Producer = mpmc::Producer<FutexWaiter>;

/// A consumer of a [`ByteQueue`]: the core's handle
/// ([`shmring_core::mpmc::Consumer`]) with the futex waiter, made by
/// [`ByteQueue::consumer`]. Cloning gives an independent consumer.
///
/// Besides `try_pop` and `pop`, it can copy messages out without taking
/// them and take each later, once the copy is safe elsewhere:
/// [`try_peek`](shmring_core::mpmc::Consumer::try_peek) /
/// [`peek`](shmring_core::mpmc::Consumer::peek) and
/// [`commit`](shmring_core::mpmc::Consumer::commit) (what a bridge to
/// another host uses: a bridge killed between the two leaves the message
/// queued).
///
/// ```
/// use shmring::mpmc::{ByteQueue, Commit};
///
/// let q = ByteQueue::builder().producers(1).max_message(64).anonymous()?;
/// q.producer()?.try_push(b"job")?;
/// let mut rx = q.consumer();
/// let mut copies = Vec::new();
/// rx.try_peek(16, 1 << 20, &mut copies)?;
/// assert_eq!(copies[0].1, b"job");
/// assert_eq!(q.len(), 1); // still queued
/// assert_eq!(rx.commit(&copies[0].0), Commit::Taken);
/// assert!(q.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Consumer = mpmc::Consumer<FutexWaiter>;

pub use shmring_core::mpmc::{Commit, PeekToken};
