//! Single-producer single-consumer rings in shared memory.
//!
//! A [`Ring`] is a segment holding one byte ring. One process (or thread)
//! takes the [`Producer`] role, one the [`Consumer`] role; a role held by a
//! process that died is taken over by the next claimant. The ring is the
//! fastest path shmring has: while it is neither empty nor full, a push or
//! pop touches one shared cache line and never enters the kernel.
//!
//! ```
//! use std::time::Duration;
//! use shmring::spsc::Ring;
//! use shmring::core::wait::Until;
//!
//! let ring = Ring::builder().ring_bytes(4096).max_message(256).anonymous()?;
//! let mut tx = ring.producer()?;
//! let mut rx = ring.consumer()?;
//! tx.push(b"hello", Until::Never)?;
//! let mut buf = Vec::new();
//! rx.pop(&mut buf, Until::after(Duration::from_secs(1)))?;
//! assert_eq!(buf, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Crash behaviour
//!
//! - **A dead consumer** does not close the ring. A producer that has to
//!   wait (the ring is full) checks the consumer's liveness and gets
//!   [`PushError::Closed`](shmring_core::PushError::Closed) once it found the role's holder dead; that
//!   `Closed` is *not* final: once a new process claims the consumer role,
//!   pushes succeed again and the new consumer goes on from the dead one's
//!   position. The finding is one compare-and-swap on the role word (from
//!   the dead holder's token to a "gone" mark), which a process claiming
//!   the role at the same moment races with the same expected value: if
//!   the claim wins, the producer goes on waiting (for the new consumer)
//!   instead of reporting `Closed`. It loses only a record the dead consumer had copied out but
//!   not yet released (a record read in place and not released is
//!   delivered again). While the ring has room, a producer learns nothing
//!   of the consumer's death.
//! - **A dead producer**: a waiting consumer gets [`PopError::Closed`](shmring_core::PopError::Closed)
//!   once it has drained what was published (decided by the same
//!   compare-and-swap, so not while a new producer is taking the role
//!   over); a new producer may claim the role and go on. A record being written when the producer died is never
//!   seen (only published records are).
//!
//! (The [`pipe`](crate::pipe) closes its rings for good instead: a pipe end
//! whose peer died reads end of file or gets a broken pipe.)

use std::sync::Arc;

use shmring_core::spsc::{self, Role};
use shmring_core::RingConfig;

use crate::attach::{claim_role, mark_gone, release_role};
use crate::descriptor::{Descriptor, Region};
use crate::object::{
    impl_segment_constructors, named, Builder, CreateError, OpenError, RingSettings, RoleError,
    SegmentObject,
};
use crate::segment::Segment;
use crate::sys::FutexWaiter;
use descriptor::RingDescriptor;

pub(crate) mod descriptor;

/// A named or anonymous segment holding one SPSC byte ring.
///
/// # Examples
///
/// ```
/// use shmring::spsc::Ring;
///
/// let ring = Ring::builder().ring_bytes(4096).max_message(256).anonymous()?;
/// let mut tx = ring.producer()?;
/// let mut rx = ring.consumer()?;
/// tx.try_push(b"hello")?;
/// let mut buf = Vec::new();
/// rx.try_pop(&mut buf)?;
/// assert_eq!(buf, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Ring {
    ring: spsc::Ring,
    segment: Arc<Segment>,
}

impl SegmentObject for Ring {
    type Descriptor = RingDescriptor;
    type Config = RingSettings;

    fn descriptor(settings: &RingSettings) -> Result<RingDescriptor, CreateError> {
        RingDescriptor::new(settings.core()?).map_err(|e| named(e, "max_message"))
    }

    fn attach(segment: Arc<Segment>) -> Result<Ring, OpenError> {
        let descriptor = RingDescriptor::decode(&segment.params())?;
        let ring = descriptor.attach(&Region::of_segment(&segment))?;
        Ok(Ring { ring, segment })
    }
}

impl_segment_constructors!(Ring, "ring");

impl Builder<Ring> {
    /// Bytes of the ring: a power of two (default 256 KiB).
    pub fn ring_bytes(mut self, bytes: u64) -> Self {
        self.config.ring_bytes = bytes;
        self
    }

    /// Largest message in bytes (default 64 KiB); it must fit in
    /// `ring_bytes` with its record header.
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.config.max_message = bytes;
        self
    }
}

impl Ring {
    /// A new anonymous ring of the default size (256 KiB, messages up to
    /// 64 KiB); [`Ring::builder`] sets the sizes or a name.
    ///
    /// # Errors
    ///
    /// The segment could not be created (`/dev/shm` full, descriptor
    /// limit).
    pub fn new() -> Result<Ring, CreateError> {
        Ring::builder().anonymous()
    }

    /// Takes the producer role: a handle that holds it until dropped.
    ///
    /// # Errors
    ///
    /// [`RoleError::RoleTaken`] when a live peer holds it.
    pub fn producer(&self) -> Result<Producer, RoleError> {
        let held = Held::claim(self, Side::Producer)?;
        // On an error `held` drops here and gives the role back.
        let mut producer = self.ring.producer(self.segment.waiter())?;
        producer.set_role(held);
        Ok(producer)
    }

    /// Takes the consumer role: a handle that holds it until dropped.
    ///
    /// # Errors
    ///
    /// [`RoleError::RoleTaken`] when a live peer holds it.
    pub fn consumer(&self) -> Result<Consumer, RoleError> {
        let held = Held::claim(self, Side::Consumer)?;
        let mut consumer = self.ring.consumer(self.segment.waiter())?;
        consumer.set_role(held);
        Ok(consumer)
    }

    /// The ring's configuration.
    pub fn config(&self) -> RingConfig {
        self.ring.config()
    }

    /// Approximate number of messages in the ring (Python's `qsize`): a
    /// snapshot, stale when it returns.
    pub fn len(&self) -> u64 {
        self.ring.len()
    }

    /// Whether the ring holds no message (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Whether not even an empty message fits (a snapshot).
    pub fn is_full(&self) -> bool {
        self.ring.is_full()
    }

    /// Closes the ring for everyone: pushes fail with `Closed`, pops drain
    /// what is left and then fail with `Closed`; sleepers wake at once.
    pub fn close(&self) {
        self.ring.close(&self.segment.waiter());
    }

    /// The segment underneath (name, peers, counters).
    pub fn segment(&self) -> &Segment {
        &self.segment
    }
}

/// The producer of a [`Ring`]: the core's handle
/// ([`shmring_core::spsc::Producer`]) with the futex waiter, made by
/// [`Ring::producer`]. It keeps the segment alive and holds the producer
/// role until dropped; its blocking calls find the consumer gone by the
/// role word (see the [module docs](self#crash-behaviour)).
///
/// `try_push` never blocks and never enters the kernel unless the consumer
/// sleeps; `push(msg, until)` waits for room (see
/// [`Producer::push`](shmring_core::spsc::Producer::push)); `reserve` and
/// `try_push_many` are the zero-copy and batch forms.
pub type Producer = spsc::Producer<FutexWaiter>;

/// The consumer of a [`Ring`]: the core's handle
/// ([`shmring_core::spsc::Consumer`]) with the futex waiter, made by
/// [`Ring::consumer`]. It keeps the segment alive and holds the consumer
/// role until dropped; its blocking calls find the producer gone by the
/// role word (see the [module docs](self#crash-behaviour)).
pub type Consumer = spsc::Consumer<FutexWaiter>;

/// A write grant of a [`Producer`] (see [`Producer::reserve`](shmring_core::spsc::Producer::reserve)).
pub type WriteGrant<'a> = spsc::WriteGrant<'a, FutexWaiter>;

/// A read grant of a [`Consumer`] (see [`Consumer::read`](shmring_core::spsc::Consumer::read)).
pub type ReadGrant<'a> = spsc::ReadGrant<'a, FutexWaiter>;

/// Which end of the ring a [`Held`] role is.
#[derive(Clone, Copy, Debug)]
enum Side {
    Producer,
    Consumer,
}

/// A role of a [`Ring`] this attachment claimed: the [`Role`] its handle
/// carries. Dropping it (with the handle) gives the role back.
struct Held {
    ring: spsc::Ring,
    segment: Arc<Segment>,
    side: Side,
}

impl Held {
    /// Claims `side` of `ring` for this attachment (free, or held by a dead
    /// peer).
    fn claim(ring: &Ring, side: Side) -> Result<Held, RoleError> {
        let held = Held {
            ring: ring.ring.clone(),
            segment: ring.segment.clone(),
            side,
        };
        let name = match side {
            Side::Producer => "producer",
            Side::Consumer => "consumer",
        };
        claim_role(held.words().0, &held.segment, name)?;
        Ok(held)
    }

    /// This role's word and the other end's.
    fn words(
        &self,
    ) -> (
        &shmring_core::sync::AtomicU64,
        &shmring_core::sync::AtomicU64,
    ) {
        let (producer, consumer) = self.ring.owner_words();
        match self.side {
            Side::Producer => (producer, consumer),
            Side::Consumer => (consumer, producer),
        }
    }
}

impl Role for Held {
    /// Decided by a CAS on the other end's role word ([`mark_gone`]): a
    /// process taking that role over at the same moment wins or loses it
    /// whole, and then the wait goes on instead of reporting `Closed`.
    fn peer_gone(&self) -> bool {
        mark_gone(self.words().1, &self.segment)
    }

    /// Dropping it gives the role word back: never replaced.
    fn holds_claim(&self) -> bool {
        true
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        release_role(self.words().0, &self.segment);
    }
}
