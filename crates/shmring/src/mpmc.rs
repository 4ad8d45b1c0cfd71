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
//! use shmring::mpmc::Queue;
//! use shmring::core::wait::Until;
//!
//! let queue = Queue::builder().producers(4).ring_bytes(4096).max_message(256).anonymous()?;
//! let mut tx = queue.producer()?;
//! let mut rx = queue.consumer();
//! tx.push(b"job 1", Until::Never)?;
//! let mut buf = Vec::new();
//! rx.pop(&mut buf, Until::Never)?;
//! assert_eq!(buf, b"job 1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ptr::NonNull;
use std::sync::Arc;

use shmring_core::error::{PopError, PushError};
use shmring_core::mpmc::{self, ClaimError, QueueConfig, QueueLayout};
use shmring_core::wait::{Until, WaitPolicy};
use shmring_core::RingConfig;

use crate::object::{
    impl_segment_constructors, named, CreateError, OpenError, QueueSettings, RoleError,
    SegmentObject,
};
use crate::segment::{ObjectKind, Segment};
use crate::sys::FutexWaiter;

/// A named or anonymous segment holding an MPMC queue.
#[derive(Clone, Debug)]
pub struct Queue {
    queue: mpmc::Queue,
    segment: Arc<Segment>,
}

impl SegmentObject for Queue {
    const KIND: ObjectKind = ObjectKind::MpmcQueue;
    type Config = QueueSettings;

    fn layout(settings: &QueueSettings) -> Result<(usize, [u64; 8]), CreateError> {
        let config = settings.core()?;
        let layout = QueueLayout::new(&config).map_err(|e| named(e, "max_message"))?;
        Ok((layout.total, params(&config)))
    }

    unsafe fn init(base: NonNull<u8>, len: usize, settings: &QueueSettings) -> Result<(), String> {
        let config = settings.core().map_err(|e| e.to_string())?;
        // SAFETY: forwarded from the caller (zeroed, aligned, private).
        unsafe { mpmc::Queue::init_in_place(base, len, &config) }.map_err(|e| e.to_string())
    }

    fn attach(segment: Arc<Segment>) -> Result<Queue, OpenError> {
        let len = segment.object_len();
        Queue::attach_region(segment, 0, len)
    }
}

/// The header parameters of a queue: what `attach_region` checks.
pub(crate) fn params(config: &QueueConfig) -> [u64; 8] {
    let r = &config.ring;
    [
        config.rings,
        r.capacity,
        r.max_record,
        config.max_len,
        0,
        0,
        0,
        0,
    ]
}

impl Queue {
    /// Attaches to a queue at `offset` in the segment's object region (0 for
    /// a plain queue; after the task counter for a JoinableQueue).
    pub(crate) fn attach_region(
        segment: Arc<Segment>,
        offset: usize,
        len: usize,
    ) -> Result<Queue, OpenError> {
        let corrupted = |what, value| OpenError::Corrupted(shmring_core::Corrupted { what, value });
        if offset
            .checked_add(len)
            .is_none_or(|end| end > segment.object_len())
        {
            return Err(corrupted("queue region", offset as u64));
        }
        let [rings, capacity, max_record, max_len, ..] = segment.params();
        let keep: shmring_core::spsc::KeepAlive = segment.clone();
        // `offset` is a multiple of 4096 by our layouts, and
        // attach_in_place re-checks the alignment it needs.
        // SAFETY: offset + len lies inside the object region (checked above),
        // mapped while the segment lives; `keep` holds it for every handle.
        let queue = unsafe {
            let base = segment.object_ptr().add(offset);
            mpmc::Queue::attach_in_place(base, len, keep)
        }?;
        let ring = RingConfig {
            capacity,
            max_record,
        };
        if queue.ring_count() as u64 != rings
            || queue.ring_config() != ring
            || queue.max_len() != max_len
        {
            return Err(corrupted("queue config vs segment params", rings));
        }
        Ok(Queue { queue, segment })
    }
}

impl_segment_constructors!(Queue, "queue");
crate::queue::queue_setters!(maxsize [] Queue);

impl Queue {
    /// A new anonymous queue of the default shape (16 producer rings of
    /// 256 KiB, messages up to 64 KiB, no `maxsize`); [`Queue::builder`]
    /// sets the shape or a name.
    ///
    /// # Errors
    ///
    /// The segment could not be created (`/dev/shm` full, descriptor
    /// limit).
    pub fn new() -> Result<Queue, CreateError> {
        Queue::builder().anonymous()
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
            Ok(inner) => Ok(Producer {
                inner,
                _queue: self.clone(),
                policy: WaitPolicy::default(),
            }),
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
